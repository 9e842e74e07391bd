#!/bin/bash
# Select "images" by precomputed CLIP-like vectors: fit on a target of street photos, score three shards
# (two JSONL, one Parquet), print the kinds of what was selected, best first.
#   examples/vectors/select.sh [WORK_DIR]      (gotd-stream on PATH, or GOTD="python -m gotd_stream")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-$(mktemp -d)}
GOTD=${GOTD:-gotd-stream}
PYTHON=${PYTHON:-python}
K=${K:-1100}  # the corpus holds 1,000 street photos: all of them first, then the nearest others
$PYTHON "$HERE/make_vectors.py" "$WORK" --target-kind street
$GOTD fit --features vectors --vector-field clip --target "$WORK/target.jsonl" --sample-size 2000 \
    "$WORK"/photos-*.jsonl "$WORK/photos-2.parquet" -o "$WORK/street.gotd"
$GOTD info "$WORK/street.gotd"
$GOTD score -p "$WORK/street.gotd" -k "$K" "$WORK"/photos-*.jsonl "$WORK/photos-2.parquet" -o "$WORK/selected.jsonl"
echo "selected (best first): the kind of each of the $K photos, in runs"
$PYTHON -c '
import itertools, json, sys
kinds = [json.loads(line)["kind"] for line in open(sys.argv[1])]
print(", ".join(f"{kind} x{len(list(run))}" for kind, run in itertools.groupby(kinds)))
print("first five:", [json.loads(line)["id"] for line in open(sys.argv[1])][:5])
' "$WORK/selected.jsonl"

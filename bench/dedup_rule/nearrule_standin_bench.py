# ruff: noqa: E402, E501, E731  (a measurement script behind the near rule, BENCHMARKS.md "Planted duplicates"; run as is from the repo root)
"""Stand-in for bench/web.py part 3 (no embeddings needed): the old rule (main) and the new (this worktree) on
/tmp/standin.jsonl, lexical space, -k 1000 and --tokens 80000."""

import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, "/work/wt-nearrule")
from bench.web import copies_kept

PY = "/work/main/.venv/bin/python"
pool = Path("/tmp/standin.jsonl")
recs = [json.loads(line) for line in pool.open()]
work = Path("/tmp/standin")
work.mkdir(exist_ok=True)
# target: 80 reviews of the pool that are not planted
reviews = [r["text"] for r in recs if r.get("label") == "reviews"]
random.Random(1).shuffle(reviews)
target = work / "target.jsonl"
target.write_text("".join(json.dumps({"text": t}) + "\n" for t in reviews[:80]))
for name, root in (("main", "/work/main"), ("nearrule", "/work/wt-nearrule")):
    g = [PY, f"{root}/bin/gotd-stream"]
    art = work / f"{name}.gotd"
    subprocess.run([*g, "fit", "--features", "lexical", "--target", target, pool, "-o", art, "-q"], check=True)
    for budget in (["-k", "1000"], ["--tokens", "80000"]):
        for label, extra in (("off", ["--dedup", "off"]), ("guard", ["--dedup", "near", "--allow-target-copies"])):
            out = work / f"sel-{name}-{budget[0]}-{label}.jsonl"
            t0 = time.time()
            subprocess.run([*g, "score", "-p", art, *budget, *extra, pool, "-o", out, "-q"], check=True)
            wall = time.time() - t0
            kept = [json.loads(line) for line in out.open()]
            r = copies_kept(kept)
            print(
                f"| {name} | {' '.join(budget)} | {label} | {r['units']} | {r['copies']} | {r['groups_kept']} | {r['groups_twice']} | {wall:.1f} |",
                flush=True,
            )

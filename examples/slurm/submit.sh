#!/bin/bash
# fit -> score array -> merge, each step starting only once the one before it succeeded (afterok).
#   TARGET=task.jsonl TASKS=16 K=50000 WORK=gotd examples/slurm/submit.sh /shared/shards/*.parquet
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TASKS=${TASKS:-16}
export WORK=${WORK:-gotd} K=${K:-50000} TARGET=${TARGET:?set TARGET to the JSONL of the target task}
mkdir -p "$WORK" logs
fit=$(sbatch --parsable "$here/fit.sbatch" "$@")
score=$(sbatch --parsable --dependency="afterok:$fit" --array="0-$((TASKS - 1))" "$here/score-array.sbatch" "$@")
merge=$(sbatch --parsable --dependency="afterok:$score" --export="ALL,TASKS=$TASKS" "$here/merge.sbatch")
echo "submitted: fit $fit, score array $score (${TASKS} tasks), merge $merge -> $WORK/selected.jsonl.zst"

#!/bin/bash
# Both passes as Ray jobs on a running cluster (see README.md here): the commands run on the head node.
#   HEAD=10.0.0.1 TARGET=/shared/task.jsonl SHARDS='/shared/shards/*.parquet' WORK=/shared/gotd examples/ray/submit.sh
set -euo pipefail
HEAD=${HEAD:?set HEAD to the head node}
TARGET=${TARGET:?set TARGET to the JSONL of the target task}
SHARDS=${SHARDS:?set SHARDS to the shards, a glob that expands on the head node}
WORK=${WORK:?set WORK to a shared folder for the artifact, the state and the selection}
K=${K:-50000}
submit() { ray job submit --address "http://$HEAD:8265" -- "$1"; }
submit "gotd-stream fit --ray auto --target $TARGET --sample-size ${SAMPLE_SIZE:-100000} -o $WORK/task.gotd $SHARDS"
submit "gotd-stream score --ray auto -p $WORK/task.gotd -k $K --state $WORK/state -o $WORK/selected.jsonl.zst $SHARDS"

"""Slurm-style task shares and the merge of their state folders; the bottom-k sample that any split draws alike."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gotd_stream.distributed.shards import share
from gotd_stream.io.records import Skips
from gotd_stream.select.sample import BottomK, bottom_k, bottom_k_keyed, in_input_order
from tests.conftest import make_docs, run, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def lexical(tmp_path):
    """Seven shards (names out of order on purpose), a target and a lexical artifact: no model needed."""
    docs = make_docs(280, seed=5)
    docs[15] = dict(docs[3], id="dup-of-3")  # the same text in two shards: ties go to the earlier shard
    names = ["b-2", "a-0", "c-4", "a-1", "c-5", "b-3", "d-6"]
    shards = [write_jsonl(tmp_path / f"{name}.jsonl", docs[int(name[-1]) :: 7]) for name in names]
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(12, seed=6, topics=("astronomy",)))
    artifact = tmp_path / "task.gotd"
    run(["fit", "--features", "lexical", "--target", target, *shards, "--sample-size", 100, "-o", artifact, "-q"])
    return {"dir": tmp_path, "shards": shards, "artifact": artifact, "target": target}


def test_shares_are_contiguous_blocks_of_the_sorted_paths():
    paths = [f"s/{name}" for name in "gcafbed"]
    blocks = [share(paths, i, 3) for i in range(3)]
    assert blocks == [["s/a", "s/b"], ["s/c", "s/d"], ["s/e", "s/f", "s/g"]]
    assert share(["b", "a"], 2, 4) == [] and share(["b", "a"], 3, 4) == ["b"]  # more tasks than shards
    sizes = [len(share(list(map(str, range(10))), i, 4)) for i in range(4)]
    assert sum(sizes) == 10 and max(sizes) - min(sizes) <= 1


def test_tasks_merged_equal_one_run_and_each_reads_only_its_share(lexical):
    d, shards = lexical["dir"], lexical["shards"]
    one_run = run(["score", "-p", lexical["artifact"], "-k", 25, *sorted(shards)]).stdout_bytes
    outputs = []
    for i in range(3):
        out = d / f"task-{i}.jsonl"
        done = run(["score", "-p", lexical["artifact"], "-k", 25, "--shard-index", i, "--num-shards", 3,
                    "--state", d / f"state-{i}", "-o", out, *shards])  # fmt: skip
        share_i = sorted(map(str, shards))[i * 7 // 3 : (i + 1) * 7 // 3]
        assert json.loads((d / f"state-{i}" / "inputs.json").read_text())["inputs"] == share_i
        assert f"read {40 * len(share_i)} records" in done.stderr  # its share, nothing else
        outputs.append(out)
    assert run(["merge", "-k", 25, *outputs]).stdout_bytes == one_run  # outputs in task order
    folders = [d / f"state-{i}" for i in (2, 0, 1)]  # state folders in any order
    merged = run(["merge", "-k", 25, *folders])
    assert merged.stdout_bytes == one_run and "from 7 shards in 3 state folders" in merged.stderr
    assert run(["merge", "-k", 10, *folders]).stdout_bytes == b"".join(one_run.splitlines(keepends=True)[:10])


def test_share_and_merge_mistakes_are_named(lexical):
    d, shards, artifact = lexical["dir"], lexical["shards"], lexical["artifact"]
    score = ["score", "-p", artifact, "-k", 5]
    assert (
        "--shard-index 3 is outside 0..2"
        in run([*score, "--shard-index", 3, "--num-shards", 3, *shards], code=2).stderr
    )
    assert "--shard-index needs --num-shards" in run([*score, "--shard-index", 0, *shards], code=2).stderr
    assert "--num-shards needs --shard-index" in run([*score, "--num-shards", 2, *shards], code=2).stderr
    stdin = run([*score, "--shard-index", 0, "--num-shards", 2], input=shards[0].read_bytes(), code=2)
    assert "give files, not stdin" in stdin.stderr
    for i in range(2):
        run([*score, "--shard-index", i, "--num-shards", 2, "--state", d / f"st-{i}", "-o", d / f"o-{i}", *shards])
    folders = [d / "st-0", d / "st-1"]
    assert "fewer than --top-k 6" in run(["merge", "-k", 6, *folders], code=2).stderr
    both = run(["merge", "-k", 5, d / "st-0", d / "o-1"], code=2).stderr
    assert "either the outputs of score or its --state folders, not both" in both
    shutil.copytree(d / "st-0", d / "copy")
    assert "is in both" in run(["merge", "-k", 5, *folders, d / "copy"], code=2).stderr
    (d / "empty").mkdir()
    assert "merge takes the state folders of `score --state`" in run(["merge", "-k", 5, d / "empty"], code=2).stderr
    # a task that stopped part-way: its last run has a shard without a completion record
    record = next((d / "st-1" / "shards").glob("*.json"))
    record.unlink()
    unfinished = run(["merge", "-k", 5, *folders], code=1).stderr
    assert "st-1: its last run did not finish: 1 of 4 shards are unscored" in unfinished


def test_a_token_budget_state_merged_by_records_says_what_to_type(lexical):
    """merge -k over --tokens state folders (and the reverse): the kind of budget is named, and the flag to use."""
    d, shards, artifact = lexical["dir"], lexical["shards"], lexical["artifact"]
    tokens = ["score", "-p", artifact, "--tokenizer", "estimate", "--tokens", 300, "--state", d / "by-tokens"]
    ordered = sorted(shards, key=lambda p: os.path.abspath(p))  # the order a folder's shards merge in
    run([*tokens, *ordered, "-o", d / "t.jsonl", "-q"])
    run(["score", "-p", artifact, "-k", 5, "--state", d / "by-k", *ordered, "-o", d / "k.jsonl", "-q"])
    wrong = run(["merge", "-k", 5, d / "by-tokens"], code=2).stderr
    assert "by-tokens holds a token budget (--tokens 300) and this merge asks for a record budget (--top-k 5)" in wrong
    assert "merge it with --tokens 300 (or less) instead" in wrong
    reverse = run(["merge", "--tokens", 300, d / "by-k"], code=2).stderr
    assert "holds a record budget (--top-k 5) and this merge asks for a token budget (--tokens 300)" in reverse
    right = run(["merge", "--tokens", 300, d / "by-tokens"])
    assert right.stdout_bytes == (d / "t.jsonl").read_bytes()


def fake_sbatch(folder: Path) -> Path:
    """A stand-in for sbatch that runs each job at once, in submission order (so afterok holds), an array as a
    loop over its tasks with SLURM_ARRAY_TASK_ID/MIN/MAX set, and prints a job id; and gotd-stream on PATH."""
    folder.mkdir()
    (folder / "sbatch").write_text(
        """#!/bin/bash
set -euo pipefail
array=""
while [[ $1 == --* ]]; do
  case $1 in
    --array=*) array=${1#--array=} ;;
    --export=*)
      IFS=, read -ra pairs <<< "${1#--export=}"
      for p in "${pairs[@]}"; do [[ $p == ALL ]] || export "$p"; done ;;
  esac
  shift
done
script=$1; shift
if [[ -n $array ]]; then
  for ((t = ${array%-*}; t <= ${array#*-}; t++)); do
    SLURM_ARRAY_TASK_ID=$t SLURM_ARRAY_TASK_MIN=${array%-*} SLURM_ARRAY_TASK_MAX=${array#*-} bash "$script" "$@" >&2
  done
else
  bash "$script" "$@" >&2
fi
echo $RANDOM
"""
    )
    (folder / "gotd-stream").write_text(f'#!/bin/bash\nexec {sys.executable} -m gotd_stream "$@"\n')
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return folder


def test_the_slurm_example_chain_gives_the_bytes_of_one_run(lexical, tmp_path):
    bin_dir = fake_sbatch(tmp_path / "fake-bin")
    work = tmp_path / "work"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        TARGET=str(lexical["target"]),
        FIT_OPTIONS="--features lexical --sample-size 100",
        TASKS="3",
        K="25",
        WORK=str(work),
    )
    shards = [str(p) for p in lexical["shards"]]
    done = subprocess.run(
        ["bash", str(ROOT / "examples/slurm/submit.sh"), *shards], cwd=tmp_path, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"submitted: fit" in done.stdout and b"Traceback" not in done.stderr
    assert (work / "task.gotd").read_bytes() == lexical["artifact"].read_bytes()  # the same fit as above
    one = ["score", "-p", work / "task.gotd", "-k", 25, *sorted(shards), "-o", tmp_path / "one.jsonl.zst"]
    one_run = run(one, guard=True)  # the example runs the default guard
    assert one_run.exit_code == 0
    assert (work / "selected.jsonl.zst").read_bytes() == (tmp_path / "one.jsonl.zst").read_bytes()
    assert sorted(p.name for p in work.glob("task-*.jsonl.zst")) == ["task-0.jsonl.zst", "task-1.jsonl.zst",
                                                                      "task-2.jsonl.zst"]  # fmt: skip


def test_bottom_k_is_the_same_sample_however_the_shards_are_split(tmp_path):
    docs = make_docs(300, seed=8)
    paths = [str(write_jsonl(tmp_path / f"s{i}.jsonl", docs[i::5])) for i in range(5)]
    whole, seen = bottom_k(paths, "text", 40, 3, 10_000, Skips())
    assert seen == 300 and len(whole) == 40
    merged = BottomK(40)
    for i, path in enumerate(paths):  # one task per shard, merged in any order
        merged.extend(bottom_k_keyed([path], "text", 40, 3, 10_000, Skips(), first=i)[0])
    assert in_input_order(merged) == whole
    # in input order: a sample of the whole input is the input
    assert bottom_k(paths, "text", 1_000, 3, 10_000, Skips())[0] == [d["text"] for p in paths for d in
                                                                      map(json.loads, open(p))]  # fmt: skip
    assert bottom_k(paths, "text", 40, 4, 10_000, Skips())[0] != whole  # the seed matters


def test_bottom_k_is_uniform(tmp_path):
    docs = [{"text": f"document {i}"} for i in range(100)]
    paths = [str(write_jsonl(tmp_path / "one.jsonl", docs[:50])), str(write_jsonl(tmp_path / "two.jsonl", docs[50:]))]
    hits = Counter()
    for seed in range(1000):
        hits.update(bottom_k(paths, "text", 10, seed, 100, Skips())[0])
    counts = [hits[d["text"]] for d in docs]
    # each record is kept with probability 0.1: 100 expected each (sd 9.5); a biased sampler is far outside this
    assert min(counts) > 60 and max(counts) < 140
    assert sum(counts[:50]) == pytest.approx(sum(counts[50:]), rel=0.1)


def test_a_shard_is_known_by_its_content_not_its_path(lexical, tmp_path):
    shards = lexical["shards"]
    fit = ["fit", "--features", "lexical", "--target", lexical["target"], "--sample-size", 100, "-q", "-o"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copies = []
    for i, shard in enumerate(shards):
        copy = elsewhere / f"renamed-{i}.jsonl"
        shutil.copy(shard, copy)
        copies.append(copy)
    run([*fit, tmp_path / "copies.gotd", *copies])
    assert (tmp_path / "copies.gotd").read_bytes() == lexical["artifact"].read_bytes()
    relative = [os.path.relpath(p) for p in shards]
    run([*fit, tmp_path / "relative.gotd", *relative])
    assert (tmp_path / "relative.gotd").read_bytes() == lexical["artifact"].read_bytes()
    # two files of one name in two folders (FineWeb's dumps) are different shards: their keys differ
    for folder in ("dump-1", "dump-2"):
        (tmp_path / folder).mkdir()
    docs = make_docs(200, seed=9)
    one = str(write_jsonl(tmp_path / "dump-1" / "000.jsonl", docs[:100]))
    two = str(write_jsonl(tmp_path / "dump-2" / "000.jsonl", docs[100:]))
    keys_one = {key for key, _ in bottom_k_keyed([one], "text", 100, 0, 100, Skips())[0]}
    keys_two = {key for key, _ in bottom_k_keyed([two], "text", 100, 0, 100, Skips())[0]}
    assert not keys_one & keys_two

"""Real shell pipelines through a subprocess: zstd in, head out, exit codes, no tracebacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = f"{sys.executable} -m gotd_stream"
pytestmark = pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command")


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, timeout=300)


def test_pipeline_fit_score_merge_head(corpus, tiny_model):
    d = corpus["dir"]
    model = f"--model {tiny_model}"
    steps = [
        "zstd -q pool.jsonl -o pool.jsonl.zst",
        f"{TOOL} fit --target target.jsonl pool.jsonl.zst {model} --sample-size 60 -o task.gotd -q",
        # make_docs' records are near copies of each other (tests/conftest.py): 30 of them only without the guard
        f"zstd -dc pool.jsonl.zst | {TOOL} score -p task.gotd -k 30 --dedup off {model} -o sel.jsonl.zst",
        "zstd -dc sel.jsonl.zst | wc -l",
    ]
    for step in steps[:-1]:
        done = sh(step, d)
        assert done.returncode == 0, (step, done.stderr.decode())
        assert b"Traceback" not in done.stderr
    assert sh(steps[-1], d).stdout.strip() == b"30"

    # | head: the reader goes away long before the output (far larger than a pipe buffer) is written
    big = b"".join(orjson.dumps(dict(doc, pad="x" * 4000)) + b"\n" for doc in corpus["docs"])
    (d / "big.jsonl").write_bytes(big)
    head = sh(
        f"zstd -qc big.jsonl | {TOOL} score -p task.gotd -k 120 --dedup off {model} -q | head -n 2; "
        "echo ${PIPESTATUS[@]} >&2",
        d,
    )
    assert len(head.stdout.splitlines()) == 2 and all(orjson.loads(line) for line in head.stdout.splitlines())
    assert head.stderr.strip() == b"0 1 0"  # quiet, and exit 1 as the README says; no traceback, no message

    # progress and the summary are on stderr, data alone on stdout
    plain = sh(f"{TOOL} score -p task.gotd -k 3 {model} pool.jsonl.zst", d)
    assert len(plain.stdout.splitlines()) == 3 and b"selected 3" in plain.stderr


def test_missing_file_and_truncated_stream_exit_codes(corpus, tiny_model):
    d = corpus["dir"]
    assert sh("zstd -q pool.jsonl -o pool.jsonl.zst && head -c 700 pool.jsonl.zst > cut.zst", d).returncode == 0
    missing = sh(f"{TOOL} score --target target.jsonl -k 3 nope.jsonl", d)
    assert missing.returncode == 2 and b"nope.jsonl" in missing.stderr
    cut = sh(f"cat cut.zst | {TOOL} score --target target.jsonl -k 3 --model {tiny_model} --sample-size 10", d)
    assert cut.returncode == 1 and b"<stdin>: truncated or damaged zstd stream" in cut.stderr
    assert b"Traceback" not in cut.stderr


def test_help_is_fast_and_imports_nothing_heavy():
    heavy = ("torch", "ot", "sentence_transformers", "numpy")
    code = f"import sys, gotd_stream.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "-m", "gotd_stream", "-h"], cwd=ROOT, capture_output=True, text=True)
    assert helped.returncode == 0 and "score" in helped.stdout

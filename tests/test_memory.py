"""Peak memory of `score` is bounded by k, the batch and the target: 10x the records, the same peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import zstandard

from tests.conftest import make_docs

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib(args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gotd_stream", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    return usage.ru_maxrss / 1024


def test_peak_rss_flat_in_records_scored(tmp_path, corpus, tiny_model):
    import orjson

    pot = tmp_path / "task.gotd"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gotd_stream",
            "fit",
            "--target",
            str(corpus["target"]),
            str(corpus["pool"]),
            "--model",
            tiny_model,
            "-o",
            str(pot),
            "-q",
        ],
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    sizes = {}
    for n in (2_000, 20_000):
        path = tmp_path / f"pool-{n}.jsonl.zst"
        docs = make_docs(n, seed=n)
        path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(orjson.dumps(d) + b"\n" for d in docs)))
        sizes[n] = peak_rss_mib(["score", "-p", str(pot), "-k", "100", "--model", tiny_model, str(path), "-q"])
    assert sizes[20_000] <= 1.15 * sizes[2_000], sizes

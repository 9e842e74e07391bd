"""Crash safety of `score --state`: kill -9 at random moments, resume, compare bytes; and what --state costs.

    python bench/resilience.py [--trials 20] [--docs 6000] [--shards 6]
Uses a tiny 2-layer model built from a config (no download), so each trial takes seconds; prints a table.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tool(*args: str) -> list[str]:
    return [sys.executable, "-m", "gotd_stream", *args]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")


def measured(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(stderr)
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def kill_and_resume(
    shards: list[str],
    artifact: str,
    model: str,
    k: int,
    workdir: Path,
    rng: random.Random,
    reference: bytes,
    max_delay: float,
) -> dict:
    """One trial: start a --state run, SIGKILL it after a random delay, re-run it, compare with the reference."""
    state, out = workdir / "state", workdir / "out.jsonl.zst"
    args = tool(
        "score", "-p", artifact, "-k", str(k), "--model", model, "--state", str(state), "-o", str(out), "-q", *shards
    )
    delay = rng.uniform(0, max_delay)
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial_output = out.exists()  # only legitimate if the run finished before the kill
    finished_before = len(list((state / "shards").glob("*.json"))) if state.exists() else 0
    subprocess.run(args, env=env(), check=True)
    return {
        "delay": delay,
        "killed": killed,
        "shards_done_at_kill": finished_before,
        "output_at_kill": partial_output,
        "match": out.read_bytes() == reference,
        "clean": not list(workdir.rglob("*.tmp")),
    }


def make_setup(workdir: Path, docs: int, shards: int) -> tuple[list[str], str, str]:
    """Shards of generated documents, a tiny model and a fitted artifact."""
    import orjson
    import zstandard

    from tests.conftest import build_tiny_model, make_docs

    model = build_tiny_model(workdir / "tiny-st")
    pool = make_docs(docs, seed=1)
    paths = []
    for i in range(shards):
        path = workdir / f"part-{i:02d}.jsonl.zst"
        data = b"".join(orjson.dumps(d) + b"\n" for d in pool[i::shards])
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
        paths.append(str(path))
    target = workdir / "target.jsonl"
    target.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in make_docs(30, seed=2, topics=("cooking",))))
    artifact = str(workdir / "task.gotd")
    subprocess.run(
        tool("fit", "--target", str(target), *paths, "--model", model, "--sample-size", "500", "-o", artifact, "-q"),
        env=env(),
        check=True,
    )
    return paths, artifact, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--docs", type=int, default=6000)
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("-k", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards, artifact, model = make_setup(work, args.docs, args.shards)
        common = ["-p", artifact, "-k", str(args.k), "--model", model, "-q", *shards]
        ref = work / "ref.jsonl.zst"
        plain_s, plain_rss = measured(tool("score", *common, "-o", str(ref)))
        state_s, state_rss = measured(tool("score", *common, "--state", str(work / "st"), "-o", str(work / "s.zst")))
        again_s, _ = measured(tool("score", *common, "--state", str(work / "st"), "-o", str(work / "s2.zst")))
        reference = ref.read_bytes()
        assert (work / "s.zst").read_bytes() == reference == (work / "s2.zst").read_bytes()
        rng = random.Random(0)
        results = []
        for i in range(args.trials):
            trial_dir = work / f"trial{i}"
            trial_dir.mkdir()
            results.append(kill_and_resume(shards, artifact, model, args.k, trial_dir, rng, reference, state_s))
        killed = [r for r in results if r["killed"]]
        print("| what | figure |\n|---|---|")
        print(f"| documents, shards, k | {args.docs:,}, {args.shards}, {args.k} |")
        print(f"| score without --state | {plain_s:.1f} s, peak RSS {plain_rss:.0f} MiB |")
        print(
            f"| score with --state (first run) | {state_s:.1f} s ({state_s / plain_s - 1:+.1%}), "
            f"peak RSS {state_rss:.0f} MiB ({state_rss / plain_rss - 1:+.1%}) |"
        )
        print(f"| re-run with --state, nothing new | {again_s:.1f} s |")
        print(
            f"| kill -9 trials | {len(results)} ({len(killed)} killed mid-run, at 0-{args.shards} finished shards: "
            f"{sorted({r['shards_done_at_kill'] for r in killed})}) |"
        )
        print(f"| resumed output identical to uninterrupted | {sum(r['match'] for r in results)}/{len(results)} |")
        print(f"| no temporary file left | {sum(r['clean'] for r in results)}/{len(results)} |")
        if not all(r["match"] and r["clean"] for r in results):
            sys.exit(1)


if __name__ == "__main__":
    main()

"""Safe under cron and crashes: resumable and incremental --state, the lock, atomic writes, exit codes."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import make_docs, run, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def setup(tmp_path, tiny_model):
    docs = make_docs(160, seed=3)
    shards = [write_jsonl(tmp_path / f"part-{i}.jsonl", docs[i::4]) for i in range(4)]
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(9, seed=4, topics=("football",)))
    artifact = tmp_path / "task.gotd"
    run(["fit", "--target", target, *shards, "--model", tiny_model, "-o", artifact, "-q"])
    return {"dir": tmp_path, "shards": shards, "artifact": artifact, "model": tiny_model, "target": target}


def score(s, shards, *extra, k=12, code=0, artifact=None):
    return run(["score", "-p", artifact or s["artifact"], "-k", k, "--model", s["model"], *extra, *shards], code=code)


def test_resume_and_incremental_refresh_match_plain_runs(setup):
    s, state = setup, setup["dir"] / "state"
    out = s["dir"] / "sel.jsonl.zst"
    first = score(s, s["shards"][:2], "--state", state, "-o", out)
    assert "0 shards from" in first.stderr
    plain = s["dir"] / "plain.jsonl.zst"
    score(s, s["shards"][:2], "-o", plain)
    assert out.read_bytes() == plain.read_bytes()
    # cron, the next day: two new shards; only they are read
    second = score(s, s["shards"], "--state", state, "-o", out)
    assert "2 shards from" in second.stderr
    score(s, s["shards"], "-o", plain)
    assert out.read_bytes() == plain.read_bytes()
    # the summary counts the finished shards as if they were read again
    assert "read 160 records, scored 160" in second.stderr
    third = score(s, s["shards"], "--state", state, "-o", out)
    assert "4 shards from" in third.stderr and out.read_bytes() == plain.read_bytes()


def test_changed_shard_is_rescored(setup):
    s, state = setup, setup["dir"] / "state"
    score(s, s["shards"], "--state", state, "-q")
    write_jsonl(s["shards"][1], make_docs(30, seed=11, topics=("football",)))  # rewritten in place
    os.utime(s["shards"][1], ns=(time.time_ns(), time.time_ns() + 10**9))
    resumed = score(s, s["shards"], "--state", state)
    assert "3 shards from" in resumed.stderr
    assert resumed.stdout_bytes == score(s, s["shards"]).stdout_bytes


def test_new_artifact_or_k_starts_the_state_over(setup):
    s, state = setup, setup["dir"] / "state"
    score(s, s["shards"], "--state", state, "-q")
    other = s["dir"] / "other.gotd"
    run(["fit", "--target", s["target"], *s["shards"], "--model", s["model"], "--epsilon", 0.2, "-o", other, "-q"])
    changed = score(s, s["shards"], "--state", state, artifact=other)
    assert "was made for other settings (fit_id" in changed.stderr and "0 shards from" in changed.stderr
    assert changed.stdout_bytes == score(s, s["shards"], artifact=other).stdout_bytes
    bigger_k = score(s, s["shards"], "--state", state, k=20, artifact=other)
    assert "k 12 -> 20" in bigger_k.stderr


def test_second_run_on_a_held_state_fails_or_waits(setup):
    s, state = setup, setup["dir"] / "state"
    score(s, s["shards"][:1], "--state", state, "-q")
    holder = open(state / "lock", "r+b")  # noqa: SIM115 - closed by the timer or below
    fcntl.flock(holder, fcntl.LOCK_EX)  # as another run would
    try:
        busy = score(s, s["shards"], "--state", state, code=75)
        assert "is in use by another gotd-stream run" in busy.stderr and "--wait" in busy.stderr
        threading.Timer(1.0, holder.close).start()  # the other run ends a second later
        started = time.monotonic()
        waited = score(s, s["shards"], "--state", state, "--wait")
        assert time.monotonic() - started >= 0.9 and "selected 12" in waited.stderr
    finally:
        holder.close()  # closing twice is harmless on a file object


def test_state_needs_files_and_potentials(setup):
    s = setup
    result = run(["score", "-p", s["artifact"], "-k", 3, "--state", s["dir"] / "st", "-"], code=2)
    assert "--state needs --potentials and input files" in result.stderr
    result = run(["score", "--target", s["target"], "-k", 3, "--state", s["dir"] / "st", *s["shards"]], code=2)
    assert "--state needs --potentials" in result.stderr


def test_full_disk_fails_cleanly_and_keeps_previous_output(setup, monkeypatch):
    s = setup
    out = s["dir"] / "sel.jsonl.zst"
    score(s, s["shards"], "-o", out, "-q")
    before = out.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gotd_stream.io.outputs.os.fsync", no_space)
    failed = score(s, s["shards"], "-o", out, "--state", s["dir"] / "st", code=1)
    assert "No space left on device" in failed.stderr
    assert out.read_bytes() == before
    assert not [p for p in s["dir"].rglob("*") if p.name.endswith(".tmp")]


def test_exit_codes_for_skipped_records(setup):
    s = setup
    bad = s["dir"] / "bad.jsonl"
    bad.write_bytes(s["shards"][0].read_bytes() + b"{oops\n" + b'{"text": 1}\n')
    out = s["dir"] / "sel.jsonl"
    assert score(s, [bad], "-o", out).exit_code == 0  # no budget: skips are reported, not fatal
    partial = score(s, [bad], "-o", out, "--max-skipped", 5, code=3)
    assert "skipped 2" in partial.stderr and len(out.read_bytes().splitlines()) == 12
    out.write_bytes(b"previous\n")
    over = score(s, [bad], "-o", out, "--max-skipped", 1, code=1)
    assert "more than --max-skipped 1" in over.stderr and out.read_bytes() == b"previous\n"
    clean = score(s, s["shards"], "--max-skipped", 0)
    assert clean.exit_code == 0


def _tool(*args) -> list[str]:
    return [sys.executable, "-m", "gotd_stream", *map(str, args)]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")


def _foreground() -> None:
    """The child starts with Ctrl-C and SIGTERM at their defaults, as a shell starts a foreground job. A
    background job of a non-interactive shell (`make test &`, `nohup ... &`) has SIGINT ignored, its children
    inherit that, and Python then leaves SIGINT ignored: the tool rightly ran to its end (exit 0)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_remove_temporary_files(setup, signum):
    s = setup
    big = [write_jsonl(s["dir"] / f"big-{i}.jsonl", make_docs(20000, seed=20 + i)) for i in range(3)]  # far past 0.5 s
    out, state = s["dir"] / "sel.jsonl.zst", s["dir"] / "state"
    out.write_bytes(b"previous")
    proc = subprocess.Popen(
        _tool("score", "-p", s["artifact"], "-k", 50, "--model", s["model"], "--state", state, "-o", out, *big),
        env=_env(),
        stderr=subprocess.PIPE,
        preexec_fn=_foreground,
    )
    deadline = time.monotonic() + 120
    while not (state / "shards").exists() and time.monotonic() < deadline:  # scoring has begun
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"Aborted!" in stderr and b"Traceback" not in stderr, stderr.decode()[-3000:]
    assert out.read_bytes() == b"previous"
    assert not [p for p in s["dir"].rglob("*") if p.name.endswith(".tmp")]


def test_kill_9_then_resume_is_byte_identical(setup):
    from bench.resilience import kill_and_resume

    s = setup
    shards = [str(write_jsonl(s["dir"] / f"big-{i}.jsonl", make_docs(600, seed=30 + i))) for i in range(4)]
    reference = s["dir"] / "ref.jsonl.zst"
    subprocess.run(
        _tool("score", "-p", s["artifact"], "-k", 40, "--model", s["model"], "-q", "-o", reference, *shards),
        env=_env(),
        check=True,
    )
    rng = random.Random(1)
    for trial in range(3):
        work = s["dir"] / f"trial{trial}"
        work.mkdir()
        result = kill_and_resume(shards, str(s["artifact"]), s["model"], 40, work, rng, reference.read_bytes(), 8.0)
        assert result["match"] and result["clean"], result

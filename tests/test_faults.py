"""Faults a long or unattended run meets: a damaged shard under --state, signals and unreachable clusters under
--ray, devices that do not exist here, a damaged static-model cache. Each is run as a user runs the tool."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zstandard

from tests.conftest import make_docs, run, write_jsonl


@pytest.fixture()
def shards(tmp_path, tiny_model):
    """Three .jsonl.zst shards, an artifact fitted on them, and a damaged copy of the middle one's bytes."""
    docs = make_docs(150, seed=7)
    paths = []
    for i in range(3):
        plain = write_jsonl(tmp_path / f"part-{i}.jsonl", docs[i::3])
        path = tmp_path / f"part-{i}.jsonl.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
        plain.unlink()
        paths.append(path)
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(9, seed=8, topics=("football",)))
    artifact = tmp_path / "task.gotd"
    run(["fit", "--target", target, *paths, "--model", tiny_model, "-o", artifact, "-q"])
    good = paths[1].read_bytes()
    return {"dir": tmp_path, "paths": paths, "artifact": artifact, "model": tiny_model, "good": good}


def _damage(path, good: bytes) -> None:
    """The shard cut short inside its zstd frame, as a copy that died part-way leaves it."""
    path.write_bytes(good[: len(good) // 2])


def test_damaged_shard_under_state_is_recorded_and_the_others_go_on(shards):
    s, state = shards, shards["dir"] / "state"
    bad = s["paths"][1]
    _damage(bad, s["good"])
    out = s["dir"] / "sel.jsonl"
    args = ["score", "-p", s["artifact"], "-k", 10, "--model", s["model"], "--state", state, "-o", out, *s["paths"]]

    first = run(args, code=1)
    assert f"1 shard could not be read ({bad}: truncated or damaged zstd stream" in first.stderr
    assert "the selection of the other 2 was written without it" in first.stderr
    assert "1 damaged shard left out" in first.stderr  # the summary line, before the error
    # the selection written is the two good shards' selection, as a plain run over them gives it
    alone = s["dir"] / "alone.jsonl"
    run(["score", "-p", s["artifact"], "-k", 10, "--model", s["model"], "-o", alone, s["paths"][0], s["paths"][2]])
    assert out.read_bytes() == alone.read_bytes() and len(out.read_bytes().splitlines()) == 10
    assert "read 100 records" in first.stderr  # the damaged shard's records before the damage are not counted
    record = next(state.glob("shards/*.failed.json"))
    assert "truncated or damaged zstd stream" in record.read_text()

    # cron again, nothing changed: the failure is known, nothing is scored again, still exit 1 naming it
    again = run(args, code=1)
    assert "2 shards from" in again.stderr and "1 damaged shard left out" in again.stderr
    assert f"{bad}: truncated or damaged zstd stream" in again.stderr and "unchanged since it failed" in again.stderr
    assert out.read_bytes() == alone.read_bytes()
    # touched only (a new mtime, the same bytes): still the same damaged file
    os.utime(bad, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert "truncated or damaged" in run(args, code=1).stderr

    # the file is fixed: it is scored, the run succeeds, the output is the one-pass selection of all three
    bad.write_bytes(s["good"])
    fixed = run(args)
    assert "could not be read" not in fixed.stderr and not list(state.glob("shards/*.failed.json"))
    plain = s["dir"] / "plain.jsonl"
    run(["score", "-p", s["artifact"], "-k", 10, "--model", s["model"], "-o", plain, *s["paths"]])
    assert out.read_bytes() == plain.read_bytes()


def test_every_shard_damaged_writes_nothing(shards):
    s = shards
    for path in s["paths"]:
        _damage(path, path.read_bytes())
    out = s["dir"] / "sel.jsonl"
    out.write_bytes(b"previous\n")
    args = ["score", "-p", s["artifact"], "-k", 10, "--model", s["model"], "--state", s["dir"] / "st", "-o", out]
    result = run([*args, *s["paths"]], code=1)
    assert "3 shards could not be read" in result.stderr and "nothing was written" in result.stderr
    assert out.read_bytes() == b"previous\n"


def test_damaged_shard_without_state_still_fails_the_run(shards):
    s = shards
    _damage(s["paths"][1], s["good"])
    out = s["dir"] / "sel.jsonl"
    result = run(["score", "-p", s["artifact"], "-k", 10, "--model", s["model"], "-o", out, *s["paths"]], code=1)
    assert "truncated or damaged zstd stream" in result.stderr and not out.exists()


ROOT = Path(__file__).resolve().parent.parent


def tool(*args, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
    """The installed command as a shell runs it; `timeout` only guards against a hang (the bug this file tests)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "gotd_stream", *map(str, args)], env=env, capture_output=True,
                          timeout=timeout, **popen)  # fmt: skip


@pytest.fixture()
def lexical(tmp_path):
    """Two small shards and a lexical artifact (no model to load)."""
    docs = make_docs(60, seed=5)
    paths = [write_jsonl(tmp_path / f"part-{i}.jsonl", docs[i::2]) for i in range(2)]
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(9, seed=6, topics=("cooking",)))
    artifact = tmp_path / "task.gotd"
    run(["fit", "--features", "lexical", "--target", target, *paths, "-o", artifact, "-q"])
    return {"dir": tmp_path, "paths": paths, "artifact": artifact}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


def test_ray_address_with_nothing_listening_fails_at_once_naming_it(lexical):
    address = f"127.0.0.1:{closed_port()}"
    done = tool("score", "-p", lexical["artifact"], "-k", 5, "--ray", address, *lexical["paths"], timeout=60)
    stderr = done.stderr.decode()
    assert done.returncode == 1 and b"Traceback" not in done.stderr, stderr
    assert f"no Ray cluster answers at {address} (Connection refused): check the host and port" in stderr
    assert done.stdout == b""


def test_ray_address_of_an_http_server_fails_at_once_instead_of_hanging(lexical):
    """The dashboard's port (8265) given for the cluster's: Ray's connect would wait on it for minutes."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        for given in (address, f"ray://{address}"):
            done = tool("score", "-p", lexical["artifact"], "-k", 5, "--ray", given, *lexical["paths"], timeout=60)
            stderr = done.stderr.decode()
            assert done.returncode == 1 and b"Traceback" not in done.stderr, stderr
            assert f"something listens at {given}, but not a Ray cluster (an HTTP server: " in stderr
            assert "6379 by default" in stderr and "8265 is the dashboard" in stderr
    finally:
        server.shutdown()
        server.server_close()


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


@pytest.mark.parametrize("device", ["cuda", "tpu"])
@pytest.mark.parametrize("command", ["score", "score-semantic", "fit", "embed", "finetune"])
def test_a_device_that_is_not_here_is_a_usage_error_naming_the_devices_here(lexical, tiny_model, command, device):
    if device == "cuda" and not _no_cuda():
        pytest.skip("this machine has CUDA")
    d, paths = lexical["dir"], lexical["paths"]
    args = {
        "score": ["score", "-p", lexical["artifact"], "-k", 3, *paths],
        "score-semantic": ["score", "--target", d / "target.jsonl", "--model", tiny_model, "-k", 3, *paths],
        "fit": ["fit", "--target", d / "target.jsonl", "--model", tiny_model, "-o", d / "x.gotd", *paths],
        "embed": ["embed", "--model", tiny_model, "-o", d / "x.npy", *paths],
        "finetune": ["finetune", "--data", paths[0], "-o", d / "ckpt", "--max-steps", 1],
    }[command]
    result = run([*args, "--device", device], code=2)
    assert "Traceback" not in result.output and "the devices here: auto, cpu" in result.stderr
    if device == "cuda":
        assert "--device cuda: no CUDA device here (torch sees none" in result.stderr
    else:
        assert "--device tpu: not a device gotd-stream runs on here; give auto, cpu, cuda or cuda:N" in result.stderr
    assert not (d / "x.gotd").exists() and not (d / "x.npy").exists() and not (d / "ckpt").exists()


@pytest.fixture()
def static_copy(corpus, tiny_static, tmp_path):
    """An artifact fitted with the tiny static model, and a copy of its cache (GOTD_STREAM_CACHE) to damage."""
    import shutil

    from gotd_stream.features.semantic import resolve_model

    artifact = tmp_path / "static.gotd"
    run(["fit", "--target", corpus["target"], corpus["pool"], "--model", tiny_static, "-o", artifact, "-q"])
    cached = Path(resolve_model(tiny_static)[0])
    cache = tmp_path / "cache"
    shutil.copytree(cached, cache / "static" / cached.name)
    score = ["score", "-p", artifact, "-k", 5, "--model", tiny_static, corpus["pool"]]
    return {"folder": cache / "static" / cached.name, "env": {"GOTD_STREAM_CACHE": str(cache)}, "score": score}


def test_a_damaged_static_cache_names_its_folder_and_distils_again_once_removed(static_copy):
    s = static_copy
    weights = s["folder"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    refused = run(s["score"], code=2, env=s["env"])
    assert f"cannot load model {s['folder']} (" in refused.stderr
    assert f"remove the folder {s['folder']} and the next run distils it again" in refused.stderr
    (s["folder"] / "tokenizer.json").unlink()
    assert "tokenizer.json missing" in run(s["score"], code=2, env=s["env"]).stderr
    import shutil

    shutil.rmtree(s["folder"])
    again = run(s["score"], env=s["env"])  # distilled again into the same folder: the fit's model, the fit's scores
    assert (s["folder"] / "model.safetensors").is_file()
    assert again.stdout == run(s["score"]).stdout and len(again.stdout.splitlines()) == 5


def test_flipped_static_weights_say_the_cache_differs_not_to_pass_static(static_copy):
    from safetensors.torch import load_file, save_file

    s = static_copy
    weights = load_file(str(s["folder"] / "model.safetensors"))
    weights["embedding.weight"][7] = -weights["embedding.weight"][7]  # still a valid file: other weights
    save_file(weights, str(s["folder"] / "model.safetensors"))
    refused = run(s["score"], code=2, env=s["env"])
    assert f"the static model in {s['folder']} is not the one the fit used" in refused.stderr
    assert "remove that folder and the next run distils it again" in refused.stderr
    assert "pass --model static," not in refused.stderr


def _foreground() -> None:
    """Ctrl-C and SIGTERM at their defaults, as a shell starts a foreground job (see tests/test_state.py)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _in_session(sid: int) -> list[str]:
    """The processes still in session `sid` (the tool's, and every Ray process it started inherits it)."""
    listing = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True).stdout
    return [line.strip() for line in listing.splitlines() if line.split() and line.split()[0] == str(sid)]


def test_sigterm_under_ray_shuts_the_cluster_down_and_exits_as_a_local_run(shards):
    s = shards
    big = [write_jsonl(s["dir"] / f"big-{i}.jsonl", make_docs(20000, seed=40 + i)) for i in range(3)]
    out = s["dir"] / "sel.jsonl"
    out.write_bytes(b"previous\n")
    args = ["score", "--ray", "-p", s["artifact"], "-k", 20, "--model", s["model"], "-o", out, *big]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "gotd_stream", *map(str, args)], env=env, stderr=subprocess.PIPE,
                            preexec_fn=_foreground, start_new_session=True)  # fmt: skip
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while not any(b"scoring actor" in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the actors are scoring
    time.sleep(1.0)
    assert proc.poll() is None, b"".join(lines).decode()[-3000:]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    stderr = b"".join(lines).decode(errors="replace")
    assert proc.returncode == 1 and "Aborted!" in stderr, (proc.returncode, stderr[-3000:])
    assert "SIGTERM received" not in stderr and "logging.cc" not in stderr and "Traceback" not in stderr
    assert out.read_bytes() == b"previous\n"
    left = _in_session(proc.pid)
    for _ in range(50):  # Ray's processes are stopped before the tool exits; give a slow machine a moment
        if not left:
            break
        time.sleep(0.2)
        left = _in_session(proc.pid)
    assert not left, left

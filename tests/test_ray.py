"""`--ray` on a real local Ray cluster (2 CPUs): the same bytes as a local run, crashes retried, faults named.

The cluster is started once in this process (ray.init), and the commands, run through CliRunner, join it as a
program already connected to Ray does; two subprocesses start their own cluster (`--ray`) or join this one
(`--ray auto` with RAY_ADDRESS), as users do.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_docs, run, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture()
def shards(tmp_path):
    """Four shards (one of them Parquet), a target, an artifact fitted with the tiny model."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = make_docs(200, seed=3)
    paths = [write_jsonl(tmp_path / f"part-{i}.jsonl", docs[i::4]) for i in range(3)]
    parquet = tmp_path / "part-3.parquet"
    pq.write_table(pa.Table.from_pylist(docs[3::4]), parquet, row_group_size=16)
    paths.append(parquet)
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(9, seed=4, topics=("football",)))
    return {"dir": tmp_path, "shards": paths, "target": target}


@pytest.fixture()
def fitted(shards, tiny_model):
    artifact = shards["dir"] / "task.gotd"
    run(["fit", "--target", shards["target"], *shards["shards"], "--model", tiny_model, "-o", artifact, "-q"])
    return artifact


def score(artifact, model, shards, *extra, code=0):
    return run(["score", "-p", artifact, "-k", 15, "--model", model, *extra, *shards], code=code)


def test_score_on_ray_equals_a_local_run_and_resumes_from_its_state(cluster, shards, fitted, tiny_model):
    local = score(fitted, tiny_model, shards["shards"])
    state = shards["dir"] / "state"
    on_ray = score(fitted, tiny_model, shards["shards"], "--ray", "--state", state)
    assert on_ray.stdout_bytes == local.stdout_bytes and local.stdout_bytes.count(b"\n") == 15
    assert "ray: 2 scoring actors (0 GPU each) for 4 shards" in on_ray.stderr
    assert "0 shards from" in on_ray.stderr and "4 shards on 2 Ray actors" in on_ray.stderr
    assert len(list((state / "shards").glob("*.json"))) == 4  # each shard's result, where a local run puts it
    # the same folder serves a local re-run (nothing left to score), and a Ray run without a state folder
    assert score(fitted, tiny_model, shards["shards"], "--state", state).stdout_bytes == local.stdout_bytes
    again = score(fitted, tiny_model, shards["shards"], "--ray", "--state", state)
    assert "4 shards from" in again.stderr and "0 shards on" in again.stderr
    one_actor = score(fitted, tiny_model, shards["shards"], "--ray", "--ray-actors", 1)
    assert one_actor.stdout_bytes == local.stdout_bytes and "1 scoring actor (0 GPU each)" in one_actor.stderr
    no_gpu = score(fitted, tiny_model, shards["shards"], "--ray", "--ray-gpus", 1, code=2)
    assert "--ray-gpus 1: the Ray cluster has 0 GPUs" in no_gpu.stderr  # not actors that never start


def test_an_actor_killed_mid_shard_is_restarted_and_the_output_still_matches(
    cluster, shards, fitted, tiny_model, monkeypatch
):
    local = score(fitted, tiny_model, shards["shards"])
    orders = shards["dir"] / "crash"
    orders.mkdir()
    (orders / "part-1.jsonl").touch()  # the test hook: the actor scoring part-1 dies at its first window, once
    monkeypatch.setenv("GOTD_TEST_CRASH_DIR", str(orders))
    state = shards["dir"] / "state"
    crashed = score(fitted, tiny_model, shards["shards"], "--ray", "--state", state)
    assert not (orders / "part-1.jsonl").exists()  # the order was taken: a process died
    assert crashed.stdout_bytes == local.stdout_bytes
    assert "part-1.jsonl: the Ray actor scoring it had died; Ray restarted it" in crashed.stderr
    assert "1 retried after a worker died" in crashed.stderr
    assert b"worker died" not in crashed.stdout_bytes  # Ray's own notice goes to stderr, not into the data


def test_a_corrupt_shard_is_recorded_under_state_and_fails_a_run_without_it(cluster, shards, fitted, tiny_model):
    corrupt = shards["dir"] / "part-9.jsonl.zst"
    corrupt.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 40)  # a zstd frame header and no frame
    paths = [*shards["shards"][:2], corrupt]
    # without --state: the run fails by the shard's name, as a local run does
    failed = score(fitted, tiny_model, paths, "--ray", "auto", code=1)
    local = score(fitted, tiny_model, paths, code=1)
    assert f"{corrupt}: corrupt zstd stream" in failed.stderr or f"{corrupt}: truncated" in failed.stderr
    assert failed.stderr.splitlines()[-1] == local.stderr.splitlines()[-1]  # the local run's message
    # with --state: recorded as failed, the good shards scored and written, exit 1 naming it, as a local run
    state, local_state = shards["dir"] / "state", shards["dir"] / "local-state"
    recorded = score(fitted, tiny_model, paths, "--ray", "--state", state, code=1)
    local = score(fitted, tiny_model, paths, "--state", local_state, code=1)
    assert f"1 shard could not be read ({corrupt}: " in recorded.stderr
    assert recorded.stderr.splitlines()[-1] == local.stderr.splitlines()[-1].replace(str(local_state), str(state))
    assert recorded.stdout_bytes == local.stdout_bytes == score(fitted, tiny_model, paths[:2]).stdout_bytes
    assert len(list((state / "shards").glob("*.jsonl.zst"))) == 2 and len(list(state.glob("shards/*.failed.json"))) == 1
    corrupt.unlink()
    resumed = score(fitted, tiny_model, paths[:2], "--ray", "--state", state)
    assert "2 shards from" in resumed.stderr
    assert resumed.stdout_bytes == score(fitted, tiny_model, paths[:2]).stdout_bytes


def test_fit_on_ray_writes_the_artifact_of_a_local_fit(cluster, shards):
    bad = shards["dir"] / "part-4.jsonl"
    bad.write_bytes(b'{"text": "cooking eggs and bread"}\nnot json\n{"text": 5}\n')
    paths = [*shards["shards"], bad]
    args = ["fit", "--features", "lexical", "--target", shards["target"], "--sample-size", 60, *paths]
    local = run([*args, "-o", shards["dir"] / "local.gotd"])
    on_ray = run([*args, "--ray", "-o", shards["dir"] / "ray.gotd"])
    assert (shards["dir"] / "ray.gotd").read_bytes() == (shards["dir"] / "local.gotd").read_bytes()
    assert "read 203 records, sampled 60, skipped 2" in local.stderr and "skipped 2" in on_ray.stderr
    assert f"{bad}:2: malformed JSON" in on_ray.stderr  # a worker's bad records are reported as a local run's
    args = ["score", "--target", shards["target"], "--features", "lexical", "--sample-size", 60]
    fit_and_score = run([*args, "--ray", "-k", 10, *paths])  # a fit on Ray, then the scoring on Ray
    assert fit_and_score.stdout_bytes == run([*args, "-k", 10, *paths]).stdout_bytes
    corrupt = shards["dir"] / "part-9.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 30)  # a gzip header and no member
    failed = run(["fit", "--features", "lexical", "--target", shards["target"], "--ray", "-o", shards["dir"] / "x.gotd",
                  *paths, corrupt], code=1)  # fmt: skip
    local = run(["fit", "--features", "lexical", "--target", shards["target"], "-o", shards["dir"] / "x.gotd", *paths,
                 corrupt], code=1)  # fmt: skip
    assert str(corrupt) in failed.stderr and failed.stderr.splitlines()[-1] == local.stderr.splitlines()[-1]


def tool(*args, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **(env or {}))
    command = [sys.executable, "-m", "gotd_stream", *map(str, args)]
    return subprocess.run(command, env=environment, capture_output=True, timeout=timeout)


def test_a_fresh_local_cluster_and_joining_a_running_one_with_auto(cluster, shards, tiny_model):
    artifact = shards["dir"] / "task.gotd"
    run(["fit", "--features", "lexical", "--target", shards["target"], *shards["shards"], "-o", artifact, "-q"])
    local = run(["score", "-p", artifact, "-k", 12, *shards["shards"]], guard=True).stdout_bytes  # the default
    fresh = tool("score", "--ray", "-p", artifact, "-k", 12, *shards["shards"])  # starts, then stops, its own
    assert fresh.returncode == 0 and fresh.stdout == local, fresh.stderr.decode()[-2000:]
    assert b"Traceback" not in fresh.stderr
    joined = tool("score", "-p", artifact, "-k", 12, "--ray", "auto", *shards["shards"], env={"RAY_ADDRESS": cluster})
    assert joined.returncode == 0 and joined.stdout == local, joined.stderr.decode()[-2000:]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


def test_an_unreachable_address_fails_within_seconds_naming_it(shards):
    artifact = shards["dir"] / "task.gotd"
    run(["fit", "--features", "lexical", "--target", shards["target"], *shards["shards"], "-o", artifact, "-q"])
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    done = tool("score", "-p", artifact, "-k", 5, "--ray", address, *shards["shards"], timeout=60)
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert f"no Ray cluster answers at {address}".encode() in done.stderr and b"Traceback" not in done.stderr


def test_ray_missing_options_without_ray_and_stdin(shards, monkeypatch):
    artifact = shards["dir"] / "task.gotd"
    run(["fit", "--features", "lexical", "--target", shards["target"], *shards["shards"], "-o", artifact, "-q"])
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "ray", None)  # what `import ray` finds when Ray is not installed
        missing = run(["score", "--ray", "-p", artifact, "-k", 5, *shards["shards"]], code=2)
        assert "--ray needs Ray, an optional extra: pip install 'gotd-stream[ray]'" in missing.stderr
        fit = ["fit", "--features", "lexical", "--target", shards["target"], "--ray", "auto", "-o", artifact]
        assert "pip install 'gotd-stream[ray]'" in run([*fit, *shards["shards"]], code=2).stderr
    actors = run(["score", "-p", artifact, "-k", 5, "--ray-actors", 2, *shards["shards"]], code=2)
    assert "--ray-actors needs --ray" in actors.stderr
    stdin = run(["score", "-p", artifact, "-k", 5, "--ray"], input=shards["shards"][0].read_bytes(), code=2)
    assert "--ray reads input files" in stdin.stderr
    as_address = run(["score", "-p", artifact, "-k", 5, "--ray", shards["shards"][0]], code=2)
    assert "write --ray local (or auto) before the inputs" in as_address.stderr


def test_several_targets_on_ray_equal_a_local_run_and_resume(cluster, shards, tiny_model, tmp_path):
    """One pipeline: an artifact of several targets scores on the actor pool as it does here, and --state with
    --ray leaves a folder a local re-run takes every shard from."""
    other = write_jsonl(tmp_path / "cooking.jsonl", make_docs(9, seed=5, topics=("cooking",)))
    mix = tmp_path / "mix.gotd"
    targets = ["--target", f"football={shards['target']}:0.6", "--target", f"cooking={other}:0.4"]
    run(["fit", *targets, *shards["shards"], "--model", tiny_model, "-o", mix, "-q"])
    local = score(mix, tiny_model, shards["shards"])
    on_ray = score(mix, tiny_model, shards["shards"], "--ray", cluster, "--state", tmp_path / "st")
    assert on_ray.stdout_bytes == local.stdout_bytes and on_ray.stdout_bytes.count(b"\n") == 15
    assert "4 shards on" in on_ray.stderr and "mix quota" in on_ray.stderr
    again = score(mix, tiny_model, shards["shards"], "--state", tmp_path / "st")
    assert again.stdout_bytes == local.stdout_bytes and "4 shards from" in again.stderr


def test_the_vectors_space_on_ray_equals_a_local_run(cluster, tmp_path):
    """Precomputed vectors (a Parquet fixed-size list shard among JSONL ones): the fit's sample tasks and the
    scoring actors read the vector field as a local run does (tests/test_vectors.py has the space itself)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.test_vectors import DIM, photos

    docs = photos(60, seed=1)
    paths = [write_jsonl(tmp_path / f"v-{i}.jsonl", docs[i::3]) for i in range(2)]
    rest = docs[2::3] + [{"id": "short", "kind": "x", "emb": [1.0]}]
    parquet = tmp_path / "v-2.parquet"
    emb = pa.array([d["emb"] for d in rest[:-1]], type=pa.list_(pa.float32(), DIM))
    pq.write_table(pa.table({"id": [d["id"] for d in rest[:-1]], "emb": emb}), parquet)
    (tmp_path / "v-3.jsonl").write_bytes(orjson_line(rest[-1]))
    paths += [parquet, tmp_path / "v-3.jsonl"]
    target = write_jsonl(tmp_path / "t.jsonl", photos(8, seed=2, kinds=(1,)))
    fit = ["fit", "--features", "vectors", "--vector-field", "emb", "--target", target, "--sample-size", 30, *paths]
    run([*fit, "-o", tmp_path / "local.gotd"])
    on_ray = run([*fit, "--ray", "-o", tmp_path / "ray.gotd"])
    assert (tmp_path / "ray.gotd").read_bytes() == (tmp_path / "local.gotd").read_bytes()
    assert "skipped 1 (vector of the wrong width: 1)" in on_ray.stderr
    score = ["score", "-p", tmp_path / "local.gotd", "-k", 25, *paths]
    local = run(score).stdout_bytes
    assert run([*score, "--ray", "--state", tmp_path / "state"]).stdout_bytes == local


def orjson_line(doc: dict) -> bytes:
    import orjson

    return orjson.dumps(doc) + b"\n"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Three shards with copies of the near texts planted across them (tests/test_dedup.py's kinds of copy), and
    lexical artifacts of one target and of two: no model needed."""
    import random

    from tests.test_dedup import FAR, NEAR, text, variants

    d = tmp_path_factory.mktemp("planted")
    rng = random.Random(11)
    near = [text(rng, NEAR) for _ in range(8)]
    docs = [{"id": f"n{i}", "text": t} for i, t in enumerate(near)] + [
        {"id": f"f{i}", "text": text(rng, FAR)} for i in range(36)
    ]
    for i in range(4):
        docs += [{"id": f"n{i}-{kind}", "text": copy} for kind, copy in variants(near[i]).items()]
    rng.shuffle(docs)
    paths = [write_jsonl(d / f"part-{i}.jsonl", docs[i::3]) for i in range(3)]
    target = write_jsonl(d / "target.jsonl", [{"text": text(rng, NEAR)} for _ in range(5)])
    other = write_jsonl(d / "other.jsonl", [{"text": text(rng, NEAR[:8] + FAR[:4])} for _ in range(5)])
    one, two = d / "one.gotd", d / "two.gotd"
    run(["fit", "--features", "lexical", "--target", target, *paths, "-o", one, "-q"])
    run(["fit", "--features", "lexical", "--target", f"a={target}:0.5", "--target", f"b={other}:0.5", *paths,
         "-o", two, "-q"])  # fmt: skip
    return {"dir": d, "shards": paths, "one": one, "two": two}


@pytest.mark.parametrize(
    "mode",
    [
        ["-k", 8],
        ["--tokens", 500],
        ["--tokens", 500, "--unit", "doc"],
        ["-k", 8, "--unit", "chunk"],
        ["-k", 8, "--select", "sample", "--temperature", 0.5],
        ["-k", 8, "--mix", "sum"],
        ["-k", 8, "--mix", "quota"],
    ],
    ids=["k", "tokens", "tokens-doc", "pieces", "sample", "sum", "quota"],
)
def test_the_duplicate_guard_on_ray_equals_a_local_run(cluster, planted, mode, tmp_path):
    """With --dedup near the actors send back each shard's prefix (dropped units as signatures, spares): the
    driver's merge, a --state folder merged later, and a local resume all give the local run's bytes and counts."""
    from tests.test_dedup import dropped_of

    artifact = planted["two"] if "--mix" in mode else planted["one"]
    score = ["score", "--dedup", "near", "-p", artifact, *mode]
    local = run([*score, *planted["shards"]])
    assert dropped_of(local.stderr).get("copies", 0) > 0  # copies were in the way
    state = tmp_path / "state"
    on_ray = run([*score, "--ray", "--state", state, *planted["shards"]])
    assert on_ray.stdout_bytes == local.stdout_bytes and "3 shards on" in on_ray.stderr
    assert dropped_of(on_ray.stderr) == dropped_of(local.stderr)
    merge = ["merge", *(["--tokens", 500] if "--tokens" in mode else ["-k", 8])]
    merge += ["-p", artifact] if "--mix" in mode else []
    assert run([*merge, state]).stdout_bytes == local.stdout_bytes
    resumed = run([*score, "--state", state, *planted["shards"]])
    assert resumed.stdout_bytes == local.stdout_bytes and "3 shards from" in resumed.stderr

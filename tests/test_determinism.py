"""Scores do not depend on the thread count, the batch or the window, in any space (issue 11).

BLAS and torch split their sums by thread count and by shape, so a plain float64 c-transform gave a row other
last bits alone than in a block, and another thread count another selection. Each test runs the same work at
several thread counts (torch.set_num_threads in this process, OMP_NUM_THREADS in a subprocess) and compares
bytes: the scores, the selections (one pass, --state, merge of shards), the artifacts and the embeddings.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gotd_stream.select.ot import CTransform, fit_potentials
from tests.conftest import make_docs, run, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
THREADS = (1, 2, 4)
SPACES = ("lexical", "semantic", "hybrid")


@contextlib.contextmanager
def threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def unit_rows(rng, n, d, shift=0.0):
    x = rng.normal(size=(n, d)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("dim", [8, 256, 640])
def test_a_row_scores_the_same_bits_alone_in_any_batch_on_any_thread_count(dim):
    """A block, windows of 7 and single rows, on 1, 2 and 4 threads: one set of bits, close to the float64 formula."""
    rng = np.random.default_rng(dim)
    x, y = unit_rows(rng, 300, dim), unit_rows(rng, 70, dim, shift=0.1)
    g = rng.normal(size=70) * 0.05
    with threads(1):
        reference = CTransform(y, g, 0.05)(x)
    for n in THREADS:
        with threads(n):
            scorer = CTransform(y, g, 0.05)
            for size in (300, 64, 7, 1):
                got = np.concatenate([scorer(x[i : i + size]) for i in range(0, len(x), size)])
                assert got.tobytes() == reference.tobytes(), (n, size)
    # and still the c-transform: the plain formula in extended precision agrees to far below any rank change
    xl, yl = x.astype(np.longdouble), y.astype(np.longdouble)
    z = (g[None] - ((xl * xl).sum(1)[:, None] + (yl * yl).sum(1)[None] - 2 * xl @ yl.T)) / 0.05
    top = z.max(1, keepdims=True)
    exact = -0.05 * (top[:, 0] + np.log(np.exp(z - top).mean(1)))
    np.testing.assert_allclose(reference, exact.astype(np.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("n", "m", "dim"), [(5, 800, 256), (300, 40, 64)])
def test_fit_is_the_same_bits_on_any_thread_count(n, m, dim):
    rng = np.random.default_rng(n)
    x, y = unit_rows(rng, n, dim), unit_rows(rng, m, dim, shift=0.3)
    fits = []
    for t in THREADS:
        with threads(t):
            fit = fit_potentials(x, y, 0.05)
        fits.append(np.concatenate([fit.f, fit.g, [fit.ot_cost, fit.marginal_error, fit.iterations]]).tobytes())
    assert len(set(fits)) == 1


def test_lexical_projection_is_the_same_bits_on_any_blas_thread_count():
    """The randomized SVD of the lexical fit runs on numpy's BLAS, whose thread count torch does not set."""
    from threadpoolctl import threadpool_limits

    from gotd_stream.features.lexical import Lexical

    texts = [d["text"] for d in make_docs(400, seed=9)]
    projections = []
    for n in (1, 2):  # at this size two BLAS threads gave other bits before the fit ran on one
        with threadpool_limits(n, user_api="blas"):
            projections.append(Lexical.fit(texts, buckets=1 << 13, dim=96, seed=0).projection.tobytes())
    assert projections[0] == projections[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tiny_model) -> dict:
    """Three shards of different lengths (so other tail windows), a target, and an artifact per space."""
    d = tmp_path_factory.mktemp("determinism")
    docs = make_docs(140, seed=11)
    paths = [write_jsonl(d / f"part-{i}.jsonl", part) for i, part in enumerate((docs[:61], docs[61:118], docs[118:]))]
    target = write_jsonl(d / "target.jsonl", make_docs(15, seed=12, topics=("astronomy",)))
    for space in SPACES:
        run(["fit", "--features", space, "--target", target, *paths, "--model", tiny_model, "-o", d / f"{space}.gotd"])
    return {"dir": d, "paths": paths, "target": target}


@pytest.mark.parametrize("space", SPACES)
def test_selection_and_embeddings_are_the_same_bytes_on_any_thread_count(shards, tiny_model, space):
    d, paths, art = shards["dir"], shards["paths"], shards["dir"] / f"{space}.gotd"
    model = ["--model", tiny_model]
    selections, embeddings = set(), set()
    for n in (1, 4):
        with threads(n):
            selections.add(run(["score", "-p", art, "-k", 1000, *paths, *model, "-q"]).stdout_bytes)
            run(["embed", "-p", art, *paths, *model, "-o", d / f"{space}-{n}.npy", "-q"])
            embeddings.add((d / f"{space}-{n}.npy").read_bytes())
    assert len(selections) == 1
    assert len(embeddings) == 1


@pytest.mark.parametrize("space", ["lexical", "hybrid"])
def test_state_and_merge_give_the_one_pass_bytes_on_other_thread_counts(shards, tiny_model, space):
    """One pass on 1 thread, a --state run on 2, and shards scored on 4, 1 and 2 threads then merged: one output."""
    d, paths, art = shards["dir"], shards["paths"], shards["dir"] / f"{space}.gotd"
    model = ["--model", tiny_model]
    with threads(1):
        one_pass = run(["score", "-p", art, "-k", 100, *paths, *model, "-q"]).stdout_bytes
    with threads(2):
        state = run(["score", "-p", art, "-k", 100, "--state", d / f"state-{space}", *paths, *model, "-q"])
    nodes = []
    for i, (n, path) in enumerate(zip((4, 1, 2), paths, strict=True)):
        with threads(n):
            nodes.append(d / f"node-{space}-{i}.jsonl")
            run(["score", "-p", art, "-k", 100, path, *model, "-o", nodes[-1], "-q"])
    merged = run(["merge", "-k", 100, *nodes, "-q"]).stdout_bytes
    assert state.stdout_bytes == one_pass
    assert merged == one_pass
    assert one_pass.count(b"\n") == 100


def test_omp_num_threads_changes_no_byte(shards, tiny_model):
    """A real process under OMP_NUM_THREADS=1 against this one on 4 threads (torch and BLAS): fit and score in the
    hybrid space (its lexical half runs on numpy's BLAS, its semantic half on torch) give the same bytes."""
    from threadpoolctl import threadpool_limits

    d, paths = shards["dir"], shards["paths"]
    args = ["score", "-q", "--features", "hybrid", "--target", shards["target"], "--model", tiny_model]
    args += ["--sample-size", 100, "-k", 1000, *paths]
    with threads(4), threadpool_limits(4, user_api="blas"):
        here = run([*args, "--save-potentials", d / "here.gotd", "-o", d / "here.jsonl"], guard=True)  # as the other
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "gotd_stream", *map(str, args), "--save-potentials", d / "one.gotd"]
    done = subprocess.run([*command, "-o", d / "one.jsonl"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert "Traceback" not in here.stderr
    assert (d / "one.gotd").read_bytes() == (d / "here.gotd").read_bytes(), "the fit depends on the thread count"
    assert (d / "one.jsonl").read_bytes() == (d / "here.jsonl").read_bytes(), "the selection depends on it"


def test_sampled_token_budget_is_the_same_bytes_across_threads_workers_and_shard_splits(shards, tiny_model):
    """--select sample under --tokens in the hybrid space: one pass, other thread and worker counts, and per-shard
    outputs merged all give one output."""
    d, paths, art = shards["dir"], shards["paths"], shards["dir"] / "hybrid.gotd"
    args = ["-p", art, "--model", tiny_model, "--tokens", 400, "--select", "sample", "--temperature", 0.1, "-q"]
    with threads(1):
        one_pass = run(["score", *args, "--workers", 0, *paths]).stdout_bytes
    with threads(4):
        assert run(["score", *args, "--workers", 2, *paths]).stdout_bytes == one_pass
    nodes = []
    for i, path in enumerate(paths):
        nodes.append(d / f"sampled-{i}.jsonl")
        run(["score", *args, path, "-o", nodes[-1]])
    assert run(["merge", "--tokens", 400, *nodes, "-q"]).stdout_bytes == one_pass
    assert b'"gotd_select":"sample:t=0.1:seed=0"' in one_pass


@pytest.mark.parametrize("space", ["semantic", "hybrid"])
def test_a_static_model_scores_the_same_bytes_on_any_thread_or_worker_count(shards, tiny_static, space, monkeypatch):
    """Issue 13: the static model's engine (the bag of token rows, the fast tokenizer, worker processes) changes
    no byte with the thread count or the worker count, and merge of shards gives the one-pass bytes."""
    from gotd_stream.features.engine import runners

    monkeypatch.setattr(runners, "BAG_WINDOW", 24)  # several windows: the first inline, the others in the workers
    d, paths = shards["dir"], shards["paths"]
    art = d / f"static-{space}.gotd"
    model = ["--model", tiny_static]
    run(["fit", "--features", space, "--target", shards["target"], *paths, *model, "-o", art, "-q"])
    outputs, embeddings = set(), set()
    for n, workers in ((1, 0), (4, 0), (2, 2)):
        with threads(n):
            args = ["-p", art, *paths, *model, "-q", "--workers", workers]
            outputs.add(run(["score", "-k", 1000, *args]).stdout_bytes)
            run(["embed", *args, "-o", d / f"static-{space}-{n}.npy"])
            embeddings.add((d / f"static-{space}-{n}.npy").read_bytes())
    assert len(outputs) == 1 and len(embeddings) == 1
    one_pass = run(["score", "-p", art, "-k", 100, *paths, *model, "-q"]).stdout_bytes
    nodes = []
    for i, path in enumerate(paths):
        nodes.append(d / f"static-node-{space}-{i}.jsonl")
        run(["score", "-p", art, "-k", 100, path, *model, "-o", nodes[-1], "-q"])
    assert run(["merge", "-k", 100, *nodes, "-q"]).stdout_bytes == one_pass

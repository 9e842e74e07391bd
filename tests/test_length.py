"""The minimum unit length (`score --min-tokens N`): short records and pieces skipped with their own reason, a
short last piece joined to the one before, and the selection still exact across merge and --state (lexical
space, the estimate counter: no model)."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from gotd_stream.io.records import SHORT, split_scored
from gotd_stream.select.units import chunks
from tests.conftest import TOPICS, run, write_jsonl

WORDS = [w for phrases in TOPICS.values() for p in phrases for w in p.split()]


def estimate(text: str) -> int:
    """The estimate counter's tokens, counted here independently: ceil(len/4) per word."""
    return sum(-(-len(w) // 4) for w in text.split())


@pytest.fixture(scope="module")
def lex(tmp_path_factory):
    folder = tmp_path_factory.mktemp("length")
    rng = random.Random(5)
    pool = [{"id": i, "text": " ".join(rng.choices(WORDS, k=rng.randint(1, 90)))} for i in range(120)]
    shards = [write_jsonl(folder / f"part-{i}.jsonl", pool[i::3]) for i in range(3)]
    target = write_jsonl(folder / "target.jsonl", [{"text": p} for p in TOPICS["cooking"] * 3])
    art = folder / "lex.gotd"
    run(["fit", "--features", "lexical", "--target", target, *shards, "--sample-size", 120, "-o", art, "-q"])
    return {"dir": folder, "art": art, "shards": shards, "pool": pool}


def score(lex, *args, code=0):
    return run(["score", "-p", lex["art"], "--tokenizer", "estimate", *args], code=code)


def test_short_records_are_skipped_with_their_reason_and_counted(lex):
    short = [d for d in lex["pool"] if estimate(d["text"]) < 20]
    assert 5 < len(short) < len(lex["pool"]) - 5
    result = score(lex, "-k", 1000, "--min-tokens", 20, *lex["shards"])
    kept = [orjson.loads(split_scored(x).raw) for x in result.stdout_bytes.splitlines()]
    assert len(kept) == len(lex["pool"]) - len(short)
    assert min(estimate(d["text"]) for d in kept) >= 20
    assert f"skipped {len(short)} ({SHORT}: {len(short)})" in result.stderr
    assert f"scored {len(kept)}" in result.stderr
    every = score(lex, "-k", 1000, "--min-tokens", 0, *lex["shards"])
    assert len(every.stdout_bytes.splitlines()) == len(lex["pool"]) and "skipped 0" in every.stderr


def test_under_a_token_budget_a_short_record_holds_no_tokens_of_it(lex):
    out = score(lex, "--tokens", 600, "--unit", "doc", "--min-tokens", 12, *lex["shards"]).stdout_bytes
    scored = [split_scored(x) for x in out.splitlines()]
    assert scored and all(s.tokens == estimate(orjson.loads(s.raw)["text"]) >= 12 for s in scored)


def test_a_short_tail_piece_takes_words_from_the_one_before(lex, tmp_path):
    import gotd_stream as gs

    counter = gs.token_counter("estimate")
    rng = random.Random(8)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(2, 160))) for _ in range(200)]
    joined = 0
    for text in texts:
        plain = chunks(text, 24, counter)
        ruled = chunks(text, 24, counter, 6)
        assert all(estimate(text[a:b]) == n <= 24 for a, b, n in ruled)
        if estimate(text) >= 6:  # every piece holds 6 unless the record itself is shorter
            assert min(n for _, _, n in ruled) >= 6, text
        assert ruled[:-2] == plain[:-2]  # only the last two pieces change
        words = [w for a, b, _ in ruled for w in text[a:b].split()]
        assert words == text.split()  # in order, every word once
        assert all(a[1] <= b[0] for a, b in zip(ruled, ruled[1:], strict=False))
        joined += ruled != plain
    assert joined > 20


def test_joined_pieces_keep_their_records_bytes_and_provenance(lex, tmp_path):
    text = " ".join(WORDS[i % len(WORDS)] for i in range(87))
    line = b'{"n":1E400,"dup":1,"dup":2,"text":"' + text.encode() + b'","tail":[-0]}'
    src = tmp_path / "one.jsonl"
    src.write_bytes(line + b"\n")
    import gotd_stream as gs

    assert chunks(text, 16, gs.token_counter("estimate"))[-1][2] < 6  # without the rule: a short tail
    out = score(lex, "--unit", "chunk", "--tokens", "1M", "--chunk-tokens", 16, "--min-tokens", 6, src).stdout_bytes
    spans = []
    for scored in map(split_scored, out.splitlines()):
        piece = json.loads(scored.raw)  # the stdlib: 1E400 is a valid JSON number
        start, end = piece["gotd_span"]
        assert piece["gotd_source"] == f"{src}:1" and piece["text"] == text[start:end]
        assert 6 <= scored.tokens == estimate(piece["text"]) <= 16
        value = orjson.dumps(piece["text"])
        tail = b',"gotd_source":"%s:1","gotd_span":[%d,%d]}' % (str(src).encode(), start, end)
        assert scored.raw == b'{"n":1E400,"dup":1,"dup":2,"text":' + value + b',"tail":[-0]' + tail
        spans.append((start, end))
    spans.sort()
    assert " ".join(text[a:b] for a, b in spans).split() == text.split()


def test_a_record_shorter_than_the_rule_is_skipped_whole_as_pieces_too(lex, tmp_path):
    src = write_jsonl(tmp_path / "tiny.jsonl", [{"text": "movie"}, {"text": " ".join(WORDS[:40])}])
    result = score(lex, "--tokens", "1M", "--min-tokens", 8, src)
    kept = [orjson.loads(split_scored(x).raw)["gotd_source"] for x in result.stdout_bytes.splitlines()]
    assert kept and set(kept) == {f"{src}:2"}
    assert f"skipped 1 ({SHORT}: 1)" in result.stderr and "under 8" in result.stderr


def test_a_short_unit_is_no_bad_record_for_strict_or_max_skipped(lex, tmp_path):
    src = write_jsonl(tmp_path / "mixed.jsonl", [{"text": "movie"}, {"text": " ".join(WORDS[:40])}, {"text": 3}])
    strict = score(lex, "-k", 5, "--min-tokens", 8, "--strict", src, code=1)
    assert "mixed.jsonl:3: text field" in strict.stderr.split("Error:")[1]  # the bad record, not the short one
    within = score(lex, "-k", 5, "--min-tokens", 8, "--max-skipped", 1, src, code=3)  # one bad record, one short
    assert f"{SHORT}: 1" in within.stderr and len(within.stdout_bytes.splitlines()) == 1
    clean = write_jsonl(tmp_path / "clean.jsonl", [{"text": "movie"}, {"text": " ".join(WORDS[:40])}])
    assert f"{SHORT}: 1" in score(lex, "-k", 5, "--min-tokens", 8, "--max-skipped", 0, clean).stderr  # exit 0


@pytest.mark.parametrize("budget", [["-k", 25], ["--tokens", 700]])
def test_merge_and_state_equal_one_run_with_the_rule_on(lex, budget, tmp_path):
    rule = ["--min-tokens", 15] + (["--unit", "chunk", "--chunk-tokens", 32] if budget[0] == "--tokens" else [])
    whole = score(lex, *budget, *rule, *lex["shards"]).stdout_bytes
    assert whole
    outputs = []
    for i, shard in enumerate(lex["shards"]):
        outputs.append(tmp_path / f"out-{i}.jsonl")
        score(lex, *budget, *rule, shard, "-o", outputs[-1], "-q")
    assert run(["merge", *budget, *outputs]).stdout_bytes == whole
    state = tmp_path / "state"
    score(lex, *budget, *rule, *lex["shards"][:2], "--state", state, "-q")
    resumed = score(lex, *budget, *rule, *lex["shards"], "--state", state)
    assert "2 shards from" in resumed.stderr and resumed.stdout_bytes == whole
    other = score(lex, *budget, *[x if x != 15 else 16 for x in rule], *lex["shards"], "--state", state)
    assert "0 shards from" in other.stderr  # another rule: the state folder starts over


@pytest.mark.parametrize(
    "args, words",
    [
        (["-k", 5, "--min-tokens", -1], "--min-tokens"),
        (["-k", 5, "--min-tokens", "many"], "--min-tokens"),
        (["--tokens", 100, "--chunk-tokens", 16, "--min-tokens", 17], "--min-tokens 17 is over --chunk-tokens 16"),
    ],
)
def test_bad_values_exit_2_naming_the_flag(lex, args, words):
    result = score(lex, *args, lex["shards"][0], code=2)
    assert words in result.stderr


def test_the_library_refuses_a_rule_without_a_counter():
    import gotd_stream as gs

    with pytest.raises(gs.UsageProblem, match="min_tokens"):
        gs.Units(min_tokens=4)
    with pytest.raises(gs.UsageProblem, match="min_tokens"):
        gs.Units(counter=gs.token_counter("estimate"), min_tokens=-2)

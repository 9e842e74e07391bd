"""Record parsing: every kind of bad line is counted, located and skipped; --strict fails on the first."""

from __future__ import annotations

import pytest

from gotd_stream.io.records import BadRecord, Skips, read_records, split_mixed, split_scored, with_score, with_scores

BAD = {
    b'{"text": "ok one"}': None,
    b'{"text": "broken': "malformed JSON",
    b'["a list"]': "not a JSON object",
    b'{"body": "no text"}': "missing text field 'text'",
    b'{"text": 42}': "text field 'text' not a string",
    b'{"text": "caf\xe9"}': "invalid UTF-8",
    b'{"text": null}': "text field 'text' not a string",
    b"": None,  # blank lines are not records
    b'{"text": "ok two", "n": 1.50}': None,
}


def test_bad_lines_counted_and_good_ones_kept(tmp_path, caplog):
    """Bad lines are counted by reason and logged (warnings of the "gotd_stream" logger) with file:line."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(BAD) + b"\n")
    skips = Skips()
    records = list(read_records([str(path)], "text", skips))
    assert [r.text for r in records] == ["ok one", "ok two"]
    assert [r.lineno for r in records] == [1, 9]
    assert records[1].raw == b'{"text": "ok two", "n": 1.50}'  # original bytes, not re-serialised
    expected = {}
    for reason in BAD.values():
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert dict(skips.counts) == expected
    err = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gotd_stream"))
    assert f"{path}:2: malformed JSON" in err
    assert f"{path}:6: invalid UTF-8" in err
    assert "keys seen: body" in err


def test_strict_fails_on_first_bad_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": 3}\n{"oops"\n')
    with pytest.raises(BadRecord, match=r"mixed\.jsonl:2: text field 'text' not a string"):
        list(read_records([str(path)], "text", Skips(strict=True)))


def test_other_text_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"content": "hello", "text": 1}\n')
    assert [r.text for r in read_records([str(path)], "content", Skips())] == ["hello"]


def test_score_suffix_roundtrip_and_stripped_on_reread(tmp_path):
    raw = b'{"text": "x", "meta": {"a": [1, 2]}}'
    line = with_score(raw, -0.123456789012345, "abcdef012345")
    assert line.endswith(b',"gotd_score":-0.123456789012345,"gotd_fit":"abcdef012345"}')
    assert split_scored(line) == (raw, -0.123456789012345, "abcdef012345", None, None, None)
    both = with_score(raw, -1.5, "abcdef012345", tokens=42, select="sample:t=0.05:seed=3")
    suffix = b',"gotd_score":-1.5,"gotd_tokens":42,"gotd_select":"sample:t=0.05:seed=3","gotd_fit":"abcdef012345"}'
    assert both.endswith(suffix)
    assert split_scored(both) == (raw, -1.5, "abcdef012345", 42, "sample:t=0.05:seed=3", None)
    # a selection the duplicate guard chose carries its tag, before gotd_fit (merge refuses such a selection)
    guarded = with_score(raw, -1.5, "abcdef012345", 42, "sample:t=0.05:seed=3", "near:t=0.8:m=0.5")
    assert guarded.endswith(
        b'"gotd_select":"sample:t=0.05:seed=3","gotd_guard":"near:t=0.8:m=0.5","gotd_fit":"abcdef012345"}'
    )
    assert split_scored(guarded) == (raw, -1.5, "abcdef012345", 42, "sample:t=0.05:seed=3", "near:t=0.8:m=0.5")
    mixed = with_scores(raw, ["a", "b"], [-1.0, -2.0], "abcdef012345", -1.5, None, "exact:t=0.8:m=0.5")
    assert split_mixed(mixed).guard == "exact:t=0.8:m=0.5" and split_mixed(mixed).raw == raw
    assert split_mixed(with_scores(raw, ["a"], [-1.0], "abcdef012345", -1.0)).guard is None
    assert split_scored(raw) is None
    path = tmp_path / "selected.jsonl"
    path.write_bytes(line + b"\n")
    (record,) = read_records([str(path)], "text", Skips())
    assert record.raw == raw  # re-scoring a selection does not pile up old scores

"""Parquet shards: rows as records with every column kept, bad rows counted like bad lines, damage named."""

from __future__ import annotations

import base64
import datetime
import decimal
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gotd_stream.io.records import Skips, read_records
from tests.conftest import make_docs, run, write_jsonl


def fineweb(path, docs: list[dict], row_group_size: int = 16):
    """A FineWeb-like file: text, id, a timestamp, a score, bytes and a list, in several row groups."""
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    table = pa.table(
        {
            "text": [d["text"] for d in docs],
            "id": [d["id"] for d in docs],
            "date": [when + datetime.timedelta(minutes=i) for i in range(len(docs))],
            "score": [decimal.Decimal(f"{i}.25") for i in range(len(docs))],
            "digest": [d["id"].encode() + b"\x00\xff" for d in docs],
            "topics": [[d["topic"], "web"] for d in docs],
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def same_selection_as_jsonl(tmp_path, records, parquet, fit_on, k: int):
    """Write `records` (as read from `parquet`) as JSONL, fit a lexical artifact (rows.gotd) on `fit_on` (None:
    the JSONL), and check that scoring the Parquet file and the JSONL gives the same bytes; returns the Parquet
    run."""
    as_jsonl = tmp_path / "rows.jsonl"
    as_jsonl.write_bytes(b"".join(r.raw + b"\n" for r in records))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    artifact = tmp_path / "rows.gotd"
    run(["fit", "--features", "lexical", "--target", target, fit_on or as_jsonl, "-o", artifact, "-q"])
    from_parquet = run(["score", "-p", artifact, "-k", k, parquet])
    assert from_parquet.stdout_bytes == run(["score", "-p", artifact, "-k", k, as_jsonl]).stdout_bytes
    return from_parquet


def test_rows_keep_every_column_and_score_like_the_same_jsonl(tmp_path):
    docs = make_docs(90, seed=7)
    parquet = fineweb(tmp_path / "shard.parquet", docs)
    records = list(read_records([str(parquet)], "text", Skips()))
    assert [r.lineno for r in records] == list(range(1, 91))  # every row group, in order, numbered from 1
    row = orjson.loads(records[4].raw)
    assert list(row) == ["text", "id", "date", "score", "digest", "topics"]
    assert row["date"] == "2024-05-01T12:34:00+00:00" and row["score"] == "4.25"
    assert base64.b64decode(row["digest"]) == docs[4]["id"].encode() + b"\x00\xff"
    assert row["topics"] == [docs[4]["topic"], "web"] and row["text"] == docs[4]["text"]
    # the rows as JSONL, byte for byte what the Parquet reader makes of them: the same selection, same bytes
    from_parquet = same_selection_as_jsonl(tmp_path, records, parquet, None, 12)
    first = orjson.loads(from_parquet.stdout_bytes.splitlines()[0])
    assert {"text", "id", "date", "score", "digest", "topics", "gotd_score", "gotd_fit"} == set(first)
    npy = tmp_path / "rows.npy"
    assert "embedded 90" in run(["embed", "-p", tmp_path / "rows.gotd", parquet, "-o", npy]).stderr


def test_null_and_non_string_text_are_skipped_and_counted(tmp_path):
    table = pa.table({"text": ["cooking the eggs", None, "bread and butter", None], "n": [1, 2, 3, 4]})
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(table, nulls)
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    skips = Skips()
    records = list(read_records([str(nulls), str(numbers)], "text", skips))
    assert [(r.lineno, r.text) for r in records] == [(1, "cooking the eggs"), (3, "bread and butter")]
    assert dict(skips.counts) == {"text field 'text' not a string": 4}
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    fit = run(["fit", "--features", "lexical", "--target", target, nulls, numbers, "-o", tmp_path / "t.gotd"])
    assert f"{nulls}:2: text field 'text' not a string: got null" in fit.stderr
    assert f"{numbers}:1: text field 'text' not a string: got int" in fit.stderr
    assert "skipped 4 (text field 'text' not a string: 4)" in fit.stderr
    strict = run(["score", "-p", tmp_path / "t.gotd", "-k", 3, "--strict", nulls], code=1)
    assert f"{nulls}:2: text field 'text' not a string" in strict.stderr


def test_a_missing_column_names_the_file_and_its_columns(tmp_path):
    parquet = fineweb(tmp_path / "shard.parquet", make_docs(10))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8))
    artifact = tmp_path / "t.gotd"
    run(["fit", "--features", "lexical", "--target", target, parquet, "-o", artifact, "-q"])
    failed = run(["score", "-p", artifact, "-k", 3, "--text-field", "body", parquet], code=2)
    assert f"{parquet}: no column 'body' for --text-field; its columns: text, id, date, score, digest, topics" in (
        failed.stderr
    )


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_file_fails_naming_it(tmp_path, damage):
    good = fineweb(tmp_path / "good.parquet", make_docs(60), row_group_size=20)
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8))
    artifact = tmp_path / "t.gotd"
    run(["fit", "--features", "lexical", "--target", target, good, "-o", artifact, "-q"])
    data = bytearray(good.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the middle of the data pages: the footer is intact, a column chunk is not
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    failed = run(["score", "-p", artifact, "-k", 3, good, bad], code=1)
    assert f"{bad}: corrupt or truncated Parquet file" in failed.stderr


def test_parquet_on_stdin_is_refused(tmp_path):
    parquet = fineweb(tmp_path / "shard.parquet", make_docs(10))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8))
    artifact = tmp_path / "t.gotd"
    run(["fit", "--features", "lexical", "--target", target, parquet, "-o", artifact, "-q"])
    refused = run(["score", "-p", artifact, "-k", 3], input=parquet.read_bytes(), code=2)
    assert "<stdin> is a Parquet file: Parquet is read from a file path" in refused.stderr


def test_a_pipe_is_read_whole_not_peeked_at_for_parquet(tmp_path):
    """Telling Parquet from JSONL opens regular files only: a pipe (`<(zstdcat ...)`) cannot be read twice."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shard = write_jsonl(tmp_path / "shard.jsonl", make_docs(40, seed=3))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    artifact = tmp_path / "t.gotd"
    run(["fit", "--features", "lexical", "--target", target, shard, "-o", artifact, "-q"])
    direct = run(["score", "-p", artifact, "-k", 5, shard], guard=True).stdout_bytes  # the default, as the pipe
    command = f"{sys.executable} -m gotd_stream score -p {artifact} -k 5 <(cat {shard})"
    env = dict(os.environ, PYTHONPATH=str(root))
    piped = subprocess.run(["bash", "-c", command], env=env, capture_output=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout == direct, piped.stderr.decode()[-2000:]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_parquet_never_raises_anything_but_a_named_corrupt_input(tmp_path, data):
    """Cut short anywhere, or bytes flipped anywhere: good rows or CorruptInput naming the file, nothing else."""
    from gotd_stream.io.parquet import is_parquet
    from gotd_stream.io.streams import CorruptInput

    good = tmp_path / "good.parquet"
    if not good.exists():
        fineweb(good, make_docs(40), row_group_size=8)
    raw = bytearray(good.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for at in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4), label="flips"):
            raw[at] ^= data.draw(st.integers(1, 255), label="mask")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(raw))
    skips = Skips()
    try:
        records = list(read_records([str(bad)], "text", skips))
    except CorruptInput as exc:
        assert str(bad) in str(exc)
    else:
        assert all(isinstance(r.text, str) and orjson.loads(r.raw) for r in records)
        if is_parquet(str(bad)):  # a flip the format cannot see (in a text, say): every row is a record or a skip
            assert len(records) + skips.total == 40
        # else the magic bytes were hit: the file is read as JSONL lines, every bad one skipped


def test_a_string_that_is_not_utf8_skips_its_row_only(tmp_path):
    """Parquet does not check UTF-8: a damaged text is one row skipped as invalid UTF-8, as in JSONL."""
    parquet = tmp_path / "plain.parquet"
    texts = ["cooking the eggs", "the striker scored", "a comet passed close"]
    pq.write_table(pa.table({"text": texts}), parquet, compression="NONE", use_dictionary=False, write_statistics=False)
    raw = bytearray(parquet.read_bytes())
    at = raw.index(b"the striker")
    raw[at] = 0xF3  # a lead byte with no continuation
    parquet.write_bytes(bytes(raw))
    skips = Skips()
    records = list(read_records([str(parquet)], "text", skips))
    assert [(r.lineno, r.text) for r in records] == [(1, texts[0]), (3, texts[2])]
    assert dict(skips.counts) == {"invalid UTF-8": 1}


def every_arrow_type(n: int) -> pa.Table:
    """n rows of a text and one column of each Arrow type JSON has no type for (and some it has), nulls included."""
    import uuid

    import numpy as np

    ns = [1_714_566_840_123_456_789 + i * 1_000_000_007 for i in range(n)]
    nulls = [None if i % 7 == 3 else v for i, v in enumerate(ns)]
    return pa.table(
        {
            "text": [f"cooking the eggs number {i}" for i in range(n)],
            "ns": pa.array(nulls, pa.timestamp("ns")),
            "ns_utc": pa.array(ns, pa.timestamp("ns", "UTC")),
            "ns_paris": pa.array(ns, pa.timestamp("ns", "Europe/Paris")),
            "us_offset": pa.array([v // 1000 for v in ns], pa.timestamp("us", "-03:30")),
            "ms": pa.array([v // 1_000_000 for v in ns], pa.timestamp("ms")),
            "s_far": pa.array([300_000_000_000 + i for i in range(n)], pa.timestamp("s")),  # year 11476
            "date32": pa.array([-800_000 + i for i in range(n)], pa.date32()),  # before year 1
            "date64": pa.array([86_400_000 * i for i in range(n)], pa.date64()),
            "time64": pa.array([i * 1_000_000_001 for i in range(n)], pa.time64("ns")),
            "time32": pa.array([i * 1001 for i in range(n)], pa.time32("ms")),
            "duration": pa.array([i * 1_500_000_001 - 7 for i in range(n)], pa.duration("ns")),
            "decimal": pa.array([decimal.Decimal(f"{i}.05") for i in range(n)], pa.decimal128(12, 2)),
            "big_decimal": pa.array([decimal.Decimal(10) ** 60 + i for i in range(n)], pa.decimal256(70, 0)),
            "binary": pa.array([bytes([i % 256, 0, 255]) for i in range(n)], pa.binary()),
            "large_binary": pa.array([b"\xff" * (i % 3) for i in range(n)], pa.large_binary()),
            "fixed_binary": pa.array([i.to_bytes(4, "big") for i in range(n)], pa.binary(4)),
            "uint64": pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()),
            "int64": pa.array([-(2**63) + i for i in range(n)], pa.int64()),
            "half": pa.array(np.array([1.5, np.nan, np.inf] * n, np.float16)[:n]),
            "double": pa.array([float("nan") if i % 2 else -0.25 for i in range(n)]),
            "large_string": pa.array([f"s{i}" for i in range(n)], pa.large_string()),
            "dictionary": pa.array(["blog", "forum", "news"] * n)[:n].dictionary_encode(),
            "list_ns": pa.array([[v, None] if i % 5 else None for i, v in enumerate(ns)], pa.list_(pa.timestamp("ns"))),
            "large_list": pa.array([[i, i + 1] for i in range(n)], pa.large_list(pa.int32())),
            "fixed_list": pa.array([[i, -i] for i in range(n)], pa.list_(pa.int16(), 2)),
            "struct": pa.array(
                [{"at": v, "price": decimal.Decimal("1.10")} for v in ns],
                pa.struct([("at", pa.timestamp("ns")), ("price", pa.decimal128(5, 2))]),
            ),
            "map": pa.array([[("k", v)] for v in ns], pa.map_(pa.string(), pa.timestamp("ns"))),
            "uuid": pa.array([uuid.UUID(int=i).bytes for i in range(n)], pa.uuid()),
            "boolean": [i % 2 == 0 for i in range(n)],
            "empty": pa.array([None] * n, pa.null()),
        }
    )


def iso(ns: int, tz: datetime.tzinfo | None = None) -> str:
    """The documented ISO form of an instant in nanoseconds, made here with Python's datetime (µs) and the rest."""
    seconds, sub = divmod(ns, 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    when = when.astimezone(tz) if tz is not None else when.replace(tzinfo=None)
    text = when.isoformat()
    if sub:
        at = 19
        text = text[:at] + (f".{sub:09d}" if sub % 1000 else f".{sub // 1000:06d}") + text[at:]
    return text


def test_every_arrow_type_is_converted_and_no_row_is_dropped(tmp_path):
    """300 rows with nanosecond timestamps (issue 25: 299 were skipped as out of range) and every other type."""
    from zoneinfo import ZoneInfo

    table = every_arrow_type(300)
    path = tmp_path / "types.parquet"
    pq.write_table(table, path, row_group_size=64)
    skips = Skips()
    records = list(read_records([str(path)], "text", skips))
    assert skips.total == 0 and [r.lineno for r in records] == list(range(1, 301))
    rows = [json.loads(r.raw, parse_constant=strict_constant) for r in records]  # strict JSON: no NaN, Infinity
    assert list(rows[0]) == table.column_names
    ns = [1_714_566_840_123_456_789 + i * 1_000_000_007 for i in range(300)]
    for i in (0, 1, 3, 150, 299):
        row = rows[i]
        assert row["ns"] == (None if i % 7 == 3 else iso(ns[i]))
        assert row["ns_utc"] == iso(ns[i], datetime.timezone.utc)
        assert row["ns_paris"] == iso(ns[i], ZoneInfo("Europe/Paris")) and row["ns_paris"].endswith("+02:00")
        offset = datetime.timezone(-datetime.timedelta(hours=3, minutes=30))
        assert row["us_offset"] == iso(ns[i] // 1000 * 1000, offset) and row["us_offset"].endswith("-03:30")
        assert row["ms"] == iso(ns[i] // 1_000_000 * 1_000_000)
        assert row["date64"] == (datetime.date(1970, 1, 1) + datetime.timedelta(days=i)).isoformat()
        assert row["time64"] == (
            f"{i * 1_000_000_001 // 10**9 // 3600:02d}:{i * 1_000_000_001 // 10**9 // 60 % 60:02d}:"
            f"{i * 1_000_000_001 // 10**9 % 60:02d}" + (f".{i:09d}" if i else "")
        )
        assert (
            row["time32"]
            == (datetime.datetime(2000, 1, 1) + datetime.timedelta(milliseconds=i * 1001)).time().isoformat()
        )
        assert decimal.Decimal(str(row["duration"])) == decimal.Decimal(i * 1_500_000_001 - 7) / 10**9  # exact
        assert row["decimal"] == f"{i}.05" and decimal.Decimal(row["big_decimal"]) == decimal.Decimal(10) ** 60 + i
        assert base64.b64decode(row["binary"]) == bytes([i % 256, 0, 255])
        assert base64.b64decode(row["large_binary"]) == b"\xff" * (i % 3)
        assert base64.b64decode(row["fixed_binary"]) == i.to_bytes(4, "big")
        assert row["uint64"] == 2**64 - 1 - i and row["int64"] == -(2**63) + i
        assert row["half"] == [1.5, None, None][i % 3] and row["double"] == (None if i % 2 else -0.25)
        assert row["large_string"] == f"s{i}" and row["dictionary"] == ["blog", "forum", "news"][i % 3]
        assert row["list_ns"] == ([iso(ns[i]), None] if i % 5 else None)
        assert row["large_list"] == [i, i + 1] and row["fixed_list"] == [i, -i]
        assert row["struct"] == {"at": iso(ns[i]), "price": "1.10"}
        assert row["map"] == [["k", iso(ns[i])]]
        assert row["uuid"] == str(__import__("uuid").UUID(int=i)) and row["boolean"] == (i % 2 == 0)
        assert row["empty"] is None
    # beyond Python's datetime: the proleptic Gregorian calendar, the year signed past 9999 and before 0
    for i in (0, 299):
        assert rows[i]["s_far"] == far_iso(300_000_000_000 + i) and rows[i]["s_far"].startswith("+11476-")
        assert rows[i]["date32"] == far_iso((-800_000 + i) * 86_400)[:-9] and rows[i]["date32"].startswith("-022")
    # the rows in JSONL select the same records, byte for byte
    picked = same_selection_as_jsonl(tmp_path, records, path, path, 300)
    assert "skipped 0," in picked.stderr and len(picked.stdout_bytes.splitlines()) == 300


def far_iso(seconds: int) -> str:
    """A naive instant of any year, by Python's datetime: the Gregorian calendar repeats every 400 years."""
    cycles = (seconds - 10**9) // (146_097 * 86_400)  # moved by whole 400-year cycles near 2000
    when = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds - cycles * 146_097 * 86_400)
    year = when.year + 400 * cycles
    shown = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return shown + when.isoformat()[4:]


def strict_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def test_the_calendar_beyond_pythons_matches_it_where_both_exist():
    """Dates are computed by integer arithmetic (any year); on Python's range they are Python's own."""
    from gotd_stream.io.parquet import _date

    first, last = datetime.date(1, 1, 1), datetime.date(9999, 12, 31)
    epoch = datetime.date(1970, 1, 1)
    for days in [*range((first - epoch).days, (first - epoch).days + 800), *range(-800, 800, 3), (last - epoch).days]:
        assert _date(days) == (epoch + datetime.timedelta(days=days)).isoformat()
    assert _date((last - epoch).days + 1) == "+10000-01-01" and _date((first - epoch).days - 1) == "0000-12-31"


def test_a_string_column_other_than_the_text_that_is_not_utf8_keeps_its_row(tmp_path):
    parquet = tmp_path / "plain.parquet"
    texts = ["cooking the eggs", "the striker scored", "a comet passed close"]
    notes = ["fine", "broken zz", "fine too"]
    table = pa.table({"text": texts, "note": notes})
    pq.write_table(table, parquet, compression="NONE", use_dictionary=False, write_statistics=False)
    raw = bytearray(parquet.read_bytes())
    raw[raw.index(b"broken zz") + 7] = 0xF3  # a lead byte with no continuation
    parquet.write_bytes(bytes(raw))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    artifact = tmp_path / "t.gotd"
    fit = run(["fit", "--features", "lexical", "--target", target, parquet, "-o", artifact])
    assert f"warning: {parquet}:2: column 'note' holds bytes that are not UTF-8" in fit.stderr
    out = run(["score", "-p", artifact, "-k", 3, parquet]).stdout_bytes
    kept = {orjson.loads(line)["text"]: orjson.loads(line)["note"] for line in out.splitlines()}
    assert kept == {texts[0]: "fine", texts[1]: "broken \ufffdz", texts[2]: "fine too"}


@pytest.mark.parametrize("twice", ["text", "id"])
def test_two_columns_of_one_name_are_refused_naming_them(tmp_path, twice):
    columns = [pa.array(["cooking the eggs", "bread"]), pa.array(["a", "b"]), pa.array(["other", "second"])]
    names = ["text", "id", twice]
    path = tmp_path / "twice.parquet"
    pq.write_table(pa.Table.from_arrays(columns, names=names), path)
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    failed = run(["fit", "--features", "lexical", "--target", target, path, "-o", tmp_path / "t.gotd"], code=2)
    first = names.index(twice) + 1
    assert f"{path}: two columns share a name ('{twice}' is columns {first}, 3 of 3)" in failed.stderr
    if twice == "text":
        assert "the text field 'text' is ambiguous" in failed.stderr
    assert "rename or drop one" in failed.stderr and not (tmp_path / "t.gotd").exists()


def test_a_footer_whose_column_names_are_not_utf8_is_a_named_corrupt_input(tmp_path):
    """pyarrow decodes the footer's column names itself and raises UnicodeDecodeError: a damaged file, exit 1."""
    import re

    from gotd_stream.io.streams import CorruptInput

    good = tmp_path / "good.parquet"
    fineweb(good, make_docs(10), row_group_size=4)
    raw = good.read_bytes()
    corrupt = 0
    for found in re.finditer(b"text", raw):  # the name in the schema, and in the metadata pyarrow keeps beside it
        damaged = bytearray(raw)
        damaged[found.start()] = 0xF4  # a 4-byte UTF-8 lead followed by ASCII: not UTF-8
        bad = tmp_path / "bad.parquet"
        bad.write_bytes(bytes(damaged))
        try:
            list(read_records([str(bad)], "text", Skips()))
        except CorruptInput as exc:
            assert "bad.parquet: corrupt or truncated Parquet file" in str(exc)
            corrupt += 1
    assert corrupt >= 1  # the schema's copy of the name: pyarrow cannot decode it

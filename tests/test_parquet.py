"""Parquet shards: rows as records with every column kept, bad rows counted like bad lines, damage named."""

from __future__ import annotations

import base64
import datetime
import decimal

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
    as_jsonl = tmp_path / "shard.jsonl"
    as_jsonl.write_bytes(b"".join(r.raw + b"\n" for r in records))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    artifact = tmp_path / "task.gotd"
    run(["fit", "--features", "lexical", "--target", target, as_jsonl, "-o", artifact, "-q"])
    from_parquet = run(["score", "-p", artifact, "-k", 12, parquet])
    assert from_parquet.stdout_bytes == run(["score", "-p", artifact, "-k", 12, as_jsonl]).stdout_bytes
    first = orjson.loads(from_parquet.stdout_bytes.splitlines()[0])
    assert {"text", "id", "date", "score", "digest", "topics", "gotd_score", "gotd_fit"} == set(first)
    npy = tmp_path / "rows.npy"
    assert "embedded 90" in run(["embed", "-p", artifact, parquet, "-o", npy]).stderr


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
    direct = run(["score", "-p", artifact, "-k", 5, shard]).stdout_bytes
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

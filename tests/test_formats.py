"""Dataset folders in (save_to_disk's Arrow files, Parquet folders), Parquet selections out: the same selection,
the same bytes, the same identity of every record as the files given one by one, and merges that stay exact."""

from __future__ import annotations

import datetime
import decimal
import json
import os

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gotd_stream.io.parquet_out import selection_lines
from gotd_stream.io.records import Skips, read_records
from tests.conftest import make_docs, run, write_jsonl

SCORES = ["gotd_score", "gotd_fit"]


def typed_table(docs: list[dict]) -> pa.Table:
    """Rows with the column types a Hugging Face data set holds: timestamps with a zone, dates, decimals, bytes,
    lists with nulls, structs, durations, maps and a dictionary-encoded (ClassLabel-like) column."""
    n = len(docs)
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    return pa.table(
        {
            "text": [d["text"] for d in docs],
            "id": [d["id"] for d in docs],
            "when": pa.array(
                [when + datetime.timedelta(minutes=i, microseconds=i) for i in range(n)],
                pa.timestamp("us", tz="Europe/Paris"),
            ),
            "day": pa.array([datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(n)], pa.date32()),
            "n": pa.array(range(n), pa.int64()),
            "share": pa.array([i / 7 for i in range(n)], pa.float32()),
            "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(10, 2)),
            "digest": [d["id"].encode() + b"\x00\xff" for d in docs],
            "tags": [[d["topic"], "web"] if i % 5 else None for i, d in enumerate(docs)],
            "meta": pa.array(
                [{"src": "blog", "rank": i} for i in range(n)], pa.struct([("src", pa.string()), ("rank", pa.int32())])
            ),
            "took": pa.array([datetime.timedelta(seconds=i, microseconds=3) for i in range(n)], pa.duration("ns")),
            "attrs": pa.array([[("a", i)] for i in range(n)], pa.map_(pa.string(), pa.int64())),
            "topic": pa.array([d["topic"] for d in docs]).dictionary_encode(),
            "clock": pa.array([i * 1_000_001 for i in range(n)], pa.time64("us")),
            "stamp": pa.array([i * 1_000_000_007 - 10**18 for i in range(n)], pa.timestamp("ns")),
            "big": pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()),
            "pair": pa.array([[i, -i] for i in range(n)], pa.list_(pa.int16(), 2)),
            "blob": pa.array([i.to_bytes(4, "big") for i in range(n)], pa.binary(4)),
            "notes": pa.array([None if i % 3 else "é\u2028" for i in range(n)], pa.large_string()),
            "spans": pa.array([[{"a": i % 100}] for i in range(n)], pa.list_(pa.struct([("a", pa.int8())]))),
            "ms": pa.array([i * 86_400_000 for i in range(n)], pa.date64()),
        }
    )


def save_to_disk(folder, table: pa.Table, shards: int = 2, batch: int = 7, listed: int | None = None):
    """`table` in exactly the layout `datasets.Dataset.save_to_disk(folder, num_shards=shards)` writes (see
    io.datasets): Arrow IPC stream files of record batches, state.json listing them in order, dataset_info.json.
    `listed`: state.json names only the first files (a data set that grows); returns the data files."""
    os.makedirs(folder, exist_ok=True)
    step = -(-table.num_rows // shards)
    files = []
    for i in range(shards):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            for part in table.slice(i * step, step).to_batches(max_chunksize=batch):
                writer.write_batch(part)
        files.append(name)
    state = {
        "_data_files": [{"filename": name} for name in files[:listed]],
        "_fingerprint": "0123456789abcdef",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "train",
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2))
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": {}}))
    return [folder / name for name in files]


@pytest.fixture
def corpus(tmp_path) -> dict:
    """One table as a save_to_disk folder of 2 Arrow files, a Parquet folder of 2 files, and JSONL of the same
    rows (the bytes the readers make of them), with a lexical artifact fitted on the save_to_disk folder."""
    table = typed_table(make_docs(60, seed=3))
    saved = save_to_disk(tmp_path / "saved", table)
    parquets = tmp_path / "parquets"
    parquets.mkdir()
    for i, half in enumerate((table.slice(0, 30), table.slice(30))):
        pq.write_table(half, parquets / f"part-{i:05d}.parquet", row_group_size=8)
    (parquets / "_SUCCESS").write_bytes(b"")
    records = list(read_records([str(tmp_path / "saved")], "text", Skips()))
    as_jsonl = tmp_path / "rows.jsonl"
    as_jsonl.write_bytes(b"".join(r.raw + b"\n" for r in records))
    target = write_jsonl(tmp_path / "target.jsonl", make_docs(8, seed=8, topics=("cooking",)))
    artifact = tmp_path / "task.gotd"
    run(["fit", "--features", "lexical", "--target", target, tmp_path / "saved", "-o", artifact, "-q"])
    return {
        "table": table,
        "saved": tmp_path / "saved",
        "files": saved,
        "parquets": parquets,
        "jsonl": as_jsonl,
        "target": target,
        "artifact": artifact,
        "records": records,
        "tmp": tmp_path,
    }


def fit_id(path) -> str:
    return json.loads(run(["info", "--json", path]).stdout)["fit_id"]


def test_a_save_to_disk_folder_and_a_parquet_folder_score_like_their_rows_and_their_files(corpus):
    c = corpus
    assert len(c["records"]) == 60 and [r.lineno for r in c["records"][:3]] == [1, 2, 3]
    assert orjson.loads(c["records"][0].raw)["when"] == "2024-05-01T14:30:00+02:00"  # every column kept, converted
    one_pass = run(["score", "-p", c["artifact"], "-k", 12, c["saved"]]).stdout_bytes
    assert len(one_pass.splitlines()) == 12
    assert run(["score", "-p", c["artifact"], "-k", 12, c["jsonl"]]).stdout_bytes == one_pass
    assert run(["score", "-p", c["artifact"], "-k", 12, *c["files"]]).stdout_bytes == one_pass
    assert run(["score", "-p", c["artifact"], "-k", 12, c["parquets"]]).stdout_bytes == one_pass
    ipc_file = c["tmp"] / "rows.feather"  # the IPC file format (Feather 2), any name: by its magic bytes
    with pa.OSFile(str(ipc_file), "wb") as sink, pa.ipc.new_file(sink, c["table"].schema) as writer:
        writer.write_table(c["table"], max_chunksize=9)
    assert run(["score", "-p", c["artifact"], "-k", 12, ipc_file]).stdout_bytes == one_pass
    # a record's identity is its file's content and row: the folder draws the fit sample its files draw
    again = c["tmp"] / "files.gotd"
    target = c["target"]
    run(["fit", "--features", "lexical", "--target", target, *c["files"], "-o", again, "-q"])
    assert fit_id(again) == fit_id(c["artifact"])
    parquet_fit = c["tmp"] / "parquets.gotd"
    run(["fit", "--features", "lexical", "--target", target, c["parquets"], "-o", parquet_fit, "-q"])
    files = sorted(c["parquets"].glob("*.parquet"))
    parquet_files_fit = c["tmp"] / "parquet-files.gotd"
    run(["fit", "--features", "lexical", "--target", target, *files, "-o", parquet_files_fit, "-q"])
    assert fit_id(parquet_fit) == fit_id(parquet_files_fit)
    # a folder and one of its files: the same shard twice
    twice = run(["score", "-p", c["artifact"], "-k", 3, c["saved"], c["files"][0]], code=2)
    assert "given twice" in twice.stderr
    npy = c["tmp"] / "rows.npy"
    assert "embedded 60" in run(["embed", "-p", c["artifact"], c["saved"], "-o", npy]).stderr


def test_state_resumes_a_growing_save_to_disk_folder_as_one_pass(corpus, tmp_path):
    c = corpus
    one_pass = run(["score", "-p", c["artifact"], "-k", 12, c["saved"]]).stdout_bytes
    grown = tmp_path / "grown"
    save_to_disk(grown, c["table"], listed=1)  # the first file only, so far
    state = tmp_path / "state"
    first = run(["score", "-p", c["artifact"], "-k", 12, "--state", state, grown])
    assert "scored 30" in first.stderr
    state_json = json.loads((grown / "state.json").read_text())
    state_json["_data_files"].append({"filename": "data-00001-of-00002.arrow"})  # the second file is listed now
    (grown / "state.json").write_text(json.dumps(state_json))
    resumed = run(["score", "-p", c["artifact"], "-k", 12, "--state", state, grown])
    assert "1 shards from" in resumed.stderr
    assert resumed.stdout_bytes == one_pass


def without(value, *keys: str):
    """`value` (a report's JSON) without the members named `keys`, at any depth."""
    if isinstance(value, dict):
        return {k: without(v, *keys) for k, v in value.items() if k not in keys}
    return [without(v, *keys) for v in value] if isinstance(value, list) else value


def parquet_rows_of(path) -> list[bytes]:
    return [line for _, line in selection_lines(str(path))]


def test_a_parquet_output_keeps_the_columns_their_types_and_the_scores_in_order(corpus, tmp_path):
    c = corpus
    out = tmp_path / "sel.parquet"
    jsonl = run(["score", "-p", c["artifact"], "-k", 12, c["saved"]]).stdout_bytes.splitlines()
    said = run(["score", "-p", c["artifact"], "-k", 12, c["saved"], "-o", out]).stderr
    assert "selected 12 records" in said
    table = pq.read_table(out)
    assert table.schema.names == c["table"].schema.names + SCORES
    for field in c["table"].schema:  # the input's types, every one (Parquet has no date64: its days as date32)
        kept = pa.date32() if field.type == pa.date64() else field.type
        assert table.schema.field(field.name).type == kept, field.name
    assert table.schema.field("gotd_score").type == pa.float64()
    lines = [orjson.loads(line) for line in jsonl]
    assert table.column("gotd_score").to_pylist() == [line["gotd_score"] for line in lines]  # exact, same order
    assert table.column("id").to_pylist() == [line["id"] for line in lines]
    assert set(table.column("gotd_fit").to_pylist()) == {fit_id(c["artifact"])}
    assert parquet_rows_of(out) == jsonl  # read back, its rows are the JSONL lines, byte for byte
    as_jsonl = tmp_path / "sel.jsonl"
    as_jsonl.write_bytes(b"\n".join(jsonl) + b"\n")
    again = run(["score", "-p", c["artifact"], "-k", 5, out]).stdout_bytes  # scored again: old scores left out
    assert (
        again == run(["score", "-p", c["artifact"], "-k", 5, as_jsonl]).stdout_bytes and again.count(b"gotd_fit") == 5
    )
    # report reads it as it reads the JSONL
    reports = [
        json.loads(run(["report", "-p", c["artifact"], path, "--json", "--max-points", 50]).stdout)
        for path in (out, as_jsonl)
    ]
    assert reports[0]["selection"]["records"] == 12
    assert without(reports[0], "path", "created") == without(reports[1], "path", "created")
    # a token budget's counts, a piece's provenance: columns too
    pieces = tmp_path / "pieces.parquet"
    budget = ["--tokens", 120, "--unit", "chunk", "--chunk-tokens", 8, "--tokenizer", "estimate"]
    as_lines = run(["score", "-p", c["artifact"], *budget, c["saved"]]).stdout_bytes.splitlines()
    run(["score", "-p", c["artifact"], *budget, c["saved"], "-o", pieces, "-q"])
    table = pq.read_table(pieces)
    assert table.schema.names[-5:] == ["gotd_source", "gotd_span", "gotd_score", "gotd_tokens", "gotd_fit"]
    assert table.schema.field("gotd_tokens").type == pa.int64() and table.schema.field("when").type.tz
    assert parquet_rows_of(pieces) == as_lines
    # from JSONL: the columns inferred from the records
    docs = write_jsonl(tmp_path / "docs.jsonl", [dict(d, n=i, w=i / 3) for i, d in enumerate(make_docs(40))])
    from_jsonl = tmp_path / "docs.parquet"
    run(["score", "-p", c["artifact"], "-k", 9, docs, "-o", from_jsonl, "-q"])
    table = pq.read_table(from_jsonl)
    assert table.schema.names == ["id", "topic", "text", "n", "w", *SCORES]
    assert [table.schema.field(n).type for n in ("id", "n", "w")] == [pa.string(), pa.int64(), pa.float64()]
    assert parquet_rows_of(from_jsonl) == run(["score", "-p", c["artifact"], "-k", 9, docs]).stdout_bytes.splitlines()


def test_merges_of_parquet_and_jsonl_selections_equal_one_pass(corpus, tmp_path):
    c = corpus
    artifact = c["artifact"]
    one_pass = run(["score", "-p", artifact, "-k", 12, c["saved"]]).stdout_bytes
    whole = tmp_path / "whole.parquet"
    run(["score", "-p", artifact, "-k", 12, c["saved"], "-o", whole, "-q"])
    shards = []
    for i, path in enumerate(c["files"]):
        shards.append(tmp_path / f"s{i}.parquet")
        run(["score", "-p", artifact, "-k", 12, path, "-o", shards[-1], "-q"])
    assert run(["merge", "-k", 12, *shards]).stdout_bytes == one_pass
    empty = tmp_path / "empty.parquet"  # an empty selection: a file without rows, which merges as nothing
    run(["score", "-p", artifact, "-k", 12, write_jsonl(tmp_path / "empty.jsonl", []), "-o", empty, "-q"])
    assert pq.read_table(empty).num_rows == 0
    assert run(["merge", "-k", 12, empty, *shards]).stdout_bytes == one_pass
    merged = tmp_path / "merged.parquet"
    run(["merge", "-k", 12, *shards, "-o", merged, "-q"])
    assert pq.read_table(merged).equals(pq.read_table(whole))
    # a JSONL selection and a Parquet one of the same fit: their lines compare the same
    first = tmp_path / "s0.jsonl"
    run(["score", "-p", artifact, "-k", 12, c["files"][0], "-o", first, "-q"])
    assert run(["merge", "-k", 12, first, shards[1]]).stdout_bytes == one_pass
    mixed = tmp_path / "mixed.parquet"
    run(["merge", "-k", 12, first, shards[1], "-o", mixed, "-q"])
    assert pq.read_table(mixed).equals(pq.read_table(whole))
    # a seeded sample merges as drawn, its rule kept in a column
    sample = ["--select", "sample", "--select-seed", 5]
    drawn = run(["score", "-p", artifact, "-k", 10, *sample, c["saved"]]).stdout_bytes
    parts = []
    for i, path in enumerate(c["files"]):
        parts.append(tmp_path / f"draw{i}.parquet")
        run(["score", "-p", artifact, "-k", 10, *sample, path, "-o", parts[-1], "-q"])
    assert "gotd_select" in pq.read_schema(parts[0]).names
    assert run(["merge", "-k", 10, *parts]).stdout_bytes == drawn


def test_what_one_parquet_file_cannot_hold_is_explained(corpus, tmp_path):
    c = corpus
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"text": ["bake the bread until golden"], "id": [7]}), other)
    clash = run(["score", "-p", c["artifact"], "-k", 3, c["saved"], other, "-o", tmp_path / "x.parquet"], code=2)
    assert "other.parquet" in clash.stderr and "'id' (int64)" in clash.stderr and "'id' (string)" in clash.stderr
    assert not (tmp_path / "x.parquet").exists()
    # the same inputs as JSONL are fine
    assert run(["score", "-p", c["artifact"], "-k", 3, c["saved"], other]).stdout_bytes.count(b"\n") == 3
    # a column type Parquet has no place for (from an Arrow file): named before any work
    intervals = tmp_path / "intervals.arrow"
    gap = pa.table(
        {"text": ["bake the bread until golden"], "gap": pa.array([(1, 2, 3)], pa.month_day_nano_interval())}
    )
    with pa.OSFile(str(intervals), "wb") as sink, pa.ipc.new_stream(sink, gap.schema) as writer:
        writer.write_table(gap)
    said = run(["score", "-p", c["artifact"], "-k", 3, intervals, "-o", tmp_path / "x.parquet"], code=2).stderr
    assert "intervals.arrow" in said and "'gap'" in said
    # JSONL records of other shapes: the first that differs is named, and nothing is left behind
    docs = make_docs(20)
    docs[5]["extra"] = 1
    uneven = write_jsonl(tmp_path / "uneven.jsonl", docs)
    out = tmp_path / "uneven.parquet"
    said = run(["score", "-p", c["artifact"], "-k", 20, uneven, "-o", out], code=2).stderr
    assert "'extra'" in said and "record" in said and not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    typed = [dict(d, n=i) for i, d in enumerate(make_docs(20))]
    typed[7]["n"] = "seven"
    said = run(["score", "-p", c["artifact"], "-k", 20, write_jsonl(tmp_path / "t.jsonl", typed), "-o", out], code=2)
    assert "'n' is a string, where it was an integer before" in said.stderr


def test_a_dataset_dict_folder_is_refused_with_its_split_folders(corpus, tmp_path):
    c = corpus
    both = tmp_path / "dict"
    for split in ("train", "test"):
        save_to_disk(both / split, c["table"].slice(0, 20))
    (both / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    said = run(["score", "-p", c["artifact"], "-k", 3, both], code=2).stderr
    assert "DatasetDict" in said and str(both / "train") in said and str(both / "test") in said
    assert run(["score", "-p", c["artifact"], "-k", 3, both / "train"]).stdout_bytes.count(b"\n") == 3
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    assert "notes.txt" in run(["score", "-p", c["artifact"], "-k", 3, empty], code=2).stderr
    broken = tmp_path / "broken"
    save_to_disk(broken, c["table"].slice(0, 10))
    os.remove(broken / "data-00001-of-00002.arrow")
    assert "data-00001-of-00002.arrow" in run(["score", "-p", c["artifact"], "-k", 3, broken], code=2).stderr
    # an Arrow stream cut short, even at a message's end, is damaged (exit 1), never a shorter shard
    cut = save_to_disk(tmp_path / "cut", c["table"], shards=1)[0]
    data = cut.read_bytes()
    for size in (len(data) - 8, len(data) // 2):
        cut.write_bytes(data[:size])
        said = run(["score", "-p", c["artifact"], "-k", 3, cut.parent], code=1).stderr
        assert "data-00000-of-00001.arrow: corrupt or truncated Arrow file" in said


def test_several_targets_write_their_scores_as_a_struct_and_quota_candidates_merge_exactly(corpus, tmp_path):
    c = corpus
    other = write_jsonl(tmp_path / "football.jsonl", make_docs(8, seed=9, topics=("football",)))
    mix = tmp_path / "mix.gotd"
    targets = ["--target", f"cooking={c['target']}:0.6", "--target", f"football={other}:0.4"]
    run(["fit", "--features", "lexical", *targets, c["saved"], "-o", mix, "-q"])
    one_pass = run(["score", "-p", mix, "-k", 10, c["saved"]]).stdout_bytes
    parts = []
    for i, path in enumerate(c["files"]):
        parts.append(tmp_path / f"c{i}.parquet")
        run(["score", "-p", mix, "-k", 10, "--candidates", path, "-o", parts[-1], "-q"])
    schema = pq.read_schema(parts[0])
    assert schema.field("gotd_scores").type == pa.struct([("cooking", pa.float64()), ("football", pa.float64())])
    assert run(["merge", "-p", mix, "-k", 10, *parts]).stdout_bytes == one_pass
    merged = tmp_path / "merged.parquet"
    run(["merge", "-p", mix, "-k", 10, *parts, "-o", merged, "-q"])
    assert pq.read_table(merged).schema.names[-4:] == ["gotd_scores", "gotd_target", "gotd_score", "gotd_fit"]
    assert parquet_rows_of(merged) == one_pass.splitlines()


def test_jsonl_written_loosely_keeps_its_values_and_a_sample_of_it_stays_jsonl(corpus, tmp_path):
    c = corpus
    docs = make_docs(30)
    loose = tmp_path / "loose.jsonl"
    loose.write_text("".join(json.dumps(d) + "\n" for d in docs))  # '{"id": "d0-0", ...}': spaces, not compact
    out = tmp_path / "loose.parquet"
    lines = run(["score", "-p", c["artifact"], "-k", 8, loose]).stdout_bytes.splitlines()
    run(["score", "-p", c["artifact"], "-k", 8, loose, "-o", out, "-q"])
    assert [orjson.loads(line) for line in parquet_rows_of(out)] == [orjson.loads(line) for line in lines]
    sample = ["--select", "sample", "--select-seed", 1]
    said = run(["score", "-p", c["artifact"], "-k", 8, *sample, loose, "-o", out], code=2).stderr
    assert "not compact JSON" in said and "sampling rule" in said

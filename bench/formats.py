"""Dataset folders and Parquet selections: the memory of reading a save_to_disk folder, the cost of -o FILE.parquet.

- Reads a save_to_disk folder (Arrow stream files of 1,000-row batches, as `datasets` writes them; ~1 KB texts,
  an id and a URL) of N and of 10 N rows with `read_records`, and reports records per second and the peak
  anonymous RSS, sampled while reading (a memory map's file pages, which ru_maxrss counts, are left out: the
  kernel can drop them). Flat memory: the same peak at both sizes.
- Writes S selected lines of that folder as Parquet (io.parquet_out: the schema pass, the conversion, the
  read-back check) and as JSONL, and reads the Parquet back as its lines (what merge and report do).

    python bench/formats.py                       # N = 20,000, S = 100,000 (about half a minute on 2 cores)
    python bench/formats.py --rows 100000 --selected 200000 --folder /scratch/formats
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

TEXT = "the striker scored in the final minute and the goalkeeper saved a penalty " * 12


def save_to_disk(folder: str, rows: int, shards: int = 2) -> None:
    """`rows` rows in save_to_disk's layout (io.datasets), unless the folder is there already."""
    import pyarrow as pa

    if os.path.exists(os.path.join(folder, "state.json")):
        return
    os.makedirs(folder, exist_ok=True)
    schema = pa.schema([("text", pa.string()), ("id", pa.int64()), ("url", pa.string())])
    per, files = rows // shards, []
    for s in range(shards):
        name = f"data-{s:05d}-of-{shards:05d}.arrow"
        with pa.OSFile(os.path.join(folder, name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for start in range(0, per, 1000):
                ids = list(range(s * per + start, s * per + min(per, start + 1000)))
                columns = [[f"{i} {TEXT}" for i in ids], ids, [f"https://example.org/{i}" for i in ids]]
                writer.write_batch(pa.record_batch(columns, schema=schema))
        files.append({"filename": name})
    with open(os.path.join(folder, "state.json"), "w") as fh:
        json.dump({"_data_files": files}, fh)


def anonymous_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def read(folder: str) -> tuple[int, float, float]:
    """(records, seconds, peak anonymous MiB) of reading the folder."""
    from gotd_stream.io.records import Skips, read_records

    peak, n, start = 0.0, 0, time.perf_counter()
    for _ in read_records([folder], "text", Skips()):
        n += 1
        if n % 5000 == 0:
            peak = max(peak, anonymous_mib())
    return n, time.perf_counter() - start, peak


def write(folder: str, selected: int, out: str) -> dict:
    """Seconds and sizes of writing `selected` scored lines of the folder as Parquet and as JSONL."""
    from gotd_stream.io.outputs import atomic_output
    from gotd_stream.io.parquet_out import selection_lines, write_parquet
    from gotd_stream.io.records import Skips, read_records, with_score

    lines = []
    for record in read_records([folder], "text", Skips()):
        if len(lines) == selected:
            break
        lines.append(with_score(record.raw, -0.001 * len(lines), "0123456789ab"))
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".arrow")]
    parquet, jsonl = os.path.join(out, "sel.parquet"), os.path.join(out, "sel.jsonl")
    start = time.perf_counter()
    write_parquet(parquet, lambda: lines, files)
    as_parquet = time.perf_counter() - start
    start = time.perf_counter()
    with atomic_output(jsonl) as fh:
        for line in lines:
            fh.write(line + b"\n")
    as_jsonl = time.perf_counter() - start
    start = time.perf_counter()
    back = [line for _, line in selection_lines(parquet)]
    read_back = time.perf_counter() - start
    assert back == lines, "a Parquet selection must read back as its lines"
    return {
        "lines": len(lines),
        "parquet_s": as_parquet,
        "parquet_mb": os.path.getsize(parquet) / 1e6,
        "jsonl_s": as_jsonl,
        "jsonl_mb": os.path.getsize(jsonl) / 1e6,
        "read_back_s": read_back,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the small folder (the large: 10x)")
    parser.add_argument("--selected", type=int, default=100_000, help="lines written as a selection")
    parser.add_argument("--folder", help="where the folders go (kept for a re-run) [default: a temporary one]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = args.folder or scratch
        for rows in (args.rows, 10 * args.rows):
            folder = os.path.join(base, f"saved-{rows}")
            save_to_disk(folder, rows)
            size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 1e6
            n, seconds, peak = read(folder)
            print(
                f"read {n:,} rows ({size:.0f} MB, 2 Arrow files): {seconds:.1f} s, {n / seconds:,.0f} records/s, "
                f"peak anonymous RSS {peak:.0f} MiB"
            )
        got = write(folder, args.selected, scratch)
        print(
            f"{got['lines']:,} selected lines: Parquet {got['parquet_s']:.2f} s ({got['parquet_mb']:.1f} MB), "
            f"JSONL {got['jsonl_s']:.2f} s ({got['jsonl_mb']:.1f} MB), Parquet read back as lines "
            f"{got['read_back_s']:.2f} s"
        )


if __name__ == "__main__":
    main()

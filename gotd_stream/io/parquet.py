"""Parquet shards (FineWeb-style): rows read one batch at a time, each written out as a JSON object.

A row becomes a record whose original bytes are the JSON serialization of the whole row, every column kept in
the file's order, so the rest of the pipeline (scoring, --state, merge, the output) is the same as for JSONL.
Values JSON has no type for are written as: bytes in base64, timestamps and dates as ISO 8601 strings, decimals
as strings (exact), durations as seconds, maps as [key, value] pairs, NaN and infinities as null.

Memory stays bounded by one row group's columns, whatever the file's size; pyarrow is imported only here.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import os
import stat
from collections.abc import Iterator

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.io.streams import PARQUET_MAGIC, STDIN, CorruptInput, display_name

BATCH_ROWS = 1024  # rows converted to Python at a time


class MissingColumn(UsageProblem):
    """The text field is not a column of a Parquet file; the message lists the columns it has."""


def is_parquet(path: str) -> bool:
    """A regular file that starts with Parquet's magic bytes (its name does not matter). A pipe (`<(zstdcat ..)`)
    or a device is never peeked at: what is read from it could not be read again."""
    if path == STDIN:
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return fh.read(4) == PARQUET_MAGIC
    except OSError:
        return False  # the JSONL reader reports it


def _json_default(value):
    """What orjson cannot write itself."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def row_json(row: dict) -> bytes:
    """The row as one JSON object, columns in order (see the module's docstring for the non-JSON types)."""
    import orjson

    return orjson.dumps(row, default=_json_default)


def parquet_rows(path: str, text_field: str) -> Iterator[tuple[int, bytes | None, str, str]]:
    """(row number from 1, the row as JSON, its text, "") for each row; (row, None, reason, detail) for a row
    whose text is null or not a string. A missing column is MissingColumn; a damaged file, CorruptInput."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = display_name(path)
    try:
        parquet = pq.ParquetFile(path)
        columns = parquet.schema_arrow.names
        if text_field not in columns:
            raise MissingColumn(
                f"{name}: no column {text_field!r} for {setting('text_field')}; its columns: "
                f"{', '.join(columns) or 'none'}"
            )
        row = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            for values in _rows(batch):
                row += 1
                if isinstance(values, UnicodeDecodeError):
                    yield row, None, "invalid UTF-8", f"in a string column, at byte {values.start}"
                    continue
                if isinstance(values, Exception):  # a date or time Python cannot hold (a damaged value)
                    yield row, None, "a value out of range", str(values)[:200]
                    continue
                text = values[text_field]
                if not isinstance(text, str):
                    got = "null" if text is None else type(text).__name__
                    yield row, None, f"text field {text_field!r} not a string", f"got {got}"
                    continue
                try:
                    raw = row_json(values)
                except TypeError as exc:  # a value JSON cannot hold (an integer past 64 bits, say)
                    yield row, None, "a column JSON cannot hold", str(exc)
                    continue
                yield row, raw, text, ""
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise CorruptInput(f"{name}: corrupt or truncated Parquet file ({exc})") from None


def _rows(batch) -> Iterator[dict | Exception]:
    """The batch's rows as dicts; a row that Python cannot hold as the error: a string that is not UTF-8 (Parquet
    does not check), a date or timestamp out of Python's range (OverflowError, ValueError)."""
    try:
        rows = batch.to_pylist()
    except (UnicodeDecodeError, OverflowError, ValueError):
        rows = None
    if rows is not None:
        yield from rows
        return
    for i in range(batch.num_rows):  # only for a batch that holds such a row: find it
        try:
            yield batch.slice(i, 1).to_pylist()[0]
        except (UnicodeDecodeError, OverflowError, ValueError) as exc:
            yield exc

"""Parquet shards (FineWeb-style): rows read one batch at a time, each written out as a JSON object.

A row becomes a record whose original bytes are the JSON serialization of the whole row, every column kept in
the file's order, so the rest of the pipeline (scoring, --state, merge, the output) is the same as for JSONL.
A record is its text and its columns: a value JSON has no type for is converted, column by column in Arrow
(never through Python's datetime, whose range and microseconds would drop rows), and no row is ever dropped for
a column that is not the text:

- timestamps of any unit, with or without a time zone: ISO 8601 strings, `2024-05-01T12:34:00` (naive) or with
  the zone's offset at that instant (`+00:00`, `+02:00`); a fraction only when there is one, 6 digits when
  it is whole microseconds, else 9 (nanoseconds); a year outside 0000-9999 as `+12345`/`-0042`
- dates `2024-05-01` (a date64 that is not a whole day: a naive timestamp); times `12:30:00[.ffffff[fff]]`
- durations: a JSON number of seconds, written exactly (`90`, `1.5`, `0.000000001`)
- month-day-nano intervals: `{"months": m, "days": d, "nanoseconds": n}`
- decimals: strings (exact); binary of every kind: base64; integers: JSON numbers as they are (a 64-bit one past
  2^53 is exact in the file, though a JavaScript reader rounds it)
- lists, structs and maps (as [key, value] pairs) converted inside; dictionary-encoded columns as their values
- floats NaN and infinities: null; a string column (not the text) that is not valid UTF-8: decoded with U+FFFD
  for the bad bytes, with a warning naming the column (the text field's: the row is skipped as in JSONL)

Two columns with one name cannot both be keys of a JSON object: such a file is refused, naming the columns.
Memory stays bounded by one row group's columns, whatever the file's size; pyarrow is imported only here.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.io.remote import RemoteProblem, RemoteReader, is_url
from gotd_stream.io.streams import PARQUET_MAGIC, STDIN, CorruptInput, display_name
from gotd_stream.io.vectors import VectorField, vector_text

log = logging.getLogger(__name__)

BATCH_ROWS = 1024  # rows converted to Python at a time
# What `score` adds to a selected record, as a Parquet selection's columns (io.parquet_out): left out of a record
# read from a file that has `gotd_fit`, as a JSONL line's appended fields are (re-scoring a selection)
SCORE_COLUMNS = (
    "gotd_scores",
    "gotd_target",
    "gotd_score",
    "gotd_tokens",
    "gotd_select",
    "gotd_guard",
    "gotd_fit",
)
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
DAY = 86_400


class MissingColumn(UsageProblem):
    """The text field is not a column of a Parquet file; the message lists the columns it has."""


class DuplicateColumn(UsageProblem):
    """Two columns of a Parquet file share a name: a JSON object holds a key once, so one would be lost."""


class BadText:
    """The text column's value where its bytes are not UTF-8 (the row is skipped)."""

    def __init__(self, start: int):
        self.start = start


def is_parquet(path: str) -> bool:
    """A regular file that starts with Parquet's magic bytes (its name does not matter). A pipe (`<(zstdcat ..)`)
    or a device is never peeked at: what is read from it could not be read again."""
    if path == STDIN:
        return False
    try:
        if is_url(path):
            with RemoteReader(path) as fh:
                return fh.read(4) == PARQUET_MAGIC
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return fh.read(4) == PARQUET_MAGIC
    except (OSError, RemoteProblem):
        return False  # the JSONL reader reports it


def _json_default(value):
    """What orjson cannot write itself."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.timedelta):  # only from a type the converters do not know (a union's member)
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def row_json(row: dict) -> bytes:
    """The row as one JSON object, columns in order (see the module's docstring for the non-JSON types)."""
    import orjson

    return orjson.dumps(row, default=_json_default)


def check_columns(name: str, columns: list[str], text_field: str) -> None:
    """The text field is a column, and no two columns share a name (MissingColumn, DuplicateColumn)."""
    if text_field not in columns:
        which = setting("vector_field" if isinstance(text_field, VectorField) else "text_field")
        raise MissingColumn(
            f"{name}: no column {text_field!r} for {which}; its columns: {', '.join(columns) or 'none'}"
        )
    twice = [column for column, n in Counter(columns).items() if n > 1]
    if twice:
        where = "; ".join(
            f"{column!r} is columns {', '.join(str(i + 1) for i, c in enumerate(columns) if c == column)}"
            for column in twice
        )
        what = f"the text field {text_field!r} is ambiguous" if text_field in twice else "a record would lose one"
        raise DuplicateColumn(
            f"{name}: two columns share a name ({where} of {len(columns)}): {what}, since a JSON record holds "
            f"each key once; rename or drop one (e.g. with pyarrow or DuckDB) and read the new file"
        )


def parquet_rows(path: str, text_field: str) -> Iterator[tuple[int, bytes | None, str, str]]:
    """(row number from 1, the row as JSON, its text, "") for each row; (row, None, reason, detail) for a row
    whose text is null, not a string or not UTF-8 (a VectorField: whose vector fails io.vectors' checks). A
    missing or twice-named column is a UsageProblem; a damaged file, CorruptInput."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = display_name(path)
    try:
        parquet = pq.ParquetFile(RemoteReader(path) if is_url(path) else path)
        yield from batch_rows(name, parquet.schema_arrow.names, parquet.iter_batches(batch_size=BATCH_ROWS), text_field)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # the last: a footer's names damaged
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise CorruptInput(f"{name}: corrupt or truncated Parquet file ({exc})") from None


def batch_rows(name: str, columns: list[str], batches, text_field: str) -> Iterator[tuple[int, bytes | None, str, str]]:
    """The rows of Arrow record batches (of one file, `name`, whose columns are `columns`) as parquet_rows gives
    them: shared by Parquet files and Arrow IPC files (io.datasets). A batch longer than BATCH_ROWS is converted
    BATCH_ROWS rows at a time, so memory stays bounded whatever the writer's batch size."""
    check_columns(name, columns, text_field)
    at = columns.index(text_field)
    dropped = set(SCORE_COLUMNS) if "gotd_fit" in columns else set()  # a Parquet selection, scored again
    kept = [(i, column) for i, column in enumerate(columns) if column not in dropped]
    warned: set[str] = set()
    vectors = isinstance(text_field, VectorField)
    row = 0
    for whole in batches:
        for first in range(0, whole.num_rows, BATCH_ROWS):
            batch = whole.slice(first, BATCH_ROWS)
            values = []
            for i, column in kept:
                replaced = []
                values.append(column_values(batch.column(i), text=i == at, replaced=replaced))
                if replaced and column not in warned:
                    warned.add(column)
                    log.warning(
                        f"{name}:{row + replaced[0] + 1}: column {column!r} holds bytes that are not UTF-8; they "
                        "are written as U+FFFD (the row is kept; further such values of this column are not reported)"
                    )
            at_kept = [i for i, _ in kept].index(at)
            for j in range(batch.num_rows):
                row += 1
                text = values[at_kept][j]
                if vectors:  # a list or fixed-size list column, its numbers exactly as stored
                    text = vector_text(text, text_field)
                    if isinstance(text, tuple):
                        yield row, None, *text
                        continue
                if isinstance(text, BadText):
                    yield row, None, "invalid UTF-8", f"in the text column, at byte {text.start}"
                    continue
                if not isinstance(text, str):
                    got = "null" if text is None else type(text).__name__
                    yield row, None, f"text field {text_field!r} not a string", f"got {got}"
                    continue
                try:
                    raw = row_json({column: values[n][j] for n, (_, column) in enumerate(kept)})
                except TypeError as exc:  # a type no converter knows, inside a union: name it
                    yield row, None, "a column JSON cannot hold", str(exc)
                    continue
                yield row, raw, text, ""


def column_values(array, text: bool = False, replaced: list | None = None) -> list:
    """An Arrow array's values as JSON-ready Python values (see the module's docstring), nulls as None.

    `text`: the text column, whose bytes that are not UTF-8 become BadText (the row is skipped); elsewhere they
    are decoded with U+FFFD and the first such position is appended to `replaced`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    types = pa.types
    replaced = replaced if replaced is not None else []
    if isinstance(kind, pa.ExtensionType):
        try:
            return array.to_pylist()  # uuid: UUID objects, which orjson writes as strings
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return column_values(array.storage, text, replaced)
    if types.is_dictionary(kind):
        return column_values(array.dictionary_decode(), text, replaced)
    if types.is_timestamp(kind):
        return _each(array, pa.int64(), _timestamp_writer(kind.unit, kind.tz))
    if types.is_date32(kind):
        return _each(array, pa.int32(), lambda days: _date(days))
    if types.is_date64(kind):
        return _each(array, pa.int64(), _date64)
    if types.is_time32(kind) or types.is_time64(kind):
        per = PER_SECOND[kind.unit]
        storage = pa.int32() if types.is_time32(kind) else pa.int64()
        return _each(array, storage, lambda v: _clock(*divmod(v, per), per))
    if types.is_duration(kind):
        return _each(array, pa.int64(), _seconds_writer(PER_SECOND[kind.unit]))
    if kind == pa.month_day_nano_interval():
        return [
            None if v is None else {"months": v.months, "days": v.days, "nanoseconds": v.nanoseconds}
            for v in array.to_pylist()
        ]
    if types.is_string(kind) or types.is_large_string(kind) or types.is_string_view(kind):
        return _strings(array, text, replaced)
    if types.is_struct(kind):
        fields = [kind.field(i).name for i in range(kind.num_fields)]
        children = [column_values(child, False, replaced) for child in array.flatten()]
        nulls = array.is_null().to_pylist()
        return [
            None if nulls[j] else {f: child[j] for f, child in zip(fields, children, strict=True)}
            for j in range(len(array))
        ]
    if types.is_map(kind):
        entries = pa.struct([pa.field("key", kind.key_type, nullable=False), pa.field("value", kind.item_type)])
        pairs = _lists(array.cast(pa.list_(entries)), replaced)
        return [None if p is None else [[e["key"], e["value"]] for e in p] for p in pairs]
    if types.is_list_view(kind) or types.is_large_list_view(kind):
        return _lists(array.cast(pa.large_list(kind.value_type)), replaced)
    if types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind):
        return _lists(array, replaced)
    if types.is_run_end_encoded(kind):
        return column_values(pc.run_end_decode(array), text, replaced)
    return array.to_pylist()  # booleans, numbers (NaN: null), decimals (strings), binary (base64), nulls


def _each(array, storage, write: Callable[[int], object]) -> list:
    """Each non-null value's integer storage through `write`."""
    return [None if v is None else write(v) for v in array.cast(storage).to_pylist()]


def _lists(array, replaced: list) -> list:
    """A list array's values (any list kind), each converted inside."""
    import pyarrow.compute as pc

    flat = column_values(array.flatten(), False, replaced)
    out, at = [], 0
    for length in pc.list_value_length(array).to_pylist():
        if length is None:
            out.append(None)
        else:
            out.append(flat[at : at + length])
            at += length
    return out


def _strings(array, text: bool, replaced: list) -> list:
    """A string column's values; bytes that are not UTF-8 as BadText (the text column) or with U+FFFD."""
    import pyarrow as pa

    try:
        return array.to_pylist()
    except UnicodeDecodeError:
        pass
    kind = array.type
    raw = pa.large_binary() if pa.types.is_large_string(kind) else pa.binary()
    if pa.types.is_string_view(kind):
        raw = pa.binary_view()
    out = []
    for j, value in enumerate(array.view(raw).to_pylist()):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            if text:
                out.append(BadText(exc.start))
            else:
                replaced.append(j)
                out.append(value.decode("utf-8", "replace"))
    return out


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian calendar, `days` after 1970-01-01 (any integer: H. Hinnant's
    civil_from_days, exact where Python's date stops at year 9999)."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date(days: int) -> str:
    year, month, day = _civil(days)
    shown = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return f"{shown}-{month:02d}-{day:02d}"


def _fraction(sub: int, per: int) -> str:
    """The fraction of a second `sub / per`: nothing, 6 digits (whole microseconds) or 9."""
    if not sub:
        return ""
    nanos = sub * (1_000_000_000 // per)
    return f".{nanos // 1000:06d}" if nanos % 1000 == 0 else f".{nanos:09d}"


def _clock(seconds: int, sub: int, per: int) -> str:
    """HH:MM:SS of `seconds` into a day, with its fraction."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{_fraction(sub, per)}"


def _stamp(seconds: int, sub: int, per: int) -> str:
    days, into = divmod(seconds, DAY)
    return f"{_date(days)}T{_clock(into, sub, per)}"


def _date64(millis: int) -> str:
    days, rest = divmod(millis, DAY * 1000)
    return _date(days) if not rest else _stamp(millis // 1000, millis % 1000, 1000)


def _timestamp_writer(unit: str, tz: str | None) -> Callable[[int], str]:
    """ISO 8601 of an instant stored as `unit`s since the epoch (UTC), shown in `tz` with its offset."""
    per = PER_SECOND[unit]
    zone = _zone(tz)

    def write(value: int) -> str:
        seconds, sub = divmod(value, per)
        if zone is None:
            return _stamp(seconds, sub, per)
        offset = _offset(seconds, zone)
        return _stamp(seconds + offset, sub, per) + _offset_text(offset)

    return write


def _zone(tz: str | None):
    if tz is None:
        return None
    import pyarrow as pa

    try:
        return pa.lib.string_to_tzinfo(tz)
    except Exception:  # a zone this machine does not know: the instant in UTC, which is still exact
        log.warning(f"time zone {tz!r} unknown here: its timestamps are written in UTC (+00:00)")
        return datetime.timezone.utc


def _offset(seconds: int, zone) -> int:
    """The zone's offset from UTC at that instant, in seconds (0 where Python's datetime cannot hold it)."""
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).astimezone(zone)
    except (OverflowError, ValueError, OSError):
        return 0
    offset = moment.utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def _offset_text(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    hours, rest = divmod(abs(offset), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


def _seconds_writer(per: int) -> Callable[[int], object]:
    """A duration of `unit`s as an exact JSON number of seconds (an orjson Fragment: no float rounding)."""
    import orjson

    digits = len(str(per)) - 1

    def write(value: int):
        whole, sub = divmod(abs(value), per)
        text = str(whole) + (f".{sub:0{digits}d}".rstrip("0") if sub else "")
        return orjson.Fragment(("-" if value < 0 else "") + text)

    return write

"""Selections as Parquet: `-o sel.parquet` writes the selected records as rows, and a Parquet selection reads back
as exactly the lines a JSONL one holds, so `merge` takes both, mixed.

A row is the record's own columns, then what `score` appends to a JSONL line, as columns of their own:

    gotd_scores   struct of float64, one field per target (several targets)
    gotd_target   string: the target a quota selection counts the row for
    gotd_score    float64: the calibrated gradient (one target), or the quota's or sum's value
    gotd_tokens   int64: the row's tokens (a token budget)
    gotd_select   string: the rule, when it is a sample (`sample:t=...:seed=...`)
    gotd_guard    string: the duplicate guard's tag, when it chose the selection (`near:t=...:m=...`)
    gotd_fit      string: the artifact's id

(each only when the selection's lines carry it; a piece's `gotd_source` and `gotd_span` are record columns, as
they are fields of its JSONL line). The record columns keep the types of the inputs' columns when the inputs are
Parquet or Arrow files: all of them must have the same columns, names and types, and each a type Parquet stores
(an interval is not), or the clash is named before any work; Parquet keeps a date64 as date32 days. From JSONL
the columns are inferred from the records: every record must have the same keys in the same order and one JSON
type per key (null anywhere), or the first record that differs is named.

Exactness: every row group is read back as Parquet gives it (io.parquet's conversion) before it is written, and
each row must give the record's JSON again (a date64 that is not a whole day would not: refused). From a Parquet
or Arrow input it gives the very bytes, so the lines of a Parquet selection and those of a JSONL one compare the
same, and merge is exact whatever the mix. A JSONL record that is not written compactly (`{"a": 1}`, escapes
such as `\\u00e9`) reads back as its compact form (the same values); under a sampling rule, whose keys hash the
record's bytes, that would change its draw in a later merge, so it is refused there. Scores are float64: the
same numbers as the JSONL's text. Rows are written in the selection's order, in row groups of ROW_GROUP rows,
to a temporary file renamed into place (io.outputs).
"""

from __future__ import annotations

import base64
import decimal
import re
from collections.abc import Callable, Iterable, Iterator

from gotd_stream.errors import UsageProblem
from gotd_stream.io.parquet import SCORE_COLUMNS
from gotd_stream.io.streams import display_name

ROW_GROUP = 10_000


class SchemaClash(UsageProblem):
    """Records that cannot share one Parquet schema: inputs with other columns, or a JSONL record unlike the first."""


def is_parquet_output(path: str | None) -> bool:
    """An output written as Parquet: its name ends in .parquet."""
    return bool(path) and path.lower().endswith(".parquet")


def record_schema(paths: Iterable[str]):
    """The columns (an Arrow schema, without score columns) that the Parquet and Arrow files among `paths` share,
    or None when none is one. Two that differ are a SchemaClash naming both files and the first column."""
    from gotd_stream.io.datasets import arrow_schema

    first = first_name = None
    for path in paths:
        schema = arrow_schema(path)
        if schema is None:
            continue
        schema = _without_scores(schema).remove_metadata()
        _check_writable(schema, display_name(path))
        if first is None:
            first, first_name = schema, display_name(path)
            continue
        if not schema.equals(first):
            raise SchemaClash(
                f"{display_name(path)} and {first_name} have different columns ({_difference(first, schema)}): a "
                f"Parquet output holds one schema; write JSONL (-o FILE.jsonl), or score them to separate outputs"
            )
    return first


def _check_writable(schema, name: str) -> None:
    """Each column is one Parquet stores and to_arrow rebuilds from JSON (SchemaClash naming the first other)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for field in schema:
        problem = _unbuilt(field.type)
        if problem is None:
            try:
                pq.write_table(pa.schema([field]).empty_table(), pa.BufferOutputStream())
            except (pa.ArrowException, TypeError) as exc:
                problem = str(exc)
        if problem is not None:
            raise SchemaClash(
                f"{name}: column {field.name!r} ({field.type}) cannot be written to Parquet ({problem}): write JSONL "
                "(-o FILE.jsonl), or drop or convert the column first"
            )


def _unbuilt(kind) -> str | None:
    """Why to_arrow cannot rebuild a type from JSON (extension, union, run-end encoded, anywhere inside), or None."""
    import pyarrow as pa

    if isinstance(kind, pa.ExtensionType) or pa.types.is_union(kind) or pa.types.is_run_end_encoded(kind):
        return "its values are not rebuilt from JSON"
    inner = [kind.field(i).type for i in range(kind.num_fields)] if pa.types.is_struct(kind) else []
    if pa.types.is_map(kind):
        inner = [kind.key_type, kind.item_type]
    elif hasattr(kind, "value_type"):
        inner = [kind.value_type]
    return next((why for why in map(_unbuilt, inner) if why is not None), None)


def _without_scores(schema):
    for name in SCORE_COLUMNS:
        while name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
    return schema


def _difference(a, b) -> str:
    """The first column where two schemas differ, in words."""
    for i in range(max(len(a), len(b))):
        x = a.field(i) if i < len(a) else None
        y = b.field(i) if i < len(b) else None
        if x is None or y is None or x.name != y.name or not x.type.equals(y.type):
            said = [
                f"column {i + 1} is {f.name!r} ({f.type})" if f is not None else f"there is no column {i + 1}"
                for f in (y, x)
            ]
            return f"{said[0]} in the one, {said[1]} in the other"
    return "the same columns with other metadata"


# ---------------------------------------------------------------------------------------------- lines -> rows


class _Row:
    """A selection line taken apart: the record's values and the appended fields."""

    __slots__ = ("raw", "values", "suffix")

    def __init__(self, raw: bytes, values: dict, suffix: dict):
        self.raw, self.values, self.suffix = raw, values, suffix


def _split(line: bytes, loads: Callable) -> _Row:
    from gotd_stream.io.records import split_mixed, split_scored

    mixed = split_mixed(line)
    if mixed is not None:
        suffix = {"gotd_scores": dict(zip(mixed.names, mixed.scores, strict=True)), "gotd_fit": mixed.fit_id}
        if mixed.target is not None:
            suffix["gotd_target"] = mixed.target
        if mixed.value is not None:
            suffix["gotd_score"] = mixed.value
        if mixed.guard is not None:
            suffix["gotd_guard"] = mixed.guard
        raw = mixed.raw
    else:
        scored = split_scored(line)
        if scored is None:
            raw, suffix = line, {}
        else:
            raw, suffix = scored.raw, {"gotd_score": scored.score, "gotd_fit": scored.fit_id}
            if scored.tokens is not None:
                suffix["gotd_tokens"] = scored.tokens
            if scored.select is not None:
                suffix["gotd_select"] = scored.select
            if scored.guard is not None:
                suffix["gotd_guard"] = scored.guard
    values = loads(raw)
    if not isinstance(values, dict):
        raise SchemaClash("a selected line is not a JSON object")
    return _Row(raw, values, suffix)


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | decimal.Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


class _Shape:
    """The JSON shape of one column over the records: a kind, and inside lists and objects the shapes within."""

    def __init__(self):
        self.kind = "null"
        self.low = self.high = 0
        self.item: _Shape | None = None
        self.keys: list[str] | None = None
        self.fields: dict[str, _Shape] = {}

    def add(self, value, where: str) -> str | None:
        """Fold a value in; a problem in words (the path and the kinds) when it does not fit."""
        kind = _kind(value)
        if kind == "null":
            return None
        if self.kind not in ("null", kind):
            return f"{where} is {_a(kind)}, where it was {_a(self.kind)} before"
        self.kind = kind
        if kind == "integer":
            self.low, self.high = min(self.low, value), max(self.high, value)
        elif kind == "list":
            self.item = self.item or _Shape()
            for item in value:
                if (problem := self.item.add(item, where + "[]")) is not None:
                    return problem
        elif kind == "object":
            keys = list(value)
            if self.keys is None:
                self.keys = keys
                self.fields = {key: _Shape() for key in keys}
            elif keys != self.keys:
                return f"{where} has the keys {_listed(keys)}, where it had {_listed(self.keys)} before"
            for key, item in value.items():
                if (problem := self.fields[key].add(item, f"{where}.{key}")) is not None:
                    return problem
        return None

    def arrow(self, where: str):
        import pyarrow as pa

        if self.kind == "integer":
            if self.low >= -(1 << 63) and self.high < 1 << 63:
                return pa.int64()
            if self.low >= 0 and self.high < 1 << 64:
                return pa.uint64()
            raise SchemaClash(f"{where} holds integers beyond 64 bits ({self.low} to {self.high}): Parquet has none")
        if self.kind == "list":
            return pa.list_(self.item.arrow(where + "[]"))
        if self.kind == "object":
            if not self.fields:
                raise SchemaClash(f"{where} is an empty object in every record: Parquet has no empty struct")
            return pa.struct([pa.field(k, s.arrow(f"{where}.{k}")) for k, s in self.fields.items()])
        return {"null": pa.null(), "boolean": pa.bool_(), "number": pa.float64(), "string": pa.string()}[self.kind]


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _listed(keys: list[str]) -> str:
    return ", ".join(map(repr, keys[:8])) + (", ..." if len(keys) > 8 else "") if keys else "none"


def _schema_of(lines: Callable[[], Iterable[bytes]], known, loads: Callable):
    """The Parquet schema of the selection: the known columns (the inputs'), then the other keys of the
    records (a piece's provenance; every key of a JSONL record) inferred, then the score columns it carries."""
    import pyarrow as pa

    keys: list[str] | None = None
    shapes: dict[str, _Shape] = {}
    suffix: dict[str, object] = {}
    names: list[str] | None = None  # several targets' names, in order
    for n, line in enumerate(lines(), 1):
        row = _split(line, loads)
        got = list(row.values)
        if keys is None:
            keys = got
            if known is not None and got[: len(known.names)] != known.names:
                raise SchemaClash(
                    f"the selection's record 1 has the keys {_listed(got)}, not the inputs' columns "
                    f"{_listed(known.names)}"
                )
            shapes = {key: _Shape() for key in got[len(known.names) if known is not None else 0 :]}
        elif got != keys:
            raise SchemaClash(
                f"the selection's record {n} ({_about(row)}) has the keys {_listed(got)}, where record 1 has "
                f"{_listed(keys)}: a Parquet file holds one schema; write JSONL (-o FILE.jsonl)"
            )
        for key, shape in shapes.items():
            if (problem := shape.add(row.values[key], repr(key))) is not None:
                raise SchemaClash(
                    f"the selection's record {n} ({_about(row)}): {problem}: a Parquet column holds one type; "
                    "write JSONL (-o FILE.jsonl)"
                )
        for key, value in row.suffix.items():
            suffix.setdefault(key, value)
        if "gotd_scores" in row.suffix:
            these = list(row.suffix["gotd_scores"])
            if names is None:
                names = these
            elif these != names:
                raise SchemaClash(f"the selection's record {n} is scored for other targets ({_listed(these)})")
    taken = [key for key in keys or [] if key in suffix]
    if taken:
        raise SchemaClash(
            f"the selection's records have a field {taken[0]!r}, which is also a column score adds: a Parquet "
            "file holds each column once; rename the field, or write JSONL (-o FILE.jsonl)"
        )
    fields = list(known) if known is not None else []
    fields += [pa.field(key, shape.arrow(repr(key))) for key, shape in shapes.items()]
    scores = {
        "gotd_scores": pa.struct([pa.field(name, pa.float64()) for name in names or []]),
        "gotd_target": pa.string(),
        "gotd_score": pa.float64(),
        "gotd_tokens": pa.int64(),
        "gotd_select": pa.string(),
        "gotd_guard": pa.string(),
        "gotd_fit": pa.string(),
    }
    fields += [pa.field(name, kind) for name, kind in scores.items() if name in suffix]
    return pa.schema(fields)


def _about(row: _Row) -> str:
    text = row.raw[:60].decode("utf-8", "replace")
    return text + ("..." if len(row.raw) > 60 else "")


def write_parquet(output: str | None, lines: Callable[[], Iterable[bytes]], inputs: Iterable[str] = ()) -> int:
    """Write a selection's lines (`lines()` gives them; called twice: the schema, then the rows) as Parquet to
    `output`, atomically; the record columns keep the types of the Parquet and Arrow files among `inputs`.
    Returns the rows written."""
    import pyarrow.parquet as pq

    from gotd_stream.io.outputs import atomic_output

    known = record_schema(inputs)
    loads = _loads_for(known)
    schema = _schema_of(lines, known, loads)
    written = 0
    with atomic_output(output) as sink:
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            for group in _groups(lines(), ROW_GROUP):
                rows = [_split(line, loads) for line in group]
                batch = _batch(rows, schema)
                _check_back(_through_parquet(batch), rows, written)
                writer.write_batch(batch, row_group_size=ROW_GROUP)
                written += len(rows)
    return written


def _loads_for(schema) -> Callable:
    """The JSON parser of the records: exact decimals where a duration column needs its seconds' digits."""
    from gotd_stream.io.jsonbytes import loads

    if schema is None or "duration" not in str(schema):
        return loads
    import json

    return lambda raw: json.loads(raw, parse_float=decimal.Decimal)


def _groups(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    group: list[bytes] = []
    for line in lines:
        group.append(line)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _batch(rows: list[_Row], schema):
    import pyarrow as pa

    arrays = []
    for field in schema:
        if field.name in SCORE_COLUMNS:  # never a record's field (_schema_of)
            values = [row.suffix.get(field.name) for row in rows]
        else:
            values = [row.values.get(field.name) for row in rows]
        try:
            arrays.append(to_arrow(values, field.type))
        except (pa.ArrowException, ValueError, TypeError, OverflowError, decimal.InvalidOperation) as exc:
            raise SchemaClash(
                f"column {field.name!r} ({field.type}) cannot hold the selection's values ({exc}); write JSONL"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _through_parquet(batch):
    """The batch as Parquet gives it back (what the file will hold: Parquet stores some types in others)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_batches([batch]), buffer, compression="none")
    return pq.read_table(pa.BufferReader(buffer.getvalue())).combine_chunks().to_batches()[0]


def _check_back(batch, rows: list[_Row], before: int) -> None:
    """Each row, read back as io.parquet reads it, is the record's JSON: its bytes, or (from a JSONL line
    written otherwise) its values, except under a sampling rule, whose draw hashes the bytes."""
    import orjson

    from gotd_stream.io.parquet import column_values, row_json

    columns = [name for name in batch.schema.names if name not in SCORE_COLUMNS]
    values = [column_values(batch.column(batch.schema.get_field_index(name))) for name in columns]
    for j, row in enumerate(rows):
        back = row_json({name: values[i][j] for i, name in enumerate(columns)})
        if back == row.raw:
            continue
        same = _canonical(row.values) == back
        if same and "gotd_select" not in row.suffix:
            continue
        where = f"the selection's record {before + j + 1} ({_about(row)})"
        if same:
            raise SchemaClash(
                f"{where} is not compact JSON, and under a sampling rule its Parquet row (compact) would draw "
                "another key in a merge: write this selection as JSONL"
            )
        differs = next((k for k in columns if _canonical(row.values.get(k)) != orjson.dumps(_read(back, k))), "?")
        raise SchemaClash(f"{where}: its {differs!r} does not survive Parquet as it is; write JSONL (-o FILE.jsonl)")


def _canonical(value) -> bytes:
    import orjson

    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return b""


def _read(raw: bytes, key: str):
    import orjson

    return orjson.loads(raw).get(key)


# --------------------------------------------------------------------------------------- JSON values -> Arrow


def to_arrow(values: list, kind):
    """An Arrow array of type `kind` from JSON values, as io.parquet.column_values writes each type (its inverse:
    ISO 8601 strings to timestamps, base64 to binary, strings to decimals, seconds to durations, ...)."""
    import pyarrow as pa

    types = pa.types
    if types.is_dictionary(kind):
        return to_arrow(values, kind.value_type).dictionary_encode().cast(kind)
    if types.is_timestamp(kind):
        per = PER_SECOND[kind.unit]
        return pa.array([None if v is None else _instant(v, per) for v in values], pa.int64()).view(kind)
    if types.is_date32(kind):
        return pa.array([None if v is None else _days(v) for v in values], pa.int32()).view(kind)
    if types.is_date64(kind):
        return pa.array([None if v is None else _millis(v) for v in values], pa.int64()).view(kind)
    if types.is_time32(kind) or types.is_time64(kind):
        per = PER_SECOND[kind.unit]
        storage = pa.int32() if types.is_time32(kind) else pa.int64()
        return pa.array([None if v is None else _time(v, per) for v in values], storage).view(kind)
    if types.is_duration(kind):
        per = PER_SECOND[kind.unit]
        return pa.array([None if v is None else _duration(v, per) for v in values], pa.int64()).view(kind)
    if kind == pa.month_day_nano_interval():
        return pa.array([None if v is None else (v["months"], v["days"], v["nanoseconds"]) for v in values], kind)
    if types.is_binary(kind) or types.is_large_binary(kind) or types.is_fixed_size_binary(kind):
        return pa.array([None if v is None else base64.b64decode(v, validate=True) for v in values], kind)
    if types.is_binary_view(kind):
        return to_arrow(values, pa.binary()).cast(kind)
    if types.is_decimal(kind):
        return pa.array([None if v is None else decimal.Decimal(v) for v in values], kind)
    if types.is_floating(kind):
        floats = [None if v is None else float(v) for v in values]
        return pa.array(floats, pa.float32()).cast(kind) if types.is_float16(kind) else pa.array(floats, kind)
    if types.is_struct(kind):
        return _struct(values, kind)
    if types.is_map(kind):
        return _map(values, kind)
    if types.is_list_view(kind) or types.is_large_list_view(kind):
        return _list(values, pa.large_list(kind.value_field)).cast(kind)
    if types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind):
        return _list(values, kind)
    if isinstance(kind, pa.ExtensionType) or types.is_run_end_encoded(kind) or types.is_union(kind):
        raise TypeError(f"{kind} is not written back from JSON")
    return pa.array([float(v) if isinstance(v, decimal.Decimal) else v for v in values], kind)


def _nulls(values: list):
    import pyarrow as pa

    return pa.array([v is None for v in values], pa.bool_())


def _struct(values: list, kind):
    import pyarrow as pa

    children = []
    for i in range(kind.num_fields):
        field = kind.field(i)
        children.append(to_arrow([None if v is None else v.get(field.name) for v in values], field.type))
    mask = _nulls(values) if None in values else None
    return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)


def _offsets(values: list, kind):
    import pyarrow as pa

    at, offsets, flat = 0, [0], []
    for v in values:
        if v is not None:
            flat.extend(v)
            at += len(v)
        offsets.append(at)
    wide = pa.types.is_large_list(kind) or pa.types.is_large_list_view(kind)
    return pa.array(offsets, pa.int64() if wide else pa.int32()), flat


def _list(values: list, kind):
    import pyarrow as pa

    mask = _nulls(values) if None in values else None
    if pa.types.is_fixed_size_list(kind):
        flat = []
        for v in values:
            flat.extend([None] * kind.list_size if v is None else v)
        child = to_arrow(flat, kind.value_type)
        return pa.FixedSizeListArray.from_arrays(child, type=kind, mask=mask)
    offsets, flat = _offsets(values, kind)
    child = to_arrow(flat, kind.value_type)
    cls = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
    return cls.from_arrays(offsets, child, type=kind, mask=mask)


def _map(values: list, kind):
    import pyarrow as pa

    offsets, flat = _offsets(values, kind)
    keys = to_arrow([pair[0] for pair in flat], kind.key_type)
    items = to_arrow([pair[1] for pair in flat], kind.item_type)
    mask = _nulls(values) if None in values else None
    return pa.MapArray.from_arrays(offsets, keys, items, type=kind, mask=mask)


PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DATE = r"([+-]?[0-9]{4,})-([0-9]{2})-([0-9]{2})"
_CLOCK = r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
_STAMP = re.compile(_DATE + "T" + _CLOCK + r"(?:([+-])([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?|Z)?$")
_DAY = re.compile(_DATE + "$")
_TIME = re.compile(_CLOCK + "$")


def _from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil; io.parquet._civil back)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _match(pattern: re.Pattern, text) -> re.Match:
    match = pattern.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a value this column writes")
    return match


def _sub(fraction: str | None, per: int) -> int:
    """A fraction of a second in `per`ths (exact for the digits io.parquet writes)."""
    if not fraction:
        return 0
    nanos = int(fraction.ljust(9, "0"))
    sub, rest = divmod(nanos * per, 1_000_000_000)
    if rest:
        raise ValueError(f"the fraction .{fraction} is finer than the column's unit")
    return sub


def _instant(text: str, per: int) -> int:
    m = _match(_STAMP, text)
    days = _from_civil(int(m[1]), int(m[2]), int(m[3]))
    seconds = days * 86_400 + int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6])
    if m[8] is not None:
        offset = int(m[9]) * 3600 + int(m[10]) * 60 + int(m[11] or 0)
        seconds -= offset if m[8] == "+" else -offset
    return seconds * per + _sub(m[7], per)


def _days(text: str) -> int:
    m = _match(_DAY, text)
    return _from_civil(int(m[1]), int(m[2]), int(m[3]))


def _millis(text: str) -> int:
    if isinstance(text, str) and "T" in text:
        return _instant(text, 1000)
    return _days(text) * 86_400_000


def _time(text: str, per: int) -> int:
    m = _match(_TIME, text)
    return (int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])) * per + _sub(m[4], per)


def _duration(seconds, per: int) -> int:
    exact = decimal.Decimal(seconds) if isinstance(seconds, int | decimal.Decimal) else decimal.Decimal(repr(seconds))
    units = exact * per
    if units != units.to_integral_value():
        raise ValueError(f"{seconds} s is finer than the column's unit")
    return int(units)


# ---------------------------------------------------------------------------------------------- rows -> lines


def selection_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(row from 1, line) of a selection: a Parquet one's rows as the JSONL lines they stand for (the record's
    JSON as io.parquet reads it, then the score columns as `score` appends them), else the file's lines."""
    from gotd_stream.io.parquet import is_parquet

    if not is_parquet(path):
        from gotd_stream.io.streams import read_lines

        yield from read_lines(path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gotd_stream.io.parquet import BATCH_ROWS, check_columns, column_values, row_json
    from gotd_stream.io.streams import CorruptInput

    name = display_name(path)
    row = 0
    try:
        parquet = pq.ParquetFile(path)
        columns = parquet.schema_arrow.names
        record = [c for c in columns if c not in SCORE_COLUMNS]
        if not record:  # an empty selection has no columns
            return
        check_columns(name, record, record[0])  # two columns of one name
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            got = {c: column_values(batch.column(i)) for i, c in enumerate(columns)}
            for j in range(batch.num_rows):
                row += 1
                raw = row_json({c: got[c][j] for c in record})
                yield row, _with_suffix(raw, {c: got[c][j] for c in SCORE_COLUMNS if c in got})
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # the last: a footer's names damaged
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise CorruptInput(f"{name}: corrupt or truncated Parquet file ({exc})") from None


def _with_suffix(raw: bytes, scores: dict) -> bytes:
    """The JSONL line of a row: `raw` with the score columns appended as `score` writes them (none: the raw)."""
    from gotd_stream.io.records import with_score, with_scores

    fit = scores.get("gotd_fit")
    if fit is None:
        return raw
    several = scores.get("gotd_scores")
    if several is not None:
        value, target = scores.get("gotd_score"), scores.get("gotd_target")
        return with_scores(raw, list(several), list(several.values()), fit, value, target, scores.get("gotd_guard"))
    return with_score(
        raw, scores["gotd_score"], fit, scores.get("gotd_tokens"), scores.get("gotd_select"), scores.get("gotd_guard")
    )

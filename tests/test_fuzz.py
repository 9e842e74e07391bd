"""Property-based fuzzing of the input path: bytes -> lines -> records, plain or compressed, up to the CLI; of
the artifact: flipped bytes are refused, never a traceback nor other scores; and of the output paths: whatever
lies at `-o`, no input is ever damaged.

Why: a ten-hour job must never die on one bad line or a damaged shard with anything but a clear message, and
it must never silently drop, invent or reorder good records. Each property states its example count
(`fuzz(n)`); the whole file is meant to stay well under a minute on two CPU cores.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import string
import struct
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson
import pytest
import zstandard
from click.testing import CliRunner

from gotd_stream.cli import cli
from gotd_stream.io import streams
from gotd_stream.io.records import NO_WORDS, Record, Skips, read_records
from gotd_stream.io.streams import CHUNK, GZIP_MAGIC, ZSTD_MAGIC, CorruptInput
from gotd_stream.select.units import chunk_spans
from gotd_stream.text import wordless
from tests.conftest import make_docs, sourced_docs, write_jsonl

try:
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # in the `dev` extra; skip rather than fail where it is missing
    pytest.skip("hypothesis is not installed (pip install hypothesis)", allow_module_level=True)

MALFORMED = "malformed JSON"
BAD_UTF8 = "invalid UTF-8"
NOT_OBJECT = "not a JSON object"
MISSING = "missing text field 'text'"
NOT_STRING = "text field 'text' not a string"
REASONS = {MALFORMED, BAD_UTF8, NOT_OBJECT, MISSING, NOT_STRING}
FILE_NAME = "shard 07.jsonl"  # a space in the name: messages must still name the file as given
SCALE = int(os.environ.get("GOTD_FUZZ_SCALE", "1"))  # e.g. 50 for a long hunt; the counts below are for 1


def fuzz(max_examples: int) -> settings:
    """One settings object for every property: explicit example count, no deadline, no example database.

    No database: the run leaves no `.hypothesis/` folder in the checkout; a failure prints its reproduction blob.
    """
    return settings(
        max_examples=max_examples * SCALE,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(Exception):
    """A read that did not finish in time: the example fails instead of the whole run stalling."""


@contextlib.contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """Turn a hang inside the block into a test failure (POSIX; elsewhere the block just runs)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per module: examples overwrite the same file, read_records needs paths."""
    return tmp_path_factory.mktemp("fuzz")


def put(workdir: Path, data: bytes, name: str = FILE_NAME) -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


def read_all(path: Path) -> tuple[list[Record], Skips]:
    """Every record of one file and the skips; any exception at all propagates and fails the example.

    The reading layer only: texts without a word are kept here (their skip is checked through the CLI below).
    """
    skips = Skips(strict=False, report=False)
    with no_hang():
        records = list(read_records([str(path)], "text", skips, words=False))
    return records, skips


def read_until_error(path: Path) -> tuple[list[Record], CorruptInput | None]:
    """The records read before a CorruptInput (the only exception a damaged stream may raise), and that error."""
    records: list[Record] = []
    with no_hang():
        try:
            for record in read_records([str(path)], "text", Skips(strict=False, report=False), words=False):
                records.append(record)
        except CorruptInput as exc:
            return records, exc
    return records, None


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- strategies -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One generated line (no newline in it) and what reading it must give."""

    data: bytes
    text: str | None = None  # a good record: its text
    reason: str | None = None  # a bad line: the exact skip reason; both None: a blank line, ignored and not counted


# orjson refuses lone surrogates on output: good texts have none (category Cs)
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
ASCII = st.text(string.ascii_letters + string.digits + " ", max_size=10)
# extra fields never shadow the text field, nor the "id" the CLI property adds
KEYS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8).filter(lambda k: k not in ("text", "id"))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner, max_size=3),
    max_leaves=8,
)
PAD = st.sampled_from([b"", b" ", b"\t", b" \t "])  # JSON whitespace around a value


@st.composite
def good_lines(draw: st.DrawFn) -> Line:
    """A usable record: random text, random extra fields in random key order, serialised one of three ways."""
    text = draw(SAFE_TEXT)
    extra = draw(st.dictionaries(KEYS, JSON_VALUES, max_size=3))
    obj = {"text": text, **extra} if draw(st.booleans()) else {**extra, "text": text}
    style = draw(st.sampled_from(["orjson", "orjson", "json-ascii", "json-utf8"]))
    if style == "orjson":
        body = orjson.dumps(obj)
    else:  # \uXXXX escapes (surrogate pairs for astral characters) and ", " / ": " separators
        body = json.dumps(obj, ensure_ascii=style == "json-ascii", allow_nan=False).encode()
    return Line(draw(PAD) + body + draw(PAD), text=text)


def malformed(data: bytes) -> Line:
    """Unparseable bytes: reported as invalid UTF-8 when they do not decode, else as malformed JSON."""
    return Line(data, reason=MALFORMED if is_utf8(data) else BAD_UTF8)


@st.composite
def truncated_objects(draw: st.DrawFn) -> Line:
    full = orjson.dumps({"text": draw(SAFE_TEXT), **draw(st.dictionaries(KEYS, JSON_VALUES, max_size=2))})
    return malformed(full[: draw(st.integers(1, len(full) - 1))])  # a proper prefix of an object never parses


# Heads after which no suffix makes valid JSON: the reason depends only on whether the line is UTF-8. The BOM
# comes twice: a BOM opening the input is stripped (it is not part of the first line), the second stays.
GARBAGE_HEADS = [b"}", b"]", b",", b":", b"'", b"\x00", b"NaN", b"{,", b"\xef\xbb\xbf" * 2, b"\x1e"]
garbage = st.builds(
    lambda head, tail: malformed(head + tail),
    st.sampled_from(GARBAGE_HEADS),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
)

BAD_SEQUENCES = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]


@st.composite
def invalid_utf8(draw: st.DrawFn) -> Line:
    """Invalid UTF-8 inside a JSON string (value, other value or key) of an otherwise valid object."""
    inside = draw(ASCII).encode() + draw(st.sampled_from(BAD_SEQUENCES)) + draw(ASCII).encode()
    where = draw(st.sampled_from(["text", "other", "key"]))
    if where == "text":
        data = b'{"text": "' + inside + b'"}'
    elif where == "other":
        data = b'{"text": "ok", "other": "' + inside + b'"}'
    else:
        data = b'{"' + inside + b'": 1, "text": "ok"}'
    return Line(data, reason=BAD_UTF8)


@st.composite
def lone_surrogates(draw: st.DrawFn) -> Line:
    """A \\uD800-\\uDFFF escape without its partner (or a reversed pair): orjson refuses it as malformed JSON."""
    high = draw(st.integers(0xD800, 0xDBFF))
    low = draw(st.integers(0xDC00, 0xDFFF))
    escape = draw(st.sampled_from([f"\\u{high:04x}", f"\\u{low:04X}", f"\\u{low:04x}\\u{high:04x}"]))
    inside = (draw(ASCII) + escape + draw(ASCII)).encode()
    where = draw(st.sampled_from(["text", "other"]))
    data = b'{"text": "' + inside + b'"}' if where == "text" else b'{"text": "ok", "o": "' + inside + b'"}'
    return Line(data, reason=MALFORMED)


@st.composite
def deeply_nested(draw: st.DrawFn) -> Line:
    """Thousands of levels: refused by the parser's depth limit, never a RecursionError or a crash."""
    n = draw(st.integers(2_000, 5_000))
    lists = b"[" * n + b"]" * n
    objects = b'{"a":' * n + b"1" + b"}" * n
    data = draw(
        st.sampled_from(
            [lists, objects, b'{"text": ' + lists + b"}", b'{"text": "x", "deep": ' + objects + b"}"],
        )
    )
    return Line(data, reason=MALFORMED)


non_objects = st.builds(
    lambda pad, body, end: Line(pad + body + end, reason=NOT_OBJECT),
    PAD,
    (SCALARS | st.lists(JSON_VALUES, max_size=3)).map(orjson.dumps)
    | st.integers(-(10**30), 10**30).map(lambda i: str(i).encode()),  # beyond 64 bits too
    PAD,
)
text_not_string = st.builds(
    lambda value, extra: Line(orjson.dumps({"text": value, **extra}), reason=NOT_STRING),
    JSON_VALUES.filter(lambda v: not isinstance(v, str)),
    st.dictionaries(KEYS, JSON_VALUES, max_size=2),
)
text_missing = st.dictionaries(KEYS, JSON_VALUES, max_size=4).map(lambda d: Line(orjson.dumps(d), reason=MISSING))
blank_lines = st.sampled_from([b"", b" ", b"\t", b"  \t ", b"\x0b", b"\x0c", b"\r"]).map(Line)

bad_lines = st.one_of(
    truncated_objects(),
    garbage,
    invalid_utf8(),
    lone_surrogates(),
    deeply_nested(),
    non_objects,
    text_not_string,
    text_missing,
)


@st.composite
def mixed_line(draw: st.DrawFn) -> Line:
    """About 40% good, 40% bad (eight kinds alike), 20% blank: a flat one_of would weigh each bad kind alone."""
    kind = draw(st.integers(0, 4))
    return draw(good_lines() if kind < 2 else bad_lines if kind < 4 else blank_lines)


mixed_line_lists = st.lists(mixed_line(), max_size=5) | st.lists(mixed_line(), min_size=10, max_size=40)


def join(lines: list[Line], crlf: bool, final_newline: bool) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    return end.join(line.data for line in lines) + (end if final_newline and lines else b"")


def expected_records(lines: list[Line]) -> list[tuple[int, str, bytes]]:
    """(line number, text, raw) of the good lines: raw is the line without its ending or trailing blanks."""
    return [(i, line.text, line.data.rstrip()) for i, line in enumerate(lines, 1) if line.text is not None]


def expected_counts(lines: list[Line]) -> Counter:
    return Counter(line.reason for line in lines if line.reason is not None)


def zstd_frame(data: bytes, checksum: bool = False) -> bytes:
    return zstandard.ZstdCompressor(level=1, write_checksum=checksum).compress(data)


def gzip_member(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def skippable_frame(payload: bytes) -> bytes:
    """A zstd skippable frame (what pzstd and the seekable format write): valid zstd, decodes to nothing."""
    return struct.pack("<II", 0x184D2A50, len(payload)) + payload


def in_frames(data: bytes, cuts: list[int], compress: Callable[[bytes], bytes]) -> list[bytes]:
    """`data` cut at `cuts` (empty parts allowed), each part compressed on its own."""
    bounds = [0, *sorted(cuts), len(data)]
    return [compress(data[a:b]) for a, b in pairwise(bounds)]


# --- 1. random bytes as a plain file --------------------------------------------------------------------------

TOKENS = [b"\n", b"\r\n", b"\r", b"\x00", b"{", b"}", b"[", b"]", b'"', b":", b",", b" ", b"\t", b"\x0c"]
TOKENS += [b'"text"', b'{"text": "a"}', b'{"text": 1}', b"null", b"1", b"\\u", b"\\ud800", b"\xff", b"\xed\xa0\x80"]
token_soup = st.lists(st.binary(max_size=12) | st.sampled_from(TOKENS), max_size=150).map(b"".join)
noisy_bytes = st.binary(max_size=4_000) | token_soup


def oracle_text(line: bytes) -> str | None:
    """The text a line must yield (JSONL with optional CR), or None when it must not yield a record."""
    try:
        obj = orjson.loads(line[:-1] if line.endswith(b"\r") else line)
    except orjson.JSONDecodeError:
        return None
    text = obj.get("text") if isinstance(obj, dict) else None
    return text if isinstance(text, str) else None


@fuzz(300)
@given(data=noisy_bytes)
def test_random_bytes_never_raise(workdir: Path, data: bytes) -> None:
    """Plain input of any bytes: no exception, no hang, and each line is either exactly one record or one skip."""
    from gotd_stream.io.datasets import is_arrow

    # those would be read as compressed streams (a zstd frame, a skippable frame, a gzip member), as Parquet or as
    # Arrow (`ARROW1`, or a stream's 0xFFFFFFFF and a length): the damaged-files properties below test those
    assume(not (data.startswith((GZIP_MAGIC, streams.PARQUET_MAGIC)) or streams._is_zstd(data)))
    path = put(workdir, data)
    assume(not is_arrow(str(path)))
    records, skips = read_all(path)
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a UTF-8 BOM opening the input is not part of it
    if lines[-1] == b"":
        lines.pop()
    expected = [(i, t) for i, line in enumerate(lines, 1) if (t := oracle_text(line)) is not None]
    assert [(r.lineno, r.text) for r in records] == expected
    assert all(isinstance(r.text, str) and r.source == 0 for r in records)
    assert set(skips.counts) <= REASONS
    assert len(records) + skips.total == sum(1 for line in lines if line and not line.isspace())


# --- 2. good and bad lines mixed, plain and compressed ---------------------------------------------------------


@fuzz(200)
@given(
    lines=mixed_line_lists,
    crlf=st.booleans(),
    final_newline=st.booleans(),
    checksum=st.booleans(),
    data=st.data(),
)
def test_mixed_lines_give_exactly_the_good_records(
    workdir: Path, lines: list[Line], crlf: bool, final_newline: bool, checksum: bool, data: st.DataObject
) -> None:
    """Exactly the good records, in order with their line numbers, and the exact count per skip reason:
    the same for plain, multi-frame zstd (with skippable frames between) and multi-member gzip."""
    stream = join(lines, crlf, final_newline)
    boundaries = [i + 1 for i, byte in enumerate(stream) if byte == 0x0A]
    cut = st.sampled_from(boundaries) | st.integers(0, len(stream)) if boundaries else st.integers(0, len(stream))
    cuts = data.draw(st.lists(cut, max_size=5), label="frame cuts")  # line boundaries, or inside lines
    zstd_parts = in_frames(stream, cuts, lambda part: zstd_frame(part, checksum))
    skippable = data.draw(st.lists(st.integers(0, len(zstd_parts)), max_size=2), label="skippable frames at")
    for index in sorted(skippable, reverse=True):  # the first position is covered by the test below
        zstd_parts.insert(index, skippable_frame(b"seek table"))
    variants = {
        "plain": stream,
        "zstd": b"".join(zstd_parts),
        "gzip": b"".join(in_frames(stream, cuts, gzip_member)),
    }
    for kind, payload in variants.items():
        records, skips = read_all(put(workdir, payload))
        assert [(r.lineno, r.text, r.raw) for r in records] == expected_records(lines), kind
        assert skips.counts == expected_counts(lines), kind


# --- 3. lines longer than the read chunk --------------------------------------------------------------------------


@fuzz(8)
@given(
    size=st.integers(CHUNK + 1, 3 * CHUNK),
    unit=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=3),
    lead=st.integers(0, 5_000),
    kind=st.sampled_from(["plain", "zstd", "gzip"]),
    crlf=st.booleans(),
)
def test_huge_line_between_two_records(workdir: Path, size: int, unit: str, lead: int, kind: str, crlf: bool) -> None:
    """A multi-MB record spans several chunks (at varying offsets, multi-byte characters cut by chunk ends)."""
    huge = (unit * (size // len(unit) + 1))[:size]
    texts = ["a" * lead, huge, "last"]
    stream = join([Line(orjson.dumps({"text": t})) for t in texts], crlf, final_newline=False)
    payload = {"plain": stream, "zstd": zstd_frame(stream), "gzip": gzip_member(stream)}[kind]
    records, skips = read_all(put(workdir, payload))
    assert [r.lineno for r in records] == [1, 2, 3] and len(records[1].raw) > CHUNK
    # booleans, not strings: a failing comparison of megabyte strings would make pytest diff them for minutes
    assert [r.text == t for r, t in zip(records, texts, strict=True)] == [True] * 3
    assert records[1].raw == orjson.dumps({"text": huge}), "raw bytes of the huge line changed"
    assert skips.total == 0


# --- 4. damaged compressed streams --------------------------------------------------------------------------------

KINDS: dict[str, tuple[bytes, Callable[[bytes], bytes]]] = {
    "zstd": (ZSTD_MAGIC, zstd_frame),
    "zstd+checksum": (ZSTD_MAGIC, lambda data: zstd_frame(data, checksum=True)),
    "gzip": (GZIP_MAGIC, gzip_member),
}
CHECKSUMMED = {"zstd+checksum", "gzip"}  # gzip members always carry a CRC32 of their data


@st.composite
def framed_jsonl(draw: st.DrawFn) -> tuple[str, list[str], list[bytes], list[int]]:
    """(kind, texts, frames, lines per frame): good JSONL split at random line boundaries into frames."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    texts = draw(st.lists(SAFE_TEXT, min_size=1, max_size=20))
    lines = [orjson.dumps({"text": t, "n": i}) + b"\n" for i, t in enumerate(texts)]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(lines)), max_size=4))) | {len(lines)})
    bounds = [0, *cuts]
    compress = KINDS[kind][1]
    frames = [compress(b"".join(lines[a:b])) for a, b in pairwise(bounds)]
    return kind, texts, frames, [b - a for a, b in pairwise(bounds)]


@fuzz(150)
@given(framed=framed_jsonl(), data=st.data())
def test_truncated_stream_fails_with_file_name_or_yields_whole_frames(
    workdir: Path, framed: tuple[str, list[str], list[bytes], list[int]], data: st.DataObject
) -> None:
    """Cut strictly inside: CorruptInput naming the file, unless the cut is exactly a frame end (then the records
    of the complete frames). Never another exception, never more records than written."""
    kind, texts, frames, sizes = framed
    blob = b"".join(frames)
    complete: dict[int, int] = {}  # byte offset of each frame end inside the blob -> records before it
    offset = records_before = 0
    for frame, size in zip(frames, sizes, strict=True):  # the last end is the whole blob: never a cut
        offset, records_before = offset + len(frame), records_before + size
        complete[offset] = records_before
    near_ends = [i for end in complete for i in (end - 1, end, end + 1) if 0 < i < len(blob)]
    cut_at = st.integers(1, len(blob) - 1)
    cut = data.draw(st.sampled_from(near_ends) | cut_at if near_ends else cut_at, label="cut")
    path = put(workdir, blob[:cut])
    records, error = read_until_error(path)
    got = [r.text for r in records]
    assert len(got) <= len(texts) and got == texts[: len(got)]
    magic = KINDS[kind][0]
    if cut < len(magic):  # too short to be recognised: read as one plain (unparseable) line
        assert error is None and got == []
    elif cut in complete:
        assert error is None and got == texts[: complete[cut]]
    else:
        assert error is not None, f"{kind} cut at {cut} of {len(blob)} not detected"
        assert str(path) in str(error) and kind.split("+")[0] in str(error)


@fuzz(150)
@given(framed=framed_jsonl(), data=st.data())
def test_flipped_bytes_fail_cleanly_or_decode(
    workdir: Path, framed: tuple[str, list[str], list[bytes], list[int]], data: st.DataObject
) -> None:
    """Flipped bytes: CorruptInput naming the file, or records that parse. With a checksum (zstd+checksum, gzip's
    CRC32) a damaged stream either fails or decodes to exactly what was written: never silently other records."""
    kind, texts, frames, _ = framed
    blob = bytearray(b"".join(frames))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)), min_size=1, max_size=3),
        label="flips (offset, xor)",
    )
    for offset, mask in flips:
        blob[offset] ^= mask
    path = put(workdir, bytes(blob))
    records, error = read_until_error(path)
    assert all(isinstance(r.text, str) for r in records)
    if error is not None:
        assert str(path) in str(error)
    magic_intact = bytes(blob).startswith(KINDS[kind][0])  # else it is (rightly) read as plain text
    if kind in CHECKSUMMED and magic_intact and error is None:
        assert [r.text for r in records] == texts, f"{kind}: damage not detected and records changed"


def test_zstd_starting_with_skippable_frame(workdir: Path) -> None:
    """pzstd (and the seekable format) open a valid .zst with a skippable frame; `zstd -d` reads it fine."""
    lines = b"".join(orjson.dumps({"text": f"doc {i}"}) + b"\n" for i in range(3))
    records, skips = read_all(put(workdir, skippable_frame(b"\x00" * 4) + zstd_frame(lines)))
    assert [r.text for r in records] == ["doc 0", "doc 1", "doc 2"] and skips.total == 0


# --- 5. end to end through the CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fitted once for the module: the properties below only score."""
    folder = tmp_path_factory.mktemp("fuzz-fit")
    pool = write_jsonl(folder / "pool.jsonl", make_docs(60, seed=1))
    target = write_jsonl(folder / "target.jsonl", [d for d in make_docs(30, seed=2) if d["topic"] == "cooking"])
    out = folder / "task.gotd"
    args = ["fit", "--target", target, pool, "--model", tiny_model, "--sample-size", 50, "-o", out, "-q"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


def with_id(line: Line, i: int) -> Line:
    """A good line re-serialised with a unique "id", so the selection can be matched to its input.

    A text without a word (empty, spaces, only symbols) is skipped as "no words".
    """
    if line.text is None:
        return line
    data = orjson.dumps({**orjson.loads(line.data), "id": i})
    return Line(data, reason=NO_WORDS) if wordless(line.text) is not None else Line(data, text=line.text)


@fuzz(8)
@given(
    lines=st.lists(mixed_line(), min_size=2, max_size=16),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    kind=st.sampled_from(["plain", "zstd", "gzip"]),
)
def test_cli_score_selects_exactly_the_good_records(
    workdir: Path, artifact: Path, tiny_model: str, lines: list[Line], crlf: bool, final_newline: bool, kind: str
) -> None:
    """`score -k 1000` on a mix: exit 0 (1 when no record is usable), no traceback, every good record (fields
    intact), the exact skip summary."""
    lines = [with_id(line, i) for i, line in enumerate(lines)]
    stream = join(lines, crlf, final_newline)
    payload = {"plain": stream, "zstd": zstd_frame(stream), "gzip": gzip_member(stream)}[kind]
    path = put(workdir, payload, "input.jsonl")
    args = ["score", "-p", artifact, "-k", 1000, "--model", tiny_model, "--dedup", "off", path]  # copies: all kept
    with no_hang(120):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    by_id = {obj["id"]: obj for obj in (orjson.loads(line.data) for line in lines if line.text is not None)}
    assert "Traceback" not in result.stderr
    if not by_id:  # records read, none usable: a failure a cron job notices, with no output
        assert result.exit_code == 1 and "no usable record" in result.stderr and not result.stdout_bytes
        return
    assert result.exit_code == 0, result.stderr
    rows = [orjson.loads(row) for row in result.stdout_bytes.splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(by_id)  # each good record once, nothing else
    for row in rows:  # every original field intact, only gotd_score and gotd_fit added
        assert {k: v for k, v in row.items() if k not in ("gotd_score", "gotd_fit")} == by_id[row["id"]]
    scores = [row["gotd_score"] for row in rows]
    assert scores == sorted(scores)
    counts = expected_counts(lines)
    skipped = sum(counts.values())
    detail = f" ({', '.join(f'{reason}: {n:,}' for reason, n in sorted(counts.items()))})" if counts else ""
    good = len(by_id)
    summary = f"score: read {good + skipped:,} records, scored {good:,}, skipped {skipped:,}{detail}, selected {good:,}"
    assert summary in result.stderr, result.stderr


# --- 6. damaged artifacts -----------------------------------------------------------------------------------------

DAMAGED = "damaged or incompatible artifact"


def fit_small(folder: Path, *args: str) -> Path:
    """An artifact fitted by the CLI with 256 hashed buckets (not 32,768): a file of 270 kB, not 33 MB."""
    pool = write_jsonl(folder / "pool.jsonl", make_docs(60, seed=1))
    target = write_jsonl(folder / "target.jsonl", [d for d in make_docs(30, seed=2) if d["topic"] == "cooking"])
    out = folder / "task.gotd"
    args = ["fit", *args, "--target", target, pool, "--sample-size", 50, "-o", out, "-q"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gotd_stream.select.fit.LEXICAL_BUCKETS", 256)
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def small_artifacts(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lexical artifact (features header, lexical arrays) and a hybrid one (model settings too)."""
    return {
        "lexical": fit_small(tmp_path_factory.mktemp("fuzz-lexical"), "--features", "lexical"),
        "hybrid": fit_small(tmp_path_factory.mktemp("fuzz-hybrid"), "--features", "hybrid", "--model", tiny_model),
    }


def as_version_2(data: bytes) -> bytes:
    """The same artifact as gotd-stream 0.x wrote it: format version 2, no checksum."""
    from safetensors.numpy import load, save

    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(json.loads(data[8 : 8 + size])["__metadata__"]["gotd_stream"])
    del header["checksum"]
    return save(load(data), metadata={"gotd_stream": json.dumps(dict(header, format_version=2), sort_keys=True)})


def scores_of(pot, probe) -> np.ndarray:
    return pot.scorer()(probe)


@pytest.mark.parametrize("which", ["lexical", "hybrid", "lexical v2", "hybrid v2"])
def test_flipped_artifact_bytes_are_refused_or_change_nothing(
    workdir: Path, small_artifacts: dict[str, Path], which: str
) -> None:
    """Flip 1-4 random bytes of a real artifact, again and again (seeded): loading it raises ArtifactError with
    the one message, or gives exactly the original fit id and scores; never another exception, and `info` never
    a traceback. A version-2 file has no checksum: there the property is only "ArtifactError or a load"."""
    import random

    from gotd_stream.select.artifact import ArtifactError, load

    data = small_artifacts[which.split()[0]].read_bytes()
    checked = not which.endswith("v2")
    if not checked:
        data = as_version_2(data)
    original = load(str(put(workdir, data, "original.gotd")))
    rng = random.Random(f"artifact {which}")
    probe = np.random.default_rng(0).standard_normal((8, original.target.shape[1])).astype(np.float32)
    probe = np.concatenate([original.target, probe / np.linalg.norm(probe, axis=1, keepdims=True)])
    expected = scores_of(original, probe)
    header_end = 8 + struct.unpack("<Q", data[:8])[0]  # half the flips land in the headers, a small part of the file
    outcomes: Counter = Counter()
    for i in range(400 * SCALE):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            offset = rng.randrange(header_end) if rng.random() < 0.5 else rng.randrange(len(data))
            damaged[offset] ^= rng.randint(1, 255)
        path = put(workdir, bytes(damaged), "damaged.gotd")
        try:
            pot = load(str(path))
        except ArtifactError as exc:
            assert str(exc).startswith(f"{path}: {DAMAGED} ("), str(exc)
            outcomes["refused"] += 1
        else:
            if checked:
                assert pot.fit_id == original.fit_id, f"flip {i}: loaded with another fit id"
                assert np.array_equal(scores_of(pot, probe), expected), f"flip {i}: loaded with other scores"
            outcomes["loaded"] += 1
        if i % 40 == 0:  # the command as a user runs it: exit 1 with the message, or 0 with the same id
            result = CliRunner().invoke(cli, ["info", str(path)], catch_exceptions=False)
            assert result.exit_code in (0, 1) and "Traceback" not in result.stderr
            if result.exit_code == 1:
                assert DAMAGED in result.stderr
            elif checked:
                assert f"fit id:          {original.fit_id}" in result.stdout
    assert outcomes["refused"] > (outcomes["loaded"] if checked else 0), outcomes


# --- 7. output paths: never a traceback, never an input damaged ----------------------------------------------------


def can_mknod(folder: Path) -> bool:
    """Whether device nodes can be made here (root): /dev/null is stood in for by a node of our own."""
    try:
        os.mknod(folder / "probe", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (OSError, AttributeError):
        return False
    (folder / "probe").unlink()
    return True


SOURCES = {"pool": "pool.jsonl", "target": "target.jsonl", "artifact": "task.gotd", "scored": "scored.jsonl"}
LEX = ["--features", "lexical", "--sample-size", "30"]
OUTPUT_COMMANDS: dict[str, tuple[set[str], Callable[[str, str], list[str]]]] = {  # name -> (what it reads, args)
    "fit": ({"pool", "target"}, lambda out, _: ["fit", "--target", "target.jsonl", "pool.jsonl", *LEX, "-o", out]),
    "score -p": (
        {"pool", "artifact"},
        lambda out, _: ["score", "-p", "task.gotd", "-k", "3", "--dedup", "off", "pool.jsonl", "-o", out],
    ),
    "score --target": (
        {"pool", "target"},
        lambda out, saved: [
            *["score", "--target", "target.jsonl", *LEX, "-k", "3", "pool.jsonl", "-o", out],
            *["--save-potentials", saved],
        ],
    ),
    "merge": ({"scored"}, lambda out, _: ["merge", "-k", "3", "scored.jsonl", "-o", out]),
    "embed": ({"pool", "artifact"}, lambda out, _: ["embed", "-p", "task.gotd", "pool.jsonl", "-o", out]),
}
# what is at the output path; the names of SOURCES (and links to the pool) are the files the commands read
PATH_KINDS = ["new", "existing", "private", "symlink", "dangling", "fifo", "chardev", "missing folder", "stdout"]
LINKED = {"symlink to pool": "pool", "hard link to pool": "pool"}
PATH_KINDS += [*SOURCES, *LINKED]


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run in `folder` (contextlib.chdir is Python 3.11+)."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@dataclass(frozen=True)
class Sources:
    """A pool, a target, a lexical artifact and a selection, made once; each example gets its own copies."""

    folder: Path
    digests: dict[str, str]  # file name -> sha256 of its bytes

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example: keep it short
        return f"Sources({self.folder})"

    def copy_to(self, folder: Path) -> None:
        for file in self.digests:  # the 34 MB artifact is linked, not copied: an output is renamed over, never into
            (os.link if file == SOURCES["artifact"] else shutil.copyfile)(self.folder / file, folder / file)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    folder = tmp_path_factory.mktemp("output-sources")
    write_jsonl(folder / "pool.jsonl", make_docs(40, seed=1))
    write_jsonl(folder / "target.jsonl", [d for d in make_docs(30, seed=2) if d["topic"] == "cooking"])
    runner = CliRunner()
    with inside(folder):
        for args in (OUTPUT_COMMANDS["fit"][1]("task.gotd", ""), OUTPUT_COMMANDS["score -p"][1]("scored.jsonl", "")):
            assert runner.invoke(cli, [*args, "-q"], catch_exceptions=False).exit_code == 0
    return Sources(folder, {file: sha256(folder / file) for file in SOURCES.values()})


def make_output(folder: Path, kind: str, name: str) -> str:
    """Put a `kind` of thing at a fresh path named after `name`; the path to give as the output."""
    path = folder / name
    if kind in SOURCES:
        return SOURCES[kind]
    if kind == "stdout":
        return "-"
    if kind == "missing folder":
        return f"missing/{name}"
    if kind in ("existing", "private"):
        path.write_bytes(b"old\n")
        path.chmod(0o600 if kind == "private" else 0o644)
    elif kind in ("symlink", "dangling", "symlink to pool"):
        real = {"symlink": f"{name}.real", "dangling": f"{name}.made", "symlink to pool": "pool.jsonl"}[kind]
        if kind == "symlink":
            (folder / real).write_bytes(b"old\n")
        path.symlink_to(real)
    elif kind == "hard link to pool":
        os.link(folder / "pool.jsonl", path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return name


class FifoReader:
    """Drains a FIFO in a thread; released with an empty write if the command never opened it."""

    def __init__(self, path: Path):
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as fh:
            self.data = fh.read()

    def finish(self) -> bytes:
        for _ in range(300):  # until the reader is gone: it may not have reached its open() yet
            with contextlib.suppress(OSError):  # ENXIO: no reader has the FIFO open right now
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join(timeout=0.1)
            if not self.thread.is_alive():
                return self.data
        raise Hang(f"the reader of {self.path} never finished")


def expected_refusal(reads: set[str], kinds: dict[str, str]) -> str | None:
    """The message fragment of the usage error an output setting must give, or None when it must succeed."""
    for kind in kinds.values():
        if LINKED.get(kind, kind) in reads:
            return "is the same file as"
        if kind == "missing folder":
            return "does not exist"
    files = {LINKED.get(k, k) for k in kinds.values()}  # the other kinds are fresh paths per flag
    if len(kinds) == 2 and len(files) == 1 and files <= {*SOURCES, "stdout"}:
        return "are the same file"
    return None


@fuzz(20)
@given(command=st.sampled_from(sorted(OUTPUT_COMMANDS)), kind=st.sampled_from(PATH_KINDS), data=st.data())
def test_output_paths_never_damage_inputs(
    workdir: Path, sources: Sources, command: str, kind: str, data: st.DataObject
) -> None:
    """Any command, any thing at -o (and --save-potentials): exit 0 with the output where it belongs and what was
    at the path still what it was, or exit 2 naming the flag; never a traceback, never an input changed."""
    reads, make_args = OUTPUT_COMMANDS[command]
    kinds = {"-o": kind}
    if command == "score --target":
        kinds["--save-potentials"] = data.draw(st.sampled_from(PATH_KINDS), label="--save-potentials")
    folder = Path(tempfile.mkdtemp(dir=workdir))
    if "chardev" in kinds.values() and not can_mknod(folder):
        kinds = {flag: "new" if k == "chardev" else k for flag, k in kinds.items()}
    sources.copy_to(folder)
    paths = {flag: make_output(folder, k, f"out{flag}") for flag, k in kinds.items()}
    readers = {flag: FifoReader(folder / paths[flag]) for flag, k in kinds.items() if k == "fifo"}
    try:
        with inside(folder), no_hang(120):
            result = CliRunner().invoke(cli, [*make_args(paths["-o"], paths.get("--save-potentials", "")), "-q"])
    finally:
        fifo_data = {flag: reader.finish() for flag, reader in readers.items()}
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    # a file the command does not read may be an output (through a symlink too)
    written = {Path(os.path.realpath(folder / paths[flag])).name for flag in kinds}
    for name, file in SOURCES.items():
        assert name not in reads and file in written or sha256(folder / file) == sources.digests[file], file
    assert not list(folder.glob(".*.tmp")), "a temporary file was left behind"
    refusal = expected_refusal(reads, kinds)
    if refusal is not None:
        assert result.exit_code == 2, (result.exit_code, result.stderr)
        assert refusal in result.stderr and any(flag in result.stderr for flag in kinds)
        shutil.rmtree(folder)
        return
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    for flag, k in kinds.items():
        path = folder / paths[flag]
        mode = path.lstat().st_mode if k != "stdout" else 0
        if k == "stdout":
            assert result.stdout_bytes
        elif k == "fifo":
            assert stat.S_ISFIFO(mode) and fifo_data[flag]
        elif k == "chardev":
            assert stat.S_ISCHR(mode)
        elif k in ("symlink", "dangling", "symlink to pool"):
            assert stat.S_ISLNK(mode) and path.stat().st_size > 0 and path.read_bytes() != b"old\n"
        else:
            assert stat.S_ISREG(mode) and path.read_bytes() != b"old\n" and path.stat().st_size > 0
            assert stat.S_IMODE(mode) == (0o600 if k == "private" else 0o666 & ~current_umask())
    shutil.rmtree(folder)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- pieces: odd file names, spellings of one shard, byte-level BPE (issue 25) ---------------------------------


@pytest.fixture(scope="module")
def lexical_pool(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A shard of plain records and a lexical artifact fitted on it (no model: fast examples)."""
    folder = tmp_path_factory.mktemp("pieces-fuzz")
    docs = make_docs(60, seed=5)
    for i, doc in enumerate(docs):
        doc["text"] = " ".join([doc["text"]] * (1 + i % 6))  # some records longer than a piece
    shard = write_jsonl(folder / "s0.jsonl", docs)
    art = folder / "lex.gotd"
    result = CliRunner().invoke(
        cli, ["fit", "--features", "lexical", "--target", str(shard), str(shard), "-o", str(art), "-q"]
    )
    assert result.exit_code == 0, result.stderr
    return {"dir": folder, "shard": shard, "art": art}


PIECES = ["--tokens", "400", "--tokenizer", "estimate", "--chunk-tokens", "12", "--select", "sample", "-q"]
SOURCE_VALUE = re.compile(rb'"gotd_source":"(?:[^"\\]|\\.)*"')


@fuzz(15)
@given(
    name=st.binary(min_size=1, max_size=12).filter(
        lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
    )
)
def test_any_file_name_bytes_score_into_pieces_and_a_state(lexical_pool: dict, name: bytes) -> None:
    folder = Path(tempfile.mkdtemp(dir=lexical_pool["dir"]))
    path = folder / os.fsdecode(name)
    shutil.copy(lexical_pool["shard"], path)
    args = ["score", "-p", str(lexical_pool["art"]), *PIECES, str(path)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and "Traceback" not in first.stderr, first.stderr
    state = CliRunner().invoke(cli, [*args, "--state", str(folder / "st")])
    assert state.exit_code == 0 and state.stdout_bytes == first.stdout_bytes, state.stderr
    expected = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    sources = {json.loads(line)["gotd_source"].rsplit(":", 1)[0] for line in first.stdout_bytes.splitlines()}
    assert sources == {expected}
    shutil.rmtree(folder)


@fuzz(12)
@given(spelling=st.sampled_from(["plain", "dot", "abs", "symlink", "copy", "dotdot"]), sub=st.integers(0, 3))
def test_every_spelling_of_one_shard_draws_the_same_pieces(lexical_pool: dict, spelling: str, sub: int) -> None:
    base = lexical_pool["dir"]
    where = base / f"mount-{sub}"
    where.mkdir(exist_ok=True)
    if not (where / "s0.jsonl").exists():
        shutil.copy(lexical_pool["shard"], where / "s0.jsonl")
    link = base / f"link-{sub}.jsonl"
    if not link.is_symlink():
        link.symlink_to(lexical_pool["shard"])
    path = {
        "plain": "s0.jsonl",
        "dot": "./s0.jsonl",
        "abs": str(lexical_pool["shard"]),
        "symlink": link.name,
        "copy": f"mount-{sub}/s0.jsonl",
        "dotdot": f"mount-{sub}/../s0.jsonl",
    }[spelling]

    def selection(p: str) -> list[bytes]:
        with inside(base):
            result = CliRunner().invoke(cli, ["score", "-p", str(lexical_pool["art"]), *PIECES, p])
        assert result.exit_code == 0, result.stderr
        return [SOURCE_VALUE.sub(b'"gotd_source":""', line) for line in result.stdout_bytes.splitlines()]

    assert selection(path) == selection("s0.jsonl")


@pytest.fixture(scope="module")
def byte_bpe(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny byte-level BPE (a tokenizer.json) trained on code, tabs, CJK and URLs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    lines = [
        "\tdef f(x):\n\t\treturn x  # note",
        "    if a:\n        b = [i for i in c]",
        "東京は日本の首都です。",
        "https://example.com/a/b?q=1&r=2",
        "the striker scored in the final minute",
    ] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(lines, trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


PIECE_TEXT = st.lists(
    st.sampled_from(
        [
            "\t",
            "\t\t\t",
            "    ",
            "\n",
            " ",
            "x",
            "return",
            "東京は日本の首都です",
            "https://example.com/" + "ab" * 30,
            "=",
            "(a, b)",
            "#",
            "😀",
            "é",
        ]
    ),
    min_size=1,
    max_size=80,
).map("".join)


@fuzz(60)
@given(text=PIECE_TEXT, size=st.integers(8, 40))
def test_bpe_pieces_never_hold_more_than_their_size(byte_bpe: str, text: str, size: int) -> None:
    import gotd_stream as gs

    counter = gs.token_counter(byte_bpe)
    pieces = chunk_spans(text, size, counter)
    if not text.strip():
        assert pieces in ([], [(0, len(text))])
        return
    counts = counter.count([text[a:b] for a, b in pieces])
    assert int(counts.max()) <= size, (pieces, counts)
    assert all(a[1] <= b[0] for a, b in pairwise(pieces))
    covered = set()
    for a, b in pieces:
        covered.update(range(a, b))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


# --- surfaces (issue 25): `$`-strings in the report's plots, every Arrow type in Parquet ---------------------------

MATHTEXT = st.text(alphabet="$\\^_{}()frac ab1<>&\"'", min_size=1, max_size=30)
USER_STRING = st.one_of(MATHTEXT, st.text(min_size=1, max_size=30), st.just(r"$\frac{1$"), st.just("$5 and $10"))


@pytest.fixture(scope="module")
def report_base(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A two-target lexical artifact, a quota selection and its report.json (a pool sample, a group field)."""
    from tests.conftest import run

    folder = tmp_path_factory.mktemp("fuzz-report")
    docs = sourced_docs(60, seed=1)
    pool = write_jsonl(folder / "pool.jsonl", docs)
    cook = write_jsonl(folder / "cook.jsonl", make_docs(12, seed=2, topics=("cooking",)))
    foot = write_jsonl(folder / "foot.jsonl", make_docs(12, seed=3, topics=("football",)))
    mix, selected = folder / "mix.gotd", folder / "selected.jsonl"
    specs = ["--target", f"cook={cook}:0.5", "--target", f"foot={foot}:0.5"]
    run(["fit", "--features", "lexical", "--sample-size", 60, *specs, pool, "-o", mix, "-q"])
    run(["score", "-p", mix, "-k", 10, pool, "-o", selected, "-q"])
    made = run(["report", "-p", mix, selected, "--pool", pool, "--group-field", "src", "--json", "-q"])
    return json.loads(made.stdout)


@fuzz(8)
@given(groups=st.lists(USER_STRING, min_size=1, max_size=4, unique=True), names=st.tuples(USER_STRING, USER_STRING))
def test_report_draws_any_group_value_and_target_name_as_plain_text(report_base: dict, groups, names) -> None:
    """Whatever a group value or a target name holds, the page is made, every plot text is plain (never mathtext
    nor TeX) and shows the very string, and the HTML holds it escaped."""
    import copy
    from html.parser import HTMLParser

    from matplotlib.text import Text

    from gotd_stream.report import html

    assume(names[0] != names[1])
    report = copy.deepcopy(report_base)
    renamed = dict(zip(("cook", "foot"), names, strict=True))
    for entry in report["ot"]["targets"] + report["artifact"]["targets"] + report["scores"] + report["examples"]:
        key = "view" if "view" in entry else "name"
        entry[key] = renamed.get(entry[key], entry[key])
    report["counted"] = {renamed[k]: v for k, v in report["counted"].items()}
    rows = report["composition"]["rows"]
    for row, value in zip(rows, groups, strict=False):
        row["value"] = value
    figures = []
    with pytest.MonkeyPatch.context() as patch:
        png = html._png
        patch.setattr(html, "_png", lambda figure: figures.append(figure) or png(figure))
        patch.setattr(html, "plot_lengths", lambda report: "")  # no user string there; keeps the example quick
        page = html.render_html(report)
    drawn = [text for figure in figures for text in figure.findobj(Text) if text.get_text()]
    assert all(not text.get_parse_math() and not text.get_usetex() for text in drawn)
    shown = {text.get_text() for text in drawn}
    assert {row["value"][:40] for row in rows} <= shown and set(names) <= shown

    class Text_(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts = []

        def handle_data(self, data):
            self.parts.append(data)

    parser = Text_()
    parser.feed(page)
    text = "".join(parser.parts)
    assert all(name in text for name in names) and all(row["value"] in text for row in rows)


ARROW_ZONES = [None, "UTC", "Europe/Paris", "America/St_Johns", "+05:45", "-11:00", "Asia/Kolkata"]
NS_RANGE = st.integers(-(2**63) + 1, 2**63 - 1)


def civil_days(text: str) -> int:
    """Days since 1970-01-01 of an ISO date of any year (signed past 9999), by Python's datetime and 400-year cycles."""
    import datetime

    sign = -1 if text[0] == "-" else 1
    year_text, month, day = text.lstrip("+-").split("-")
    year = sign * int(year_text)
    cycles = (year - 2000) // 400
    moved = datetime.date(year - 400 * cycles, int(month), int(day))
    return (moved - datetime.date(1970, 1, 1)).days + cycles * 146_097


def instant_ns(text: str) -> int:
    """Nanoseconds since the epoch (UTC) of the ISO timestamp the Parquet reader writes, parsed here."""
    import re

    match = re.fullmatch(
        r"([+-]?\d{4,}-\d\d-\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{6}|\d{9}))?([+-]\d\d:\d\d(?::\d\d)?)?", text
    )
    assert match is not None, text
    date, hours, minutes, seconds, fraction, offset = match.groups()
    value = ((civil_days(date) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds)
    if offset:
        sign = -1 if offset[0] == "-" else 1
        value -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60 + int(offset[7:9] or 0))
    return value * 10**9 + (int(fraction.ljust(9, "0")) if fraction else 0)


@fuzz(40)
@given(
    size=st.integers(1, 12),
    zone=st.sampled_from(ARROW_ZONES),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    days=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=12, max_size=12),
    durations=st.lists(NS_RANGE, min_size=12, max_size=12),
    data=st.data(),
)
def test_parquet_keeps_every_row_whatever_its_arrow_types(size, zone, unit, days, durations, data) -> None:
    """Timestamps of any unit and zone over their whole range, dates over int32, times, durations, decimals,
    binary, nested and dictionary-encoded columns: every row is a record, the JSON is strict, and every value reads
    back to what the file holds (issue 25: nanosecond timestamps skipped 299 rows of 300)."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = size
    scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    bound = (2**63 - 1) // 1000 if unit == "s" else 2**63 - 1  # Parquet stores seconds as milliseconds
    stamps = data.draw(st.lists(st.one_of(st.none(), st.integers(-bound, bound)), min_size=n, max_size=n), label="at")
    times = data.draw(st.lists(st.integers(0, 86_400 * 10**9 - 1), min_size=n, max_size=n), label="times")
    digits = data.draw(st.lists(st.integers(-(10**17) + 1, 10**17 - 1), min_size=n, max_size=n), label="decimals")
    blobs = data.draw(st.lists(st.binary(max_size=12), min_size=n, max_size=n), label="binary")
    table = pa.table(
        {
            "text": [f"cooking row {i}" for i in range(n)],
            "at": pa.array(stamps, pa.timestamp(unit, zone)),
            "day": pa.array(days[:n], pa.date32()),
            "clock": pa.array(times, pa.time64("ns")),
            "took": pa.array(durations[:n], pa.duration(unit)),
            "price": pa.array([decimal.Decimal(d).scaleb(-4) for d in digits], pa.decimal128(21, 4)),
            "blob": pa.array(blobs, pa.binary()),
            "many": pa.array([[s, None] for s in stamps], pa.list_(pa.timestamp(unit, zone))),
            "pair": pa.array(
                [{"at": s, "n": i} for i, s in enumerate(stamps)],
                pa.struct([("at", pa.timestamp(unit)), ("n", pa.int8())]),
            ),
            "kind": pa.array([["a", "b", "c"][i % 3] for i in range(n)]).dictionary_encode(),
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "types.parquet")
        pq.write_table(table, path, row_group_size=5)
        skips = Skips()
        records = list(read_records([path], "text", skips))
    assert skips.total == 0 and [r.lineno for r in records] == list(range(1, n + 1))
    for i, record in enumerate(records):
        strict = {"parse_float": decimal.Decimal, "parse_constant": lambda name: pytest.fail(f"not strict: {name}")}
        row = json.loads(record.raw, **strict)  # numbers exact, as the file writes them
        assert record.text == row["text"] == f"cooking row {i}"
        expected = None if stamps[i] is None else stamps[i] * scale
        assert (None if row["at"] is None else instant_ns(row["at"])) == expected
        assert (row["at"] is None or zone is None) or "+" in row["at"][19:] or "-" in row["at"][19:]
        assert row["many"] == [row["at"], None]
        assert (None if row["pair"]["at"] is None else instant_ns(row["pair"]["at"])) == expected
        assert civil_days(row["day"]) == days[i]
        assert instant_ns("1970-01-01T" + row["clock"]) == times[i]
        assert decimal.Decimal(row["took"]) * 10**9 == durations[i] * scale
        assert decimal.Decimal(row["price"]) == decimal.Decimal(digits[i]).scaleb(-4)
        assert __import__("base64").b64decode(row["blob"]) == blobs[i] and row["kind"] == "abc"[i % 3]

"""Property-based fuzzing of the input path: bytes -> lines -> records, plain or compressed, up to the CLI.

Why: a ten-hour job must never die on one bad line or a damaged shard with anything but a clear message, and
it must never silently drop, invent or reorder good records. Each property states its example count
(`fuzz(n)`); the whole file is meant to stay well under a minute on two CPU cores.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import string
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
import zstandard
from click.testing import CliRunner

from gotd_stream.cli import cli
from gotd_stream.records import NO_WORDS, Record, Skips, read_records, wordless
from gotd_stream.streams import CHUNK, GZIP_MAGIC, ZSTD_MAGIC, CorruptInput
from tests.conftest import make_docs, write_jsonl

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


# Heads after which no suffix makes valid JSON: the reason depends only on whether the line is UTF-8.
GARBAGE_HEADS = [b"}", b"]", b",", b":", b"'", b"\x00", b"NaN", b"{,", b"\xef\xbb\xbf", b"\x1e"]
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
    assume(not data.startswith((ZSTD_MAGIC, GZIP_MAGIC)))  # those would be read as compressed streams
    records, skips = read_all(put(workdir, data))
    lines = data.split(b"\n")
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
    """`score -k 1000` on a mix: exit 0, no traceback, every good record (fields intact), the exact skip summary."""
    lines = [with_id(line, i) for i, line in enumerate(lines)]
    stream = join(lines, crlf, final_newline)
    payload = {"plain": stream, "zstd": zstd_frame(stream), "gzip": gzip_member(stream)}[kind]
    path = put(workdir, payload, "input.jsonl")
    args = ["score", "-p", artifact, "-k", 1000, "--model", tiny_model, path]
    with no_hang(120):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    by_id = {obj["id"]: obj for obj in (orjson.loads(line.data) for line in lines if line.text is not None)}
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

"""JSONL records: parse lines, keep their original bytes, count and report what had to be skipped.

A record keeps the exact bytes it came in with, so that what we write out is what was read. A bad line in
a ten-hour job is counted, reported with its file and line number, and skipped; `--strict` makes it fatal.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from gotd_stream.errors import RuntimeProblem, setting
from gotd_stream.io.datasets import arrow_rows, expand_inputs, is_arrow
from gotd_stream.io.jsonbytes import loads
from gotd_stream.io.parquet import is_parquet, parquet_rows
from gotd_stream.io.streams import display_name, read_lines
from gotd_stream.io.vectors import WRONG_WIDTH, VectorField, missing, vector_text, vector_width
from gotd_stream.text import wordless

log = logging.getLogger(__name__)

NO_WORDS = "no words"  # the skip reason of a text without a word: see text.wordless()
SHORT = "too short"  # a unit under score's --min-tokens (select.units): a rule's choice, not a bad record
RULES = frozenset({SHORT})  # reasons counted and shown, but not bad: --strict and --max-skipped ignore them

# What `score` appends to each selected line; recognised (and stripped) when a selection is read again.
# `score` writes gotd_score, then gotd_tokens when tokens were counted and gotd_select when the rule was not the
# plain top scores, then gotd_guard when the duplicate guard chose the selection (its tag, select.dedup.Guard),
# then gotd_fit, always in this order and always last.
_GUARD = rb'(?:,"gotd_guard":"([a-z0-9.:=eE+-]+)")?'
_SUFFIX = re.compile(
    rb',"gotd_score":(-?[0-9][0-9.eE+-]*)(?:,"gotd_tokens":([0-9]+))?(?:,"gotd_select":"([a-z0-9.:=eE+-]+)")?'
    + _GUARD
    + rb',"gotd_fit":"([0-9a-f]+)"\}$'
)
_SUFFIX_MAX = 256  # longer than any suffix we write: only the tail of a line is searched


def _find_suffix(line: bytes) -> re.Match | None:
    """Our appended fields at the end of `line`, looking only at its tail (lines can be megabytes)."""
    if not line.endswith(b'"}'):
        return None
    return _SUFFIX.search(line, max(0, len(line) - _SUFFIX_MAX))


# What `score` appends with several targets: every target's score, then, in a quota selection, the target the
# line counts for and its score there; in a sum selection the weighted sum; in quota candidates neither.
_NAME = rb"[A-Za-z0-9_.-]{1,64}"  # select/targets.py's NAME_PATTERN
_NUMBER = rb"-?[0-9][0-9.eE+-]*"
_TARGET = rb'(?:,"gotd_target":"(' + _NAME + rb')")?'
_VALUE = rb'(?:,"gotd_score":(' + _NUMBER + rb"))?"
_SCORES = rb',"gotd_scores":\{("' + _NAME + rb'":' + _NUMBER + rb'(?:,"' + _NAME + rb'":' + _NUMBER + rb")*)\}"
_MIXED = re.compile(_SCORES + _TARGET + _VALUE + _GUARD + rb',"gotd_fit":"([0-9a-f]+)"\}$')
_MIXED_MAX = 32 * (64 + 4 + 25) + 260  # MAX_TARGETS names and numbers, and the rest of the suffix
_PAIR = re.compile(rb'"(' + _NAME + rb')":(' + _NUMBER + rb")")


def _find_mixed(line: bytes) -> re.Match | None:
    """The suffix of several targets at the end of `line`; a quick look at the last bytes first (a one-target
    line, which has no gotd_scores, is told at C speed)."""
    if not line.endswith(b'"}') or line.rfind(b',"gotd_fit":"', max(0, len(line) - 64)) < 0:
        return None
    start = max(0, len(line) - _MIXED_MAX)
    if line.rfind(b',"gotd_scores":{', start) < 0:
        return None
    return _MIXED.search(line, start)


@dataclass(slots=True)
class Record:
    source: int  # index of the input it came from
    name: str  # that input's name, for messages
    lineno: int
    raw: bytes  # the original line, without its line ending (and without a previous score suffix)
    text: str
    tokens: int = -1  # its count when known already (a piece, counted when it was cut), else -1


class BadRecord(RuntimeProblem):
    """Raised under `strict` for the first record that cannot be used, or past the skip budget."""


@dataclass
class Skips:
    """Counts skipped records by reason; logs the first few (warnings) with their location.

    `strict` fails on the first bad record; `budget` (max_skipped) fails on the first one past the budget,
    so that a poisoned shard ends a long run early instead of producing a thin selection.
    """

    strict: bool = False
    budget: int | None = None
    report: bool = True
    show: int = 10
    counts: Counter = field(default_factory=Counter)
    shown: int = 0
    examples: list | None = None  # a list: the first `show` skips are kept there as (name, lineno, reason, detail)

    def add(self, name: str, lineno: int, reason: str, detail: str = "") -> None:
        message = f"{name}:{lineno}: {reason}{': ' + detail if detail else ''}"
        ruled = reason in RULES
        if self.strict and not ruled:
            raise BadRecord(message + f" ({setting('strict')})")
        self.counts[reason] += 1
        if self.examples is not None and len(self.examples) < self.show:
            self.examples.append((name, lineno, reason, detail))
        if self.budget is not None and not ruled and self.bad > self.budget:
            raise BadRecord(f"more than {setting('max_skipped')} {self.budget} records skipped; the last: {message}")
        self.report_one(message)

    def report_one(self, message: str) -> None:
        """Log a skipped record (`file:line: reason`), the first `show` only; a worker's skips come through here."""
        if self.report and self.shown < self.show:
            self.shown += 1
            log.warning("skipped %s", message)
            if self.shown == self.show:
                log.warning("further skipped records are only counted")

    def extend(self, counts: dict[str, int]) -> None:
        """Add counts from an earlier run (a finished shard), under the same budget."""
        self.counts.update(counts)
        if self.budget is not None and self.bad > self.budget:
            raise BadRecord(
                f"more than {setting('max_skipped')} {self.budget} records skipped (counting finished shards)"
            )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def bad(self) -> int:
        """The skips that were bad records, not a rule's choice (RULES): what --max-skipped budgets."""
        return sum(n for reason, n in self.counts.items() if reason not in RULES)

    def summary(self) -> str:
        if not self.counts:
            return "skipped 0"
        parts = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(self.counts.items()))
        return f"skipped {self.total:,} ({parts})"


def parse_line(line: bytes, text_field: str) -> tuple[bytes, str] | tuple[None, str, str]:
    """(raw, text) for a usable line, else (None, reason, detail)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        obj = loads(line)
    except ValueError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            return None, "invalid UTF-8", f"at byte {err.start}"
        return None, "malformed JSON", str(exc).split(":")[0]
    if not isinstance(obj, dict):
        return None, "not a JSON object", type(obj).__name__
    vectors = isinstance(text_field, VectorField)
    if text_field in obj:
        text = obj[text_field]
    elif "." in text_field:
        text = _nested(obj, text_field)
        if isinstance(text, tuple):
            return None, missing(text_field) if vectors else f"missing text field {text_field!r}", text[0]
    else:
        keys = ", ".join(list(obj)[:8])
        reason = missing(text_field) if vectors else f"missing text field {text_field!r}"
        return None, reason, f"keys seen: {keys or 'none'}"
    if vectors:  # the vectors space: the record's text is its vector, as JSON
        text = vector_text(text, text_field)
        if isinstance(text, tuple):
            return None, *text
    elif not isinstance(text, str):
        return None, f"text field {text_field!r} not a string", f"got {type(text).__name__}"
    match = _find_mixed(line) or _find_suffix(line)
    raw = line[: match.start()] + b"}" if match else line.rstrip()
    return raw, text


def _nested(obj: dict, text_field: str):
    """The value at a dotted path ("meta.text") through nested objects, or (what was found instead,) as a tuple."""
    where = []
    for key in text_field.split("."):
        if not isinstance(obj, dict):
            return (f"{'.'.join(where)} is a {type(obj).__name__}, not an object",)
        if key not in obj:
            keys = ", ".join(list(obj)[:8]) or "none"
            return (f"keys seen{' in ' + '.'.join(where) if where else ''}: {keys}",)
        where.append(key)
        obj = obj[key]
    return obj


def read_records(paths: Iterable[str], text_field: str, skips: Skips, words: bool = True) -> Iterator[Record]:
    """Every usable record of every input in order; blank lines are ignored, bad lines go to `skips`.

    An input that is a Parquet or Arrow file (by its magic bytes) gives its rows, numbered from 1 (io.parquet,
    io.datasets); a folder (save_to_disk's, or of Parquet files) stands for its files, each an input of its own.

    `words=False` keeps the records whose text has no word (see text.wordless()): fine-tuning reads through it.
    A VectorField reads each record's vector as its text (io.vectors), where no words rule applies.
    """
    words = words and not isinstance(text_field, VectorField)
    for source, path in enumerate(expand_inputs(paths)):
        name = display_name(path)
        if is_parquet(path):
            rows = parquet_rows(path, text_field)
        elif is_arrow(path):
            rows = arrow_rows(path, text_field)
        else:
            rows = jsonl_rows(path, text_field)
        for lineno, raw, text, detail in rows:
            if raw is None:
                skips.add(name, lineno, text, detail)
                continue
            if words and (detail := wordless(text)) is not None:
                skips.add(name, lineno, NO_WORDS, detail)
                continue
            yield Record(source, name, lineno, raw, text)


def of_width(records: Iterable[Record], width: int, skips: Skips) -> Iterator[Record]:
    """The records whose vector (read through a VectorField) has `width` numbers; the others go to `skips`. For a
    stream begun before the width was known (a fit on a stream's first records: select.fit)."""
    for record in records:
        n = vector_width(record.text)
        if n != width:
            skips.add(record.name, record.lineno, WRONG_WIDTH, f"{n:,} numbers where the fit's vectors have {width:,}")
            continue
        yield record


def jsonl_rows(path: str, text_field: str) -> Iterator[tuple[int, bytes | None, str, str]]:
    """(line number, raw, text, "") per usable line, (line number, None, reason, detail) per bad one; blank
    lines are left out. The same shape as io.parquet.parquet_rows, so read_records treats both alike."""
    for lineno, line in read_lines(path):
        if not line or line.isspace():
            continue
        parsed = parse_line(line, text_field)
        if parsed[0] is None:
            yield lineno, None, parsed[1], parsed[2]
        else:
            yield lineno, parsed[0], parsed[1], ""


def with_score(
    raw: bytes,
    score: float,
    fit_id: str,
    tokens: int | None = None,
    select: str | None = None,
    guard: str | None = None,
) -> bytes:
    """The original line with the score (its tokens, the selection rule, the guard's tag) and the artifact id
    appended last."""
    extra = b"" if tokens is None else b',"gotd_tokens":' + str(tokens).encode()
    if select is not None:
        extra += b',"gotd_select":"' + select.encode() + b'"'
    if guard is not None:
        extra += b',"gotd_guard":"' + guard.encode() + b'"'
    return raw[:-1] + b',"gotd_score":' + repr(score).encode() + extra + b',"gotd_fit":"' + fit_id.encode() + b'"}'


class Scored(NamedTuple):
    """A line of a selection, split: the original line and what `score` appended to it."""

    raw: bytes
    score: float
    fit_id: str
    tokens: int | None = None
    select: str | None = None
    guard: str | None = None  # the duplicate guard's tag: a plain selection it chose (no merge can be exact)


def split_scored(line: bytes) -> Scored | None:
    """Undo `with_score`, or None for a line without our suffix."""
    line = line.rstrip(b"\r")
    match = _find_suffix(line)
    if match is None:
        return None
    tokens, select, guard = match.group(2), match.group(3), match.group(4)
    return Scored(
        line[: match.start()] + b"}",
        float(match.group(1)),
        match.group(5).decode(),
        None if tokens is None else int(tokens),
        None if select is None else select.decode(),
        None if guard is None else guard.decode(),
    )


@dataclass(slots=True)
class Mixed:
    """A line scored against several targets, taken apart: `split_mixed` of `with_scores`."""

    raw: bytes  # the original line
    names: list[str]
    scores: list[float]  # each target's calibrated gradient, in the order of the names
    target: str | None  # quota selections: the target the line counts for
    value: float | None  # quota: its score for that target; sum: the weighted sum; quota candidates: None
    fit_id: str
    guard: str | None = None  # the duplicate guard's tag: a plain selection it chose (no merge can be exact)


def with_scores(
    raw: bytes,
    names: list[str],
    scores,
    fit_id: str,
    value: float | None = None,
    target: str | None = None,
    guard: str | None = None,
) -> bytes:
    """The original line with every target's score appended (`gotd_scores`), then `gotd_target`, `gotd_score` and
    `gotd_guard` when given, and the artifact id last."""
    pairs = ",".join(f'"{name}":{float(score)!r}' for name, score in zip(names, scores, strict=True))
    out = raw[:-1] + b',"gotd_scores":{' + pairs.encode() + b"}"
    if target is not None:
        out += b',"gotd_target":"' + target.encode() + b'"'
    if value is not None:
        out += b',"gotd_score":' + repr(float(value)).encode()
    if guard is not None:
        out += b',"gotd_guard":"' + guard.encode() + b'"'
    return out + b',"gotd_fit":"' + fit_id.encode() + b'"}'


def split_mixed(line: bytes) -> Mixed | None:
    """Undo `with_scores`, or None for a line without that suffix (a single-target line among them)."""
    line = line.rstrip(b"\r")
    match = _find_mixed(line)
    if match is None:
        return None
    pairs = _PAIR.findall(match.group(1))
    target, value = match.group(2), match.group(3)
    return Mixed(
        line[: match.start()] + b"}",
        [name.decode() for name, _ in pairs],
        [float(number) for _, number in pairs],
        target.decode() if target is not None else None,
        float(value) if value is not None else None,
        match.group(5).decode(),
        None if match.group(4) is None else match.group(4).decode(),
    )

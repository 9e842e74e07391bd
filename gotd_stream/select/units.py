"""The unit of selection: whole records, or pieces of at most N tokens cut at whitespace (`--unit chunk`).

A long record holds parts of very different value to a target; scored whole, it is kept or dropped whole. As
chunks, each piece is embedded, scored and kept on its own, as the GOT-D paper's code does with its
1,000-character samples. A selected piece is written as its source record's own bytes, with the text value
replaced by the piece (JSON-escaped) and two fields added, so that it can be traced back:

    "gotd_source": "FILE:LINE"        the input as given and line of the record it came from
    "gotd_span": [START, END]         character offsets (code points) of the piece in that record's text

Every other byte of the record is kept as it came (numbers such as 18446744073709551616, -0 or 1E400, key order,
duplicate keys, escapes). A file name that is not UTF-8 is written with each such byte as `\\xNN`. A record that
already has both fields (a selection of pieces scored again) keeps its `gotd_source` and has its span composed,
so that it still points into the original record.

A piece never holds more than N tokens of the counter (its whole text counted alone, as the budget counts it):
pieces are packed from whole words, checked, and cut smaller where the tokenizer counted more than the sum of
its words (whitespace runs under byte-level BPE); a word longer than a piece (a URL, CJK text without spaces)
is cut inside. A record that fits in one piece is one piece with the span of its whole text; a piece without a
word character (a run of symbols) is dropped. Short records are not joined.

The minimum unit (`--min-tokens N`, DEFAULT_MIN_TOKENS): a unit (a whole record, or a piece) of fewer than N
tokens is skipped and counted under its own reason (SHORT), before it is embedded. A lone word scores well
against many targets (it sits near the middle of any space) and costs a token budget almost nothing, so short
texts crowd a selection out of proportion to what a warm-up learns from them. Cutting a record into pieces
leaves a short last piece behind; with the rule on, that tail takes words from the piece before it until it
holds N (both pieces still at most the piece size), so a long record loses none of its text to the rule. A
record shorter than N in all is skipped whole.

A piece's identity for the sample draw (select.budget.sample_keys) is its line without the `gotd_source` value:
the piece's text, its span and its record's other bytes, never the spelling of the path it was read from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

from gotd_stream.features.base import DEFAULT_MAX_TOKENS
from gotd_stream.io.jsonbytes import dumps_string, last, loads, members, value_span
from gotd_stream.io.records import SHORT, Record
from gotd_stream.text import WORD

UNITS = ("doc", "chunk")
MIN_CHUNK_TOKENS = 8  # below this a piece is a word or two: no longer a text to warm a model up on
# The fewest tokens of a unit that score keeps (`--min-tokens`). Off, by measurement: the proxies (target share, OT
# distance) cannot tell N = 0, 4 and 8 apart, and bench/web.py's warm-ups at token parity were no better with N = 8
# in any of 8 cells, worse on every seed in 2 (BENCHMARKS.md, "Fragments and length"); the rule would also need a
# token count of every record, which the fast spaces do not otherwise pay for.
DEFAULT_MIN_TOKENS = 0
PREFIX_CHARS = 4096  # a long text is counted for the rule on its first words: they hold N tokens or it is short
# A piece the embedding model reads whole: a record longer than that is scored on its first tokens alone, while a
# token budget pays for all of them (at token parity, 128-token pieces won the warm-up: BENCHMARKS.md)
DEFAULT_CHUNK_TOKENS = DEFAULT_MAX_TOKENS
_WORD = re.compile(r"\S+")
SOURCE, SPAN = "gotd_source", "gotd_span"
_SOURCE_KEY = b'"gotd_source"'


def chunk_spans(text: str, max_tokens: int, counter) -> list[tuple[int, int]]:
    """Character spans of the pieces of `text`, each counting at most max_tokens tokens alone (see chunks)."""
    return [(start, end) for start, end, _ in chunks(text, max_tokens, counter)]


def chunks(text: str, max_tokens: int, counter, min_tokens: int = 0) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of the pieces of `text`: each piece's own count, at most max_tokens; with
    min_tokens, a last piece under it takes words from the one before (_joined_tail).

    Whole words are packed while the tokens of the words with the whitespace before them add up to at most
    max_tokens (exact for WordPiece and the estimate, close for byte-level BPE, which counts runs of spaces and
    tabs), then every piece is counted whole and one over is re-packed by bisection. A single word over
    max_tokens is cut inside (_cut_word). A text that fits whole is one piece over all of it. A tokenizer that
    gives its words' counts (features.tokens.Tokenizer.word_counts: a BERT-like one, on the usual texts) or its
    tokens' offsets (Tokenizer.starts) sizes the words from them, the same counts either way; one whose counts
    add up over words exactly (`additive`) needs no second count.
    """
    sized = getattr(counter, "word_counts", None)
    sizes = sized(text) if sized is not None else None  # each word's count (str.split's words are _WORD's)
    starts = None
    if sizes is not None:
        total = sum(sizes)
    else:
        starts_of = getattr(counter, "starts", None)
        starts = starts_of(text) if starts_of is not None else None
        total = len(starts) if starts is not None else int(counter.count([text])[0])
    if total <= max_tokens:
        return [(0, len(text), total)]
    words = [m.span() for m in _WORD.finditer(text)]
    if not words:
        return []
    if sizes is None and starts is not None:  # each token to the word it starts in, or the whitespace before it
        import numpy as np

        ends = np.fromiter((e for _, e in words), dtype=np.int64, count=len(words))
        where = np.searchsorted(ends, np.asarray(starts, dtype=np.int64), side="right")
        sizes = np.bincount(where, minlength=len(words) + 1)[: len(words)].tolist()
    elif sizes is None:
        before = [0] + [e for _, e in words[:-1]]
        sizes = counter.count([text[b:e] for b, (_, e) in zip(before, words, strict=True)]).tolist()
    ranges: list[tuple[int, int]] = []
    sums: list[int] = []
    first, held = 0, 0
    for i, n in enumerate(sizes):
        if i > first and held + n > max_tokens:
            ranges.append((first, i))
            sums.append(held)
            first, held = i, 0
        held += n
    ranges.append((first, len(words)))
    sums.append(held)

    def span(i: int, j: int) -> tuple[int, int]:
        return words[i][0], words[j - 1][1]

    def tokens(i: int, j: int) -> int:
        return int(counter.count([text[slice(*span(i, j))]])[0])

    # counted whole, unless the counter's counts add up over words exactly (WordPiece, the estimate)
    counts = (
        sums if getattr(counter, "additive", False) else counter.count([text[slice(*span(i, j))] for i, j in ranges])
    )
    out: list[tuple[int, int, int]] = []
    for (i, j), n in zip(ranges, counts, strict=True):
        if n <= max_tokens:
            out.append((*span(i, j), int(n)))
            continue
        while i < j:  # the longest run of words from i that fits, by bisection (i..j is over)
            lo, hi, held = i + 1, j, None
            while lo < hi:
                mid = (lo + hi + 1) // 2
                n = tokens(i, mid)
                if n <= max_tokens:
                    lo, held = mid, n
                else:
                    hi = mid - 1
            if held is None:
                held = tokens(i, lo)
            if held > max_tokens:  # one word alone is over
                out.extend(_cut_word(text, *words[i], max_tokens, counter))
            else:
                out.append((*span(i, lo), held))
            i = lo
    if min_tokens and len(out) > 1 and out[-1][2] < min_tokens:
        out[-2:] = _joined_tail(text, out[-2], out[-1], min_tokens, max_tokens, counter)
    return out


def _joined_tail(text: str, before, tail, min_tokens: int, max_tokens: int, counter) -> list[tuple[int, int, int]]:
    """The last two pieces with the short tail grown to min_tokens by the fewest words from the end of the piece
    before it (found by bisection), both pieces within [min_tokens, max_tokens]; the two as one piece when they
    fit together; as they were when neither can be (a word cut inside: the rule then skips the tail)."""

    def count(a: int, b: int) -> int:
        return int(counter.count([text[a:b]])[0])

    start, end = before[0], tail[1]
    whole = count(start, end)
    if whole <= max_tokens:
        return [(start, end, whole)]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, before[1])]
    if len(words) < 2:
        return [before, tail]
    lo, hi = 1, len(words) - 1  # the latest word j whose suffix holds min_tokens: a suffix grows as j moves left
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(words[mid][0], end) >= min_tokens:
            lo = mid
        else:
            hi = mid - 1
    if count(words[lo][0], end) < min_tokens:
        return [before, tail]
    first, second = count(start, words[lo - 1][1]), count(words[lo][0], end)
    if min_tokens <= first <= max_tokens and min_tokens <= second <= max_tokens:
        return [(start, words[lo - 1][1], first), (words[lo][0], end, second)]
    return [before, tail]


def _cut_word(text: str, start: int, end: int, max_tokens: int, counter) -> list[tuple[int, int, int]]:
    """A word over max_tokens as consecutive parts that each fit: the longest prefix that fits, again and again.

    Each prefix is looked for in a window doubled until it is over (never the whole rest: a CJK text without
    spaces can be a megabyte long), then by bisection. A part is at least one character (which no tokenizer
    counts at 8 tokens or more, MIN_CHUNK_TOKENS).
    """

    def count(a: int, b: int) -> int:
        return int(counter.count([text[a:b]])[0])

    parts = []
    pos = start
    while pos < end:
        size = min(end - pos, 2 * max_tokens)
        while (n := count(pos, pos + size)) <= max_tokens:
            if pos + size == end:
                parts.append((pos, end, n))
                return parts
            size = min(end - pos, 2 * size)
        lo, hi, held = 1, size - 1, None  # the longest fitting length: `size` is over
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (n := count(pos, pos + mid)) <= max_tokens:
                lo, held = mid, n
            else:
                hi = mid - 1
        parts.append((pos, pos + lo, held if held is not None else count(pos, pos + lo)))
        pos += lo
    return parts


def source_name(name: str) -> str:
    """An input's name as gotd_source writes it: as given, with each byte that is not UTF-8 as `\\xNN`.

    A file name that is not UTF-8 reaches Python with those bytes as surrogates (os.fsdecode), which JSON cannot
    hold; the escaped form can, and reads back to the name's bytes wherever the name has no backslash of its own.
    """
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


class _Pieces:
    """One record's pieces as lines: its bytes with the text value and the provenance replaced, nothing else."""

    def __init__(self, record: Record, text_field: str):
        raw = self.raw = record.raw
        top = members(raw)
        self.text = last(top, text_field) or value_span(raw, text_field)  # as parse_line reads it
        self.length = len(record.text)
        self.source = last(top, SOURCE)
        self.span = last(top, SPAN)
        self.offset = 0
        self.new_source = dumps_string(f"{source_name(record.name)}:{record.lineno}")
        composed = self._earlier_span(raw)
        if composed is not None:  # a piece scored again: it keeps pointing into the record it was cut from
            self.offset, self.new_source = composed, None

    def _earlier_span(self, raw: bytes) -> int | None:
        """The start of this record's text in an earlier record, when it is a piece with a consistent provenance."""
        if self.source is None or self.span is None:
            return None
        try:
            source, span = loads(raw[slice(*self.source)]), loads(raw[slice(*self.span)])
        except ValueError:
            return None
        if not (isinstance(source, str) and isinstance(span, list) and len(span) == 2):
            return None
        if not all(type(v) is int and v >= 0 for v in span) or span[1] - span[0] != self.length:
            return None
        return span[0]

    def line(self, piece: str, start: int, end: int) -> bytes:
        raw = self.raw
        span = b"[%d,%d]" % (self.offset + start, self.offset + end)
        edits = []
        if (start, end) != (0, self.length):
            edits.append((*self.text, dumps_string(piece)))
        append = b""
        if self.source is not None:
            if self.new_source is not None:
                edits.append((*self.source, self.new_source))
        else:
            append += b',"gotd_source":' + self.new_source
        if self.span is not None:
            edits.append((*self.span, span))
        else:
            append += b',"gotd_span":' + span
        if append:
            end_brace = len(raw) - 1  # parse_line keeps the line right-stripped: it ends with the object's }
            edits.append((end_brace, end_brace, append))
        out = []
        at = 0
        for a, b, new in sorted(edits):
            out += (raw[at:a], new)
            at = b
        out.append(raw[at:])
        return b"".join(out)


def chunked(
    records: Iterable[Record], text_field: str, max_tokens: int, counter, min_tokens: int = 0, skips=None
) -> Iterator[Record]:
    """Each record's pieces, in order, as records of their own (raw: the piece's JSON line with its provenance;
    tokens: the piece's count, known from cutting it); a piece under min_tokens goes to `skips` (SHORT)."""
    for record in records:
        pieces = None
        for start, end, n in chunks(record.text, max_tokens, counter, min_tokens):
            piece = record.text[start:end]
            if not WORD.search(piece):
                continue
            if n < min_tokens:
                skips.add(record.name, record.lineno, SHORT, f"a piece of {n} tokens, under {min_tokens}")
                continue
            pieces = pieces or _Pieces(record, text_field)
            yield Record(record.source, record.name, record.lineno, pieces.line(piece, start, end), piece, n)


def long_enough(records: Iterable[Record], min_tokens: int, counter, skips) -> Iterator[Record]:
    """The whole records of at least min_tokens tokens; the others go to `skips` (SHORT).

    A text up to PREFIX_CHARS long is counted whole and keeps its count (a token budget then needs no second
    one); a longer one is counted on its words within the first PREFIX_CHARS characters, which hold at least
    min_tokens unless the record is pathological, and then counted whole. Counts add up over words for every
    counter here (WordPiece, byte-level BPE, the estimate), so the first words never hold more than the text.
    """
    for record in records:
        text = record.text
        if len(text) > PREFIX_CHARS:
            cut = text.rfind(" ", 0, PREFIX_CHARS)
            if cut > 0 and int(counter.count([text[:cut]])[0]) >= min_tokens:
                yield record
                continue
        n = int(counter.count([text])[0])
        if n < min_tokens:
            skips.add(record.name, record.lineno, SHORT, f"{n} tokens, under {min_tokens}")
            continue
        if len(text) <= PREFIX_CHARS:
            record.tokens = n
        yield record


def draw_identity(raw: bytes) -> bytes:
    """The bytes a line draws its sample key from: the line, with the value of a top-level gotd_source emptied.

    A piece's gotd_source carries the path as it was typed (`./s0.jsonl`, `/mnt/a/s0.jsonl`); without it the key
    depends on the piece's text, span and record alone, the same on every node and mount. A line without the
    field (every whole record of a plain corpus) is its own identity, byte for byte.
    """
    if _SOURCE_KEY not in raw:
        return raw
    found = last(members(raw), SOURCE)
    if found is None:
        return raw
    return raw[: found[0]] + b'""' + raw[found[1] :]

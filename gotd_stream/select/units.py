"""The unit of selection: whole records, or pieces of at most N tokens cut at whitespace (`--unit chunk`).

A long record holds parts of very different value to a target; scored whole, it is kept or dropped whole. As
chunks, each piece is embedded, scored and kept on its own, as the GOT-D paper's code does with its
1,000-character samples. A selected piece is written as its source record with the text replaced by the piece
and two fields added, so that it can be traced back:

    "gotd_source": "FILE:LINE"        the input and line of the record it came from
    "gotd_span": [START, END]         character offsets (code points) of the piece in that record's text

A record that fits in one piece is one piece with the span of its whole text. A single word longer than a piece
is a piece of its own; a piece without a word character (a run of symbols) is dropped. Short records are not
joined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import orjson

from gotd_stream.features.base import DEFAULT_MAX_TOKENS
from gotd_stream.io.records import Record
from gotd_stream.text import WORD

UNITS = ("doc", "chunk")
MIN_CHUNK_TOKENS = 8  # below this a piece is a word or two: no longer a text to warm a model up on
# A piece the embedding model reads whole: a record longer than that is scored on its first tokens alone, while a
# token budget pays for all of them (at token parity, 128-token pieces won the warm-up: BENCHMARKS.md)
DEFAULT_CHUNK_TOKENS = DEFAULT_MAX_TOKENS
_WORD = re.compile(r"\S+")


def chunk_spans(text: str, max_tokens: int, counter) -> list[tuple[int, int]]:
    """Character spans of the pieces of `text`: consecutive whole words whose tokens add up to at most max_tokens.

    Words are counted one by one (the tokenizers split at whitespace first, so the sum is the piece's count for
    WordPiece and close to it for byte-level BPE); a text that fits whole is one span over all of it.
    """
    if int(counter.count([text])[0]) <= max_tokens:
        return [(0, len(text))]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    sizes = counter.count([text[s:e] for s, e in words])
    spans: list[tuple[int, int]] = []
    start = end = None
    held = 0
    for (s, e), n in zip(words, sizes, strict=True):
        if start is not None and held + n > max_tokens:
            spans.append((start, end))
            start = None
        if start is None:
            start, held = s, 0
        end = e
        held += int(n)
    if start is not None:
        spans.append((start, end))
    return spans


def _with_text(obj: dict, text_field: str, text: str) -> None:
    """Replace the text at `text_field` (dotted paths reach into nested objects, as when reading)."""
    if text_field in obj or "." not in text_field:
        obj[text_field] = text
        return
    *path, last = text_field.split(".")
    for key in path:
        obj = obj[key]
    obj[last] = text


def chunked(records: Iterable[Record], text_field: str, max_tokens: int, counter) -> Iterator[Record]:
    """Each record's pieces, in order, as records of their own (raw: the piece's JSON line with its provenance)."""
    for record in records:
        spans = chunk_spans(record.text, max_tokens, counter)
        obj = orjson.loads(record.raw)
        for start, end in spans:
            piece = record.text[start:end]
            if not WORD.search(piece):
                continue
            _with_text(obj, text_field, piece)
            obj["gotd_source"] = f"{record.name}:{record.lineno}"
            obj["gotd_span"] = [start, end]
            yield Record(record.source, record.name, record.lineno, orjson.dumps(obj), piece)

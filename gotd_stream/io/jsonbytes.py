"""Where a member's value lies in a JSON line's bytes, so that one value can be replaced and the rest kept as is.

Re-serialising a record changes what a parser does not keep: big integers (2^64 becomes 1.8446744073709552e+19),
`-0`, `1e2`, key order, duplicate keys, escapes. A piece of a record (select.units) is written as its record's
bytes with only the text value replaced and its provenance added, which needs the byte spans of a few members.
The line has already been parsed (io.records.parse_line), so the scanner trusts its structure: it only has to
skip strings (with their escapes) and count brackets.
"""

from __future__ import annotations

import json
import re

import orjson

# a whole string (escapes included), or one structural character; numbers and literals lie between the matches
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]', re.DOTALL)
_SPACE = b" \t\r\n"


def members(raw: bytes, start: int = 0) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the object that opens at or after `start`, in order,
    duplicates included (a parser keeps the last one)."""
    out: list[tuple[str, int, int]] = []
    depth = 0
    key: str | None = None
    value_start = 0
    expect_key = False
    for match in _TOKEN.finditer(raw, start):
        tok = match.group()
        first = tok[0]
        if first == 0x22:  # a string
            if depth == 1 and expect_key:
                key = _key(tok)
                expect_key = False
            continue
        if first in b"{[":
            depth += 1
            if depth == 1:
                expect_key = True
            continue
        if depth == 1 and first == 0x3A:  # ':' after a key
            value_start = match.end()
            while raw[value_start] in _SPACE:
                value_start += 1
            continue
        if depth == 1 and first in b",}":
            if key is not None:
                end = match.start()
                while raw[end - 1] in _SPACE:
                    end -= 1
                out.append((key, value_start, end))
                key = None
            expect_key = True
        if first in b"}]":
            depth -= 1
            if depth == 0:
                return out
    return out


def _key(token: bytes) -> str:
    body = token[1:-1]
    return body.decode() if b"\\" not in body else orjson.loads(token)


def last(found: list[tuple[str, int, int]], key: str) -> tuple[int, int] | None:
    """The span of the value of `key` a parser reads (the last duplicate), or None."""
    for name, start, end in reversed(found):
        if name == key:
            return start, end
    return None


def value_span(raw: bytes, field: str) -> tuple[int, int] | None:
    """The span of the value io.records reads as `field`: a top-level key, else a dotted path into nested
    objects (as parse_line resolves it); None when it is not there."""
    top = members(raw)
    span = last(top, field)
    if span is not None or "." not in field:
        return span
    found = top
    for key in field.split("."):
        span = last(found, key)
        if span is None:
            return None
        found = members(raw, span[0]) if raw[span[0]] == 0x7B else []
    return span


def dumps_string(text: str) -> bytes:
    """`text` as a JSON string (UTF-8, escapes only where JSON needs them; a lone surrogate as \\uXXXX)."""
    try:
        return orjson.dumps(text)
    except TypeError:  # a lone surrogate, which only the standard library's parser lets through
        return json.dumps(text).encode()


def loads(line: bytes):
    """Parse a JSON line: orjson, or for what it refuses though JSON allows it (a number beyond a double, such as
    1E400) the standard library, still refusing NaN, Infinity and lone surrogate escapes (a string that is not
    Unicode text: no tokenizer or writer takes it). Raises ValueError."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            value = json.loads(line, parse_constant=_no_constant)
            _require_text(value)
            return value
        except (ValueError, RecursionError):
            raise exc from None


def _require_text(value) -> None:
    """ValueError when a string anywhere in `value` holds a lone surrogate (it cannot be written as UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")

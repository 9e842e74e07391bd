"""Bytes in: plain, zstd and gzip inputs detected by magic bytes, read as chunks or lines.

Inputs may be plain, zstd (any number of frames) or gzip (any number of members), from a file, stdin or a URL
(io.remote: read as a stream through fsspec).
We drive the decompressors frame by frame ourselves because a stream reader that stops quietly at a
truncated frame would turn a damaged shard into a silently shorter one. (Bytes out: io.outputs.)
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from gotd_stream.errors import RuntimeProblem, UsageProblem
from gotd_stream.io.digests import tap
from gotd_stream.io.remote import RemoteReader, is_url, remote_stat

CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BOM = b"\xef\xbb\xbf"


def _is_zstd(head: bytes) -> bool:
    """A zstd frame, or a skippable frame (magic 0x184D2A50-5F, little endian) as pzstd writes first."""
    return head.startswith(ZSTD_MAGIC) or (len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] >> 4 == 5)


STDIN = "-"


class CorruptInput(RuntimeProblem):
    """A compressed stream that is truncated or damaged; the message names the file."""


class ParquetStream(UsageProblem):
    """A Parquet file where a stream of lines is read (stdin, a pipe): it has to be given as a file to a reader."""


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def open_input(path: str) -> BinaryIO:
    """An input's raw bytes: a local file, stdin (-), or a URL read as a stream (io.remote)."""
    if path == STDIN:
        return sys.stdin.buffer
    if is_url(path):
        return RemoteReader(path)  # type: ignore[return-value]
    return open(path, "rb")


def stat_input(path: str):
    """os.stat of a local input; of a URL, what the readers and --state use of it (io.remote.RemoteStat)."""
    return remote_stat(path) if is_url(path) else os.stat(path)


def absolute(path: str) -> str:
    """An input's name that does not depend on the working folder: its absolute path, or the URL as it is."""
    return path if is_url(path) else os.path.abspath(path)


def _frames(first: bytes, raw: BinaryIO, new_decoder: Callable, errors: tuple, kind: str, name: str) -> Iterator[bytes]:
    """Decompress concatenated frames (zstd) or members (gzip); fail if the last one is cut short."""
    decoder = new_decoder()
    pending = False
    data = first
    while data:
        while data:
            try:
                out = decoder.decompress(data)
            except errors as exc:
                raise CorruptInput(f"{name}: corrupt {kind} stream ({exc})") from None
            if out:
                yield out
            if decoder.eof:
                data = decoder.unused_data
                decoder = new_decoder()
                pending = False
            else:
                pending = True
                data = b""
        data = raw.read(CHUNK)
    if pending:
        raise CorruptInput(f"{name}: truncated or damaged {kind} stream (it ends inside a compressed frame)")


def read_chunks(path: str) -> Iterator[bytes]:
    """Yield the decompressed bytes of one input, whatever its compression."""
    name = display_name(path)
    raw = open_input(path)
    reader = tap(raw, path)  # io.digests: hashed as read, when a manifest asks for its inputs' fingerprints
    try:
        first = reader.read(CHUNK)
        if _is_zstd(first):
            import zstandard

            dctx = zstandard.ZstdDecompressor()
            yield from _frames(first, reader, dctx.decompressobj, (zstandard.ZstdError,), "zstd", name)
        elif first.startswith(GZIP_MAGIC):
            yield from _frames(first, reader, lambda: zlib.decompressobj(31), (zlib.error,), "gzip", name)
        elif first.startswith(PARQUET_MAGIC):
            raise ParquetStream(
                f"{name} is a Parquet file: Parquet is read from a file path (it needs seeking), by the commands that "
                "read records (fit, score, embed, finetune) and by merge and report; not from stdin or a pipe"
            )
        else:
            while first:
                yield first
                first = reader.read(CHUNK)
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) with the newline removed; any length, last line with or without newline.

    A UTF-8 byte order mark at the start of the input (Windows editors write one) is dropped.
    """
    lineno = 0
    pending: list[bytes] = []
    for chunk in read_chunks(path):
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        parts = chunk.split(b"\n")
        if pending:
            pending.append(parts[0])
            parts[0] = b"".join(pending)
            pending = []
        if lineno == 0:
            parts[0] = parts[0].removeprefix(BOM)
        last = parts.pop()
        for line in parts:
            lineno += 1
            yield lineno, line
        if last:
            pending.append(last)
    if pending:
        line = b"".join(pending)
        yield lineno + 1, line.removeprefix(BOM) if lineno == 0 else line

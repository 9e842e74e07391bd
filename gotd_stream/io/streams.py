"""Bytes in, bytes out: compressed inputs detected by magic bytes, outputs written atomically.

Inputs may be plain, zstd (any number of frames) or gzip (any number of members), from a file or stdin.
We drive the decompressors frame by frame ourselves because a stream reader that stops quietly at a
truncated frame would turn a damaged shard into a silently shorter one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"


def _is_zstd(head: bytes) -> bool:
    """A zstd frame, or a skippable frame (magic 0x184D2A50-5F, little endian) as pzstd writes first."""
    return head.startswith(ZSTD_MAGIC) or (len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] >> 4 == 5)


STDIN = "-"


class CorruptInput(Exception):
    """A compressed stream that is truncated or damaged; the message names the file."""


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def _open_raw(path: str) -> BinaryIO:
    if path == STDIN:
        return sys.stdin.buffer
    return open(path, "rb")


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
    raw = _open_raw(path)
    try:
        first = raw.read(CHUNK)
        if _is_zstd(first):
            import zstandard

            dctx = zstandard.ZstdDecompressor()
            yield from _frames(first, raw, dctx.decompressobj, (zstandard.ZstdError,), "zstd", name)
        elif first.startswith(GZIP_MAGIC):
            yield from _frames(first, raw, lambda: zlib.decompressobj(31), (zlib.error,), "gzip", name)
        else:
            while first:
                yield first
                first = raw.read(CHUNK)
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


def compression_for(path: str) -> str:
    """Output compression chosen by extension: zstd, gzip or none."""
    lower = path.lower()
    if lower.endswith((".zst", ".zstd")):
        return "zstd"
    if lower.endswith(".gz"):
        return "gzip"
    return "none"


@contextlib.contextmanager
def atomic_output(path: str | None) -> Iterator[BinaryIO]:
    """A binary sink: stdout when path is None, else a compressed temporary file renamed into place.

    On any failure (or Ctrl-C) the temporary file is removed and nothing appears under `path`.
    """
    if path is None or path == STDIN:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            kind = compression_for(path)
            if kind == "zstd":
                import zstandard

                # with a checksum, damage to the file is detected when it is read back
                with zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(fh, closefd=False) as sink:
                    yield sink
            elif kind == "gzip":
                import gzip

                # filename="" and mtime=0: the bytes depend on the data only, so re-runs are identical.
                with gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0) as sink:
                    yield sink
            else:
                yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(directory: str) -> None:
    """Make the rename itself durable: after a power cut the new name points at the new file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def umask() -> int:
    """The process's umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


class NpyWriter:
    """Streams float32 rows into a .npy file whose row count is only known at the end."""

    HEADER = 128  # fixed header size, patched with the final shape on close

    def __init__(self, fh: BinaryIO, dim: int):
        self.fh, self.dim, self.rows = fh, dim, 0
        fh.write(b"\0" * self.HEADER)

    def write(self, rows) -> None:
        import numpy as np

        block = np.ascontiguousarray(rows, dtype="<f4")
        assert block.shape[1:] == (self.dim,)
        self.fh.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> None:
        meta = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)}).encode()
        pad = self.HEADER - 10 - len(meta) - 1
        header = b"\x93NUMPY\x01\x00" + (self.HEADER - 10).to_bytes(2, "little") + meta + b" " * pad + b"\n"
        self.fh.seek(0)
        self.fh.write(header)

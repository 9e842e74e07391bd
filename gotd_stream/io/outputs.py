"""Bytes out: outputs refused before any work when they would destroy an input, then written safely.

A regular file is written to a temporary file beside it and renamed into place (never half a file); a device,
FIFO or stdout is written as a stream; a URL is written locally, then uploaded whole (io.remote); the compression
follows the name's extension. (Bytes in: io.streams.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from gotd_stream.errors import UsageProblem
from gotd_stream.io.remote import check_remote_output, is_url, same_object, upload
from gotd_stream.io.streams import CHUNK, STDIN, display_name


def compression_for(path: str) -> str:
    """Output compression chosen by extension: zstd, gzip or none."""
    lower = path.lower()
    if lower.endswith((".zst", ".zstd")):
        return "zstd"
    if lower.endswith(".gz"):
        return "gzip"
    return "none"


class OutputError(UsageProblem):
    """An output that would overwrite what the run reads, or that cannot be written: found before any work."""


@dataclass(frozen=True)
class Sink:
    """Where an output goes. kind "fd": an open descriptor (stdout, /dev/fd/N), written as it is; "stream": an
    existing device, FIFO or socket, opened and written, never renamed over; "file": a regular file, written to
    a temporary file beside it and renamed into place (`path` is then the real path, symlinks followed)."""

    kind: str
    path: str
    fd: int | None = None


_NAMED_FDS = {"/dev/stdout": 1, "/dev/stderr": 2}


def _named_fd(path: str) -> int | None:
    """The descriptor that /dev/stdout, /dev/stderr, /dev/fd/N or /proc/self/fd/N names, else None."""
    name = os.path.normpath(path)
    if name in _NAMED_FDS:
        return _NAMED_FDS[name]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return int(name[len(prefix) :])
    return None


def resolve_sink(path: str | None) -> Sink:
    """What writing to `path` means (None or - is stdout); OSError when it cannot be looked at (ELOOP, EACCES)."""
    if path is None or path == STDIN:
        return Sink("fd", "<stdout>", 1)
    fd = _named_fd(path)
    if fd is not None:
        return Sink("fd", path, fd)
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        return Sink("stream", path)
    return Sink("file", os.path.realpath(path))


def _fstat(fd: int) -> os.stat_result | None:
    """stat of an open descriptor; None for a standard stream that has none (a test runner's capture)."""
    standard = {0: sys.stdin, 1: sys.stdout, 2: sys.stderr}.get(fd)
    if standard is None:
        return os.fstat(fd)
    try:
        return os.fstat(standard.fileno())
    except (OSError, ValueError, AttributeError):
        return None


def _read_stat(path: str) -> os.stat_result | None:
    """stat of an input as it will be read (- is stdin), or None when there is nothing to compare."""
    try:
        if path == STDIN:
            return _fstat(0)
        fd = _named_fd(path)
        return _fstat(fd) if fd is not None else os.stat(path)
    except OSError:
        return None


def check_outputs(
    outputs: dict[str, str | None],
    inputs: Iterable[str],
    named: dict[str, str | None] | None = None,
    binary: Iterable[str] = (),
    force: bool = False,
) -> None:
    """Refuse, before any work, an output that cannot be written or would destroy something the run reads.

    `outputs` maps each output flag to its path (- for stdout; None: not given), `inputs` are the input paths and
    `named` the other files read by flag (--target, -p). Refused with OutputError naming the flag and the path:
    an output that is the same regular file as anything read (symlinks and hard links included), two outputs
    that are the same file or stream, a missing or unwritable folder, and binary data (`binary` flags) for a
    terminal. Devices, FIFOs and stdout are written as streams, so /dev/null stays /dev/null. An output URL must
    have its filesystem installed and its bucket, and may name an existing object only with `force`.
    """
    reads = [(f"input {display_name(p)}", p) for p in inputs]
    reads += [(f"{flag} {p}", p) for flag, p in (named or {}).items() if p is not None]
    urls = [(label, p) for label, p in reads if is_url(p)]
    regular: dict[tuple[int, int], str] = {}
    for label, p in reads:
        if is_url(p):
            continue
        st = _read_stat(p)
        if st is not None and stat.S_ISREG(st.st_mode):
            regular.setdefault((st.st_dev, st.st_ino), label)
    written: dict[tuple, str] = {}
    binary = set(binary)
    for flag, path in outputs.items():
        if path is None:
            continue
        shown = f"{flag} - (stdout)" if path == STDIN else f"{flag} {path}"
        if not path:
            raise OutputError(f"{flag}: an empty file name")
        if is_url(path):
            _check_url(flag, shown, path, urls, written, force)
            continue
        if path.endswith(os.sep):
            raise OutputError(f"{flag} {path}: names a folder; {flag} takes a file")
        try:
            sink = resolve_sink(path)
            if sink.kind == "fd":
                st = _fstat(sink.fd)
            else:
                st = os.stat(sink.path) if os.path.lexists(sink.path) else None
        except OSError as exc:
            raise OutputError(f"{shown}: {exc.strerror or exc}") from None
        if st is not None and stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) in regular:
            raise OutputError(
                f"{shown} is the same file as {regular[st.st_dev, st.st_ino]}, which this run reads: it would be "
                "overwritten; write the output to another file"
            )
        if st is not None:
            key: tuple = ("inode", st.st_dev, st.st_ino)
        else:
            key = ("fd", sink.fd) if sink.kind == "fd" else ("path", sink.path)
        if key in written and not (st is not None and stat.S_ISCHR(st.st_mode)):  # /dev/null twice is fine
            raise OutputError(f"{written[key]} and {shown} are the same file: give them different names")
        written[key] = shown
        if sink.kind == "file":
            folder = os.path.dirname(sink.path)
            if not os.path.isdir(folder):
                raise OutputError(f"{shown}: the folder {folder} does not exist; create it first")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(f"{shown}: no permission to create files in the folder {folder}")
        if flag in binary and sink.kind == "fd" and sink.fd == 1 and sys.stdout.isatty():
            raise OutputError(f"{shown}: will not write binary data to a terminal; redirect stdout or name a file")


def _check_url(flag: str, shown: str, url: str, reads: list[tuple[str, str]], written: dict, force: bool) -> None:
    """An output URL: not an object the run reads (even with `force`), not another output, writable (io.remote)."""
    for label, read in reads:
        if same_object(url, read):
            raise OutputError(f"{shown} is {label}, which this run reads: write the output to another object")
    for key, other in written.items():
        if key[0] == "url" and same_object(url, key[1]):
            raise OutputError(f"{other} and {shown} are the same object: give them different names")
    check_remote_output(shown, url, force)
    written[("url", url)] = shown


@contextlib.contextmanager
def atomic_output(path: str | None, seekable: bool = False) -> Iterator[BinaryIO]:
    """A binary sink for `path` (None or - is stdout), compressed by its extension.

    A regular file (new, or reached through a symlink, which stays a link) is written to a temporary file in its
    folder and renamed into place: on any failure (or Ctrl-C) the temporary file is removed and the previous
    file is untouched; an existing file keeps its permission bits. A device, FIFO, socket or /dev/stdout is
    opened and written as a stream, never replaced. `seekable`: the caller seeks back (NpyWriter), so a stream is
    spooled to an anonymous temporary file and copied out once the caller is done. A URL is written to a local
    temporary file and uploaded once complete (io.remote.upload): nothing appears under its name before that.
    """
    if is_url(path):
        with upload(path) as fh, _compressed(fh, compression_for(path)) as out:
            yield out
        return
    sink = resolve_sink(path)
    opened = _replace_file(sink.path, path) if sink.kind == "file" else _stream(sink, seekable)
    with opened as fh, _compressed(fh, compression_for(path or STDIN)) as out:  # by the name given
        yield out


@contextlib.contextmanager
def _compressed(fh: BinaryIO, kind: str) -> Iterator[BinaryIO]:
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


@contextlib.contextmanager
def _stream(sink: Sink, seekable: bool) -> Iterator[BinaryIO]:
    """Write to an open descriptor or an existing non-regular file; opened only when the data is ready to go."""

    def target() -> tuple[BinaryIO, bool]:
        if sink.fd == 1:
            return sys.stdout.buffer, False
        if sink.fd == 2:
            return sys.stderr.buffer, False
        if sink.fd is not None:
            return os.fdopen(os.dup(sink.fd), "wb"), True
        return open(sink.path, "wb"), True  # a FIFO blocks here until its reader comes

    if seekable:
        with tempfile.TemporaryFile() as spool:
            yield spool
            spool.flush()
            spool.seek(0)
            out, close = target()
            try:
                shutil.copyfileobj(spool, out, CHUNK)
                out.flush()
            finally:
                if close:
                    out.close()
        return
    out, close = target()
    try:
        yield out
        out.flush()
    finally:
        if close:
            out.close()


@contextlib.contextmanager
def _replace_file(real: str, given: str) -> Iterator[BinaryIO]:
    """A temporary file beside `real`, renamed over it at the end; errors name the path the user gave."""
    directory = os.path.dirname(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(real)[:200]}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create {given} ({exc.strerror})", directory) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _copy_mode(tmp, real)
        try:
            os.replace(tmp, real)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, given) from None
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _copy_mode(tmp: str, real: str) -> None:
    """The replacement keeps the permission bits (and, where allowed, the owner) of the file it replaces."""
    try:
        old = os.stat(real)
    except FileNotFoundError:
        os.chmod(tmp, 0o666 & ~umask())
        return
    with contextlib.suppress(OSError):  # only root, or the owner to a group of theirs, may chown
        os.chown(tmp, old.st_uid, old.st_gid)
    os.chmod(tmp, stat.S_IMODE(old.st_mode))


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

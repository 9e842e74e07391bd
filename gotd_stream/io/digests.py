"""sha256 of each input's bytes as they are read (before decompression): a manifest's fingerprints, no second read.

Off unless a caller asks (`digests()`); then `io.streams.read_chunks` passes its raw reader through `tap`, and each
input read to its end leaves (sha256, bytes) under its path as given. The registry is one per process, not per
thread: the embedding engine may read records in a pipeline thread.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import BinaryIO

_taps: dict[str, tuple[str, int]] | None = None  # path as given -> (sha256 hex, bytes), for inputs read to the end


@contextlib.contextmanager
def digests() -> Iterator[dict[str, tuple[str, int]]]:
    """While it is open, every input read whole is hashed; the dict it yields fills as inputs reach their end."""
    global _taps
    outer, _taps = _taps, {}
    try:
        yield _taps
    finally:
        _taps = outer


class _Hashing:
    """A reader that hashes what it reads and records the digest once the input is read to its end."""

    def __init__(self, raw: BinaryIO, path: str, into: dict):
        self.raw, self.path, self.into = raw, path, into
        self.digest, self.size = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.digest.update(data)
            self.size += len(data)
        else:
            self.into[self.path] = (self.digest.hexdigest(), self.size)
        return data


def tap(raw: BinaryIO, path: str) -> BinaryIO:
    """`raw`, hashed as it is read when `digests()` is open (else `raw` itself)."""
    return raw if _taps is None else _Hashing(raw, path, _taps)  # type: ignore[return-value]

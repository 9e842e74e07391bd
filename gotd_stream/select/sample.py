"""Uniform samples: reservoir sampling of a stream, and the bottom-k sample that can be drawn in parallel.

The fit's candidate sample is a bottom-k sample: every usable record gets a keyed hash of (seed, its shard's
content fingerprint, its line: see shard_identity) and the `size` records with the smallest keys are kept. A
record's key does not depend on its path's spelling, on the other records, on the order of the inputs or on
which process reads them, so the bottom-k of per-shard bottom-k lists is exactly the bottom-k of one pass: one
process, Ray tasks and Slurm tasks draw the same sample. The sample is then put in input order, so a sample as
large as the input is the input, as a stream's prefix would be.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import random
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from gotd_stream.io.records import Skips

T = TypeVar("T")

KEY_BYTES = 16  # 128-bit keys: two records of a corpus share one with a probability of about N^2 / 2^129


def reservoir(items: Iterable[T], size: int, seed: int = 0) -> tuple[list[T], int]:
    """(size items drawn uniformly without replacement, in stream order; how many were seen)."""
    rng = random.Random(seed)
    kept: list[tuple[int, T]] = []
    seen = 0
    for seen, item in enumerate(items, 1):
        if len(kept) < size:
            kept.append((seen, item))
        else:
            j = rng.randrange(seen)
            if j < size:
                kept[j] = (seen, item)
    kept.sort(key=lambda pair: pair[0])
    return [item for _, item in kept], seen


def shard_identity(path: str) -> str:
    """What a shard contributes to its records' sample keys: its content, not its name.

    A regular file is known by a hash of its size and its first and last MiB (as `--state` knows it), so the same
    file under another path, in another folder or on another node gets the same keys, while FineWeb-style files of
    one name in different folders do not; an object behind a URL gets the keys of the same bytes on a disk. Stdin
    is "-"; a pipe or device, its path as given.
    """
    from gotd_stream.errors import UsageProblem
    from gotd_stream.io.streams import STDIN, stat_input
    from gotd_stream.select.state import fingerprint

    if path == STDIN:
        return STDIN
    try:
        info = stat_input(path)
    except (OSError, UsageProblem):
        return path  # reading it will say what is wrong
    return fingerprint(path, info.st_size) if stat.S_ISREG(info.st_mode) else path


class BottomK:
    """The `size` items with the smallest keys, whatever the order they are offered in.

    Entries are (-key, item) in a min-heap, so the root is the largest key kept; equal keys (never seen in
    practice) are ordered by the item, so the result depends on the offered set alone.
    """

    def __init__(self, size: int):
        self.size = size
        self._heap: list[tuple[int, T]] = []

    def offer(self, key: int, item: T) -> None:
        entry = (-key, item)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def extend(self, keyed: Iterable[tuple[int, T]]) -> None:
        """Offer (key, item) pairs: another bottom-k, for a merge that is exact."""
        for key, item in keyed:
            self.offer(key, item)

    def keyed(self) -> list[tuple[int, T]]:
        """(key, item), smallest key first: the canonical order of the sample."""
        return [(-negated, item) for negated, item in sorted(self._heap, reverse=True)]

    def items(self) -> list[T]:
        return [item for _, item in self.keyed()]


def bottom_k_keyed(
    paths: list[str], text_field: str, size: int, seed: int, cut: int, skips: Skips, bar=None, first: int = 0
) -> tuple[list[tuple[int, tuple[int, int, str]]], int]:
    """The bottom-k sample of the usable records of `paths`, as (key, (input index, line, text cut to `cut`
    characters)), and how many usable records were read. `first` is the index of paths[0] among all the inputs
    (a task given one shard). Mergeable: see `BottomK.extend` and `in_input_order`."""
    from gotd_stream.io.datasets import expand_inputs
    from gotd_stream.io.records import read_records

    paths = expand_inputs(paths)  # a folder: its files, each keyed as given alone (io.datasets)
    bases = [
        hashlib.blake2b(f"{seed}\0".encode() + os.fsencode(shard_identity(p)) + b"\0", digest_size=KEY_BYTES)
        for p in paths
    ]
    kept = BottomK(size)
    seen = 0
    for record in read_records(paths, text_field, skips):
        seen += 1
        if bar is not None:
            bar.update(1)
        digest = bases[record.source].copy()
        digest.update(record.lineno.to_bytes(8, "little"))
        kept.offer(int.from_bytes(digest.digest(), "big"), (first + record.source, record.lineno, record.text[:cut]))
    return kept.keyed(), seen


def in_input_order(kept: BottomK) -> list[str]:
    """The sampled texts in input order (input, then line), as a sample of the whole input is the input itself."""
    return [text for _, _, text in sorted(kept.items())]


def bottom_k(
    paths: list[str], text_field: str, size: int, seed: int, cut: int, skips: Skips, bar=None
) -> tuple[list[str], int]:
    """The fit's candidate sample in one process: `size` texts in input order, and the usable records read."""
    kept = BottomK(size)
    keyed, seen = bottom_k_keyed(paths, text_field, size, seed, cut, skips, bar)
    kept.extend(keyed)
    return in_input_order(kept), seen

"""The k best (lowest-scoring) items of a stream in a bounded heap; ties go to the earlier item.

Items must be offered in input order: then an item that only ties the worst kept one never displaces it,
and the result is deterministic. Merging per-shard top-k lists offered in shard order gives exactly the
top-k of one pass over all shards.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np


class TopK:
    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[float, int, Any]] = []  # (-score, -seq, item): root = worst kept
        self._seq = 0

    def threshold(self) -> float:
        """Scores at or above this cannot enter any more (inf until the heap is full)."""
        return -self._heap[0][0] if len(self._heap) >= self.k else float("inf")

    def offer(self, scores: np.ndarray, items: Sequence[Any]) -> None:
        """Offer a batch in input order; only scores below the current threshold are looked at."""
        base = self._seq
        self._seq += len(items)
        for i in np.flatnonzero(scores < self.threshold()):
            entry = (-float(scores[i]), -(base + int(i)), items[i])
            if len(self._heap) < self.k:
                heapq.heappush(self._heap, entry)
            elif entry > self._heap[0]:
                heapq.heapreplace(self._heap, entry)

    def __len__(self) -> int:
        return len(self._heap)

    def best_first(self) -> list[tuple[float, Any]]:
        return [(-s, item) for s, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]

"""An unbiased sample of a stream of unknown length: reservoir sampling (Algorithm R), seeded."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


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

"""Batches of a window: longest texts first, each batch within a budget of padded tokens, padded into arrays.

The batches depend on the window's token lengths alone, so a window is cut the same way on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gotd_stream.features.engine.workers import Chunk

WINDOW_BATCHES = 16  # documents sorted together: this many full-length batches
BATCH_TOKENS = {"cuda": 2048 * 128, "cpu": 64 * 128}  # padded tokens per forward pass


def default_batch_tokens(device: str) -> int:
    return BATCH_TOKENS["cuda" if device.startswith("cuda") else "cpu"]


def plan_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int | None) -> tuple[np.ndarray, list[int]]:
    """(order, batch boundaries): longest first (ties by position), each batch within `batch_tokens` padded tokens.

    Depends on the lengths alone, so a window is cut into the same batches on every run and any worker count.
    """
    order = np.argsort(-lengths.astype(np.int64), kind="stable")
    bounds = [0]
    n = len(order)
    while bounds[-1] < n:
        longest = max(1, int(lengths[order[bounds[-1]]]))
        rows = max(1, batch_tokens // longest)
        if max_rows:
            rows = min(rows, max_rows)
        bounds.append(min(n, bounds[-1] + rows))
    return order, bounds


def pad_rows(chunk: Chunk, offsets: np.ndarray, rows: np.ndarray, pad_id: int, left: bool, out_ids, out_types) -> None:
    """Write the token ids of `rows` (indices into the chunk) into the (len(rows), L) arrays, padded."""
    lengths = chunk.lengths[rows].astype(np.int64)
    width = out_ids.shape[1]
    out_ids.fill(pad_id)
    if out_types is not None:
        out_types.fill(0)
    total = int(lengths.sum())
    if not total:
        return
    row = np.repeat(np.arange(len(rows)), lengths)
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = np.repeat(offsets[rows], lengths) + within
    column = within + np.repeat(width - lengths, lengths) if left else within
    out_ids[row, column] = chunk.ids[source]
    if out_types is not None:
        out_types[row, column] = chunk.types[source]


@dataclass
class Batch:
    ids: Any  # torch int32 (rows, L), pinned on CUDA
    lengths: Any  # torch int32 (rows,)
    types: Any  # torch int8 (rows, L) or None


@dataclass
class Packed:
    key: Any
    order: np.ndarray  # position in the window of each sorted row
    batches: list[Batch]
    side: np.ndarray | None

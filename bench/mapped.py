"""A design measured at token parity and not taken into the tool: the teacher's potentials on mapped static rows.

The static model (gotd_stream.features.static: MiniLM distilled into one vector per token) embeds tens of thousands
of texts a second, but its rows are not MiniLM's. A linear map W, fitted by ridge regression on the fit sample's
texts (their static rows against their MiniLM rows), brings them close:

    mapped(x) = unit(static(x) @ W)

and the teacher's own potentials score these rows in MiniLM's place, the lexical part of the hybrid computed
exactly beside them. bench/parity.py's gotd-mapped scores so the pieces the student passes (as the cascade does,
at a wider share): a cascade with no transformer. It kept more of MiniLM-hybrid's tokens than the student but
warmed the model up worse (BENCHMARKS.md, *The mapped static rows*), so the tool does not ship it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from gotd_stream.features.base import unit_rows
from gotd_stream.features.semantic import SemanticSpace

MAP_RIDGE = 1.0  # the L2 penalty of the map: 0.1 to 10 moved the recall of the teacher's top pieces by 1-2 points


def fit_map(static_rows: np.ndarray, teacher_rows: np.ndarray, ridge: float = MAP_RIDGE) -> np.ndarray:
    """W minimising |static @ W - teacher|^2 + ridge |W|^2 (float64 normal equations, float32 result)."""
    x = np.asarray(static_rows, np.float64)
    y = np.asarray(teacher_rows, np.float64)
    return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y).astype(np.float32)


class Mapped(SemanticSpace):
    """The static model's rows times the map, at unit length: a stand-in for the teacher's semantic space that the
    library's Hybrid and scorer take as they take a model."""

    def __init__(self, static, weights: np.ndarray, teacher: dict):
        self.static, self.weights, self.teacher = static, np.asarray(weights, np.float32), teacher
        self.dim = int(self.weights.shape[1])
        self.window = static.window
        self.name = f"mapped {static.name}"

    def _map(self, rows: np.ndarray) -> np.ndarray:
        return unit_rows(np.asarray(rows, np.float32) @ self.weights)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._map(self.static.encode(texts))

    def stream_with(self, items: Iterable[tuple[Any, list[str]]], side=None) -> Iterator[tuple[Any, np.ndarray, Any]]:
        for key, rows, other in self.static.stream_with(items, side=side):
            yield key, self._map(rows), other

    def settings(self) -> dict:
        return dict(self.teacher)

"""The library's semantic space served from sentence embeddings computed once and cached (the benches' .npy files).

The benches score the same pool many times (per target, per space, per epsilon); embedding it each time would
take hours on a CPU. `CachedEmbedder` is a `gotd_stream.features.semantic.SemanticSpace` like the library's Embedder
(encode, stream_with, settings, dim, window; the rest comes from the base), so `gotd_stream.fit`,
`Hybrid` and the scorer run unchanged on the cached rows. A text's row is looked up by the text itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from gotd_stream.features.semantic import SemanticSpace


class CachedEmbedder(SemanticSpace):
    """Precomputed unit rows of `texts` (all-MiniLM-L6-v2 at `max_tokens` in the benches), looked up by text."""

    window = 4096  # texts per stream() window: any size gives the same rows

    def __init__(self, texts: list[str], rows: np.ndarray, max_tokens: int = 128, name: str = "all-MiniLM-L6-v2"):
        from gotd_stream.features.semantic import CHARS_PER_TOKEN

        if len(texts) != len(rows):
            raise ValueError(f"{len(rows)} cached rows for {len(texts)} texts")
        self.index = {text: i for i, text in reversed(list(enumerate(texts)))}  # a repeated text: its first row
        self.rows = np.asarray(rows, np.float32)
        self.dim = self.rows.shape[1]
        self.name, self.max_tokens = name, max_tokens
        self.char_budget = max_tokens * CHARS_PER_TOKEN
        self._fingerprint: str | None = None
        self.seen: list[str] | None = None  # a list: every text encode() is asked for is appended to it

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.seen is not None:
            self.seen.extend(texts)
        try:
            return self.rows[[self.index[text] for text in texts]]
        except KeyError as exc:
            raise KeyError(f"no cached embedding for the text {str(exc)[:80]}...") from None

    def stream_with(self, items: Iterable[tuple[Any, list[str]]], side=None) -> Iterator[tuple[Any, np.ndarray, Any]]:
        """As Embedder.stream_with: the rows and, for the hybrid space, `side.encode` of the same texts."""
        for key, texts in items:
            yield key, self.encode(texts), side.encode(texts) if side is not None else None

    def settings(self) -> dict:
        """As Embedder.settings(); the fingerprint is a hash of the cached rows (no model is loaded)."""
        from gotd_stream.features.semantic import CHARS_PER_TOKEN

        if self._fingerprint is None:
            self._fingerprint = "cached-" + hashlib.sha256(self.rows.tobytes()).hexdigest()[:16]
        return {
            "name": self.name,
            "fingerprint": self._fingerprint,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "normalize": True,
            "chars_per_token": CHARS_PER_TOKEN,
        }

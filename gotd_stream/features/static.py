"""Static embeddings: a sentence-transformers model distilled into one vector per token (model2vec).

`--model static` distils the default model (`static:DIR`: the model in DIR) once, offline, into a folder whose
only module is a sentence-transformers `StaticEmbedding`: a text's embedding is the mean of its tokens' rows.
No transformer runs when scoring, so a CPU embeds tens of thousands of texts a second instead of dozens.

The folder is cached under `cache_root()/static/<key>`, the key a hash of the source model's files and the
recipe, so each source is distilled once per machine (about 30 s for all-MiniLM-L6-v2 on 2 cores). It is
written under a temporary name and renamed into place, with a lock so that two processes starting together
distil once; a crash leaves no half folder. The cached folder is an ordinary sentence-transformers folder:
`--model` takes it too, and copying it to another machine spares that machine the distillation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gotd_stream.errors import UsageProblem

log = logging.getLogger(__name__)

STATIC = "static"  # --model static, or static:DIR
CACHE_ENV = "GOTD_STREAM_CACHE"
# How the distillation runs (model2vec's defaults but for the dtype); part of the cache key: another recipe is
# another model.
RECIPE = {"method": "model2vec", "pca_dims": 256, "sif_coefficient": 1e-4, "dtype": "float32"}
# The files of a model folder that define it (weights, tokenizer, configuration), hashed for the cache key
DEFINING = (".safetensors", ".json", ".txt", ".model")


class StaticError(UsageProblem):
    """The static model cannot be distilled or cached; the message says what to do."""


def is_static(model: str | None) -> bool:
    """Whether a --model value asks for a distilled static model (`static` or `static:DIR`)."""
    return model is not None and (model == STATIC or model.startswith(STATIC + ":"))


def static_source(model: str) -> str | None:
    """The folder after `static:`, or None for the default model."""
    if not model.startswith(STATIC + ":"):
        return None
    return model[len(STATIC) + 1 :] or None


def cache_root() -> Path:
    """Where gotd-stream keeps what it builds once per machine: $GOTD_STREAM_CACHE, else the user cache folder
    ($XDG_CACHE_HOME or ~/.cache) /gotd-stream."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gotd-stream"


def source_key(folder: str) -> str:
    """A hash of the files that define a model folder and of the recipe: the name of its distilled folder."""
    digest = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode())
    root = Path(folder)
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix in DEFINING and not p.name.lower().startswith("readme")
    )
    for path in files:
        digest.update(f"\n{path.relative_to(root).as_posix()}\n".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def static_folder(source: str, source_name: str, load: Callable[[str], Any]) -> str:
    """The distilled folder of the model in `source` (distilled now if not cached yet; `load` loads a folder as
    a SentenceTransformer, safely: features.semantic.load_folder)."""
    root = cache_root() / STATIC
    folder = root / source_key(source)
    if (folder / "modules.json").is_file():
        missing = [name for name in ("model.safetensors", "tokenizer.json") if not (folder / name).is_file()]
        try:
            json.loads((folder / "modules.json").read_text())
        except (OSError, ValueError) as exc:
            raise unloadable(str(folder), f"modules.json is unreadable ({exc})") from None
        if missing:
            raise unloadable(str(folder), f"{' and '.join(missing)} missing")
        return str(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f".{folder.name}.lock"):
            if not (folder / "modules.json").is_file():  # another process may have made it while we waited
                _distil_into(load(source), source_name, folder)
    except OSError as exc:
        raise StaticError(
            f"cannot write the static model cache {root} ({exc.strerror or exc}): set {CACHE_ENV} to a writable folder"
        ) from None
    return str(folder)


def in_cache(folder: str) -> bool:
    """Whether `folder` is one of the distilled models of the cache (cache_root()/static/<key>)."""
    try:
        return Path(folder).resolve().parent == (cache_root() / STATIC).resolve()
    except OSError:
        return False


def unloadable(folder: str, why: str) -> StaticError:
    """The error for a static folder that does not load; for the cache's own, how to get it back."""
    advice = ""
    if in_cache(folder):
        advice = (
            f": it is the static model distilled into the cache {cache_root()}, damaged since; remove the folder "
            f"{folder} and the next run distils it again"
        )
    return StaticError(f"cannot load model {folder} ({why}){advice}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (a process waits for another distilling the same model)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the cache whole
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _distil_into(teacher, source_name: str, folder: Path) -> None:
    """Distil, save under a temporary name beside `folder`, rename into place."""
    log.info(f"static: distilling {source_name} once into {folder} (about 30 s for all-MiniLM-L6-v2 on 2 cores)")
    model = distil(teacher, source_name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save(str(tmp))
        (tmp / "gotd_stream_static.json").write_text(
            json.dumps({"source": source_name, "recipe": RECIPE}, sort_keys=True) + "\n"
        )
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "modules.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def distil(teacher, source_name: str):
    """A SentenceTransformer whose one module is the StaticEmbedding distilled from `teacher` (a loaded one).

    Runs on the CPU, on one thread: the table is then the same bits on every run of this machine (so is its
    fingerprint). model2vec's own progress bar stays quiet; the log says what happens.
    """
    from gotd_stream.threads import one_thread

    try:
        from model2vec.distill import distill_from_model
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError as exc:
        raise StaticError(f"static models need model2vec: pip install model2vec skeletoken ({exc})") from None
    first = teacher[0]
    auto_model, tokenizer = getattr(first, "auto_model", None), getattr(first, "tokenizer", None)
    if auto_model is None or not getattr(tokenizer, "is_fast", False):
        raise StaticError(
            f"cannot distil {source_name} into a static model: its first module is not a transformer with a fast "
            f"tokenizer"
        )
    with one_thread(), open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        static = distill_from_model(
            auto_model,
            tokenizer,
            pca_dims=RECIPE["pca_dims"],
            sif_coefficient=RECIPE["sif_coefficient"],
            quantize_to=RECIPE["dtype"],
            device="cpu",
        )
    import numpy as np

    weights = np.ascontiguousarray(np.asarray(static.embedding, np.float32))
    module = StaticEmbedding(static.tokenizer, embedding_weights=weights, base_model=source_name)
    return SentenceTransformer(modules=[module], device="cpu")


def load_static(folder: str, device: str = "cpu"):
    """A folder whose only module is a StaticEmbedding (what `distil` saves), loaded without sentence-transformers
    (whose import alone takes seconds) and without torch (a second more): a StaticModel, or None for any other
    folder (the caller loads it with sentence-transformers). Weights from model.safetensors only. The mean of
    token rows runs in numpy on the CPU whatever `device` is: a gather and a sum, no use for a GPU."""
    root = Path(folder)
    try:
        modules = json.loads((root / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    if not (
        isinstance(modules, list)
        and len(modules) == 1
        and isinstance(modules[0], dict)
        and str(modules[0].get("type", "")).endswith("StaticEmbedding")
        and modules[0].get("path") in ("", None)
        and (root / "model.safetensors").is_file()
        and (root / "tokenizer.json").is_file()
    ):
        return None
    import numpy as np
    from safetensors import safe_open
    from tokenizers import Tokenizer

    try:
        with safe_open(str(root / "model.safetensors"), framework="np") as fh:
            if set(fh.keys()) != {"embedding.weight"}:
                return None  # a model2vec layout (mapping, weights): sentence-transformers folds it
            weights = fh.get_tensor("embedding.weight")
        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    except Exception as exc:  # safetensors and tokenizers raise their own types for damaged files (bf16 too)
        raise unloadable(folder, str(exc)) from None
    if weights.ndim != 2 or not np.issubdtype(weights.dtype, np.floating):
        raise unloadable(folder, "embedding.weight is not a matrix of floats")
    return StaticModel(StaticBag(tokenizer, np.ascontiguousarray(weights, np.float32)))


def bag_means(weights, ids, lengths):
    """The mean of each text's token rows (float32): texts' `lengths` tokens one after the other in `ids`, a text
    without tokens a zero row. Exactly torch's EmbeddingBag (mode mean) on the CPU, bit for bit: each row's sum
    runs over its tokens in order in float32 (a sparse matrix of ones times the table: scipy adds row by row in
    index order), then is divided by its length."""
    import numpy as np
    from scipy import sparse

    lengths = np.asarray(lengths, np.int64)
    bounds = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=bounds[1:])
    ones = sparse.csr_matrix(
        (np.ones(len(ids), weights.dtype), np.asarray(ids), bounds), shape=(len(lengths), len(weights))
    )
    sums = np.asarray(ones @ weights, dtype=np.float32)
    used = lengths > 0
    sums[used] /= lengths[used].astype(np.float32)[:, None]
    return sums


class StaticBag:
    """A StaticEmbedding as sentence-transformers runs it, in numpy: the same tokenizer, without special tokens,
    and the same mean of token rows as its EmbeddingBag, under the same parameter name (`embedding.weight`)."""

    def __init__(self, tokenizer, weights):
        self.weights = weights
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()

    @property
    def embedding_dim(self) -> int:
        return int(self.weights.shape[1])

    def preprocess(self, texts: list[str]) -> dict:
        """input_ids (flat) and offsets (each text's first token), as StaticEmbedding.tokenize gives them."""
        import numpy as np

        ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        lengths = np.array([len(row) for row in ids], np.int64)
        flat = np.fromiter((i for row in ids for i in row), np.int64, int(lengths.sum()))
        return {"input_ids": flat, "offsets": np.cumsum(lengths) - lengths, "lengths": lengths}

    def forward(self, features: dict) -> dict:
        features["sentence_embedding"] = bag_means(self.weights, features["input_ids"], features["lengths"])
        return features


class StaticModel:
    """What SentenceTransformer is for a folder whose one module is a StaticEmbedding, as far as the Embedder
    and the engine use it: model[0], preprocess, the forward pass, encode, and the same state_dict keys (so
    the same fingerprint)."""

    default_prompt_name = None

    def __init__(self, bag: StaticBag):
        self.bag = bag

    def __getitem__(self, index: int) -> StaticBag:
        return [self.bag][index]

    def __call__(self, features: dict) -> dict:
        return self.bag.forward(features)

    def preprocess(self, texts: list[str]) -> dict:
        return self.bag.preprocess(texts)

    def get_embedding_dimension(self) -> int:
        return self.bag.embedding_dim

    def state_dict(self) -> dict:
        return {"0.embedding.weight": self.bag.weights}

    def eval(self) -> StaticModel:
        return self

    def encode(self, texts: list[str], batch_size: int = 64, **_):
        """Rows in order, not normalised: SentenceTransformer.encode's answer for this model."""
        import numpy as np

        parts = [self(self.preprocess(texts[i : i + batch_size]))["sentence_embedding"] for i in
                 range(0, len(texts), batch_size)]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, self.get_embedding_dimension()), np.float32)

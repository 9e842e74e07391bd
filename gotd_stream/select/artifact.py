"""The fitted potentials on disk: safetensors arrays plus a JSON header, never a pickle.

Scoring can be re-run, on any node, without re-fitting; the artifact carries everything scoring needs
(target embeddings, g, epsilon, the calibration mean) and how the embeddings were made, so that a
different model is refused rather than silently producing meaningless scores.

A damaged file must never score: the header carries a sha256 of itself and of every array (dtype, shape,
bytes), and `load` checks it, then every field and shape, before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.errors import RuntimeProblem
from gotd_stream.io.streams import atomic_output

FORMAT = "gotd-stream potentials"
# 4 stores the lexical projection in float16, with rows for the buckets the fit sample used only (lexical_rows);
# 3 added the checksum; 2 added feature spaces (lexical, hybrid); version 1 files are semantic
FORMAT_VERSION = 4
HEADER_FIELDS = {"format", "format_version", "epsilon", "mean_f", "ot_cost", "model", "fit", "features", "checksum"}
CHECKSUMMED = 3  # the first version with a checksum: older files load, but their integrity cannot be verified
# The potentials stay within the cost range (squared distances of unit vectors: [0, 4]) plus the solver's
# shift of epsilon * log(sample size); these bounds are far wider and only catch absurd values in unchecked files.
POTENTIAL_BOUND = (100.0, 100.0)  # |g|, |mean_f| <= a + b * epsilon
COST_BOUND = 8.0  # <P, C> with P a probability plan and C <= 4
NORM_TOLERANCE = 1e-2  # target rows are L2-normalised (or zero: a text without a word, in the lexical space)


class ArtifactError(RuntimeProblem):
    """Not a readable artifact of a version we understand; the message names the file."""


@dataclass
class Potentials:
    target: np.ndarray  # (m, d) float32 target embeddings
    g: np.ndarray  # (m,) float64 target potential
    epsilon: float
    mean_f: float  # mean candidate potential over the fit sample: the calibration constant
    ot_cost: float
    model: dict | None  # Embedder.settings(); None for the lexical space, which needs no model
    fit: dict = field(default_factory=dict)  # how it was fitted: sizes, iterations, error, seed, ...
    features: dict = field(default_factory=lambda: {"space": "semantic"})  # Featurizer.describe()
    arrays: dict = field(default_factory=dict)  # what the space fitted (lexical IDF and projection)
    format_version: int = FORMAT_VERSION  # of the file it was read from

    @property
    def verified(self) -> bool:
        """Whether its integrity was checked: files older than version 3 carry no checksum."""
        return self.format_version >= CHECKSUMMED

    @property
    def fit_id(self) -> str:
        """Identifies what scores mean: same id, comparable scores (written with each selected record)."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.target).tobytes())
        digest.update(np.ascontiguousarray(self.g).tobytes())
        for name in sorted(self.arrays):
            digest.update(np.ascontiguousarray(self.arrays[name]).tobytes())
        digest.update(json.dumps([self.epsilon, self.mean_f, self.model, self.features], sort_keys=True).encode())
        return digest.hexdigest()[:12]

    def scorer(self, device: str = "cpu"):
        """The calibrated gradient in this fit: a callable from feature rows to scores (lower is better)."""
        from gotd_stream.select.ot import CalibratedGradient

        return CalibratedGradient(self.target, self.g, self.epsilon, self.mean_f, device)

    def header(self) -> dict:
        """The JSON header `save` writes, less its checksum."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "epsilon": self.epsilon,
            "mean_f": self.mean_f,
            "ot_cost": self.ot_cost,
            "model": self.model,
            "fit": self.fit,
            "features": self.features,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {
            "target": np.ascontiguousarray(self.target, np.float32),
            "g": np.ascontiguousarray(self.g, np.float64),
        }
        tensors.update({name: np.ascontiguousarray(array) for name, array in self.arrays.items()})
        return tensors

    def save(self, path: str) -> None:
        from safetensors.numpy import save

        tensors = self.tensors()
        header = self.header()
        header["checksum"] = checksum(header, tensors)
        data = save(tensors, metadata={"gotd_stream": json.dumps(header, sort_keys=True)})
        with atomic_output(path) as fh:
            fh.write(data)


def checksum(header: dict, tensors: dict[str, np.ndarray]) -> str:
    """sha256 of the header (canonical JSON, without its checksum) and of every array's name, dtype, shape, bytes."""
    digest = hashlib.sha256()
    fields = {key: value for key, value in header.items() if key != "checksum"}
    digest.update(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        little = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
        digest.update(f"\n{name}:{little.dtype.str}:{list(array.shape)}\n".encode())
        digest.update(little.tobytes())
    return "sha256:" + digest.hexdigest()


def load(path: str) -> Potentials:
    """Read and validate an artifact; anything unexpected is an ArtifactError, never code execution."""
    try:
        return _load(path)
    except RecursionError:  # JSON nested thousands deep, met while parsing, hashing or describing it
        raise damaged(path, "the header is nested too deeply") from None


def _load(path: str) -> Potentials:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as fh:
            meta = fh.metadata() or {}
            if "gotd_stream" not in meta:
                raise damaged(path, "not a gotd-stream potentials file: no gotd_stream header")
            text = meta["gotd_stream"]
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise damaged(path, f"not a gotd-stream potentials file, or truncated: {exc}") from None
    try:
        header = json.loads(text)
    except ValueError:
        raise damaged(path, "the header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise damaged(path, "not a gotd-stream potentials file")
    version = header.get("format_version")
    if not is_int(version) or version < 1:
        raise damaged(path, f"format version {brief(version)} is not a positive integer")
    if version > FORMAT_VERSION:
        raise damaged(
            path,
            f"format version {version} is newer than this gotd-stream reads ({FORMAT_VERSION}): upgrade gotd-stream",
        )
    stored = header.get("checksum")
    if stored is None and version >= CHECKSUMMED:
        raise damaged(path, f"no checksum, which format version {version} has")
    # checked whenever present, so that a version number damaged down to 2 does not skip it
    if stored is not None and stored != checksum(header, tensors):
        raise damaged(path, "checksum mismatch: the file changed after `fit` wrote it")
    unknown = set(header) - HEADER_FIELDS
    if unknown:
        raise damaged(path, f"unknown header fields: {', '.join(sorted(map(brief, unknown)))}")
    problem = validate(header, tensors)
    if problem:
        raise damaged(path, problem)
    return Potentials(
        target=tensors.pop("target"),
        g=tensors.pop("g"),
        epsilon=float(header["epsilon"]),
        mean_f=float(header["mean_f"]),
        ot_cost=float(header["ot_cost"]),
        model=header["model"],
        fit=header.get("fit", {}),
        features=header.get("features", {"space": "semantic"}),
        arrays=tensors,
        format_version=version,
    )


def damaged(path: str, detail: str) -> ArtifactError:
    return ArtifactError(f"{path}: damaged or incompatible artifact ({detail})")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite JSON number (not a boolean; an integer too large for a float is not finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def brief(value, limit: int = 60) -> str:
    """repr, cut short: a damaged header can hold anything."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_count(value) -> bool:
    return is_int(value) and value >= 0


FIT_FIELDS = {  # what `fit` records about itself: shown by `info`, never used to score
    "sampling": ("a string", lambda value: isinstance(value, str)),
    "target_file": ("a string", lambda value: isinstance(value, str)),
    "gotd_stream": ("a string", lambda value: isinstance(value, str)),
    "candidates_seen": ("a count", is_count),
    "target_seen": ("a count", is_count),
    "sample_size": ("a count", is_count),
    "target_size": ("a count", is_count),
    "iterations": ("a count", is_count),
    "max_iter": ("a count", is_count),
    "seed": ("an integer", is_int),
    "marginal_error": ("a finite number", is_real),
    "tol": ("a finite number", is_real),
}


def validate(header: dict, tensors: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a parsed header and its arrays (None: nothing), so that nothing downstream trips on it."""
    from gotd_stream.features.base import SPACES

    epsilon, mean_f, ot_cost = header.get("epsilon"), header.get("mean_f"), header.get("ot_cost")
    if not is_real(epsilon) or epsilon <= 0:
        return f"epsilon {brief(epsilon)} is not a finite positive number"
    bound = POTENTIAL_BOUND[0] + POTENTIAL_BOUND[1] * epsilon
    if not is_real(mean_f) or abs(mean_f) > bound:
        return f"mean_f {brief(mean_f)} is not a finite number within ±{bound:g}"
    if not is_real(ot_cost) or not -1e-6 <= ot_cost <= COST_BOUND:
        return f"ot_cost {brief(ot_cost)} is not a finite number in [0, {COST_BOUND:g}]"
    fit = header.get("fit", {})
    if not isinstance(fit, dict):
        return "fit is not an object"
    for key, (kind, valid) in FIT_FIELDS.items():
        if key in fit and not valid(fit[key]):
            return f"fit.{key} {brief(fit[key])} is not {kind}"
    if header["format_version"] == 1 and "features" not in header:
        features = {"space": "semantic"}  # version 1 knew only the semantic space
    else:
        features = header.get("features")
    if not isinstance(features, dict):
        return "features is not an object"
    space = features.get("space")
    if not isinstance(space, str) or space not in SPACES:
        return f"unknown feature space {brief(space)}: upgrade gotd-stream, or the file is damaged"
    model = header.get("model")
    if space == "lexical":
        model_dim = 0
        if model is not None:
            return "the lexical space needs no model, but the header names one"
    else:
        problem = validate_model(model)
        if problem:
            return problem
        model_dim = model["dim"]
    lexical_dim = 0
    expected = {"target", "g"}
    if space != "semantic":
        problem = validate_lexical(features, tensors)
        if problem:
            return problem
        lexical_dim = features["dim"]
        expected |= {"lexical_idf", "lexical_projection"} | ({"lexical_rows"} & set(tensors))
    if space == "hybrid" and not (is_real(features.get("weight")) and 0 <= features["weight"] <= 1):
        return f"hybrid weight {brief(features.get('weight'))} is not a number in [0, 1]"
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        return f"arrays {'missing: ' + ', '.join(missing) if missing else 'unexpected: ' + ', '.join(extra)}"
    return validate_potentials(tensors["target"], tensors["g"], model_dim + lexical_dim, bound)


def validate_model(model) -> str | None:
    """The embedder settings (Embedder.settings()) of the semantic and hybrid spaces."""
    from gotd_stream.features.semantic import CHARS_PER_TOKEN

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


def validate_lexical(features: dict, tensors: dict[str, np.ndarray]) -> str | None:
    """The lexical recipe must be this code's, and its arrays must fit it."""
    from gotd_stream.features.lexical import LEXICAL_RECIPE

    for key in ("buckets", "dim", "char_budget"):
        if not (is_int(features.get(key)) and features[key] >= 1):
            return f"lexical {key} {brief(features.get(key))} is not a positive integer"
    for key, value in LEXICAL_RECIPE.items():
        if features.get(key) != value:
            return f"lexical {key} {brief(features.get(key))} differs from this gotd-stream's {value!r}"
    buckets, dim = features["buckets"], features["dim"]
    problem = float_array(tensors, "lexical_idf", (buckets,))
    if problem:
        return problem
    rows = tensors.get("lexical_rows")
    if rows is not None:  # format version 4: a projection row for each bucket the fit sample used, in order
        if rows.dtype != np.int32 or rows.ndim != 1:
            return f"lexical_rows is {rows.dtype}{list(rows.shape)}, expected int32[rows]"
        if len(rows) and (rows[0] < 0 or rows[-1] >= buckets or (np.diff(rows) <= 0).any()):
            return f"lexical_rows are not increasing buckets in [0, {buckets})"
        return float_array(tensors, "lexical_projection", (len(rows), dim), np.float16)
    return float_array(tensors, "lexical_projection", (buckets, dim))


def float_array(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dtype=np.float32) -> str | None:
    """What is wrong with a float array of the lexical space: missing, another dtype or shape, non-finite."""
    array = tensors.get(name)
    if array is None:
        return f"arrays missing: {name}"
    if array.dtype != dtype or array.shape != shape:
        return f"{name} is {array.dtype}{list(array.shape)}, expected {np.dtype(dtype).name}{list(shape)}"
    if not np.isfinite(array).all():
        return f"{name} holds non-finite values"
    return None


def validate_potentials(target: np.ndarray, g: np.ndarray, dim: int, bound: float) -> str | None:
    """The target embeddings (m, dim) float32, unit rows, m >= 1; g (m,) float64 within the bound."""
    if target.dtype != np.float32 or target.ndim != 2 or target.shape[0] < 1 or target.shape[1] != dim:
        return f"target is {target.dtype}{list(target.shape)}, expected float32[m >= 1, {dim}]"
    if g.dtype != np.float64 or g.shape != (len(target),):
        return f"g is {g.dtype}{list(g.shape)}, expected float64[{len(target)}]"
    if not np.isfinite(target).all():
        return "target holds non-finite values"
    norms = np.linalg.norm(target.astype(np.float64), axis=1)
    if not ((np.abs(norms - 1) <= NORM_TOLERANCE) | (norms == 0)).all():
        return "target rows are not unit vectors"
    if not np.isfinite(g).all() or np.abs(g).max() > bound:
        return f"g holds values that are non-finite or beyond ±{bound:g}"
    return None

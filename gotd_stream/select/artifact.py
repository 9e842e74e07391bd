"""The fitted potentials on disk: safetensors arrays plus a JSON header, never a pickle.

Scoring can be re-run, on any node, without re-fitting; the artifact carries everything scoring needs
(target embeddings, g, epsilon, the calibration mean) and how the embeddings were made, so that a
different model is refused rather than silently producing meaningless scores.

A damaged file must never score: the header carries a sha256 of itself and of every array (dtype, shape,
bytes), and `load` checks it, then every field and shape, before anything is used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.checks import brief, is_count, is_int, is_real
from gotd_stream.errors import RuntimeProblem
from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.remote import RemoteFailure, RemoteProblem, local_copy

FORMAT = "gotd-stream potentials"
# 4 stores the lexical projection in float16, with rows for the buckets the fit sample used only (lexical_rows);
# 3 added the checksum; 2 added feature spaces (lexical, hybrid); version 1 files are semantic
FORMAT_VERSION = 4
# several targets in one file (a Mixture); a file with one target is still written as FORMAT_VERSION
MIX_FORMAT_VERSION = 5
HEADER_FIELDS = {
    "format",
    "format_version",
    "epsilon",
    "mean_f",
    "ot_cost",
    "model",
    "fit",
    "features",
    "checksum",
    "targets",  # version 5: [{name, weight, mean_f, ot_cost, fit}], in place of mean_f and ot_cost
    "student",  # a distilled scorer (select.distill), with its arrays student.*; version 5: in each target's entry
}
CHECKSUMMED = 3  # the first version with a checksum: older files load, but their integrity cannot be verified
# The potentials stay within the cost range (squared distances of unit vectors: [0, 4]) plus the solver's
# shift of epsilon * log(sample size); these bounds are far wider and only catch absurd values in unchecked files.
POTENTIAL_BOUND = (100.0, 100.0)  # |g|, |mean_f| <= a + b * epsilon
COST_BOUND = 8.0  # <P, C> with P a probability plan and C <= 4
NORM_TOLERANCE = 1e-2  # target rows are L2-normalised (or zero: a text without a word, in the lexical space)


COPIES = "target_copies"  # the optional array of the target texts' signatures (select.dedup)


class ArtifactError(RuntimeProblem):
    """Not a readable artifact of a version we understand; the message names the file."""


@dataclass
class Potentials:
    """A fit of one target (a .gotd file): the target's embeddings, its potential g, epsilon and the calibration
    mean_f; `save` writes it, `load` reads it back checked."""

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
    student: object = None  # a select.distill.Student, or None: not part of the fit id (the teacher's scores)
    # the target texts' duplicate-guard signatures (select.dedup.signatures: (m, WIDTH) int64), so that no
    # selected unit copies a target text; None in files fitted before they were stored. Not part of fit_id: they
    # change nothing about what scores mean.
    copies: np.ndarray | None = None

    @property
    def verified(self) -> bool:
        """Whether its integrity was checked: files older than version 3 carry no checksum."""
        return self.format_version >= CHECKSUMMED

    @functools.cached_property
    def fit_id(self) -> str:
        """Identifies what scores mean: same id, comparable scores (written with each selected record). A hash
        over every array: computed once per artifact, which is not changed after it is made or loaded."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.target).tobytes())
        digest.update(np.ascontiguousarray(self.g).tobytes())
        for name in sorted(self.arrays):
            digest.update(np.ascontiguousarray(self.arrays[name]).tobytes())
        digest.update(json.dumps([self.epsilon, self.mean_f, self.model, self.features], sort_keys=True).encode())
        return digest.hexdigest()[:12]

    @functools.cached_property
    def student_id(self) -> str | None:
        """Identifies the student's scores (None: no student): select.distill.scoring_id."""
        from gotd_stream.select.distill import scoring_id

        return scoring_id(self, "student") if self.student is not None else None

    def scorer(self, device: str = "cpu"):
        """The calibrated gradient in this fit: a callable from feature rows to scores (lower is better)."""
        from gotd_stream.select.ot import CalibratedGradient

        return CalibratedGradient(self.target, self.g, self.epsilon, self.mean_f, device)

    def header(self) -> dict:
        """The JSON header `save` writes, less its checksum."""
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "epsilon": self.epsilon,
            "mean_f": self.mean_f,
            "ot_cost": self.ot_cost,
            "model": self.model,
            "fit": self.fit,
            "features": self.features,
        }
        if self.student is not None:
            header["student"] = self.student.header()
        return header

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {
            "target": np.ascontiguousarray(self.target, np.float32),
            "g": np.ascontiguousarray(self.g, np.float64),
        }
        tensors.update({name: np.ascontiguousarray(array) for name, array in self.arrays.items()})
        if self.student is not None:
            tensors.update(self.student.arrays(STUDENT_PREFIX))
        if self.copies is not None:
            tensors[COPIES] = np.ascontiguousarray(self.copies, np.int64)
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
        with local_copy(path) as local, safe_open(local, framework="numpy") as fh:
            meta = fh.metadata() or {}
            if "gotd_stream" not in meta:
                raise damaged(path, "not a gotd-stream potentials file: no gotd_stream header")
            text = meta["gotd_stream"]
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (ArtifactError, RemoteProblem, RemoteFailure):
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
    if version > MIX_FORMAT_VERSION:
        raise damaged(
            path,
            f"format version {version} is newer than this gotd-stream reads ({MIX_FORMAT_VERSION}): "
            "upgrade gotd-stream",
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
    tensors, students = split_students(tensors)
    copies = {key: tensors.pop(key) for key in [key for key in tensors if key.endswith(COPIES)]}
    for key, array in copies.items():
        problem = validate_copies(key, array)
        if problem:
            raise damaged(path, problem)
    if version >= MIX_FORMAT_VERSION or "targets" in header:
        return _load_mixture(path, header, tensors, version, students, copies)
    problem = validate(header, tensors)
    student = None
    if not problem:
        problem, student = checked_student(header.get("student"), students.pop("", None), "")
    if not problem and students:
        problem = f"student arrays of targets in a file of one target: {', '.join(sorted(students))}"
    if problem:
        raise damaged(path, problem)
    if set(copies) - {COPIES}:
        raise damaged(path, f"unexpected arrays: {', '.join(sorted(set(copies) - {COPIES}))}")
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
        student=student,
        copies=copies.get(COPIES),
    )


STUDENT_PREFIX = "student."  # a student's arrays: student.rows, .weights, .sample; version 5: targets.I.student.*


def split_students(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The arrays less the students', and the students' by owner ("" for one target, "I" for target I)."""
    rest, students = {}, {}
    for name, array in tensors.items():
        owner, found, rest_name = name.partition(STUDENT_PREFIX)
        if found and (owner == "" or (owner.startswith("targets.") and owner.endswith("."))):
            key = owner[len("targets.") : -1] if owner else ""
            students.setdefault(key, {})[rest_name] = array
        else:
            rest[name] = array
    return rest, students


def checked_student(header, arrays: dict | None, where: str):
    """(problem, student): a student's header and arrays checked, and restored; both absent is no student."""
    from gotd_stream.select.distill import restore, validate

    if header is None and arrays is None:
        return None, None
    if header is None:
        return f"{where}student arrays without a student header", None
    problem = validate(header, arrays or {})
    if problem:
        return where + problem, None
    return None, restore(header, arrays)


def validate_copies(name: str, array: np.ndarray) -> str | None:
    """What is wrong with an array of target signatures (None: nothing)."""
    from gotd_stream.select.dedup import OLD_WIDTHS, WIDTH

    # an older rule's signatures (OLD_WIDTHS) load: scoring works, and the guard warns that it cannot use them
    if array.dtype != np.int64 or array.ndim != 2 or (array.shape[1] != WIDTH and array.shape[1] not in OLD_WIDTHS):
        return f"{name} must be int64 of shape (texts, {WIDTH}), not {array.dtype} {list(array.shape)}"
    return None


def damaged(path: str, detail: str) -> ArtifactError:
    return ArtifactError(f"{path}: damaged or incompatible artifact ({detail})")


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
    from gotd_stream.features import validate_fields
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
    fields = validate_fields(space, features, header.get("model"), tensors)  # the space checks its own
    if isinstance(fields, str):
        return fields
    expected = {"target", "g"} | fields.arrays
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        return f"arrays {'missing: ' + ', '.join(missing) if missing else 'unexpected: ' + ', '.join(extra)}"
    return validate_potentials(tensors["target"], tensors["g"], fields.dim, bound)


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


# --- several targets in one artifact (format version 5) ------------------------------------------------------------

PER_TARGET_FIT = ("target_file", "target_seen", "target_size", "iterations", "marginal_error")
TARGET_FIELDS = {"name", "weight", "mean_f", "ot_cost", "fit", "student"}


@dataclass
class Mixture:
    """Several targets fitted on one candidate sample, in one feature space: one artifact, one Potentials each.

    The parts share the sample, the space (its fitted arrays), the model and epsilon; each has its own target
    embeddings, potential g, calibration mean and fit record, and scores exactly as a single-target fit of its
    target on the same sample would (the same fit id). The weights are normalised (they sum to 1).
    """

    names: list[str]
    weights: list[float]
    parts: list[Potentials]
    format_version: int = MIX_FORMAT_VERSION

    @property
    def epsilon(self) -> float:
        return self.parts[0].epsilon

    @property
    def model(self) -> dict | None:
        return self.parts[0].model

    @property
    def features(self) -> dict:
        return self.parts[0].features

    @property
    def arrays(self) -> dict:
        return self.parts[0].arrays

    @property
    def fit(self) -> dict:
        """What the targets' fits share: the sample, its size and seed, the tolerance."""
        return {key: value for key, value in self.parts[0].fit.items() if key not in PER_TARGET_FIT}

    @property
    def verified(self) -> bool:
        """Version 4 always carries a checksum, checked on load."""
        return True

    @functools.cached_property
    def fit_id(self) -> str:
        """Identifies what the scores mean: every part's fit id, its name and its weight (written with each line);
        computed once per artifact."""
        triples = zip(self.names, self.weights, self.parts, strict=True)
        parts = [[name, weight, part.fit_id] for name, weight, part in triples]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]

    @functools.cached_property
    def student_id(self) -> str | None:
        """Identifies the students' scores (None: no student): select.distill.scoring_id."""
        from gotd_stream.select.distill import scoring_id, students_of

        return scoring_id(self, "student") if students_of(self) is not None else None

    def scorers(self, device: str = "cpu") -> list:
        """Each target's calibrated gradient (Potentials.scorer), in the order of the targets."""
        return [part.scorer(device) for part in self.parts]

    def header(self) -> dict:
        """The JSON header `save` writes, less its checksum."""
        targets = [
            {
                "name": name,
                "weight": weight,
                "mean_f": part.mean_f,
                "ot_cost": part.ot_cost,
                "fit": {key: part.fit[key] for key in PER_TARGET_FIT if key in part.fit},
                **({"student": part.student.header()} if part.student is not None else {}),
            }
            for name, weight, part in zip(self.names, self.weights, self.parts, strict=True)
        ]
        return {
            "format": FORMAT,
            "format_version": MIX_FORMAT_VERSION,
            "epsilon": self.epsilon,
            "model": self.model,
            "fit": self.fit,
            "features": self.features,
            "targets": targets,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {name: np.ascontiguousarray(array) for name, array in self.arrays.items()}
        for i, part in enumerate(self.parts):
            tensors[f"targets.{i}.target"] = np.ascontiguousarray(part.target, np.float32)
            tensors[f"targets.{i}.g"] = np.ascontiguousarray(part.g, np.float64)
            if part.student is not None:
                tensors.update(part.student.arrays(f"targets.{i}.{STUDENT_PREFIX}"))
        return tensors

    save = Potentials.save  # the same writer: the header with its checksum, then the arrays


def _peek(path: str) -> dict:
    """An artifact's header alone, unchecked ({} for a file that is not one: `load` says what is wrong)."""
    from safetensors import safe_open

    try:
        with local_copy(path) as local, safe_open(local, framework="numpy") as fh:
            header = json.loads((fh.metadata() or {}).get("gotd_stream", "{}"))
    except Exception:  # not an artifact, or damaged
        return {}
    return header if isinstance(header, dict) else {}


def holds_targets(path: str) -> bool:
    """Whether `path` looks like an artifact of several targets (its header alone; `load` checks the rest)."""
    return "targets" in _peek(path)


def space_of(path: str) -> str | None:
    """The feature space `path` looks fitted in (its header alone; `load` checks the rest)."""
    features = _peek(path).get("features")
    return features.get("space") if isinstance(features, dict) else None


def _load_mixture(
    path: str, header: dict, tensors: dict[str, np.ndarray], version: int, students=None, copies=None
) -> Mixture:
    if version < MIX_FORMAT_VERSION:
        raise damaged(path, f"several targets in a format version {version} file, which holds one")
    problem = validate_mixture(header, tensors)
    students = dict(students or {})
    own = []
    if not problem and ("student" in header or "" in students):
        problem = "a student at the top of a file of several targets (each target has its own)"
    for i, entry in enumerate(header["targets"] if not problem else []):
        problem, student = checked_student(
            entry.get("student"), students.pop(str(i), None), f"target {entry['name']}: "
        )
        if problem:
            break
        own.append(student)
    if not problem and students:
        problem = f"student arrays of unknown targets: {', '.join(sorted(students))}"
    if not problem and len({s is None for s in own}) > 1:
        problem = "some targets have a student and others not"
    if problem:
        raise damaged(path, problem)
    arrays = {key: value for key, value in tensors.items() if not key.startswith("targets.")}
    parts = [
        Potentials(
            target=tensors[f"targets.{i}.target"],
            g=tensors[f"targets.{i}.g"],
            epsilon=float(header["epsilon"]),
            mean_f=float(entry["mean_f"]),
            ot_cost=float(entry["ot_cost"]),
            model=header["model"],
            fit={**header.get("fit", {}), **entry.get("fit", {})},
            features=header["features"],
            arrays=arrays,
            format_version=version,
            student=own[i],
            copies=(copies or {}).get(f"targets.{i}.{COPIES}"),
        )
        for i, entry in enumerate(header["targets"])
    ]
    known = {f"targets.{i}.{COPIES}" for i in range(len(parts))}
    if set(copies or {}) - known:
        raise damaged(path, f"unexpected arrays: {', '.join(sorted(set(copies) - known))}")
    names = [entry["name"] for entry in header["targets"]]
    return Mixture(names, [float(entry["weight"]) for entry in header["targets"]], parts, version)


def validate_mixture(header: dict, tensors: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a version-5 header and its arrays (None: nothing): each target is checked as a
    single-target artifact made of the shared fields and its own."""
    from gotd_stream.select.targets import MAX_TARGETS, check_name

    for key in ("mean_f", "ot_cost"):
        if key in header:
            return f"{key} at the top of a file of several targets (each target has its own)"
    targets = header.get("targets")
    if not isinstance(targets, list) or not 2 <= len(targets) <= MAX_TARGETS:
        return f"targets {brief(targets)} is not a list of 2 to {MAX_TARGETS} targets"
    shared = {key: value for key, value in tensors.items() if not key.startswith("targets.")}
    expected = {f"targets.{i}.{array}" for i in range(len(targets)) for array in ("target", "g")}
    found = set(tensors) - set(shared)
    if found != expected:
        missing, extra = sorted(expected - found), sorted(found - expected)
        return f"arrays {'missing: ' + ', '.join(missing) if missing else 'unexpected: ' + ', '.join(extra)}"
    fit = header.get("fit", {})
    if not isinstance(fit, dict):
        return "fit is not an object"
    common = {key: value for key, value in header.items() if key != "targets"}
    names: set[str] = set()
    weights = []
    for i, entry in enumerate(targets):
        if not isinstance(entry, dict):
            return f"targets[{i}] is not an object"
        unknown = set(entry) - TARGET_FIELDS
        if unknown:
            return f"targets[{i}] has unknown fields: {', '.join(sorted(map(brief, unknown)))}"
        name = entry.get("name")
        if not isinstance(name, str) or check_name(name):
            return f"targets[{i}] name {brief(name)} is not a target name"
        if name in names:
            return f"two targets are named {name!r}"
        names.add(name)
        weight = entry.get("weight")
        if not is_real(weight) or weight <= 0:
            return f"target {name}: weight {brief(weight)} is not a positive finite number"
        weights.append(float(weight))
        own = entry.get("fit", {})
        if not isinstance(own, dict):
            return f"target {name}: fit is not an object"
        view = dict(common, mean_f=entry.get("mean_f"), ot_cost=entry.get("ot_cost"), fit={**fit, **own})
        arrays = dict(shared, target=tensors[f"targets.{i}.target"], g=tensors[f"targets.{i}.g"])
        problem = validate(view, arrays)
        if problem:
            return f"target {name}: {problem}"
    if abs(math.fsum(weights) - 1.0) > 1e-6:
        return f"the target weights sum to {math.fsum(weights):g}, not 1"
    return None

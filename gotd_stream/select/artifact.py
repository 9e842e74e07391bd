"""The fitted potentials on disk: safetensors arrays plus a JSON header, never a pickle.

Scoring can be re-run, on any node, without re-fitting; the artifact carries everything scoring needs
(target embeddings, g, epsilon, the calibration mean) and how the embeddings were made, so that a
different model is refused rather than silently producing meaningless scores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.io.streams import atomic_output

FORMAT = "gotd-stream potentials"
FORMAT_VERSION = 2  # 2 added feature spaces (lexical, hybrid); version 1 files are semantic


class ArtifactError(Exception):
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
    features: dict = field(default_factory=lambda: {"space": "semantic"})  # features.describe()
    arrays: dict = field(default_factory=dict)  # what the space fitted (lexical IDF and projection)

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

    def header(self) -> dict:
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

    def save(self, path: str) -> None:
        from safetensors.numpy import save

        tensors = {
            "target": np.ascontiguousarray(self.target, np.float32),
            "g": np.ascontiguousarray(self.g, np.float64),
        }
        tensors.update({name: np.ascontiguousarray(array) for name, array in self.arrays.items()})
        data = save(tensors, metadata={"gotd_stream": json.dumps(self.header(), sort_keys=True)})
        with atomic_output(path) as fh:
            fh.write(data)


def load(path: str) -> Potentials:
    """Read and validate an artifact; anything unexpected is an ArtifactError, never code execution."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as fh:
            meta = fh.metadata() or {}
            if "gotd_stream" not in meta:
                raise ArtifactError(f"{path}: not a gotd-stream potentials file (no gotd_stream header)")
            header = json.loads(meta["gotd_stream"])
            keys = set(fh.keys())
            if not {"target", "g"} <= keys:
                raise ArtifactError(
                    f"{path}: damaged potentials file (arrays missing: {sorted({'target', 'g'} - keys)})"
                )
            target, g = fh.get_tensor("target"), fh.get_tensor("g")
            arrays = {key: fh.get_tensor(key) for key in keys - {"target", "g"}}
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise ArtifactError(f"{path}: not a gotd-stream potentials file or truncated ({exc})") from None
    if header.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a gotd-stream potentials file")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format version {version} is newer than this gotd-stream reads ({FORMAT_VERSION}): "
            "upgrade gotd-stream"
        )
    space = header.get("features", {}).get("space", "semantic")
    from gotd_stream.features.lexical import SPACES

    if space not in SPACES:
        raise ArtifactError(f"{path}: unknown feature space {space!r}: upgrade gotd-stream")
    if space != "semantic" and not {"lexical_idf", "lexical_projection"} <= set(arrays):
        raise ArtifactError(f"{path}: damaged potentials file (the lexical space's arrays are missing)")
    if target.ndim != 2 or g.shape != (len(target),) or not np.isfinite(g).all():
        raise ArtifactError(f"{path}: damaged potentials file (inconsistent arrays)")
    return Potentials(
        target=target,
        g=g,
        epsilon=float(header["epsilon"]),
        mean_f=float(header["mean_f"]),
        ot_cost=float(header["ot_cost"]),
        model=header["model"],
        fit=header.get("fit", {}),
        features=header.get("features", {"space": "semantic"}),
        arrays=arrays,
    )

"""gotd-stream: pick, from a huge corpus, the documents that best warm a model up for a target task (GOT-D).

The method is Kang et al., "Get More for Less", ICLR 2024 (arXiv 2405.02774): solve entropic OT between a
sample of the candidates and the target, then score every document by the calibrated gradient of the OT
distance with respect to its mass (the soft c-transform of the target potential minus the sample mean of f);
the most negative scores pull the data toward the target fastest. Streamed: the fit is one pass over a
sample, the scoring one pass over everything with bounded memory, and per-shard results merge exactly.

The command line (`gotd-stream`) is a thin layer over this API; so are the benches. Example::

    import gotd_stream as gs

    settings = gs.FitSettings(space="lexical", sample_size=10_000)
    embedder, device = gs.semantic_model(settings.space, gs.ModelSettings())  # None for the lexical space
    fitted = gs.fit(["shard0.jsonl.zst", "shard1.jsonl.zst"], "task.jsonl", embedder, settings, device=device)
    fitted.potentials.save("task.gotd")                          # several targets: a list of gs.Target(name, file, w)

    budget = gs.Budget(tokens=5_000_000)                         # or gs.Budget(k=1000); rule=gs.Rule("sample")
    plan = gs.Plan(budget, units=gs.Units(counter=gs.token_counter(), chunk_tokens=256))
    done = gs.pick(["shard2.jsonl.zst"], plan, potentials=fitted.potentials, featurizer=fitted.featurizer,
                   executor=gs.Local(), device=device)           # or gs.Resumable("state/"), gs.Share(i, n, ...)
    gs.write_selection("selected.jsonl.zst", done.keeper)

    merged = gs.merge(["node0.jsonl.zst", "node1.jsonl.zst"], k=1000)   # exact, for any number of targets
    later = gs.load("task.gotd")                                 # on another node
    featurizer = gs.featurizer_for(later, gs.ModelSettings())    # the model checked against the fit's
    gs.score_texts(["a text", "another"], featurizer, later)     # calibrated gradients: lower is better
    skips = gs.Skips()
    gs.embed_to_npy(gs.read_records(["shard2.jsonl.zst"], "text", skips), featurizer, skips, "shard2.npy")
    report = gs.build_report("selected.jsonl.zst", later, featurizer, gs.ReportSettings(), pool="shard2.jsonl.zst")
    gs.write_report("report/", report)                           # index.html and report.json

Errors: `UsageProblem` (settings that cannot work, `BadSetting` among them; the CLI exits 2) and `RuntimeProblem`
(damaged input `CorruptInput`, artifact `ArtifactError` or state, `NotConverged`, `ShardsFailed`; exit 1) name
settings, not flags. Everything else lives in its module (gotd_stream.select.budget, ...). The library logs to
`logging.getLogger("gotd_stream")` and prints nothing. Layout: ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

# MKL's strict reproducible mode: its matmuls give the same bits whatever the thread count, so a model's
# embeddings on the CPU do not depend on OMP_NUM_THREADS or torch.set_num_threads. MKL reads this at its first
# call, so it is set here, before anything imports torch; a value set by the user wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from gotd_stream.distributed.ray import OnRay, RaySettings, ray_cluster
from gotd_stream.errors import RuntimeProblem, UsageProblem
from gotd_stream.features import SPACES, ModelSettings, featurizer_for, semantic_model
from gotd_stream.io.records import Skips, read_records
from gotd_stream.io.streams import CorruptInput
from gotd_stream.report.html import write_report
from gotd_stream.select.executors import Local, Resumable, Share
from gotd_stream.select.fit import BadSetting, FitSettings, Fitted, Texts, fit
from gotd_stream.select.merge import Merged, merge
from gotd_stream.select.pipeline import Selection, pick
from gotd_stream.select.state import ShardsFailed, StateLocked
from gotd_stream.select.targets import Target
from gotd_stream.version import __version__

# These modules import numpy (or torch) at the top: their names load on first use, so that `gotd-stream --help`
# answers at once. The imports under TYPE_CHECKING say the same to IDEs and type checkers; tests/test_layout.py
# checks that they, _LAZY and __all__ agree.
if TYPE_CHECKING:
    from gotd_stream.features.tokens import token_counter
    from gotd_stream.report.build import ReportSettings, build_report
    from gotd_stream.select.artifact import ArtifactError, Mixture, Potentials, load
    from gotd_stream.select.budget import Budget, Rule
    from gotd_stream.select.ot import NotConverged
    from gotd_stream.select.score import Counts, Plan, Units, embed_to_npy, score, score_texts, write_selection

_LAZY = {
    "gotd_stream.features.tokens": ("token_counter",),
    "gotd_stream.report.build": ("ReportSettings", "build_report"),
    "gotd_stream.select.artifact": ("ArtifactError", "Mixture", "Potentials", "load"),
    "gotd_stream.select.budget": ("Budget", "Rule"),
    "gotd_stream.select.ot": ("NotConverged",),
    "gotd_stream.select.score": ("Counts", "Plan", "Units", "embed_to_npy", "score", "score_texts", "write_selection"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    # the steps, a verb each
    "fit",
    "pick",
    "score",
    "score_texts",
    "merge",
    "load",
    "read_records",
    "write_selection",
    "embed_to_npy",
    "build_report",
    "write_report",
    # settings (each refuses bad values on construction)
    "FitSettings",
    "ModelSettings",
    "Budget",
    "Rule",
    "Plan",
    "Units",
    "Target",
    "Texts",
    "RaySettings",
    "ReportSettings",
    # where it runs
    "Local",
    "Resumable",
    "Share",
    "OnRay",
    "ray_cluster",
    # what the steps give
    "Potentials",
    "Mixture",
    "Fitted",
    "Selection",
    "Merged",
    "Counts",
    "Skips",
    # feature spaces
    "SPACES",
    "featurizer_for",
    "semantic_model",
    "token_counter",
    # errors
    "UsageProblem",
    "RuntimeProblem",
    "BadSetting",
    "NotConverged",
    "ArtifactError",
    "CorruptInput",
    "ShardsFailed",
    "StateLocked",
    "__version__",
]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gotd_stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

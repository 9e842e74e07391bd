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

Errors: `UsageProblem` (settings that cannot work; the CLI exits 2) and `RuntimeProblem` (damaged input,
artifact or state, no convergence; exit 1) name settings, not flags. The library logs to
`logging.getLogger("gotd_stream")` and prints nothing. Layout: ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib
import os

# MKL's strict reproducible mode: its matmuls give the same bits whatever the thread count, so a model's
# embeddings on the CPU do not depend on OMP_NUM_THREADS or torch.set_num_threads. MKL reads this at its first
# call, so it is set here, before anything imports torch; a value set by the user wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from gotd_stream.errors import RuntimeProblem, SettingsMessage, UsageProblem, setting
from gotd_stream.features import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_MODEL_SETTING,
    SPACES,
    Featurizer,
    Mismatch,
    ModelSettings,
    featurizer_for,
    semantic_model,
)
from gotd_stream.hf import pick_device
from gotd_stream.select.executors import Local, Resumable, Share
from gotd_stream.select.fit import BadSetting, EmptyTarget, FitSettings, Fitted, Texts, check_space, fit
from gotd_stream.select.merge import Merged, MixedFits, MixedRules, NotScored, QuotaLines, check_merge, merge
from gotd_stream.select.pipeline import Selection, check_select, pick
from gotd_stream.select.targets import MAX_TARGETS, MIXES, Target, check_name, check_targets, check_weight, quotas
from gotd_stream.version import __version__

# The rest imports numpy or torch: loaded on first use, so that `gotd-stream --help` answers at once.
_LAZY = {
    "gotd_stream.select.artifact": (
        "Potentials",
        "Mixture",
        "load",
        "holds_targets",
        "ArtifactError",
        "FORMAT_VERSION",
        "MIX_FORMAT_VERSION",
    ),
    "gotd_stream.select.mix": ("SumKeeper", "QuotaKeeper", "score_matrix", "weighted_sum"),
    "gotd_stream.select.keep": ("RankKeeper", "keeper_for", "OneTargetOnly"),
    "gotd_stream.select.score": (
        "Plan",
        "score",
        "score_shard",
        "score_texts",
        "embedded",
        "embed_to_npy",
        "write_selection",
        "require_usable",
        "rereadable",
        "Counts",
        "NothingUsable",
        "Units",
        "selected_tokens",
    ),
    "gotd_stream.select.budget": ("Budget", "Rule", "RULES", "Kept", "TokenBudget", "sample_keys", "parse_count"),
    "gotd_stream.select.units": ("chunk_spans", "chunked", "UNITS", "MIN_CHUNK_TOKENS", "DEFAULT_CHUNK_TOKENS"),
    "gotd_stream.features.tokens": ("token_counter", "TokenizerError"),
    "gotd_stream.select.state": ("State", "StateLocked", "StateError", "ShardsFailed"),
    "gotd_stream.report.build": ("build_report", "ReportSettings", "EmptySelection", "MissingGroup", "QuotaCandidates"),
    "gotd_stream.report.html": ("render_html", "write_report", "report_json", "NoPlots"),
    "gotd_stream.select.ot": ("CTransform", "CalibratedGradient", "fit_potentials", "NotConverged"),
    "gotd_stream.io.records": ("read_records", "Record", "Skips", "BadRecord"),
    "gotd_stream.io.outputs": ("check_outputs", "atomic_output", "OutputError"),
    "gotd_stream.io.streams": ("read_lines", "CorruptInput"),
    "gotd_stream.features.lexical": ("Lexical",),
    "gotd_stream.features.hybrid": ("Hybrid",),
    "gotd_stream.features.semantic": ("Embedder", "ModelError"),
    "gotd_stream.distributed.ray": (
        "RaySettings",
        "OnRay",
        "ray_cluster",
        "running_on",
        "RayMissing",
        "RayUnreachable",
        "WorkerLost",
    ),
    "gotd_stream.distributed.shards": ("share", "sorted_inputs", "merge_inputs", "FoldersDisagree"),
    "gotd_stream.io.parquet": ("MissingColumn",),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_SETTING",
    "SPACES",
    "EmptyTarget",
    "FitSettings",
    "Fitted",
    "Featurizer",
    "Merged",
    "Mismatch",
    "MAX_TARGETS",
    "MIXES",
    "MixedFits",
    "MixedRules",
    "ModelSettings",
    "NotScored",
    "QuotaLines",
    "Target",
    "RuntimeProblem",
    "SettingsMessage",
    "UsageProblem",
    "__version__",
    "check_name",
    "check_space",
    "check_targets",
    "check_weight",
    "featurizer_for",
    "fit",
    "merge",
    "pick",
    "check_select",
    "check_merge",
    "Selection",
    "Local",
    "Resumable",
    "Share",
    "Texts",
    "BadSetting",
    "quotas",
    "pick_device",
    "semantic_model",
    "setting",
    *_WHERE,
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

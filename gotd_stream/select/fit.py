"""Pass 1: sample the candidates, fit the feature space on the sample, solve OT against the target, package it.

    fit(paths, target)         a bottom-k sample of the inputs (one read, or Ray tasks), then the OT fit
    fit_on_prefix(records, ..) a stream read once: fit on its first records, which the caller scores too
    fit_texts(sample, target)  in-memory texts (benches, tests): the same fit

Each returns the artifact (`Potentials`) and the featurizer that scores in its space.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.features.base import LEXICAL_BUCKETS, LEXICAL_DIM

if TYPE_CHECKING:
    import numpy as np

    from gotd_stream.features.semantic import Embedder
    from gotd_stream.io.records import Record, Skips
    from gotd_stream.select.artifact import Mixture, Potentials
    from gotd_stream.select.targets import Target

log = logging.getLogger(__name__)


class EmptyTarget(UsageProblem):
    """The target, or the candidates to fit on, hold no usable text."""


@dataclass
class FitSettings:
    """What a fit depends on; the defaults were chosen by bench/defaults.py and bench/quality.py (README)."""

    space: str = "hybrid"
    sample_size: int = 10_000
    target_size: int = 1_000
    epsilon: float = 0.05
    max_iter: int = 10_000
    tol: float = 1e-5
    seed: int = 0
    hybrid_weight: float = 0.5
    text_field: str = "text"
    strict: bool = False  # a bad target record fails the fit instead of being skipped
    buckets: int | None = None  # None: LEXICAL_BUCKETS
    dim: int | None = None  # None: LEXICAL_DIM
    info: dict = field(default_factory=dict)  # recorded in the artifact's fit header


@dataclass
class Fitted:
    potentials: Potentials
    featurizer: object  # a gotd_stream.features.Featurizer
    seen: int  # candidate records read to draw the sample


def read_target(path: str, settings: FitSettings, name: str | None = None) -> tuple[list[str], int]:
    """The target texts, sampled down to `target_size`; an empty target is an error (naming `name`, if given)."""
    from gotd_stream.io.records import Skips, read_records
    from gotd_stream.select.sample import reservoir

    skips = Skips(strict=settings.strict)
    records = read_records([path], settings.text_field, skips)
    texts, seen = reservoir((r.text for r in records), settings.target_size, settings.seed)
    if not texts:
        raise EmptyTarget(
            f"target {name + ' (' + path + ')' if name else path} holds no usable records "
            f"(text field {settings.text_field!r}; {skips.summary()})"
        )
    return texts, seen


def embed_texts(texts: list[str], featurizer, what: str) -> np.ndarray:
    """Rows of an in-memory list (the fit sample, the target); rows that are not finite, or zero, are dropped."""
    import numpy as np

    emb = featurizer.encode(texts) if texts else np.zeros((0, featurizer.dim), np.float32)
    from gotd_stream.features.base import usable_rows

    finite = np.isfinite(emb).all(axis=1)
    usable = usable_rows(emb)
    if not finite.all():
        log.warning(f"{int((~finite).sum())} {what} texts had non-finite embeddings; left out")
    if (finite & ~usable).any():
        log.warning(f"{int((finite & ~usable).sum())} {what} texts had {featurizer.zero_row[0]}; left out")
    emb = emb[usable]
    if not len(emb):
        raise EmptyTarget(f"no {what} text has a usable embedding (finite and not zero)")
    return emb


def solve(
    sample: list[str],
    target: list[str],
    featurizer,
    space: str,
    epsilon: float,
    max_iter: int,
    tol: float,
    info: dict,
    device: str = "cpu",
    x: np.ndarray | None = None,
) -> Potentials:
    """Embed the sample and the target in the (already fitted) space, solve entropic OT, package what scoring needs.

    `x`: the sample's rows when they are already embedded (several targets share one sample).
    """
    from gotd_stream.select.artifact import Potentials
    from gotd_stream.select.ot import fit_potentials
    from gotd_stream.version import __version__

    if x is None:
        log.info(f"fit: embedding {len(sample):,} sampled candidates and {len(target):,} target texts ({space})")
        x = embed_texts(sample, featurizer, "sampled candidate")
    else:
        log.info(f"fit: embedding {len(target):,} target texts ({space})")
    y = embed_texts(target, featurizer, "target")
    result = fit_potentials(x, y, epsilon, max_iter=max_iter, tol=tol, device=device)
    log.info(
        f"fit: Sinkhorn converged in {result.iterations} iterations, marginal error {result.marginal_error:.2e}, "
        f"OT cost {result.ot_cost:.4f}"
    )
    info = dict(
        info,
        sample_size=len(x),
        target_size=len(y),
        iterations=result.iterations,
        marginal_error=result.marginal_error,
        tol=tol,
        max_iter=max_iter,
        gotd_stream=__version__,
    )
    return Potentials(
        target=y,
        g=result.g,
        epsilon=epsilon,
        mean_f=float(result.f.mean()),
        ot_cost=result.ot_cost,
        model=featurizer.model_settings(),
        fit=info,
        features=featurizer.describe(),
        arrays=featurizer.arrays(),
    )


def fit_texts(
    sample: list[str],
    target: list[str],
    embedder: Embedder | None,
    settings: FitSettings,
    device: str = "cpu",
) -> tuple[Potentials, object]:
    """Fit the space on `sample` (its lexical part), then the potentials between `sample` and `target` in it."""
    featurizer = build_space(sample, embedder, settings)
    info = dict(settings.info, seed=settings.seed)
    potentials = solve(
        sample,
        target,
        featurizer,
        settings.space,
        settings.epsilon,
        settings.max_iter,
        settings.tol,
        info,
        device,
    )
    return potentials, featurizer


def build_space(sample: list[str], embedder: Embedder | None, settings: FitSettings):
    """The featurizer of `settings.space`, its lexical part fitted on `sample`."""
    from gotd_stream import features

    return features.build(
        settings.space,
        sample,
        embedder,
        seed=settings.seed,
        weight=settings.hybrid_weight,
        buckets=settings.buckets or LEXICAL_BUCKETS,
        dim=settings.dim or LEXICAL_DIM,
    )


def char_budget(embedder: Embedder | None) -> int:
    """Characters of a text the space can see: a sample of huge lines must not fill the memory."""
    from gotd_stream.text import CHAR_BUDGET

    return embedder.char_budget if embedder is not None else CHAR_BUDGET


def fit(
    paths: list[str],
    target: str,
    embedder: Embedder | None,
    settings: FitSettings,
    *,
    skips: Skips | None = None,
    device: str = "cpu",
    quiet: bool = True,
    sampler=None,
) -> Fitted:
    """Pass 1: a bottom-k sample of `sample_size` candidates (select.sample), then the OT fit.

    `sampler` draws the same sample elsewhere (a Ray cluster: distributed.ray); it takes the arguments of
    `select.sample.bottom_k` and returns the same texts in the same order.
    """
    from gotd_stream.io.records import Skips

    target_texts, target_seen = read_target(target, settings)
    skips = skips if skips is not None else Skips()
    sample, seen = sample_candidates(paths, embedder, settings, skips, quiet, sampler)
    info = {"sampling": "bottom-k", "candidates_seen": seen, "target_seen": target_seen, "target_file": target}
    settings = _with_info(settings, info)
    potentials, featurizer = fit_texts(sample, target_texts, embedder, settings, device)
    return Fitted(potentials, featurizer, seen)


def sample_candidates(
    paths: list[str], embedder: Embedder | None, settings: FitSettings, skips: Skips, quiet: bool = True, sampler=None
) -> tuple[list[str], int]:
    """A bottom-k sample of `sample_size` candidate texts (cut to what the space sees), and the records seen."""
    from gotd_stream.progress import progress
    from gotd_stream.select.sample import bottom_k

    cut = char_budget(embedder)
    with progress(quiet, "sample") as bar:
        sample, seen = (sampler or bottom_k)(
            paths, settings.text_field, settings.sample_size, settings.seed, cut, skips, bar
        )
    if not sample:
        raise EmptyTarget(f"no usable candidate records in {', '.join(paths)} ({skips.summary()})")
    return sample, seen


def fit_on_prefix(
    records: Iterator[Record],
    target: str,
    embedder: Embedder | None,
    settings: FitSettings,
    *,
    device: str = "cpu",
    quiet: bool = True,
    skips: Skips | None = None,
) -> tuple[Fitted, Iterator[Record]]:
    """A stream read once: fit on its first `sample_size` records; returns the fit and the whole stream again
    (those records first), so that nothing is read twice."""
    head = list(itertools.islice(records, settings.sample_size))
    if not head:
        summary = f" ({skips.summary()})" if skips is not None else ""
        raise EmptyTarget(f"no usable candidate records on stdin{summary}")
    target_texts, target_seen = read_target(target, settings)
    info = {"sampling": "stream prefix", "candidates_seen": len(head), "target_seen": target_seen}
    settings = _with_info(settings, dict(info, target_file=target))
    potentials, featurizer = fit_texts([r.text for r in head], target_texts, embedder, settings, device)
    return Fitted(potentials, featurizer, len(head)), itertools.chain(head, records)


def fit_mixture_texts(
    sample: list[str],
    targets: list[tuple[Target, list[str]]],
    embedder: Embedder | None,
    settings: FitSettings,
    device: str = "cpu",
    infos: list[dict] | None = None,
) -> tuple[Mixture, object]:
    """Several targets on one sample: the space is fitted once on `sample`, then OT against each target in it.

    Each part is what `fit_texts(sample, its texts)` gives, to the bit (the same fit id), so a part scores as a
    single-target fit would. `targets` pairs each Target (name, weight: see check_targets) with its texts;
    `infos` adds to each part's fit record (its file, the records seen).
    """
    from gotd_stream.select.artifact import Mixture
    from gotd_stream.select.targets import check_targets

    checked, _ = check_targets([target for target, _ in targets])  # named once each, weights summing to 1
    if len(checked) < 2:
        raise UsageProblem(f"a mixture needs at least two targets ({setting('target')}); fit one with fit_texts")
    featurizer = build_space(sample, embedder, settings)
    log.info(f"fit: embedding {len(sample):,} sampled candidates ({settings.space})")
    x = embed_texts(sample, featurizer, "sampled candidate")
    parts = []
    for i, (target, texts) in enumerate(targets):
        info = dict(settings.info, **(infos[i] if infos else {}), seed=settings.seed)
        log.info(f"fit: target {target.name}")
        parts.append(
            solve(
                sample,
                texts,
                featurizer,
                settings.space,
                settings.epsilon,
                settings.max_iter,
                settings.tol,
                info,
                device,
                x=x,
            )
        )
    return Mixture([t.name for t in checked], [t.weight for t in checked], parts), featurizer


def fit_mixture(
    paths: list[str],
    targets: list[Target],
    embedder: Embedder | None,
    settings: FitSettings,
    *,
    skips: Skips | None = None,
    device: str = "cpu",
    quiet: bool = True,
    sampler=None,
) -> Fitted:
    """`fit` for several targets (checked by check_targets): one bottom-k sample, one space, one OT per target.

    The Fitted holds a Mixture; every target is read (and an empty one refused, by its name) before the sample.
    """
    from gotd_stream.io.records import Skips

    read = [(target, *read_target(target.path, settings, target.name)) for target in targets]
    skips = skips if skips is not None else Skips()
    sample, seen = sample_candidates(paths, embedder, settings, skips, quiet, sampler)
    settings = _with_info(settings, {"sampling": "bottom-k", "candidates_seen": seen})
    infos = [{"target_file": target.path, "target_seen": n} for target, _, n in read]
    mixture, featurizer = fit_mixture_texts(
        sample, [(target, texts) for target, texts, _ in read], embedder, settings, device, infos
    )
    return Fitted(mixture, featurizer, seen)


def fit_mixture_on_prefix(
    records: Iterator[Record],
    targets: list[Target],
    embedder: Embedder | None,
    settings: FitSettings,
    *,
    device: str = "cpu",
    quiet: bool = True,
    skips: Skips | None = None,
) -> tuple[Fitted, Iterator[Record]]:
    """`fit_on_prefix` for several targets: fit on the stream's first `sample_size` records, return it whole."""
    head = list(itertools.islice(records, settings.sample_size))
    if not head:
        summary = f" ({skips.summary()})" if skips is not None else ""
        raise EmptyTarget(f"no usable candidate records on stdin{summary}")
    read = [(target, *read_target(target.path, settings, target.name)) for target in targets]
    settings = _with_info(settings, {"sampling": "stream prefix", "candidates_seen": len(head)})
    infos = [{"target_file": target.path, "target_seen": n} for target, _, n in read]
    mixture, featurizer = fit_mixture_texts(
        [r.text for r in head], [(target, texts) for target, texts, _ in read], embedder, settings, device, infos
    )
    return Fitted(mixture, featurizer, len(head)), itertools.chain(head, records)


def _with_info(settings: FitSettings, info: dict) -> FitSettings:
    from dataclasses import replace

    return replace(settings, info={**settings.info, **info})


def check_space(settings: FitSettings, weight_given: bool) -> None:
    """A hybrid weight means nothing outside the hybrid space: name the mistake instead of ignoring it."""
    if settings.space != "hybrid" and weight_given:
        raise UsageProblem(
            f"{setting('hybrid_weight')} applies to the hybrid space only, not to {settings.space}; leave it out"
        )

"""Pass 1: sample the candidates, fit the feature space on the sample, solve OT against the target, package it.

    fit(paths, targets)          a bottom-k sample of the inputs (one read, or Ray tasks), then the OT fit
    fit(records, targets)        a stream read once: fit on its first records, which the caller scores too
    fit(Texts(sample), targets)  in-memory texts (benches, tests): the same fit

One target or several (one sample, one space, one OT each): the artifact (`Potentials`, or a `Mixture`) and the
featurizer that scores in its space.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gotd_stream.errors import BadSetting, UsageProblem, is_number, positive, setting, whole
from gotd_stream.features.base import LEXICAL_BUCKETS, LEXICAL_DIM
from gotd_stream.select.distill import DEFAULT_DISTILL, wants_student

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
    vector_field: str | None = None  # the vectors space: the field holding each record's vector (and no text)
    buckets: int | None = None  # None: LEXICAL_BUCKETS
    dim: int | None = None  # None: LEXICAL_DIM
    info: dict = field(default_factory=dict)  # recorded in the artifact's fit header
    # also train a student of the teacher's scores (select.distill), for `score`; None: when the teacher embeds
    # with a transformer (select.distill.wants_student)
    distill: bool | None = DEFAULT_DISTILL
    student: object = None  # its select.distill.StudentSettings (None: the defaults)

    def __post_init__(self):
        from gotd_stream.features.base import SPACES

        if self.space not in SPACES:
            raise BadSetting(f"{setting('features')} must be one of {', '.join(SPACES)}, not {self.space!r}")
        for name in ("sample_size", "target_size", "max_iter"):
            whole(name, getattr(self, name), 1)
        whole("seed", self.seed)
        for name in ("epsilon", "tol"):
            positive(name, getattr(self, name))
        weight = self.hybrid_weight
        if not is_number(weight) or not 0 <= weight <= 1:
            raise BadSetting(f"{setting('hybrid_weight')} must be a number from 0 to 1, not {weight!r}")
        for name in ("buckets", "dim"):
            if getattr(self, name) is not None:
                whole(name, getattr(self, name), 1)
        if self.space == "vectors" and (not isinstance(self.vector_field, str) or not self.vector_field):
            raise BadSetting(f"the vectors space reads the field {setting('vector_field')} names: give it")
        if self.space != "vectors" and self.vector_field is not None:
            raise BadSetting(f"{setting('vector_field')} applies to the vectors space only, not to {self.space}")

        if self.distill is not None and not isinstance(self.distill, bool):
            raise BadSetting(f"{setting('distill')} must be True, False or None (auto), not {self.distill!r}")

    def field(self, width: int | None = None) -> str:
        """The field records are read by: the text field, or in the vectors space the vector field (of `width`)."""
        from gotd_stream.io.vectors import VectorField

        return VectorField(self.vector_field, width) if self.space == "vectors" else self.text_field


@dataclass
class Fitted:
    """A fit: the artifact (a Potentials, or a Mixture of several targets) and the featurizer of its space."""

    potentials: Potentials | Mixture
    featurizer: object  # a gotd_stream.features.Featurizer
    seen: int  # candidate records read to draw the sample
    records: Iterator[Record] | None = None  # fitted on a stream's first records: the whole stream again


def read_target(target: Target, settings: FitSettings, width: Width | None = None) -> tuple[list[str], int]:
    """The target texts (its file's, or its own), sampled down to `target_size`; an empty target is an error.
    The vectors space: every target vector must have the width of the first (`width` keeps it across targets)."""
    from gotd_stream.io.records import Skips, read_records
    from gotd_stream.select.sample import reservoir

    path, name = target.path or "<texts>", target.name
    width = width if width is not None else Width()
    if target.texts is not None:
        given = (width.check(text, path, i) for i, text in enumerate(target.texts, 1))
        texts, seen = reservoir(
            given if settings.space == "vectors" else iter(target.texts), settings.target_size, settings.seed
        )
        skips = Skips()
    else:
        skips = Skips(strict=settings.strict)
        records = read_records([path], settings.field(), skips)
        if settings.space == "vectors":
            records = (r for r in records if width.check(r.text, r.name, r.lineno))
        texts, seen = reservoir((r.text for r in records), settings.target_size, settings.seed)
    if not texts:
        field = (
            f"vector field {settings.vector_field!r}"
            if settings.space == "vectors"
            else f"text field {settings.text_field!r}"
        )
        raise EmptyTarget(
            f"target {name + ' (' + path + ')' if name else path} holds no usable records ({field}; {skips.summary()})"
        )
    return texts, seen


class MixedWidths(UsageProblem):
    """Target vectors of different widths: the vectors space needs one width, that of the first."""


@dataclass
class Width:
    """The width of the target vectors, set by the first one read (the vectors space)."""

    value: int | None = None
    where: str = ""

    def check(self, text: str, name: str, lineno: int) -> str:
        """`text` when its vector has the width; the first sets it. A vector given in memory is checked first."""
        from gotd_stream.io.vectors import VectorField, vector_text, vector_width

        where = f"{name}:{lineno}"
        if name == "<texts>":  # Texts: not read through io.records, so not yet checked
            import orjson

            try:
                checked = vector_text(orjson.loads(text), VectorField("vector"))
            except (orjson.JSONDecodeError, TypeError):
                checked = ("not a JSON list", "")
            if isinstance(checked, tuple):
                raise UsageProblem(f"target text {lineno}: {checked[0]}{': ' + checked[1] if checked[1] else ''}")
            where = f"target text {lineno}"
        n = vector_width(text)
        if self.value is None:
            self.value, self.where = n, where
        elif n != self.value:
            raise MixedWidths(
                f"{where}: a vector of {n:,} numbers, but the target's first ({self.where}) has {self.value:,}: "
                "the target vectors must all have one width"
            )
        return text


def embed_texts(texts: list[str], featurizer, what: str) -> np.ndarray:
    """Rows of an in-memory list (the fit sample, the target); rows that are not finite, or zero, are dropped."""
    return embed_kept(texts, featurizer, what)[0]


def embed_kept(texts: list[str], featurizer, what: str) -> tuple[np.ndarray, list[str]]:
    """embed_texts, and the texts whose rows were kept (in order): what a student learns from."""
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
    return emb, [text for text, ok in zip(texts, usable, strict=True) if ok]


def solve(
    sample: list[str],
    target: list[str],
    featurizer,
    settings: FitSettings,
    info: dict,
    device: str = "cpu",
    x: np.ndarray | None = None,
    kept: list[str] | None = None,
) -> Potentials:
    """Embed the sample and the target in the (already fitted) space, solve entropic OT, package what scoring needs;
    with `settings.distill`, train the student of its scores too (select.distill).

    `x`: the sample's rows when they are already embedded (several targets share one sample), `kept` their texts.
    """
    from gotd_stream.select.artifact import Potentials
    from gotd_stream.select.dedup import signatures
    from gotd_stream.select.ot import fit_potentials
    from gotd_stream.version import __version__

    space, epsilon, max_iter, tol = settings.space, settings.epsilon, settings.max_iter, settings.tol
    if x is None:
        log.info(f"fit: embedding {len(sample):,} sampled candidates and {len(target):,} target texts ({space})")
        x, kept = embed_kept(sample, featurizer, "sampled candidate")
    else:
        log.info(f"fit: embedding {len(target):,} target texts ({space})")
    y, target_kept = embed_kept(target, featurizer, "target")
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
    potentials = Potentials(
        target=y,
        g=result.g,
        epsilon=epsilon,
        mean_f=float(result.f.mean()),
        ot_cost=result.ot_cost,
        model=featurizer.model_settings(),
        fit=info,
        features=featurizer.describe(),
        arrays=featurizer.arrays(),
        copies=signatures(target),  # so that no selected unit copies a target text (select.dedup)
    )
    if settings.distill:
        potentials.student = distil(potentials, kept or sample, x, target_kept, y, settings, device)
    return potentials


def distil(potentials: Potentials, texts: list[str], x, target_texts: list[str], y, settings: FitSettings, device):
    """The student of `potentials`: trained on the teacher's calibrated scores of the sample (and target) rows."""
    from gotd_stream.select.distill import StudentSettings, train

    scorer = potentials.scorer(device)
    student = train(texts, scorer(x), settings.student or StudentSettings(), target_texts, scorer(y))
    log.info(
        f"fit: student trained on {student.info['training_rows']:,} texts, "
        f"{len(student.rows):,} buckets; Spearman {student.info.get('spearman', float('nan')):.3f} on the sample"
    )
    return student


def build_space(sample: list[str], embedder: Embedder | None, settings: FitSettings, width: int | None = None):
    """The featurizer of `settings.space`, its lexical part fitted on `sample`; the vectors space's `width` is
    the target vectors'."""
    from gotd_stream import features

    return features.build(
        settings.space,
        sample,
        embedder,
        seed=settings.seed,
        weight=settings.hybrid_weight,
        buckets=settings.buckets or LEXICAL_BUCKETS,
        dim=settings.dim or LEXICAL_DIM,
        vectors=(settings.vector_field, width) if settings.space == "vectors" else None,
    )


def char_budget(embedder: Embedder | None) -> int:
    """Characters of a text the space can see: a sample of huge lines must not fill the memory."""
    from gotd_stream.text import CHAR_BUDGET

    return embedder.char_budget if embedder is not None else CHAR_BUDGET


class Texts(list):
    """Candidates given as texts in memory (benches, tests): `fit(Texts([...]), ...)` fits on them as they are."""


def fit(
    candidates: list[str] | Iterator[Record] | Texts,
    targets: str | Target | list,
    embedder: Embedder | None,
    settings: FitSettings,
    *,
    skips: Skips | None = None,
    device: str = "cpu",
    quiet: bool = True,
    sampler=None,
) -> Fitted:
    """Pass 1, for any number of targets: a sample of the candidates, the space fitted on it, OT to each target.

    `candidates`: input files (a bottom-k sample of `sample_size`, select.sample; `sampler` draws the same sample
    elsewhere, e.g. on Ray: distributed.ray), a stream of records (fitted on its first `sample_size`, which
    `Fitted.records` gives back with the rest, so nothing is read twice), or `Texts` (as they are).
    `targets`: a target file, `Texts`, a Target, or several Targets (name, file or texts, weight: check_targets).
    One target gives a Potentials (format version 4), several a Mixture of one Potentials each, every part what
    a fit of its target alone on the same sample gives, to the bit (format version 5).
    """
    from gotd_stream.select.targets import Target, check_targets

    if isinstance(targets, Texts):
        targets = Target(None, None, texts=tuple(targets))
    if isinstance(targets, (str, Target)):
        targets = [targets if isinstance(targets, Target) else Target(None, targets)]
    targets = list(targets)
    if len(targets) > 1:
        targets, _ = check_targets(targets)  # named once each, weights summing to 1
    elif targets:
        targets = [Target(None, targets[0].path, 1.0, targets[0].texts)]  # one target: its name changes nothing
    else:
        raise UsageProblem(f"a fit needs a target ({setting('target')})")
    records, width = None, Width()
    if isinstance(candidates, Texts):
        read = [(t, *read_target(t, settings, width)) for t in targets]
        sample, seen, info = list(candidates), len(candidates), {}
    elif isinstance(candidates, list):
        from gotd_stream.io.records import Skips

        read = [(t, *read_target(t, settings, width)) for t in targets]
        skips = skips if skips is not None else Skips()
        sample, seen = sample_candidates(candidates, embedder, settings, skips, quiet, sampler, width.value)
        info = {"sampling": "bottom-k", "candidates_seen": seen}
    else:
        if settings.space == "vectors":  # the targets first: their width is what the stream's vectors must have
            from gotd_stream.io.records import Skips, of_width

            read = [(t, *read_target(t, settings, width)) for t in targets]
            candidates = of_width(candidates, width.value, skips if skips is not None else Skips())
        head = list(itertools.islice(candidates, settings.sample_size))
        if not head:
            summary = f" ({skips.summary()})" if skips is not None else ""
            raise EmptyTarget(f"no usable candidate records on stdin{summary}")
        if settings.space != "vectors":
            read = [(t, *read_target(t, settings)) for t in targets]
        sample, seen, records = [r.text for r in head], len(head), itertools.chain(head, candidates)
        info = {"sampling": "stream prefix", "candidates_seen": len(head)}
    featurizer = build_space(sample, embedder, settings, width.value)
    settings = replace(settings, distill=wants_student(settings.distill, settings.space, embedder, len(sample)))
    infos = [
        dict(settings.info, **info, **({"target_file": t.path} if t.path else {}), target_seen=n, seed=settings.seed)
        if info
        else dict(settings.info, seed=settings.seed)
        for t, _, n in read
    ]
    if len(read) == 1:
        potentials = solve(sample, read[0][1], featurizer, settings, infos[0], device)
    else:
        from gotd_stream.select.artifact import Mixture

        log.info(f"fit: embedding {len(sample):,} sampled candidates ({settings.space})")
        x, kept = embed_kept(sample, featurizer, "sampled candidate")
        parts = []
        for (target, texts, _), part_info in zip(read, infos, strict=True):
            log.info(f"fit: target {target.name}")
            parts.append(solve(sample, texts, featurizer, settings, part_info, device, x=x, kept=kept))
        potentials = Mixture([t.name for t in targets], [t.weight for t in targets], parts)
    return Fitted(potentials, featurizer, seen, records)


def sample_candidates(
    paths: list[str],
    embedder: Embedder | None,
    settings: FitSettings,
    skips: Skips,
    quiet: bool = True,
    sampler=None,
    width: int | None = None,
) -> tuple[list[str], int]:
    """A bottom-k sample of `sample_size` candidate texts (cut to what the space sees: a vector is never cut), and
    the records seen. `width`: the vectors space's, which a candidate's vector must have."""
    import sys

    from gotd_stream.io.datasets import expand_inputs
    from gotd_stream.progress import progress
    from gotd_stream.select.sample import bottom_k

    paths = expand_inputs(paths)  # a folder: its files, each a shard (io.datasets)
    cut = char_budget(embedder) if settings.space != "vectors" else sys.maxsize
    with progress(quiet, "sample") as bar:
        sample, seen = (sampler or bottom_k)(
            paths, settings.field(width), settings.sample_size, settings.seed, cut, skips, bar
        )
    if not sample:
        raise EmptyTarget(f"no usable candidate records in {', '.join(paths)} ({skips.summary()})")
    return sample, seen


def _with_info(settings: FitSettings, info: dict) -> FitSettings:
    return replace(settings, info={**settings.info, **info})


def check_space(settings: FitSettings, weight_given: bool) -> None:
    """A hybrid weight means nothing outside the hybrid space: name the mistake instead of ignoring it."""
    if settings.space != "hybrid" and weight_given:
        raise UsageProblem(
            f"{setting('hybrid_weight')} applies to the hybrid space only, not to {settings.space}; leave it out"
        )

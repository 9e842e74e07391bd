"""The stages as generators: records -> windows -> embeddings -> scores -> top-k, and the fit.

Windows never span two inputs: a shard is embedded the same way alone or among others, so scores (down to
the last bit) do not depend on how a corpus was split across nodes, and `merge` is exact.
"""

from __future__ import annotations

import os
import stat
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gotd_stream import __version__
from gotd_stream.artifact import Potentials
from gotd_stream.ot import CTransform, NotConverged, fit_potentials
from gotd_stream.records import Record, Skips, read_records, with_score
from gotd_stream.sample import reservoir
from gotd_stream.streams import STDIN, atomic_output
from gotd_stream.topk import TopK

WINDOW_BYTES = 16 << 20  # input bytes per window at most (16k documents of ~1,000 characters)


class EmptyTarget(Exception):
    pass


@dataclass
class Counts:
    scored: int = 0
    skips: Skips = field(default_factory=Skips)
    reused: int = 0  # shards taken from a --state folder instead of being read


def progress(quiet: bool, desc: str, total: int | None = None):
    """A stderr progress bar that stays silent when stderr is not a terminal."""
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=" docs",
        unit_scale=True,
        file=sys.stderr,
        disable=disable,
        mininterval=1.0,
        dynamic_ncols=True,
    )


def rereadable(paths: Iterable[str]) -> bool:
    """True when every input is a regular file, so it can be read twice (a sample pass, then scoring)."""
    for path in paths:
        if path == STDIN:
            return False
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return False
        except OSError:
            return False
    return True


def windows(records: Iterable[Record], size: int, max_bytes: int = WINDOW_BYTES) -> Iterator[list[Record]]:
    """Consecutive records of one input, at most `size` at a time, and no more once they hold `max_bytes`.

    Both limits depend on the records alone, so an input is cut into the same windows on every run. The byte
    limit keeps the few windows in flight small when the documents are long.
    """
    window: list[Record] = []
    held = 0
    for record in records:
        if window and (len(window) >= size or held >= max_bytes or record.source != window[0].source):
            yield window
            window, held = [], 0
        window.append(record)
        held += len(record.raw)
    if window:
        yield window


# A zero row: the skip reason and its detail. The lexical space says why it has one (features.NO_KNOWN_WORDS).
ZERO_ROW = ("zero embedding", "the model gave it a zero vector")


def embedded(records: Iterable[Record], embedder, skips: Skips, bar=None) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Embed window by window; a record whose row is not finite (fp16 overflow) or is zero is skipped and counted.

    A zero row has no direction: it would score by the target potential alone, near the top. The lexical space
    gives one to a text none of whose words the fit sample had. A featurizer with stream() reads, tokenises and
    embeds the next windows while the caller scores this one.
    """
    items = ((window, [r.text for r in window]) for window in windows(records, embedder.window))
    stream = getattr(embedder, "stream", None)
    results = stream(items) if stream is not None else ((w, embedder.encode(texts)) for w, texts in items)
    zero_reason, zero_detail = getattr(embedder, "zero_row", ZERO_ROW)
    for window, emb, *_ in results:
        if bar is not None:
            bar.update(len(window))
        finite = np.isfinite(emb).all(axis=1)
        usable = finite & emb.any(axis=1)
        if not usable.all():
            for i in np.flatnonzero(~usable):
                if finite[i]:
                    skips.add(window[i].name, window[i].lineno, zero_reason, zero_detail)
                else:
                    skips.add(window[i].name, window[i].lineno, "non-finite embedding", "the model overflowed")
            window = [r for r, ok in zip(window, usable, strict=True) if ok]
            emb = emb[usable]
        yield window, emb


def embed_texts(texts: list[str], embedder, what: str) -> np.ndarray:
    """Embeddings of an in-memory list (the fit sample, the target); rows that are not finite, or zero, are dropped."""
    emb = embedder.encode(texts) if texts else np.zeros((0, embedder.dim), np.float32)
    finite = np.isfinite(emb).all(axis=1)
    usable = finite & emb.any(axis=1)
    if not finite.all():
        print(f"warning: {int((~finite).sum())} {what} texts had non-finite embeddings; left out", file=sys.stderr)
    if (finite & ~usable).any():
        reason = getattr(embedder, "zero_row", ZERO_ROW)[0]
        print(f"warning: {int((finite & ~usable).sum())} {what} texts had {reason}; left out", file=sys.stderr)
    emb = emb[usable]
    if not len(emb):
        raise EmptyTarget(f"no {what} text has a usable embedding (finite and not zero)")
    return emb


def read_target(path: str, text_field: str, target_size: int, seed: int, strict: bool) -> tuple[list[str], int]:
    """The target texts, sampled down to `target_size`; an empty target is an error."""
    skips = Skips(strict=strict)
    texts, seen = reservoir((r.text for r in read_records([path], text_field, skips)), target_size, seed)
    if not texts:
        raise EmptyTarget(f"target {path} holds no usable records (text field {text_field!r}; {skips.summary()})")
    return texts, seen


def fit(
    sample: list[str],
    target: list[str],
    featurizer,
    space: str,
    epsilon: float,
    max_iter: int,
    tol: float,
    info: dict,
    quiet: bool = False,
) -> Potentials:
    """Embed the sample and the target in the (already fitted) space, solve entropic OT, package what scoring needs."""
    from gotd_stream import features

    if not quiet:
        print(
            f"fit: embedding {len(sample):,} sampled candidates and {len(target):,} target texts ({space})",
            file=sys.stderr,
        )
    x = embed_texts(sample, featurizer, "sampled candidate")
    y = embed_texts(target, featurizer, "target")
    result = fit_potentials(x, y, epsilon, max_iter=max_iter, tol=tol, device=featurizer.device)
    if not quiet:
        print(
            f"fit: Sinkhorn converged in {result.iterations} iterations, marginal error {result.marginal_error:.2e}, "
            f"OT cost {result.ot_cost:.4f}",
            file=sys.stderr,
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
    semantic = featurizer if space == "semantic" else getattr(featurizer, "semantic", None)
    lexical = featurizer if space == "lexical" else getattr(featurizer, "lexical", None)
    return Potentials(
        target=y,
        g=result.g,
        epsilon=epsilon,
        mean_f=float(result.f.mean()),
        ot_cost=result.ot_cost,
        model=semantic.settings() if semantic is not None else None,
        fit=info,
        features=features.describe(space, featurizer),
        arrays=lexical.arrays() if lexical is not None else {},
    )


def score(
    records: Iterable[Record],
    embedder,
    potentials: Potentials,
    k: int,
    counts: Counts,
    quiet: bool = False,
    scorer: CTransform | None = None,
) -> TopK:
    """Score every record by its calibrated gradient and keep the k lowest."""
    scorer = scorer or CTransform(potentials.target, potentials.g, potentials.epsilon, embedder.device)
    top = TopK(k)
    with progress(quiet, "score") as bar:
        for window, emb in embedded(records, embedder, counts.skips, bar):
            scores = scorer(emb) - potentials.mean_f
            if not np.isfinite(scores).all():
                raise NotConverged(f"non-finite scores at epsilon={potentials.epsilon:g}: fit with a larger --epsilon")
            top.offer(scores, [r.raw for r in window])
            counts.scored += len(window)
    return top


def score_resumable(
    paths: list[str],
    text_field: str,
    state,
    embedder,
    potentials: Potentials,
    k: int,
    counts: Counts,
    quiet: bool = False,
) -> TopK:
    """Shard by shard: take finished shards from the state, score and record the others, merge in input order.

    Batches never span two inputs, so each shard scores exactly as in one pass over all of them, and the merge
    of per-shard top-k lists in input order is that pass's top-k: the output does not depend on restarts.
    """
    scorer = CTransform(potentials.target, potentials.g, potentials.epsilon, embedder.device)
    top = TopK(k)
    for path in paths:
        shard = state.finished(path)
        if shard is None:
            stat = os.stat(path)
            skipped_before, scored_before = Counter(counts.skips.counts), counts.scored
            records = read_records([path], text_field, counts.skips)
            shard_top = score(records, embedder, potentials, k, counts, quiet, scorer)
            skipped = counts.skips.counts - skipped_before
            state.save(path, stat, shard_top, potentials.fit_id, counts.scored - scored_before, skipped)
            kept = shard_top.best_first()
        else:
            counts.scored += shard.scored
            counts.skips.extend(shard.skipped)
            counts.reused += 1
            kept = list(state.kept(path))
        top.offer(np.array([value for value, _ in kept], dtype=np.float64), [raw for _, raw in kept])
    return top


def write_selection(output: str | None, top: TopK, fit_id: str, no_score: bool) -> None:
    """The kept lines, best first, with or without the score suffix, atomically to `output` (None: stdout)."""
    with atomic_output(output) as sink:
        for value, raw in top.best_first():
            sink.write((raw if no_score else with_score(raw, value, fit_id)) + b"\n")

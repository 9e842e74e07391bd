"""Pass 2, as generators: records -> windows -> features -> calibrated gradients -> top-k -> the selection.

Windows never span two inputs: a shard is embedded the same way alone or among others, so scores (down to
the last bit) do not depend on how a corpus was split across nodes, and `merge` is exact.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.errors import RuntimeProblem, setting
from gotd_stream.features.base import usable_rows
from gotd_stream.io.records import Record, Skips, read_records, with_score
from gotd_stream.io.streams import STDIN, CorruptInput, atomic_output
from gotd_stream.progress import progress
from gotd_stream.select.artifact import Potentials
from gotd_stream.select.budget import Budget, Kept
from gotd_stream.select.ot import CalibratedGradient

WINDOW_BYTES = 16 << 20  # input bytes per window at most (16k documents of ~1,000 characters)


@dataclass
class Counts:
    scored: int = 0
    skips: Skips = field(default_factory=Skips)
    reused: int = 0  # shards taken from a --state folder instead of being read


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


def embedded(
    records: Iterable[Record], featurizer, skips: Skips, bar=None
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Featurize window by window; a record whose row is not finite (fp16 overflow) or is zero is skipped and counted.

    A zero row has no direction: it would score by the target potential alone, near the top. The lexical space
    gives one to a text none of whose words the fit sample had. A featurizer's stream() reads, tokenises and
    embeds the next windows while the caller scores this one.
    """
    items = ((window, [r.text for r in window]) for window in windows(records, featurizer.window))
    zero_reason, zero_detail = featurizer.zero_row
    for window, emb in featurizer.stream(items):
        if bar is not None:
            bar.update(len(window))
        usable = usable_rows(emb)
        if not usable.all():
            finite = np.isfinite(emb).all(axis=1)
            for i in np.flatnonzero(~usable):
                if finite[i]:
                    skips.add(window[i].name, window[i].lineno, zero_reason, zero_detail)
                else:
                    skips.add(window[i].name, window[i].lineno, "non-finite embedding", "the model overflowed")
            window = [r for r, ok in zip(window, usable, strict=True) if ok]
            emb = emb[usable]
        yield window, emb


@dataclass
class Units:
    """What is scored and how tokens are counted: whole records (chunk_tokens None) or pieces of chunk_tokens."""

    counter: object | None = None  # features.tokens: needed for a token budget or chunks
    chunk_tokens: int | None = None
    text_field: str = "text"

    def of(self, records: Iterable[Record]) -> Iterable[Record]:
        if self.chunk_tokens is None:
            return records
        from gotd_stream.select.units import chunked

        return chunked(records, self.text_field, self.chunk_tokens, self.counter)


class _Kepts:
    """A window's records as Kept items, made only for the few a keeper looks at (those under its threshold)."""

    def __init__(self, raws: list[bytes], scores: np.ndarray, tokens: np.ndarray):
        self.raws, self.scores, self.tokens = raws, scores, tokens

    def __len__(self) -> int:
        return len(self.raws)

    def __getitem__(self, i: int) -> Kept:
        return Kept(self.raws[i], float(self.scores[i]), int(self.tokens[i]))


def _as_budget(budget: Budget | int) -> Budget:
    return Budget(k=budget) if isinstance(budget, int) else budget


def score(
    records: Iterable[Record],
    featurizer,
    potentials: Potentials,
    budget: Budget | int,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    scorer: CalibratedGradient | None = None,
    units: Units | None = None,
):
    """Score every record (or piece) by its calibrated gradient (Potentials.scorer) and keep what the budget
    holds (select.budget): the k lowest, or the lowest until their tokens reach the budget, ties to the earlier.

    Tokens are counted only for records that could still enter the budget.
    """
    budget = _as_budget(budget)
    units = units or Units()
    scorer = scorer or potentials.scorer(device)
    keeper = budget.keeper()
    with progress(quiet, "score") as bar:
        for window, emb in embedded(units.of(records), featurizer, counts.skips, bar):
            scores = scorer(emb)
            raws = [r.raw for r in window]
            ranks = budget.rule.ranks(scores, raws)
            tokens = np.zeros(len(window), dtype=np.int64)
            if budget.tokens is not None:
                candidates = np.flatnonzero(ranks < keeper.threshold())
                tokens[candidates] = units.counter.count([window[i].text for i in candidates])
                keeper.offer(ranks, _Kepts(raws, scores, tokens), tokens)
            else:
                keeper.offer(ranks, _Kepts(raws, scores, tokens))
            counts.scored += len(window)
    return keeper


def score_shard(
    path: str,
    text_field: str,
    featurizer,
    potentials: Potentials,
    budget: Budget | int,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    scorer: CalibratedGradient | None = None,
    units: Units | None = None,
):
    """What one shard does, wherever it runs (here, or a Ray actor: distributed.ray): its own selection, scored
    alone. Merged in input order, the shards' selections are the selection of one pass over all of them."""
    records = read_records([path], text_field, counts.skips)
    return score(records, featurizer, potentials, budget, counts, device, quiet, scorer, units)


def score_resumable(
    paths: list[str],
    text_field: str,
    state,
    featurizer,
    potentials: Potentials,
    budget: Budget | int,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    units: Units | None = None,
):
    """Shard by shard: take finished shards from the state, score and record the others, merge in input order.

    Batches never span two inputs, so each shard scores exactly as in one pass over all of them, and the merge
    of per-shard results in input order is that pass's result: the output does not depend on restarts.
    """
    budget = _as_budget(budget)
    scorer = potentials.scorer(device)
    keeper = budget.keeper()
    state.note_inputs(paths)
    for path in paths:
        shard = state.finished(path)
        if shard is None:
            if state.known_failure(path) is not None:  # damaged in an earlier run, and still the same
                continue
            stat = os.stat(path)
            skipped_before, scored_before = Counter(counts.skips.counts), counts.scored
            try:
                shard_keeper = score_shard(
                    path, text_field, featurizer, potentials, budget, counts, device, quiet, scorer, units
                )
            except CorruptInput as exc:  # recorded, and the other shards go on (a temporary state re-raises)
                counts.scored, counts.skips.counts = scored_before, skipped_before
                state.failed(path, stat, exc)
                continue
            skipped = counts.skips.counts - skipped_before
            state.save(path, stat, shard_keeper, potentials.fit_id, counts.scored - scored_before, skipped, budget)
            kept = [item for _, item in shard_keeper.best_first()]
        else:
            counts.scored += shard.scored
            counts.skips.extend(shard.skipped)
            counts.reused += 1
            kept = list(state.kept(path))
        reoffer(budget, keeper, kept)
    return keeper


def reoffer(budget: Budget, keeper, kept: list[Kept]) -> None:
    """Offer already scored records (a shard's result, best first) to a keeper, ranked as `score` ranked them."""
    budget.offer(keeper, np.array([item.score for item in kept], dtype=np.float64), kept)


def scored_line(item: Kept, fit_id: str, budget: Budget) -> bytes:
    """A kept record as `score` writes it: the original line with gotd_score (gotd_tokens, gotd_select), gotd_fit."""
    return with_score(item.raw, item.score, fit_id, item.tokens if budget.tokens is not None else None, budget.rule.tag)


def write_selection(output: str | None, keeper, fit_id: str, no_score: bool = False, budget: Budget | None = None):
    """The kept lines, best first, with or without the score suffix, atomically to `output` (None: stdout)."""
    budget = budget or Budget(k=max(len(keeper), 1))
    with atomic_output(output) as sink:
        for _, item in keeper.best_first():
            sink.write((item.raw if no_score else scored_line(item, fit_id, budget)) + b"\n")


def selected_tokens(keeper, text_field: str, counter) -> int:
    """The tokens of everything kept: counted while scoring under a token budget, else counted now."""
    items = [item for _, item in keeper.best_first()]
    if any(item.tokens for item in items):
        return sum(item.tokens for item in items)
    from gotd_stream.io.records import parse_line

    texts = [text for raw, text in (parse_line(item.raw, text_field) for item in items) if raw is not None]
    return int(counter.count(texts).sum()) if texts else 0


class NothingUsable(RuntimeProblem):
    """Records were read but none could be used: a failure (an empty input is not one), so that cron notices."""


def require_usable(scored: int, skips: Skips, paths: list[str]) -> None:
    """Raise NothingUsable when every record read was skipped (a wrong text field, a wrong format)."""
    from gotd_stream.io.streams import display_name

    if scored == 0 and skips.total:
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(skips.counts.items()))
        raise NothingUsable(
            f"no usable record in {', '.join(map(display_name, paths))}: all {skips.total:,} records read were "
            f"skipped ({reasons}); check {setting('text_field')} and the input format"
        )


def score_texts(texts: list[str], featurizer, potentials: Potentials, device: str = "cpu") -> np.ndarray:
    """The calibrated gradient of each text (lower is better); NaN for a text the space cannot represent."""
    rows = featurizer.encode(texts) if texts else np.zeros((0, featurizer.dim), np.float32)
    usable = usable_rows(rows)
    scores = np.full(len(texts), np.nan)
    scores[usable] = potentials.scorer(device)(rows[usable])
    return scores


def embed_to_npy(
    records: Iterable[Record], featurizer, skips: Skips, output: str, quiet: bool = False, paths: list[str] = ()
) -> int:
    """Featurize `records` into a float32 .npy file (one row per usable record, in order); returns the rows."""
    from gotd_stream.io.streams import NpyWriter

    with atomic_output(output, seekable=True) as fh, progress(quiet, "embed") as bar:
        writer = NpyWriter(fh, featurizer.dim)
        for _, rows in embedded(records, featurizer, skips, bar):
            writer.write(rows)
        require_usable(writer.rows, skips, list(paths))
        writer.close()
    return writer.rows

"""Several targets: score every record against each target, then keep by `sum` (one objective) or by `quota`.

    sum     score(x) = sum_t w_t score_t(x), the weighted sum of the calibrated gradients: an ordinary top-k.
    quota   target t gets q_t, its weight's share of k (select.targets.quotas). The targets draft from their own
            rankings, rank by rank: rank 1 of every target in the order given, then rank 2, and so on; a target
            whose quota is full stops, and a document already taken is skipped. So a document wanted by two
            targets is kept once, counted for the one that ranks it best (the one given first on a tie).

A ranking is by score, ties to the earlier record, as everywhere. Exactness: a target never looks deeper than
rank k of its own ranking (it takes q_t documents and skips at most the k - q_t the others took), so each
target's own top-k decides the draft. A shard therefore keeps the union of its targets' top-k lists, its
*candidates*, in input order; the candidates of all shards, offered in shard order, hold every target's global
top-k, and the draft over them is the draft over everything: `merge` and `--state` give one run's bytes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.records import Record, read_records, split_mixed, with_scores
from gotd_stream.progress import progress
from gotd_stream.select.artifact import Mixture
from gotd_stream.select.merge import MixedFits, NotScored, QuotaLines
from gotd_stream.select.score import Counts, embedded
from gotd_stream.select.targets import MIXES, quotas
from gotd_stream.select.topk import TopK


@dataclass(slots=True)
class Entry:
    """A scored record: its place in the input (0, 1, ...), its original line, its score for every target."""

    seq: int
    raw: bytes
    scores: np.ndarray  # (targets,) float64


class _Window(Sequence):
    """A window's records as Entries, made only for the ones a heap keeps."""

    def __init__(self, base: int, raws: list[bytes], scores: np.ndarray):
        self.base, self.raws, self.scores = base, raws, scores

    def __len__(self) -> int:
        return len(self.raws)

    def __getitem__(self, i: int) -> Entry:
        return Entry(self.base + i, self.raws[i], self.scores[i].copy())


def score_matrix(rows: np.ndarray, scorers: list) -> np.ndarray:
    """Every target's calibrated gradient of each row: an (n, targets) float64 matrix."""
    if not len(rows):
        return np.zeros((0, len(scorers)))
    return np.stack([scorer(rows) for scorer in scorers], axis=1)


def weighted_sum(scores: np.ndarray, weights: list[float]) -> np.ndarray:
    """sum_t w_t score_t, added target by target in the order given: a row's sum is the same bits in any batch."""
    total = np.zeros(len(scores))
    for t, weight in enumerate(weights):
        total += weight * scores[:, t]
    return total


class SumKeeper:
    """The k lowest weighted sums, ties to the earlier record."""

    mix = "sum"

    def __init__(self, k: int, weights: list[float]):
        self.top, self.weights, self.seq = TopK(k), list(weights), 0

    def offer(self, scores: np.ndarray, raws: list[bytes]) -> None:
        """A window (or a shard's candidates) in input order."""
        window = _Window(self.seq, raws, scores)
        self.seq += len(raws)
        self.top.offer(weighted_sum(scores, self.weights), window)

    def candidates(self) -> list[Entry]:
        """What a shard must pass on for an exact merge: its top-k, in input order."""
        return sorted((entry for _, entry in self.top.best_first()), key=lambda entry: entry.seq)

    def selection(self) -> list[tuple[Entry, float, int | None]]:
        """(entry, its weighted sum, None), best first."""
        return [(entry, value, None) for value, entry in self.top.best_first()]


class QuotaKeeper:
    """Every target's own top-k; the selection is the draft described at the top of this module."""

    mix = "quota"

    def __init__(self, k: int, weights: list[float]):
        self.k, self.quotas, self.seq = k, quotas(k, weights), 0
        self.tops = [TopK(k) for _ in weights]

    def offer(self, scores: np.ndarray, raws: list[bytes]) -> None:
        """A window (or a shard's candidates) in input order."""
        window = _Window(self.seq, raws, scores)
        self.seq += len(raws)
        for t, top in enumerate(self.tops):
            top.offer(scores[:, t], window)

    def candidates(self) -> list[Entry]:
        """The union of the targets' top-k lists, in input order: what a shard passes on for an exact merge."""
        union = {entry.seq: entry for top in self.tops for _, entry in top.best_first()}
        return [union[seq] for seq in sorted(union)]

    def selection(self) -> list[tuple[Entry, float, int | None]]:
        """(entry, its score for the target it counts for, that target), in the order of the draft."""
        rankings = [[entry for _, entry in top.best_first()] for top in self.tops]
        taken: set[int] = set()
        counts = [0] * len(rankings)
        picked = []
        for rank in range(max(map(len, rankings), default=0)):
            for t, ranking in enumerate(rankings):
                if counts[t] < self.quotas[t] and rank < len(ranking) and ranking[rank].seq not in taken:
                    entry = ranking[rank]
                    taken.add(entry.seq)
                    counts[t] += 1
                    picked.append((entry, float(entry.scores[t]), t))
            if counts == self.quotas:
                break
        return picked


def keeper(mix: str, k: int, weights: list[float]) -> SumKeeper | QuotaKeeper:
    """The keeper of a mix ("quota" or "sum") for k documents."""
    if mix not in MIXES:
        raise UsageProblem(f"{setting('mix')} {mix!r} is not one of {', '.join(MIXES)}")
    return QuotaKeeper(k, weights) if mix == "quota" else SumKeeper(k, weights)


def score_mixture(
    records: Iterable[Record],
    featurizer,
    mixture: Mixture,
    k: int,
    mix: str,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    scorers: list | None = None,
) -> SumKeeper | QuotaKeeper:
    """Score every record against every target of `mixture` and keep k by `mix` (see the module's docstring)."""
    scorers = scorers or mixture.scorers(device)
    kept = keeper(mix, k, mixture.weights)
    with progress(quiet, "score") as bar:
        for window, rows in embedded(records, featurizer, counts.skips, bar):
            kept.offer(score_matrix(rows, scorers), [r.raw for r in window])
            counts.scored += len(window)
    return kept


def score_mixture_resumable(
    paths: list[str],
    text_field: str,
    state,
    featurizer,
    mixture: Mixture,
    k: int,
    mix: str,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
) -> SumKeeper | QuotaKeeper:
    """`score_resumable` for several targets: a finished shard's candidates come from the state, the others are
    scored and recorded; all are offered in input order, so the result is one pass's, whatever the restarts.

    The state must be made for this artifact, k and mix (its identity), since a shard's candidates depend on them.
    """
    scorers = mixture.scorers(device)
    kept = keeper(mix, k, mixture.weights)
    for path in paths:
        shard = state.finished(path)
        if shard is None:
            stat = os.stat(path)
            skipped_before, scored_before = Counter(counts.skips.counts), counts.scored
            records = read_records([path], text_field, counts.skips)
            entries = score_mixture(records, featurizer, mixture, k, mix, counts, device, quiet, scorers).candidates()
            lines = (with_scores(e.raw, mixture.names, e.scores, mixture.fit_id) for e in entries)
            skipped = counts.skips.counts - skipped_before
            state.save_lines(path, stat, lines, counts.scored - scored_before, skipped)
            raws, rows = [e.raw for e in entries], [e.scores for e in entries]
        else:
            counts.scored += shard.scored
            counts.skips.extend(shard.skipped)
            counts.reused += 1
            raws, rows = _read_candidates(state.lines(path), mixture, state.name(path))
        kept.offer(np.array(rows, np.float64).reshape(len(raws), len(mixture.names)), raws)
    return kept


def _read_candidates(lines: Iterable[tuple[int, bytes]], mixture: Mixture, name: str):
    from gotd_stream.select.state import StateError

    raws, rows = [], []
    for lineno, line in lines:
        parsed = split_mixed(line)
        if parsed is None or parsed.names != mixture.names or parsed.fit_id != mixture.fit_id:
            raise StateError(f"{name}:{lineno}: not a candidate line of this artifact; remove the state to start over")
        raws.append(parsed.raw)
        rows.append(parsed.scores)
    return raws, rows


@dataclass
class MergedMixture:
    """The result of `merge_mixture`: the keeper (of the mix the lines were made by) and the records read."""

    kept: SumKeeper | QuotaKeeper
    read: int


def merge_mixture(paths: list[str], k: int, mixture: Mixture) -> MergedMixture:
    """Merge the outputs of `score` with several targets, in the order of their shards, exactly.

    Quota needs each shard's candidates (`score` with candidates=True); sum outputs merge as they are. Lines of
    another artifact, of both mixes, or of a quota selection (which lacks the candidates) are refused.
    """
    from gotd_stream.io.streams import display_name, read_lines

    kept = None
    total = 0
    for path in paths:
        name = display_name(path)
        raws, rows = [], []
        for lineno, line in read_lines(path):
            if not line or line.isspace():
                continue
            parsed = split_mixed(line)
            if parsed is None:
                raise NotScored(
                    f"{name}:{lineno}: no gotd_scores/gotd_fit at the end of the line: with {setting('potentials')} "
                    f"of several targets, merge takes the outputs of `score` against that artifact"
                )
            if parsed.fit_id != mixture.fit_id or parsed.names != mixture.names:
                raise MixedFits(
                    f"{name}:{lineno} was scored with fit {parsed.fit_id}, not with the artifact's {mixture.fit_id}"
                )
            if parsed.target is not None:
                raise QuotaLines(
                    f"{name}:{lineno}: a quota selection cannot be merged exactly (it lacks the shard's other "
                    f"candidates): score each shard with {setting('candidates')} and merge those"
                )
            mix = "sum" if parsed.value is not None else "quota"
            if kept is None:
                kept = keeper(mix, k, mixture.weights)
            elif kept.mix != mix:
                raise MixedFits(f"{name}:{lineno}: the inputs mix sum selections and quota candidates")
            raws.append(parsed.raw)
            rows.append(parsed.scores)
        total += len(raws)
        if raws:
            kept.offer(np.array(rows, np.float64), raws)
    return MergedMixture(kept or keeper("quota", k, mixture.weights), total)


def write_mixture(
    output: str | None, kept: SumKeeper | QuotaKeeper, mixture: Mixture, candidates: bool = False, no_score=False
) -> tuple[int, dict[str, int]]:
    """The selection (sum: best first; quota: in the draft's order) or, with `candidates`, what a later merge
    needs, atomically to `output` (None: stdout). Returns the lines written and, for a quota selection, how many
    count for each target."""
    names, fit_id = mixture.names, mixture.fit_id
    counted: Counter = Counter()
    written = 0
    with atomic_output(output) as sink:
        if candidates:
            for entry in kept.candidates():
                sink.write(with_scores(entry.raw, names, entry.scores, fit_id) + b"\n")
                written += 1
            return written, {}
        for entry, value, t in kept.selection():
            target = names[t] if t is not None else None
            counted[target] += 1
            line = entry.raw if no_score else with_scores(entry.raw, names, entry.scores, fit_id, value, target)
            sink.write(line + b"\n")
            written += 1
    return written, ({name: counted[name] for name in names} if kept.mix == "quota" else {})

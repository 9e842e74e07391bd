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

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gotd_stream.errors import UsageProblem, setting
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

    def __init__(self, base: int, raws: Sequence[bytes], scores: np.ndarray):
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


class _Targets:
    """What the keepers of several targets share: the targets, the artifact id, the lines they write."""

    mix = ""

    def __init__(self, k: int, weights: list[float], names: list[str], fit_id: str):
        self.k, self.weights, self.names, self.fit_id, self.seq = k, list(weights), list(names), fit_id, 0

    def _window(self, scores: np.ndarray, raws: Sequence[bytes]) -> _Window:
        window = _Window(self.seq, raws, scores)
        self.seq += len(raws)
        return window

    def __len__(self) -> int:
        return len(self.selection())

    def lines(self, candidates: bool = False, no_score: bool = False) -> Iterator[bytes]:
        """The selection (sum: best first; quota: in the draft's order), or with `candidates` what a merge needs."""
        from gotd_stream.io.records import with_scores

        names, fit_id = self.names, self.fit_id
        if candidates:  # sum candidates carry their sum, so that a merge of state folders knows the mix
            for entry in self.candidates():
                yield with_scores(entry.raw, names, entry.scores, fit_id, self._value(entry))
            return
        for entry, value, t in self.selection():
            target = names[t] if t is not None else None
            yield entry.raw if no_score else with_scores(entry.raw, names, entry.scores, fit_id, value, target)

    def _value(self, entry: Entry) -> float | None:
        return None

    def shares(self) -> dict[str, int]:
        """How many kept records count for each target (quota; nothing for sum)."""
        if self.mix != "quota":
            return {}
        counted = Counter(self.names[t] for _, _, t in self.selection())
        return {name: counted[name] for name in self.names}


class SumKeeper(_Targets):
    """The k lowest weighted sums, ties to the earlier record."""

    mix = "sum"

    def __init__(self, k: int, weights: list[float], names: list[str] = (), fit_id: str = ""):
        super().__init__(k, weights, names, fit_id)
        self.top = TopK(k)

    def offer(self, scores: np.ndarray, raws: Sequence[bytes], texts=None, tokens=None) -> None:
        """A window (or a shard's candidates) in input order."""
        self.top.offer(weighted_sum(scores, self.weights), self._window(scores, raws))

    def _value(self, entry: Entry) -> float:
        return float(weighted_sum(entry.scores.reshape(1, -1), self.weights)[0])

    def candidates(self) -> list[Entry]:
        """What a shard must pass on for an exact merge: its top-k, in input order."""
        return sorted((entry for _, entry in self.top.best_first()), key=lambda entry: entry.seq)

    def selection(self) -> list[tuple[Entry, float, int | None]]:
        """(entry, its weighted sum, None), best first."""
        return [(entry, value, None) for value, entry in self.top.best_first()]


class QuotaKeeper(_Targets):
    """Every target's own top-k; the selection is the draft described at the top of this module."""

    mix = "quota"

    def __init__(self, k: int, weights: list[float], names: list[str] = (), fit_id: str = ""):
        super().__init__(k, weights, names, fit_id)
        self.quotas = quotas(k, weights)
        self.tops = [TopK(k) for _ in weights]

    def offer(self, scores: np.ndarray, raws: Sequence[bytes], texts=None, tokens=None) -> None:
        """A window (or a shard's candidates) in input order."""
        window = self._window(scores, raws)
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


def keeper(mix: str, k: int, weights: list[float], names: list[str] = (), fit_id: str = "") -> SumKeeper | QuotaKeeper:
    """The keeper of a mix ("quota" or "sum") for k documents."""
    if mix not in MIXES:
        raise UsageProblem(f"{setting('mix')} {mix!r} is not one of {', '.join(MIXES)}")
    return (QuotaKeeper if mix == "quota" else SumKeeper)(k, weights, names, fit_id)

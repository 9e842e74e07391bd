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

    def __init__(self, k: int, weights: list[float], names: list[str], fit_id: str, guard=None, exclusions=None):
        self.k, self.weights, self.names, self.fit_id, self.seq = k, list(weights), list(names), fit_id, 0
        self.guard = guard if guard is not None and guard.on else None
        if self.guard is not None:  # the duplicate guard (select.dedup): a rank-prefix per ranking
            from gotd_stream.select.dedup import Prefix

            rankings = 1 if self.mix == "sum" else len(self.weights)
            self.prefixes = [Prefix(self.guard, k, None, exclusions) for _ in range(rankings)]

    def _offer_guarded(self, ranks: list[np.ndarray], scores: np.ndarray, raws: Sequence[bytes], texts) -> None:
        """Each ranking's prefix gets the units it admits; signatures are computed once, for their union."""
        admitted = [np.flatnonzero(p.admits(r)) for p, r in zip(self.prefixes, ranks, strict=True)]
        union = np.unique(np.concatenate(admitted)) if admitted else np.zeros(0, np.int64)
        base = self.seq
        if len(union):
            if texts is None:
                raise UsageProblem("the duplicate guard needs the texts of what it is offered")
            sigs = dict(zip(union.tolist(), self.guard.signatures([texts[i] for i in union]), strict=True))
            entries = {i: Entry(base + i, raws[i], scores[i].copy()) for i in union.tolist()}
            for prefix, rank, chosen in zip(self.prefixes, ranks, admitted, strict=True):
                picked = chosen.tolist()
                prefix.offer(
                    rank[chosen],
                    [sigs[i] for i in picked],
                    [entries[i] for i in picked],
                    seqs=[base + i for i in picked],
                )
        self.seq = base + len(raws)
        for prefix in self.prefixes:
            prefix.seq = self.seq

    def offer_shard(self, shard, name: str) -> None:
        """A guarded shard's candidates read back (select.dedup.read_shard), under its cutoffs."""
        from gotd_stream.io.records import split_mixed
        from gotd_stream.select.dedup import NotCandidates, offer_shard

        if len(shard.cutoffs) != len(self.prefixes):
            raise NotCandidates(f"{name}: candidates of {len(shard.cutoffs)} rankings, not {len(self.prefixes)}")
        base = max(p.seq for p in self.prefixes)
        items = []
        for i, (_, _, _, line) in enumerate(shard.units):
            mixed = split_mixed(line) if line is not None else None
            if line is not None and (mixed is None or mixed.names != self.names):
                raise NotCandidates(f"{name}: a candidate line without this artifact's gotd_scores")
            items.append(None if mixed is None else Entry(base + i, mixed.raw, np.array(mixed.scores, np.float64)))
        offer_shard(self.prefixes, shard, items)
        self.seq = base + len(shard.units)

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
        if candidates and self.guard is not None:  # the prefixes, with the lines as below
            from gotd_stream.select.dedup import prefixes_lines

            def line_of(entry: Entry) -> bytes:
                return with_scores(entry.raw, names, entry.scores, fit_id, self._value(entry))

            yield from prefixes_lines(self.prefixes, fit_id, line_of)
            return
        if candidates:  # sum candidates carry their sum, so that a merge of state folders knows the mix
            for entry in self.candidates():
                yield with_scores(entry.raw, names, entry.scores, fit_id, self._value(entry))
            return
        guard = self.guard.tag if self.guard is not None else None  # a guarded selection says so: never merged
        for entry, value, t in self.selection():
            target = names[t] if t is not None else None
            yield entry.raw if no_score else with_scores(entry.raw, names, entry.scores, fit_id, value, target, guard)

    def _value(self, entry: Entry) -> float | None:
        return None

    def shares(self) -> dict[str, int]:
        """How many kept records count for each target (quota; nothing for sum)."""
        if self.mix != "quota":
            return {}
        counted = Counter(self.names[t] for _, _, t in self.selection())
        return {name: counted[name] for name in self.names}


class SumKeeper(_Targets):
    """The k lowest weighted sums, ties to the earlier record (with the guard: the k lowest eligible ones)."""

    mix = "sum"

    def __init__(
        self, k: int, weights: list[float], names: list[str] = (), fit_id: str = "", guard=None, exclusions=None
    ):
        super().__init__(k, weights, names, fit_id, guard, exclusions)
        if self.guard is None:
            self.top = TopK(k)

    def offer(self, scores: np.ndarray, raws: Sequence[bytes], texts=None, tokens=None) -> None:
        """A window (or a shard's candidates) in input order."""
        if self.guard is not None:
            return self._offer_guarded([weighted_sum(scores, self.weights)], scores, raws, texts)
        self.top.offer(weighted_sum(scores, self.weights), self._window(scores, raws))

    def _value(self, entry: Entry) -> float:
        return float(weighted_sum(entry.scores.reshape(1, -1), self.weights)[0])

    def candidates(self) -> list[Entry]:
        """What a shard must pass on for an exact merge: its top-k, in input order."""
        return sorted((entry for _, entry in self.top.best_first()), key=lambda entry: entry.seq)

    def selection(self) -> list[tuple[Entry, float, int | None]]:
        """(entry, its weighted sum, None), best first."""
        if self.guard is not None:
            return [(unit.item, unit.rank, None) for unit in self.prefixes[0].selected()]
        return [(entry, value, None) for value, entry in self.top.best_first()]

    def dropped(self) -> dict[str, int]:
        return {} if self.guard is None else self.prefixes[0].dropped()


class QuotaKeeper(_Targets):
    """Every target's own top-k; the selection is the draft described at the top of this module."""

    mix = "quota"

    def __init__(
        self, k: int, weights: list[float], names: list[str] = (), fit_id: str = "", guard=None, exclusions=None
    ):
        super().__init__(k, weights, names, fit_id, guard, exclusions)
        self.quotas = quotas(k, weights)
        if self.guard is None:
            self.tops = [TopK(k) for _ in weights]

    def offer(self, scores: np.ndarray, raws: Sequence[bytes], texts=None, tokens=None) -> None:
        """A window (or a shard's candidates) in input order."""
        if self.guard is not None:
            return self._offer_guarded([scores[:, t] for t in range(len(self.weights))], scores, raws, texts)
        window = self._window(scores, raws)
        for t, top in enumerate(self.tops):
            top.offer(scores[:, t], window)

    def candidates(self) -> list[Entry]:
        """The union of the targets' top-k lists, in input order: what a shard passes on for an exact merge."""
        union = {entry.seq: entry for top in self.tops for _, entry in top.best_first()}
        return [union[seq] for seq in sorted(union)]

    def selection(self) -> list[tuple[Entry, float, int | None]]:
        """(entry, its score for the target it counts for, that target), in the order of the draft."""
        if self.guard is not None:
            return self._guarded_draft()[0]
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

    def _guarded_draft(self) -> tuple[list, dict[str, int]]:
        """The quota draft over each target's eligible ranking, where a unit that collides with one already drafted
        (for any target) is skipped like one already taken; and the units dropped, by reason. A target that runs
        out of its prefix's eligible units before its quota, where the prefix was cut, cannot be told exactly."""
        from gotd_stream.select.dedup import Index, MarginExceeded

        rankings = [[u for u in p.ordered() if u.why is None] for p in self.prefixes]
        taken: set[int] = set()
        drafted = Index(self.guard)
        counts = [0] * len(rankings)
        picked, skipped, depth = [], 0, [0] * len(rankings)
        for rank in range(max(map(len, rankings), default=0)):
            for t, ranking in enumerate(rankings):
                if counts[t] >= self.quotas[t] or rank >= len(ranking):
                    continue
                unit = ranking[rank]
                depth[t] = rank + 1
                if unit.seq in taken:
                    continue
                keys = drafted.keys(unit.sig)
                if drafted.colliders(unit.sig, keys):
                    skipped += 1
                    continue
                taken.add(unit.seq)
                drafted.add(unit.seq, unit.sig, keys)
                counts[t] += 1
                picked.append((unit.item, float(unit.item.scores[t]), t))
            if counts == self.quotas:
                break
        for t, prefix in enumerate(self.prefixes):
            if counts[t] < self.quotas[t] and prefix.cutoff < float("inf"):
                raise MarginExceeded(
                    f"the duplicate guard cannot tell the quota draft exactly: target {self.names[t]!r} ran out "
                    f"of the eligible units its prefix holds ({counts[t]:,} of its quota {self.quotas[t]:,}); "
                    f"score again with a larger {setting('dedup_margin')} (now {self.guard.margin!r})"
                )
        found: dict[str, set[int]] = {}  # a unit dropped in several rankings counts once
        for t, prefix in enumerate(self.prefixes):
            last = rankings[t][depth[t] - 1].order if depth[t] else None
            for unit in prefix.units.values():
                if unit.why is not None and last is not None and unit.order < last:
                    found.setdefault(unit.why, set()).add(unit.seq)
        dropped = {why: len(seqs) for why, seqs in found.items()}
        if skipped:
            dropped["copy"] = dropped.get("copy", 0) + skipped
        return picked, dropped

    def dropped(self) -> dict[str, int]:
        """The units the guard dropped above each target's last drafted one, by reason (nothing: no guard)."""
        return {} if self.guard is None else self._guarded_draft()[1]


def keeper(
    mix: str, k: int, weights: list[float], names: list[str] = (), fit_id: str = "", guard=None, exclusions=None
) -> SumKeeper | QuotaKeeper:
    """The keeper of a mix ("quota" or "sum") for k documents; `guard`: the duplicate guard (select.dedup)."""
    if mix not in MIXES:
        raise UsageProblem(f"{setting('mix')} {mix!r} is not one of {', '.join(MIXES)}")
    return (QuotaKeeper if mix == "quota" else SumKeeper)(k, weights, names, fit_id, guard, exclusions)

"""The keeper: what a selection keeps of a stream of scores, for one target or several, and the lines it writes.

A selection is records -> units -> features -> a scores matrix (documents x targets) -> a keeper -> output.
One target is the one-column case. Every keeper has the same interface:

    offer(scores, raws, texts=None, tokens=None)   a window (or a shard's saved lines) in input order
    selection()                                    what is kept, in the order it is written
    candidates()                                   what a shard passes on so that a merge stays exact
    lines(candidates, no_score)                    those, as the lines `score` writes

- `RankKeeper` (one target): the k best, or the best until their tokens reach the budget, ranked by the score
  or by seeded Gumbel keys (select.budget). Its candidates are its selection (a best-first prefix).
- `SumKeeper` and `QuotaKeeper` (several targets, select.mix): the weighted sum's top-k, or the quota draft.

`keeper_for(artifact, budget, mix, counter)` picks one and refuses what the method cannot do (several targets
keep k whole records by their scores); `read_line` turns a written line back into (raw, scores row, tokens) for
`merge` and `--state`, refusing lines of another artifact or rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gotd_stream.errors import RuntimeProblem, UsageProblem, setting

if TYPE_CHECKING:
    import numpy as np

    from gotd_stream.select.budget import Budget, Kept

# units of a window the duplicate guard signs at a time, best first (RankKeeper._offer_guarded)
GUARD_SLAB = 512


class NotScored(RuntimeProblem):
    """A line without the score suffix: the input is not an output of `score` (or was written without it)."""


class MixedFits(UsageProblem):
    """The inputs were scored with different artifacts: their scores are not comparable."""


class QuotaLines(UsageProblem):
    """Lines of a quota mix of several targets where they cannot be merged (exactly, or without the weights)."""


class MixedRules(UsageProblem):
    """The inputs were selected by different rules (top scores, or samples with other settings)."""


class GuardedSelection(UsageProblem):
    """A plain selection the duplicate guard chose, given to a merge without the prefix file written beside it
    (or beside another selection's): it lacks what an exact merge needs (the dropped units and spares of the
    shard's prefix, which prefix files, candidate lines and state folders carry)."""


class OneTargetOnly(UsageProblem):
    """A setting that applies to one target given with several (or one that needs several, with one)."""


class _Kepts(Sequence):
    """A window's records as Kept items, made only for the few a keeper looks at (those under its threshold)."""

    def __init__(self, raws: Sequence[bytes], scores: np.ndarray, tokens: np.ndarray):
        self.raws, self.scores, self.tokens = raws, scores, tokens

    def __len__(self) -> int:
        return len(self.raws)

    def __getitem__(self, i: int) -> Kept:
        from gotd_stream.select.budget import Kept

        return Kept(self.raws[i], float(self.scores[i]), int(self.tokens[i]))


class RankKeeper:
    """One target: the budget's best-first prefix (k records, or tokens) by the budget's rule.

    Tokens are counted (with `counter`) only for records that could still enter a token budget.
    """

    mix = None

    def __init__(self, budget: Budget, fit_id: str, counter=None, guard=None, exclusions=None):
        self.budget, self.fit_id, self.counter = budget, fit_id, counter
        self.guard = guard if guard is not None and guard.on else None
        if self.guard is None:
            self.heap = budget.keeper()
        else:  # the duplicate guard (select.dedup): a rank-prefix with its dropped units' signatures
            from gotd_stream.select.dedup import Prefix

            self.prefix = Prefix(self.guard, budget.k, budget.tokens, exclusions)

    def offer(self, scores: np.ndarray, raws: Sequence[bytes], texts=None, tokens=None) -> None:
        import numpy as np

        scores = scores[:, 0] if scores.ndim == 2 else scores
        ranks = self.budget.rule.ranks(scores, raws)
        if self.guard is not None:
            return self._offer_guarded(ranks, scores, raws, texts, tokens)
        if self.budget.tokens is None:
            tokens = np.zeros(len(raws), dtype=np.int64)  # a record budget counts no tokens
        else:
            # known counts (a piece's, or a line read back) are kept; -1 is counted now, and only for the records
            # that could still enter the budget
            tokens = np.full(len(raws), -1, np.int64) if tokens is None else np.array(tokens, np.int64)
            under = np.flatnonzero((ranks < self.heap.threshold()) & (tokens < 0))
            if len(under):
                tokens[under] = self.counter.count([texts[i] for i in under])
            tokens[tokens < 0] = 0  # above the threshold: never kept
        items = _Kepts(raws, scores, tokens)
        if self.budget.tokens is None:
            self.heap.offer(ranks, items)
        else:
            self.heap.offer(ranks, items, tokens)

    def _offer_guarded(self, ranks, scores, raws, texts, tokens) -> None:
        """Only the units that enter the prefix get a signature (and, under a token budget, their tokens)."""
        import numpy as np

        from gotd_stream.select.budget import Kept

        base = self.prefix.seq
        admitted = np.flatnonzero(self.prefix.admits(ranks))
        if len(admitted) and texts is None:
            raise UsageProblem("the duplicate guard needs the texts of what it is offered")
        known = None
        if self.budget.tokens is not None:
            known = np.full(len(raws), -1, np.int64) if tokens is None else np.array(tokens, np.int64)
        # best first, a slab at a time: the cutoff falls as the slabs fill the prefix, so the units a better slab
        # pushed below it need no signature; a worse slab never changes a better one's units, so the prefix is the
        # one a single offer of the window gives (select.dedup)
        admitted = admitted[np.argsort(ranks[admitted], kind="stable")]
        while len(admitted):
            slab, admitted = admitted[:GUARD_SLAB], admitted[GUARD_SLAB:]
            slab = np.sort(slab[self.prefix.admits(ranks[slab])])
            if not len(slab):
                break  # the rest rank below this one: below the cutoff too
            counts = np.zeros(len(slab), np.int64)
            if known is not None:
                counts = known[slab]
                missing = np.flatnonzero(counts < 0)
                if len(missing):
                    counts[missing] = self.counter.count([texts[slab[i]] for i in missing])
            sigs = self.guard.signatures([texts[i] for i in slab])
            items = [Kept(raws[i], float(scores[i]), int(counts[j])) for j, i in enumerate(slab)]
            self.prefix.offer(ranks[slab], sigs, items, counts, seqs=[base + int(i) for i in slab])
        self.prefix.seq = base + len(raws)

    def offer_shard(self, shard, name: str) -> None:
        """A guarded shard's candidates read back (select.dedup.read_shard), offered under its cutoff."""
        from gotd_stream.io.records import split_scored
        from gotd_stream.select.budget import Kept
        from gotd_stream.select.dedup import offer_shard

        items, tokens = [], []
        for _, _, _, line in shard.units:
            item = None
            if line is not None:
                scored = split_scored(line)
                if scored is None:
                    raise NotScored(f"{name}: a candidate line without gotd_score/gotd_fit")
                if self.budget.tokens is not None and scored.tokens is None:
                    raise NotScored(f"{name}: a candidate line without gotd_tokens, under a token budget")
                item = Kept(scored.raw, scored.score, scored.tokens or 0)
            items.append(item)
            tokens.append(item.tokens if item is not None else 0)
        offer_shard([self.prefix], shard, items, tokens)

    def __len__(self) -> int:
        return len(self.heap) if self.guard is None else len(self.selection())

    @property
    def total(self) -> int:
        """Tokens held (a token budget)."""
        if self.guard is not None:
            return sum(item.tokens for item in self.selection())
        return self.heap.total

    def best_first(self) -> list[tuple[float, Kept]]:
        if self.guard is not None:
            return [(unit.rank, unit.item) for unit in self.prefix.selected()]
        return self.heap.best_first()

    def selection(self) -> list[Kept]:
        return [item for _, item in self.best_first()]

    def dropped(self) -> dict[str, int]:
        """The units ranked above the last selected one that the guard dropped, by reason (nothing: no guard)."""
        return {} if self.guard is None else self.prefix.dropped()

    candidates = selection  # a best-first prefix merges exactly as it is; with the guard, lines() carries the prefix

    def lines(self, candidates: bool = False, no_score: bool = False) -> Iterator[bytes]:
        from gotd_stream.io.records import with_score

        counted, tag = self.budget.tokens is not None, self.budget.rule.tag

        def line_of(item, guard: str | None = None) -> bytes:
            tokens = item.tokens if counted else None
            return with_score(item.raw, item.score, self.fit_id, tokens, tag, guard)

        if candidates and self.guard is not None:
            from gotd_stream.select.dedup import prefixes_lines

            yield from prefixes_lines([self.prefix], self.fit_id, line_of, tag)
            return
        guard = self.guard.tag if self.guard is not None else None  # a guarded selection says so: never merged
        for item in self.selection():
            yield item.raw if no_score else line_of(item, guard)

    def shares(self) -> dict[str, int]:
        return {}


def keeper_for(
    artifact,
    budget: Budget,
    mix: str | None = None,
    units=None,
    candidates: bool = False,
    fit_id: str | None = None,
    guard=None,
    exclusions=None,
):
    """The keeper of `budget` over `artifact` (a Potentials: one target, or a Mixture: several), by `mix`;
    `units` (select.score.Units) says what is scored and counts the tokens; `fit_id`: the artifact's, if known;
    `guard` (select.dedup.Guard) and `exclusions`: the duplicate guard, when on."""
    from gotd_stream.select.artifact import Mixture

    counter = units.counter if units is not None else None
    chunks = units is not None and units.chunk_tokens is not None
    guarded = guard is not None and guard.on
    check_plan(isinstance(artifact, Mixture), budget, mix, chunks or counter is not None, candidates, guarded)
    fit_id = fit_id or artifact.fit_id
    if not isinstance(artifact, Mixture):
        return RankKeeper(budget, fit_id, counter, guard, exclusions)
    from gotd_stream.select.mix import keeper

    return keeper(mix or "quota", budget.k, artifact.weights, artifact.names, fit_id, guard, exclusions)


def check_plan(
    several: bool,
    budget: Budget,
    mix: str | None,
    counted: bool = False,
    candidates: bool = False,
    guarded: bool = False,
) -> None:
    """The method's rules on what one target (or `several`) keeps (typed errors naming settings); `counted`:
    pieces or a token counter were asked for; `guarded`: the duplicate guard is on (one target's candidates are
    then its prefix, for an exact merge)."""
    if not several:
        if mix:
            raise OneTargetOnly(f"{setting('mix')} applies to several targets, and there is one")
        if candidates and not guarded:
            raise OneTargetOnly(
                f"{setting('candidates')} applies to several targets (or to one target with {setting('dedup')} "
                "on), and there is one"
            )
        return
    if budget.k is None or budget.rule.name != "top" or counted:
        raise OneTargetOnly(
            f"several targets keep {setting('k')} whole records by their scores: {setting('tokens')}, "
            f"{setting('tokenizer')}, {setting('unit')} chunk and {setting('select')} sample apply to one target"
        )
    if candidates and (mix or "quota") != "quota" and not guarded:
        raise UsageProblem(f"{setting('candidates')} is for {setting('mix')} quota; a sum selection merges as it is")


@dataclass
class Line:
    """A written line taken apart: the original record, its scores row, its tokens (None when not counted)."""

    raw: bytes
    scores: list[float]
    tokens: int | None
    kind: str | None  # one target: None (top) or the sample's tag; several: "sum" or "quota"
    fit_id: str
    names: list[str] | None = None  # several targets: their names, in the artifact's order


def read_line(line: bytes, name: str, lineno: int, mixture=None) -> Line:  # noqa: C901
    """A line of `score`'s output (or a state folder) for a merge: one target's suffix, or several targets'.

    Without `mixture`, quota lines of several targets are refused (they need the artifact's weights); sum lines
    merge as a plain top-k of their weighted sums, as they always did.
    """
    from gotd_stream.io.records import split_mixed, split_scored

    mixed = split_mixed(line)
    if mixed is not None and mixed.guard is not None:
        raise guarded_selection(name, lineno, mixed.guard)
    if mixture is not None:
        if mixed is None:
            raise NotScored(
                f"{name}:{lineno}: no gotd_scores/gotd_fit at the end of the line: with {setting('potentials')} "
                f"of several targets, merge takes the outputs of `score` against that artifact"
            )
        if mixed.target is not None:
            raise QuotaLines(
                f"{name}:{lineno}: a quota selection cannot be merged exactly (it lacks the shard's other "
                f"candidates): score each shard with {setting('candidates')} and merge those"
            )
        kind = "sum" if mixed.value is not None else "quota"
        return Line(mixed.raw, mixed.scores, None, kind, mixed.fit_id, mixed.names)
    if mixed is not None and mixed.target is not None:
        raise QuotaLines(
            f"{name}:{lineno}: a quota selection of several targets cannot be merged exactly (it lacks the shard's "
            f"other candidates): score each shard with {setting('candidates')}, then merge those with "
            f"{setting('potentials')} and the artifact"
        )
    if mixed is not None and mixed.value is None:
        raise QuotaLines(
            f"{name}:{lineno}: quota candidates of several targets: merge them with {setting('potentials')} and the "
            f"artifact they were scored with (it holds the targets' weights)"
        )
    scored = split_scored(line)
    if scored is None:
        raise NotScored(
            f"{name}:{lineno}: no gotd_score/gotd_fit at the end of the line: merge takes the outputs "
            f"of `gotd-stream score` written without {setting('no_score')}"
        )
    if scored.guard is not None:
        raise guarded_selection(name, lineno, scored.guard)
    return Line(scored.raw, [scored.score], scored.tokens, scored.select, scored.fit_id)


def guarded_selection(name: str, lineno: int, guard: str, beside: str | None = None) -> GuardedSelection:
    """The refusal of a plain guarded selection where a merge (or a state folder) expects lines it can join;
    `beside`: the prefix file a merge looked for and did not find."""
    missing = f"there is no {beside} beside it (`score -o FILE` writes one; stdout cannot)" if beside else ""
    return GuardedSelection(
        f"{name}:{lineno}: a selection made with the duplicate guard ({guard}) cannot be merged exactly without "
        f"the units the guard dropped and the spares a merge needs{': ' + missing if missing else ''}; score "
        f"each shard with -o FILE, with {setting('candidates')} or into a {setting('state')} folder and merge "
        f"those, or with {setting('dedup')} off"
    )


def offer_lines(keeper, lines: Sequence[Line], targets: int = 1) -> None:
    """Offer lines read back (a shard's saved candidates, or a merge input) to a keeper, in their order."""
    import numpy as np

    if not lines:
        return
    scores = np.array([line.scores for line in lines], np.float64).reshape(len(lines), targets)
    tokens = [line.tokens or 0 for line in lines]
    keeper.offer(scores, [line.raw for line in lines], tokens=tokens)

"""The global selection of several `score` outputs: exact, because every output is a best-first prefix (one
target) or a shard's candidates (several targets: select.mix; the duplicate guard: select.dedup). A plain
selection the guard chose carries its tag (gotd_guard): it lacks the dropped units and spares an exact merge
needs, so it merges through the prefix file `score -o FILE` wrote beside it (FILE.guard.zst: those candidates),
and is refused (GuardedSelection) without one.

Offered in the order of their shards, the per-shard lines give exactly the selection of one pass over all shards
(ties go to the earlier record in both; select.budget says why for token budgets and samples), so the merged
bytes equal one `score` over everything. One `merge` for any number of targets: the lines say which.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.select.keep import GuardedSelection, MixedFits, MixedRules, NotScored, QuotaLines

__all__ = ["GuardedSelection", "Merged", "MixedFits", "MixedRules", "NotScored", "QuotaLines", "check_merge", "merge"]


@dataclass
class Merged:
    """What `merge` gives: the keeper holding the merged selection (write it with write_selection), the inputs'
    fit id, the records read and the budget they were merged under."""

    keeper: object  # a select.keep keeper: RankKeeper (one target), SumKeeper or QuotaKeeper (several)
    fit_id: str  # "" when every input was empty
    read: int  # records read
    budget: object  # the select.budget.Budget the inputs were merged under, with the inputs' rule


def merge(
    paths: list[str],
    k: int | None = None,
    tokens: int | None = None,
    artifact=None,
    scorer: str = "auto",
    cascade_share: float | None = None,
) -> Merged:
    """Read scored lines from `paths` (in shard order; JSONL or Parquet selections: io.parquet_out) and keep the
    k best, or the best `tokens` tokens, ranked by the rule the lines record; refuse lines, fits, scorers and rules
    that differ. With `artifact` of several targets (a Mixture), the lines are its quota candidates or sum
    selections, merged by the mix they were made by, and scored by `scorer` (select.distill: a student's or a
    cascade's lines carry their own id)."""
    from gotd_stream.io.parquet_out import selection_lines
    from gotd_stream.io.streams import absolute, display_name
    from gotd_stream.select.artifact import Mixture
    from gotd_stream.select.budget import Budget, Rule
    from gotd_stream.select.dedup import is_guarded, prefix_path, read_shard
    from gotd_stream.select.keep import RankKeeper, offer_lines, read_line

    mixture = artifact if isinstance(artifact, Mixture) else None
    check_merge(mixture is not None, tokens, candidates=False, no_score=False)
    expected = expected_id(mixture, scorer, cascade_share, k, tokens) if mixture is not None else None
    fits: dict[str, str] = {}
    rules: dict[str | None, str] = {}
    budget = keeper = None  # made at the first line, which names the rule (or the mix)
    total = 0
    guards: dict[str, str] = {}  # the guard of guarded candidates ("" for plain lines), and where first seen
    given = {absolute(path) for path in paths}
    for path in paths:
        name = display_name(path)
        lines = []
        numbered = iter(selection_lines(path))  # JSONL, or a Parquet selection's rows as their lines
        first = next(((n, raw) for n, raw in numbered if raw and not raw.isspace()), None)
        if first is None:
            continue
        guarded = is_guarded(first[1])
        shard = None
        if not guarded and plain_guard(first[1]) is not None:  # a plain guarded selection: its prefix file
            if absolute(prefix_path(path)) in given:
                continue  # merged in its own place among the inputs
            shard = beside_prefix(path, name, itertools.chain([first], numbered), plain_guard(first[1]), first[0])
            guarded = True
        elif guarded:
            shard = read_shard(itertools.chain([first], numbered), name)
        guards.setdefault(shard.guard.tag if guarded else "", name)
        if len(guards) > 1:
            listed = ", ".join(f"{g or 'no guard'} (first in {n})" for g, n in guards.items())
            raise MixedRules(f"the inputs were selected with different duplicate guards: {listed}")
        if guarded:
            keeper, budget = merge_shard(keeper, budget, shard, name, k, tokens, mixture, fits, rules)
            total += len(shard.units)
            continue
        for lineno, raw in itertools.chain([first], numbered):
            if not raw or raw.isspace():
                continue
            line = read_line(raw, name, lineno, mixture)
            if mixture is not None:
                if line.fit_id != expected or line.names != mixture.names:
                    raise MixedFits(
                        f"{name}:{lineno} was scored with fit {line.fit_id}, not with the artifact's {expected}"
                    )
                if keeper is None:
                    budget = Budget(k=k)
                    keeper = budget_keeper(line.kind, budget, mixture, expected)
                elif keeper.mix != line.kind:
                    raise MixedFits(f"{name}:{lineno}: the inputs mix sum selections and quota candidates")
                lines.append(line)
                continue
            fits.setdefault(line.fit_id, name)
            if len(fits) > 1:
                listed = ", ".join(f"{f} (first in {n})" for f, n in fits.items())
                raise MixedFits(f"the inputs were scored with different potentials or scorers: {listed}")
            if line.kind not in rules:
                try:
                    Rule.from_tag(line.kind)
                except ValueError:
                    raise NotScored(f"{name}:{lineno}: unknown gotd_select {line.kind!r}") from None
                rules[line.kind] = name
            if len(rules) > 1:
                listed = ", ".join(f"{r or 'top'} (first in {n})" for r, n in rules.items())
                raise MixedRules(f"the inputs were selected by different rules: {listed}")
            if tokens is not None and line.tokens is None:
                raise NotScored(
                    f"{name}:{lineno}: no gotd_tokens: a token budget merges outputs of `gotd-stream score "
                    f"{setting('tokens')}`; merge these with {setting('k')}"
                )
            lines.append(line)
        total += len(lines)
        if lines:
            if keeper is None:
                budget = Budget(k=k, tokens=tokens, rule=Rule.from_tag(next(iter(rules))))
                keeper = RankKeeper(budget, next(iter(fits)))
            offer_lines(keeper, lines, len(mixture.names) if mixture is not None else 1)
    if keeper is None:  # no input: an empty selection
        budget = Budget(k=k, tokens=tokens)
        keeper = budget_keeper("quota", budget, mixture, expected) if mixture is not None else RankKeeper(budget, "")
    return Merged(keeper, expected or next(iter(fits), ""), total, budget)


def plain_guard(line: bytes) -> str | None:
    """The duplicate guard's tag on a line of a plain selection (one target's or several targets'), or None."""
    from gotd_stream.io.records import split_mixed, split_scored

    mixed = split_mixed(line)
    if mixed is not None:
        return mixed.guard
    scored = split_scored(line)
    return scored.guard if scored is not None else None


def beside_prefix(path: str, name: str, lines, tag: str, lineno: int):
    """The prefix file beside the plain guarded selection at `path` (select.dedup), read as its shard, once its
    header names this selection: the number of lines and (a JSONL selection) their sha256."""
    from gotd_stream.io.parquet import is_parquet
    from gotd_stream.io.streams import display_name, read_lines
    from gotd_stream.select.dedup import SelectionDigest, existing_prefix, prefix_path, read_shard
    from gotd_stream.select.keep import guarded_selection

    found = existing_prefix(path)
    if found is None:
        raise guarded_selection(name, lineno, tag, prefix_path(name))
    digest = SelectionDigest()
    for _, raw in lines:
        if raw and not raw.isspace():
            digest.add(raw)
    shard = read_shard(read_lines(found), display_name(found))
    mine = digest.of()
    if is_parquet(path):  # its rows come back as lines of their own spelling: the number of them is checked
        mine["sha256"] = None
    if shard.of != mine or shard.guard.tag != tag:
        raise GuardedSelection(
            f"{display_name(found)} is not the prefix file of {name} as it is now (written with another "
            f"selection: {shard.of} against {mine}); score it again with -o {name}, or merge the shards' "
            f"{setting('candidates')} or {setting('state')} folders"
        )
    return shard


def merge_shard(keeper, budget, shard, name: str, k, tokens, mixture, fits: dict, rules: dict):
    """A guarded shard's candidates (select.dedup) into the merge's keeper, made at the first one."""
    from gotd_stream.select.budget import Budget, Rule
    from gotd_stream.select.keep import RankKeeper

    if mixture is not None:
        if shard.fit_id != mixture.fit_id:
            raise MixedFits(f"{name} was scored with fit {shard.fit_id}, not with the artifact's {mixture.fit_id}")
        kind = "sum" if len(shard.cutoffs) == 1 else "quota"
        if keeper is None:
            budget = Budget(k=k)
            keeper = budget_keeper(kind, budget, mixture, shard.fit_id, shard.guard)
        elif keeper.mix != kind:
            raise MixedFits(f"{name}: the inputs mix sum selections and quota candidates")
        keeper.offer_shard(shard, name)
        return keeper, budget
    if len(shard.cutoffs) != 1:
        raise QuotaLines(
            f"{name}:1: quota candidates of several targets: merge them with {setting('potentials')} and the "
            "artifact they were scored with (it holds the targets' weights)"
        )
    fits.setdefault(shard.fit_id, name)
    if len(fits) > 1:
        listed = ", ".join(f"{f} (first in {n})" for f, n in fits.items())
        raise MixedFits(f"the inputs were scored with different potentials: {listed}")
    rules.setdefault(shard.select, name)
    if len(rules) > 1:
        listed = ", ".join(f"{r or 'top'} (first in {n})" for r, n in rules.items())
        raise MixedRules(f"the inputs were selected by different rules: {listed}")
    if keeper is None:
        try:
            rule = Rule.from_tag(shard.select)
        except ValueError:
            raise NotScored(f"{name}: unknown gotd_select {shard.select!r}") from None
        budget = Budget(k=k, tokens=tokens, rule=rule)
        keeper = RankKeeper(budget, shard.fit_id, guard=shard.guard)
    keeper.offer_shard(shard, name)
    return keeper, budget


def check_merge(several: bool, tokens: int | None, candidates: bool, no_score: bool) -> None:
    """What a merge of one target's lines, or of several targets' (`several`), can keep (typed errors)."""
    from gotd_stream.select.keep import OneTargetOnly

    if several and tokens is not None:
        raise OneTargetOnly(f"several targets merge {setting('k')} records: {setting('tokens')} applies to one target")
    if candidates and not several:
        raise OneTargetOnly(
            f"{setting('candidates')} needs {setting('potentials')} with an artifact of several targets"
        )
    if candidates and no_score:
        raise UsageProblem(
            f"{setting('candidates')} writes the scores a further merge needs: leave out {setting('no_score')}"
        )


def budget_keeper(mix: str, budget, mixture, fit_id: str | None = None, guard=None):
    from gotd_stream.select.mix import keeper

    return keeper(mix, budget.k, mixture.weights, mixture.names, fit_id or mixture.fit_id, guard)


def expected_id(
    artifact, scorer: str = "auto", cascade_share: float | None = None, k: int | None = None, tokens: int | None = None
) -> str:
    """The gotd_fit that lines scored against `artifact` by `scorer` under the budget (`k` or `tokens`) carry
    (select.distill.scoring_id; the cascade's share, when not given, is the budget's: cascade_share)."""
    from gotd_stream.select import distill

    return distill.scoring_id(artifact, scorer, distill.cascade_share(artifact, k, tokens, cascade_share))

"""The global selection of several `score` outputs: exact, because every output is a best-first prefix.

Offered in the order of their shards, the per-shard lists give exactly the selection of one pass over all shards
(ties go to the earlier record in both; select.budget says why for token budgets and samples), so the merged
bytes equal one `score` over everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from gotd_stream.errors import RuntimeProblem, UsageProblem, setting


class NotScored(RuntimeProblem):
    """A line without the score suffix: the input is not an output of `score` (or was written without it)."""


class MixedFits(UsageProblem):
    """The inputs were scored with different artifacts: their scores are not comparable."""


class QuotaLines(UsageProblem):
    """Lines of a quota mix of several targets where they cannot be merged (exactly, or without the weights)."""


class MixedRules(UsageProblem):
    """The inputs were selected by different rules (top scores, or samples with other settings)."""


@dataclass
class Merged:
    keeper: object  # a TopK or TokenBudget of select.budget.Kept
    fit_id: str  # "" when every input was empty
    read: int  # records read
    budget: object  # the select.budget.Budget the inputs were merged under, with the inputs' rule


def merge(paths: list[str], k: int | None = None, tokens: int | None = None) -> Merged:
    """Read scored lines from `paths` (in shard order) and keep the k best, or the best `tokens` tokens, ranked
    by the rule the lines record; refuse lines, fits and rules that differ."""
    import numpy as np

    from gotd_stream.io.records import split_scored
    from gotd_stream.io.streams import display_name, read_lines
    from gotd_stream.select.budget import Budget, Kept, Rule

    fits: dict[str, str] = {}
    rules: dict[str | None, str] = {}
    budget = keeper = None  # made at the first line, which names the rule
    total = 0
    for path in paths:
        name = display_name(path)
        scores: list[float] = []
        items: list[Kept] = []
        for lineno, line in read_lines(path):
            if not line or line.isspace():
                continue
            parsed = split_scored(line)
            refuse_quota(line, name, lineno)
            if parsed is None:
                raise NotScored(
                    f"{name}:{lineno}: no gotd_score/gotd_fit at the end of the line: merge takes the outputs "
                    f"of `gotd-stream score` written without {setting('no_score')}"
                )
            fits.setdefault(parsed.fit_id, name)
            if len(fits) > 1:
                listed = ", ".join(f"{f} (first in {n})" for f, n in fits.items())
                raise MixedFits(f"the inputs were scored with different potentials: {listed}")
            if parsed.select not in rules:
                try:
                    Rule.from_tag(parsed.select)
                except ValueError:
                    raise NotScored(f"{name}:{lineno}: unknown gotd_select {parsed.select!r}") from None
                rules[parsed.select] = name
            if len(rules) > 1:
                listed = ", ".join(f"{r or 'top'} (first in {n})" for r, n in rules.items())
                raise MixedRules(f"the inputs were selected by different rules: {listed}")
            if tokens is not None and parsed.tokens is None:
                raise NotScored(
                    f"{name}:{lineno}: no gotd_tokens: a token budget merges outputs of `gotd-stream score "
                    f"{setting('tokens')}`; merge these with {setting('k')}"
                )
            scores.append(parsed.score)
            items.append(Kept(parsed.raw, parsed.score, parsed.tokens or 0))
        total += len(items)
        if items:
            if budget is None:
                budget = Budget(k=k, tokens=tokens, rule=Rule.from_tag(next(iter(rules))))
                keeper = budget.keeper()
            budget.offer(keeper, np.asarray(scores, dtype=np.float64), items)
    if budget is None:  # no input: an empty selection
        budget = Budget(k=k, tokens=tokens)
        keeper = budget.keeper()
    return Merged(keeper, next(iter(fits), ""), total, budget)


def refuse_quota(line: bytes, name: str, lineno: int) -> None:
    """A line of a quota mix of several targets cannot join a plain top-k: say what merges it instead."""
    from gotd_stream.io.records import split_mixed

    mixed = split_mixed(line)
    if mixed is None or (mixed.target is None and mixed.value is not None):  # single-target or sum: a plain top-k
        return
    if mixed.target is not None:
        raise QuotaLines(
            f"{name}:{lineno}: a quota selection of several targets cannot be merged exactly (it lacks the shard's "
            f"other candidates): score each shard with {setting('candidates')}, then merge those with "
            f"{setting('potentials')} and the artifact"
        )
    raise QuotaLines(
        f"{name}:{lineno}: quota candidates of several targets: merge them with {setting('potentials')} and the "
        f"artifact they were scored with (it holds the targets' weights)"
    )

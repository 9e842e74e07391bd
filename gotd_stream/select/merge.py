"""The global top-k of several `score` outputs: exact, because every output is a top-k in input order.

Offered in the order of their shards, the per-shard lists give exactly the top-k of one pass over all shards
(ties go to the earlier record in both), so the merged bytes equal one `score` over everything.
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


@dataclass
class Merged:
    top: object  # a TopK of (score, original line)
    fit_id: str  # "" when every input was empty
    read: int  # records read


def merge(paths: list[str], k: int) -> Merged:
    """Read scored lines from `paths` (in shard order) and keep the k best; refuse lines and fits that differ."""
    import numpy as np

    from gotd_stream.io.records import split_scored
    from gotd_stream.io.streams import display_name, read_lines
    from gotd_stream.select.topk import TopK

    top = TopK(k)
    fits: dict[str, str] = {}
    total = 0
    for path in paths:
        name = display_name(path)
        scores: list[float] = []
        items: list[bytes] = []
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
            raw, value, fit_id = parsed
            fits.setdefault(fit_id, name)
            if len(fits) > 1:
                listed = ", ".join(f"{f} (first in {n})" for f, n in fits.items())
                raise MixedFits(f"the inputs were scored with different potentials: {listed}")
            scores.append(value)
            items.append(raw)
        total += len(items)
        top.offer(np.asarray(scores, dtype=np.float64), items)
    return Merged(top, next(iter(fits), ""), total)


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

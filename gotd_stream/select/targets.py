"""Several targets at once: their names, their weights and each one's share of a budget.

A name is a key of the `gotd_scores` object written into every selected line, so it is kept to characters that
a JSON key (and a shell, and a file name) carries as they are. Weights are relative: they are normalised to sum
to 1. A budget of k documents is cut into quotas by the largest remainder, in exact rational arithmetic, so the
quotas sum to k and do not depend on how the floats round. This module stays light (no numpy): the command line
checks targets with it before any work.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from gotd_stream.errors import UsageProblem, setting

NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
NAME = re.compile(NAME_PATTERN)
MAX_TARGETS = 32  # bounds the suffix of a selected line, which every read looks for at the line's end
MIXES = ("quota", "sum")


@dataclass(frozen=True)
class Target:
    """One target task of a fit: a name (None for a lone unnamed target), its JSONL file, its relative weight;
    or, in memory (benches, tests), its texts instead of a file."""

    name: str | None
    path: str | None
    weight: float = 1.0
    texts: tuple[str, ...] | None = field(default=None, compare=False)


def check_name(name: str) -> str | None:
    """What is wrong with a target name (None: nothing): it becomes a JSON key in every selected line."""
    if NAME.fullmatch(name):
        return None
    return f"target name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-'"


def check_weight(weight: float) -> str | None:
    """What is wrong with a weight (None: nothing): a positive finite number."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
        return f"weight {weight!r} is not a positive finite number"
    return None


def check_targets(targets: list[Target]) -> tuple[list[Target], bool]:
    """Several targets made ready to fit: each named once, weights normalised to sum to 1.

    Returns the targets with normalised weights, and whether the given weights had to be normalised (they did
    not sum to 1). One target is returned as it is: its name and weight change nothing.
    """
    if len(targets) <= 1:
        return list(targets), False
    if len(targets) > MAX_TARGETS:
        raise UsageProblem(f"{len(targets)} targets given; at most {MAX_TARGETS} ({setting('target')})")
    seen: set[str] = set()
    for target in targets:
        if target.name is None:
            raise UsageProblem(
                f"name each of several targets: {setting('target')} NAME=FILE:WEIGHT ({target.path} has no name)"
            )
        problem = check_name(target.name) or check_weight(target.weight)
        if problem:
            raise UsageProblem(f"{setting('target')} {target.name}: {problem}")
        if target.name in seen:
            raise UsageProblem(f"two targets are named {target.name!r} ({setting('target')}): give each its own name")
        seen.add(target.name)
    total = sum(t.weight for t in targets)
    if not math.isfinite(total):
        raise UsageProblem(f"the weights of {setting('target')} sum to {total}: give smaller numbers")
    normalised = abs(total - 1.0) > 1e-9
    if not normalised:
        return list(targets), False
    return [Target(t.name, t.path, t.weight / total, t.texts) for t in targets], True


def quotas(k: int, weights: list[float]) -> list[int]:
    """Each target's share of k documents: floor(k w / sum w), and the rest one each by largest remainder.

    Exact rationals, so equal weights get equal quotas and the quotas always sum to k; a tie in the remainder
    goes to the target given first.
    """
    exact = [Fraction(w) for w in weights]
    total = sum(exact)
    shares = [k * w / total for w in exact]
    base = [math.floor(s) for s in shares]
    rest = k - sum(base)
    order = sorted(range(len(shares)), key=lambda t: (-(shares[t] - base[t]), t))
    for t in order[:rest]:
        base[t] += 1
    return base

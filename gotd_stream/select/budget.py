"""What a selection keeps: a budget (k records, or N tokens) and a rule (the best scores, or a sample led by them).

Every keeper ranks by one number per item, lower first, ties to the earlier item, and keeps a best-first prefix
of that order that a bounded heap can hold. Because the prefix of a whole corpus is made of the prefixes of its
shards (an item in the global prefix has even less ahead of it within its own shard), per-shard results merged
in shard order give exactly one pass's result: `merge` and `--state` stay byte-exact for every budget and rule.

- `-k K`: the K best records (TopK).
- `--tokens N`: the best records until their tokens reach N; the record that crosses N is kept, so the budget
  is exceeded by less than one record and never undershot while records remain (TokenBudget). A record with
  more tokens than N on its own is kept alone when it is the best.
- `--select sample`: the same budgets over Gumbel keys instead of the scores: the kept set is a sample without
  replacement with probability proportional to exp(-score / temperature) (the Gumbel top-k trick), seeded by a
  hash of each record's bytes, so a record draws the same key on any node, in any shard split, in any order.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.select.topk import TopK

RULES = ("top", "sample")
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # the sample's seed: the 8-byte key of its hash
# The lowest --temperature: scores are bounded by the cost range (a few units), so score / temperature stays
# below about 1e10, where a float64 still resolves the Gumbel noise to 1e-6 and never overflows.
MIN_TEMPERATURE = 1e-9


class Kept(NamedTuple):
    """A kept record: its original line, its score and its tokens (0 when tokens are not counted)."""

    raw: bytes
    score: float
    tokens: int = 0


class TokenBudget:
    """The best-first prefix whose sizes first reach `tokens`, in a heap: at most what the budget holds.

    Entries are (-rank, -seq, size, item), so the heap's root is the worst kept item. An item is dropped as soon
    as the others reach the budget without it, which also bounds the memory by the budget.
    """

    def __init__(self, tokens: int):
        self.tokens = tokens
        self.total = 0  # tokens held now
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0

    def threshold(self) -> float:
        """Ranks at or above this cannot enter any more (inf until the budget is reached)."""
        return -self._heap[0][0] if self.total >= self.tokens else float("inf")

    def offer(self, ranks: np.ndarray, items: Sequence[Any], sizes: Sequence[int]) -> None:
        """Offer a batch in input order; `sizes` are the items' tokens."""
        base = self._seq
        self._seq += len(items)
        for i in np.flatnonzero(ranks < self.threshold()):
            entry = (-float(ranks[i]), -(base + int(i)), int(sizes[i]), items[i])
            if self.total >= self.tokens and entry[:2] <= self._heap[0][:2]:
                continue  # the threshold moved within this batch
            heapq.heappush(self._heap, entry)
            self.total += entry[2]
            while self.total - self._heap[0][2] >= self.tokens:
                self.total -= heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)

    def best_first(self) -> list[tuple[float, Any]]:
        return [(-r, item) for r, _, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]


@dataclass(frozen=True)
class Rule:
    """How records are ranked: by score ("top"), or by seeded Gumbel keys led by the score ("sample")."""

    name: str = "top"
    temperature: float = 0.05
    seed: int = 0

    def __post_init__(self):
        """The draw is defined only for a seed of 64 bits (the key of its hash) and a temperature at which the
        keys stay finite and keep their Gumbel noise: refused otherwise, naming the setting and its range."""
        try:
            seed = operator.index(self.seed)
        except TypeError:
            raise UsageProblem(f"{setting('select_seed')} must be a whole number, not {self.seed!r}") from None
        if not SEED_MIN <= seed <= SEED_MAX:
            raise UsageProblem(
                f"{setting('select_seed')} must be from {SEED_MIN} to {SEED_MAX} (-2^63 to 2^63 - 1: the sample's "
                f"hash is keyed by 64 bits), not {seed}"
            )
        object.__setattr__(self, "seed", seed)
        temperature = self.temperature
        number = not isinstance(temperature, bool) and isinstance(temperature, int | float)
        if not (number and math.isfinite(temperature) and temperature > 0):
            raise UsageProblem(
                f"{setting('temperature')} must be a finite number of at least {MIN_TEMPERATURE:g}, not {temperature!r}"
            )
        if temperature < MIN_TEMPERATURE:
            raise UsageProblem(
                f"{setting('temperature')} must be a finite number of at least {MIN_TEMPERATURE:g}, not "
                f"{temperature!r}: below it score / temperature can overflow and the sample would fall back to "
                f"the input order (at {MIN_TEMPERATURE:g} the sample already keeps the best scores, the noise only "
                "breaking near-ties)"
            )

    @property
    def tag(self) -> str | None:
        """What a scored line records of the rule (None for top), so that `merge` ranks exactly as `score` did."""
        if self.name == "top":
            return None
        return f"sample:t={self.temperature!r}:seed={self.seed}"

    @classmethod
    def from_tag(cls, tag: str | None) -> Rule:
        if tag is None:
            return cls()
        match = _TAG.fullmatch(tag)
        if match is None:
            raise ValueError(f"not a selection rule: {tag!r}")
        try:
            return cls("sample", float(match.group(1)), int(match.group(2)))
        except UsageProblem as exc:
            raise ValueError(f"not a selection rule: {tag!r} ({exc})") from None

    def ranks(self, scores: np.ndarray, raws: Sequence[bytes]) -> np.ndarray:
        """The numbers the keeper ranks by, lower first."""
        if self.name == "top":
            return scores
        return sample_keys(scores, raws, self.seed, self.temperature)


_TAG = re.compile(r"sample:t=([0-9.eE+-]+):seed=(-?[0-9]+)")


def sample_keys(scores: np.ndarray, raws: Sequence[bytes], seed: int, temperature: float) -> np.ndarray:
    """Gumbel keys, lower kept: score / temperature - G, with G a standard Gumbel draw keyed by (seed, bytes).

    Keeping the k lowest keys samples k records without replacement with probability proportional to
    exp(-score / temperature). The draw comes from blake2b of the record's identity (its bytes; for a piece,
    its bytes without the path in gotd_source: select.units.draw_identity) and libm's log in a fixed order, so
    it is the same on every node, mount, spelling of the path and thread count.
    """
    from gotd_stream.select.units import draw_identity

    salt = seed.to_bytes(8, "little", signed=True)
    keys = np.empty(len(raws), dtype=np.float64)
    for i, raw in enumerate(raws):
        h = int.from_bytes(hashlib.blake2b(draw_identity(raw), digest_size=8, key=salt).digest(), "little")
        u = (h + 0.5) / 18446744073709551616.0  # in (0, 1)
        keys[i] = float(scores[i]) / temperature + math.log(-math.log(u))  # - Gumbel = + log(-log u)
    return keys


@dataclass(frozen=True)
class Budget:
    """How much a selection keeps (`k` records or `tokens` tokens) and by which rule."""

    k: int | None = None
    tokens: int | None = None
    rule: Rule = Rule()

    def __post_init__(self):
        if (self.k is None) == (self.tokens is None):
            raise UsageProblem(f"give exactly one budget: {setting('top_k')} records or {setting('tokens')} tokens")
        for name in ("k", "tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
                raise UsageProblem(f"{setting(name)} must be a whole number of at least 1, not {value!r}")
        if self.rule.name not in RULES:
            raise UsageProblem(f"{setting('select')} must be one of {', '.join(RULES)}, not {self.rule.name!r}")
        if self.rule.name == "sample" and not (math.isfinite(self.rule.temperature) and self.rule.temperature > 0):
            raise UsageProblem(f"{setting('temperature')} must be a positive number, not {self.rule.temperature!r}")

    def keeper(self):
        return TopK(self.k) if self.tokens is None else TokenBudget(self.tokens)

    def offer(self, keeper, scores: np.ndarray, kept: Sequence[Kept]) -> None:
        """Offer scored records (in input order) to a keeper made by `keeper()`."""
        ranks = self.rule.ranks(scores, [item.raw for item in kept])
        if self.tokens is None:
            keeper.offer(ranks, kept)
        else:
            keeper.offer(ranks, kept, [item.tokens for item in kept])

    def identity(self) -> dict:
        """What a --state folder must share with the run that made it."""
        return {"k": self.k, "tokens": self.tokens, "select": self.rule.tag}


SUFFIXES = {"k": 1_000, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000, "G": 1_000_000_000}
COUNT = re.compile(r"\s*([0-9]+)(?:\.([0-9]+))?\s*([kKMBG]?)\s*")
COUNT_RULE = (
    "a whole number of at least 1, or a decimal with a suffix k (10^3), M (10^6), B or G (10^9) that makes a "
    "whole number: 50000, 200k, 4.1M, 1.001k, 2B"
)
MAX_DIGITS = 40  # far past any budget; keeps int() of the text well inside Python's limit


def parse_count(text: str) -> int:
    """'50M' -> 50,000,000; '4.1M', '1.001k', '2B', '1500', '99999999999999999999' too, in exact integer arithmetic.

    ValueError, with the rule, for anything else: a fraction left over ('1.5', '1.0001k'), below 1, no digits.
    """
    match = COUNT.fullmatch(text)
    if match is None or len(match.group(1)) + len(match.group(2) or "") > MAX_DIGITS:
        raise ValueError(f"{text!r} is not a count: give {COUNT_RULE}")
    whole, fraction, suffix = match.group(1), match.group(2) or "", match.group(3)
    scaled = int(whole + fraction) * SUFFIXES.get(suffix, 1)
    value, rest = divmod(scaled, 10 ** len(fraction))
    if rest:
        raise ValueError(
            f"{text!r} is not a whole count ({whole}.{fraction}{suffix} leaves a fraction): give {COUNT_RULE}"
        )
    if value < 1:
        raise ValueError(f"{text!r} is below 1: give {COUNT_RULE}")
    return value

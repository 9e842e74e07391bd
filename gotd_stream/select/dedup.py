"""The duplicate guard: a selection buys each text once, and never a copy of a held-out text or of the target.

What is a copy (`Guard`, one rule everywhere):

    normalise   NFKC, casefold, the words (\\w+ runs) joined by one space: case, punctuation and whitespace
                runs do not count. Its 64-bit blake2b is the *exact key*.
    near        the normalised text's distinct 2-word shingles (a text of one word is one shingle): their number,
                and a MinHash of them (128 multiply-shift hashes of a fixed seed), cut into 42 bands of 3 rows.
    short       a text of SHORT_WORDS (5) to 8 words also keeps a hash of each word, in place.
    collide     two units collide when their exact keys are equal, or (mode near) both have at least
                MIN_SHINGLES (8) shingles, they share a band, and the estimated *containment* of the smaller
                shingle set in the other (|A∩B| / min(|A|, |B|), from the share of equal MinHash rows and the two
                sizes: `near_copies`) is at least the threshold (0.6); or both have 5-8 words, the same number,
                and differ in at most SHORT_CHANGES (2) places.

Why containment of 2-grams (the measurement: BENCHMARKS.md, "Planted duplicates"; scripts in bench/dedup_rule/): a
short review (20 words) with one word changed keeps only 0.7 of its 3-gram Jaccard, and one with a boilerplate line
prepended 0.5-0.7, while its 2-gram containment stays at 0.9 and 1.0; among 10,000 distinct pool texts the pairs it
flags at 0.7 are reposted tweets (another link, an "RT @x:" in front) and not distinct texts. Under 8 shingles (9
words) distinct texts share too much ("Fairly run-of-the-mill." is 0.75 contained in a longer review), so a text
of 5-8 words is compared word by word instead: up to two changed words in place is a copy. Two, not one, because
two copies of one text that each changed another word differ in two places: with one, bench/web.py's planted pool
kept three such copies of "A fascinating and fun film." (the text itself ranked below them, and a unit is dropped
by a better-ranked collider only). The price, among the 88,610 distinct texts of the real pool: in 5-6-word texts
two changes join 166 pairs, against 85 with one (templated tweets: "@x thanks for the RT", "NPR RSS error
http://n.pr/..."), 14 of them with a review ("A moving and important film." and "A strong and touching film."),
so of two distinct short reviews in one frame the better-ranked one is kept: bench/dedup_rule/nearrule_short.py.
Under 5 words only the exact key counts ("A pure delight." and "A pure disaster." are two).
Two copies of one text, each with its own edit, share less with each other than with the text: at 0.7, two
14-word copies with a different word changed each came out at 0.69 and were both kept (the text itself ranked
below them); 0.6 joins every pair of every planted group of 9 words or more, and what it adds among distinct
pool texts (190 pairs per 10,050 texts against 112 at 0.7) is templated tweets. A short text inside a much
longer one (a quote in an article, a 5-word review under a boilerplate line) is seldom found: the bands find
pairs whose Jaccard is above about 0.3, so sizes within about three times of each other, and under 9 words
containment is not used.

The rule is order-free, so it is exact: a unit is *dropped* when a better-ranked unit (by the keeper's own rank:
the score, the sample key, the weighted sum) collides with it, whether or not that one is itself kept; the
selection is the budget's worth of the best eligible units.

Why bounded memory keeps it exact (`Prefix`): a unit's eligibility depends only on the units ranked above it, so
it is exact inside any rank-prefix of the corpus. A keeper holds a rank-prefix: every unit seen with a rank at
or below its cutoff C, the eligible ones with their bytes, the dropped ones as a signature and a rank only (a
dropped unit never becomes eligible again, but it still blocks worse ones). Once the eligible units reach the
budget plus a margin of spares (a share of the budget), C falls to the rank of the last spare and everything
ranked below C is forgotten; signatures are computed only for units ranked at or above C (the keeper offers a
window's units best first, a slab at a time, so C falls before the worse ones are signed; a worse unit never
changes a better one's eligibility, so the prefix is the one a single offer gives). A merge joins the
shards' prefixes under the lowest cutoff and recomputes eligibility on the union: that equals one pass
whenever the budget fills with eligible units above the cutoff, and when it does not (more copies in the top
than the margin) the keeper raises MarginExceeded instead of returning another selection.

Exclusions (`Exclusions`) are a per-unit rule: a unit that collides (same rule, same threshold) with a text of
an --exclude file or with a target text (signatures stored in the artifact at fit) is never selected. It does
not block others: it is counted, by reason.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import math
import os
import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.errors import BadSetting, RuntimeProblem, setting
from gotd_stream.select.guard import DEFAULT_MARGIN, DEFAULT_THRESHOLD, MODES

SHINGLE = 2  # words per shingle (BENCHMARKS.md: 2-grams keep a changed word's copy of a 20-word review)
PERMS = 128  # MinHash rows
BANDS, ROWS = 42, 3  # LSH bands x rows (126 of the PERMS rows): a pair at an estimated Jaccard of 0.4 meets in one
MIN_SHINGLES = 8  # below it (texts of under 9 words) containment is not used: too few shingles to tell copies
SHORT_WORDS = 5  # a text of 5 to MIN_SHINGLES words is compared word by word; under 5, by its exact key only
SHORT_CHANGES = 2  # two short texts of one length are copies when they differ in at most this many words in place
WIDTH = 2 + PERMS + MIN_SHINGLES  # a signature: exact key, number of distinct shingles, MinHash rows, word hashes
OLD_WIDTHS = {  # the rules before, refused with a clear message
    1 + PERMS: "3-word shingles, Jaccard",
    2 + PERMS: "2-word shingles, containment at 0.7, short texts by their exact key",
}
SEED = 0x60D5  # fixed: signatures are the same everywhere, and stored in artifacts
SLAB = 1024  # shingles whose MinHash rows are computed at a time (signatures)
_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)


class MarginExceeded(RuntimeProblem):
    """The kept prefix ran out of eligible units: more copies ranked in the top than the margin of spares holds."""


def normalise(text: str) -> str:
    """The text copies share: NFKC, casefolded, its words joined by one space (punctuation and spacing gone)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def exact_key(normalised: str) -> int:
    """64-bit key of a normalised text (blake2b), as a signed int64 value."""
    digest = hashlib.blake2b(normalised.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _parameters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(SEED))
    mix = rng.integers(1, 2**63, size=SHINGLE, dtype=np.uint64) | np.uint64(1)  # odd: combines word hashes
    a = rng.integers(1, 2**63, size=PERMS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=PERMS, dtype=np.uint64)
    return mix, a, b


_MIX, _A, _B = _parameters()


def _shingles(words: list[str]) -> np.ndarray:
    """32-bit hashes of the SHINGLE-word shingles (one shingle for a shorter text; none for a text without a word)."""
    if not words:
        return np.zeros(0, np.uint64)
    h = np.fromiter((zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words), np.uint64, len(words))
    n = max(len(words) - SHINGLE + 1, 1)
    acc = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(min(SHINGLE, len(words))):
            acc += h[j : j + n] * _MIX[j]  # wraps mod 2^64: deterministic
    return acc >> np.uint64(32)


def _word_hash(word: str) -> int:
    """A word's nonzero 63-bit hash (zero marks no word in a short text's row)."""
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 1) or 1


def _shingle_sets(normals: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every text's distinct shingle hashes (those of `_shingles`), concatenated in text order, their numbers, and
    which texts have no word (their set is a 0 placeholder, counted 1). The words of a text that lower() leaves as
    it is (any ASCII one) are found and hashed in numpy by features.lexical.word_hashes (the crc32 of each word, as
    `_shingles` takes it); the few others (casefold and lower() differ on some scripts) one by one."""
    from gotd_stream.features.lexical import word_hashes

    n = len(normals)
    fast = np.array([text.isascii() or text.lower() == text for text in normals], bool)
    doc, h = word_hashes([normals[i] for i in np.flatnonzero(fast)])
    doc = np.flatnonzero(fast)[doc]
    words = np.bincount(doc, minlength=n)
    with np.errstate(over="ignore"):
        inside = doc[1:] == doc[:-1]  # word pairs of one text
        pairs = (h[:-1] * _MIX[0] + h[1:] * _MIX[1])[inside] >> np.uint64(32)
        single = np.flatnonzero(words == 1)  # a text of one word is one shingle: the word alone
        lone = (h[np.searchsorted(doc, single)] * _MIX[0]) >> np.uint64(32)
    owners, values = [doc[:-1][inside], single], [pairs, lone]
    for i in np.flatnonzero(~fast).tolist():
        shingles = _shingles(normals[i].split(" ") if normals[i] else [])
        owners.append(np.full(len(shingles), i, np.int64))
        values.append(shingles)
        words[i] = len(shingles)  # nonzero when it has a word
    empty = words == 0
    owners.append(np.flatnonzero(empty))
    values.append(np.zeros(int(empty.sum()), np.uint64))
    owner = np.concatenate(owners).astype(np.uint64)
    keys = np.sort((owner << np.uint64(32)) | np.concatenate(values).astype(np.uint64))  # by text, then hash
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # each set's distinct ones (never empty: n > 0)
    return keys & _MASK32, np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=n), empty


def signatures(texts: Sequence[str], near: bool = True) -> np.ndarray:
    """(n, WIDTH) int64: each text's exact key, its number of distinct shingles, its MinHash, then (a text of
    SHORT_WORDS to MIN_SHINGLES words) a hash of each word in place; all but the key zeros when not `near`."""
    out = np.zeros((len(texts), WIDTH), np.int64)
    if not len(texts):
        return out
    normals = [normalise(t) for t in texts]
    out[:, 0] = [exact_key(n) for n in normals]
    if not near:
        return out
    for i, n in enumerate(normals):
        if SHORT_WORDS - 1 <= n.count(" ") <= MIN_SHINGLES - 1:
            words = n.split(" ")
            out[i, 2 + PERMS : 2 + PERMS + len(words)] = [_word_hash(w) for w in words]
    allsh, sizes, empty = _shingle_sets(normals)
    out[:, 1] = np.where(empty, 0, sizes)  # no word: a signature of its own (it collides by its exact key only)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    # a slab of texts at a time, about SLAB shingles x PERMS hashes (1 MiB): small enough to stay in the cache, which
    # made it 8 times faster than whole columns at once (the same bits either way)
    cuts = np.unique(np.minimum(np.searchsorted(ends, np.arange(SLAB, ends[-1] + SLAB, SLAB)) + 1, len(texts)))
    first = 0
    with np.errstate(over="ignore"):
        for last in cuts.tolist():
            lo, hi = starts[first], ends[last - 1]
            hashed = allsh[lo:hi, None] * _A[None, :]
            hashed += _B[None, :]
            hashed >>= np.uint64(32)
            out[first:last, 2 : 2 + PERMS] = np.minimum.reduceat(hashed, starts[first:last] - lo, axis=0)
            first = last
    if empty.any():
        out[empty, 2 : 2 + PERMS] = -1 - np.arange(PERMS)  # never equal to a real row (those are in [0, 2^32))
    return out


def short_words(sig: np.ndarray) -> int:
    """How many words a signature's short-text row holds (0: not a text of SHORT_WORDS to MIN_SHINGLES words)."""
    return int(np.count_nonzero(sig[2 + PERMS :]))


def near_copies(sig: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """Which rows of `others` are near copies of `sig`: both have at least MIN_SHINGLES shingles and the
    estimated containment of the smaller shingle set in the other's is at least `threshold`.

    The share of equal MinHash rows estimates the Jaccard J = |A∩B| / |A∪B|; with the stored sizes a and b,
    |A∩B| = J (a + b) / (1 + J), and the containment is that over min(a, b). Symmetric, and it reads the two
    signatures only (what merges, --state and the shards' exactness rest on). Compared without a division,
    as eq (a + b) >= threshold (PERMS + eq) min(a, b), with eq the number of equal rows. Texts of 5-8 words:
    the same number of words, at most SHORT_CHANGES of them changed in place (the threshold does not apply)."""
    others = np.atleast_2d(others)
    eq = np.count_nonzero(others[:, 2 : 2 + PERMS] == sig[2 : 2 + PERMS], axis=1).astype(np.float64)
    a, b = float(sig[1]), others[:, 1].astype(np.float64)
    small = np.minimum(a, b)
    near = (small >= MIN_SHINGLES) & (eq * (a + b) >= threshold * (PERMS + eq) * small)
    words = short_words(sig)
    if not words:
        return near
    theirs = np.count_nonzero(others[:, 2 + PERMS :], axis=1)
    changed = np.count_nonzero(others[:, 2 + PERMS :] != sig[2 + PERMS :], axis=1)
    return near | ((theirs == words) & (changed <= SHORT_CHANGES))


def _key_mix() -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(SEED + 1))
    return rng.integers(1, 2**63, size=MIN_SHINGLES + 2, dtype=np.uint64) | np.uint64(1)


_KEY = _key_mix()  # the buckets' hash (not stored anywhere: only one process compares its keys)
_MASKED = {  # for a short text of n words, the places each of its buckets leaves out
    n: np.array(list(itertools.combinations(range(n), SHORT_CHANGES)), np.int64)
    for n in range(SHORT_WORDS, MIN_SHINGLES + 1)
}


def bucket_keys(sigs: np.ndarray) -> list[list[int]]:
    """Each signature's LSH buckets, as 64-bit keys: for a text of MIN_SHINGLES shingles or more, its BANDS bands
    of ROWS MinHash rows; for one of 5-8 words, its words with SHORT_CHANGES places left out, each way (two texts
    that differ in those places share that bucket); none for the others. Two signatures that collide share a
    bucket; two that share one are only candidates (`near_copies` decides), so a chance equal key costs a check."""
    sigs = np.atleast_2d(sigs)
    out: list[list[int]] = [[] for _ in range(len(sigs))]
    with np.errstate(over="ignore"):
        long = np.flatnonzero(sigs[:, 1] >= MIN_SHINGLES)
        if len(long):
            rows = sigs[long, 2 : 2 + BANDS * ROWS].astype(np.uint64).reshape(len(long), BANDS, ROWS)
            keys = (rows * _KEY[:ROWS]).sum(axis=2, dtype=np.uint64) + np.arange(BANDS, dtype=np.uint64) * _KEY[ROWS]
            for i, row in zip(long.tolist(), keys.tolist(), strict=True):
                out[i] = row
        words = np.count_nonzero(sigs[:, 2 + PERMS :], axis=1)
        for n, masked in _MASKED.items():
            ids = np.flatnonzero((words == n) & (sigs[:, 1] < MIN_SHINGLES))
            if not len(ids):
                continue
            weighted = sigs[ids, 2 + PERMS : 2 + PERMS + n].astype(np.uint64) * _KEY[:n]
            keys = weighted.sum(axis=1, dtype=np.uint64)[:, None] - weighted[:, masked].sum(axis=2, dtype=np.uint64)
            keys += np.arange(len(masked), dtype=np.uint64) * _KEY[MIN_SHINGLES] + np.uint64(n) * _KEY[MIN_SHINGLES + 1]
            for i, row in zip(ids.tolist(), keys.tolist(), strict=True):
                out[i] = row
    return out


class OldSignature(ValueError):
    """A signature of an older rule (select.dedup's: fewer columns): written by an earlier gotd-stream."""


def check_width(width: int, what: str) -> None:
    """Refuse signatures of another width, saying what to do when they are an older rule's."""
    if width == WIDTH:
        return
    if width in OLD_WIDTHS:
        raise OldSignature(
            f"{what} holds duplicate signatures of an older rule ({width} values: {OLD_WIDTHS[width]}), not this "
            f"gotd-stream's ({WIDTH}: {SHINGLE}-word shingles, containment, short texts word by word); write it "
            f"again with this gotd-stream"
        )
    raise ValueError(f"{what} holds signatures of {width} values, not {WIDTH}")


def encode_sig(sig: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(sig, "<i8").tobytes()).decode()


def decode_sig(text: str) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 8:
        raise ValueError(f"a signature of {len(raw)} bytes, not {8 * WIDTH}")
    check_width(len(raw) // 8, "the line")
    return np.frombuffer(raw, "<i8").astype(np.int64)


@dataclass(frozen=True)
class Guard:
    """What counts as a copy (mode, threshold) and how many spare eligible units a keeper holds (margin: a share
    of the budget). Refuses values that cannot work."""

    mode: str = "near"
    threshold: float = DEFAULT_THRESHOLD
    margin: float = DEFAULT_MARGIN

    def __post_init__(self):
        if self.mode not in MODES:
            raise BadSetting(f"{setting('dedup')} must be one of {', '.join(MODES)}, not {self.mode!r}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or not 0 < t <= 1:
            raise BadSetting(f"{setting('dedup_threshold')} must be a number above 0 and at most 1, not {t!r}")
        m = self.margin
        if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m) or m < 0:
            raise BadSetting(f"{setting('dedup_margin')} must be a finite number of at least 0, not {m!r}")

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def near(self) -> bool:
        return self.mode == "near"

    @property
    def tag(self) -> str:
        """What candidate lines record of the guard, so that a merge applies the same rule."""
        return f"{self.mode}:t={self.threshold!r}:m={self.margin!r}"

    @classmethod
    def from_tag(cls, tag: str) -> Guard:
        match = re.fullmatch(r"(near|exact):t=([0-9.eE+-]+):m=([0-9.eE+-]+)", tag)
        if match is None:
            raise ValueError(f"not a guard: {tag!r}")
        return cls(match.group(1), float(match.group(2)), float(match.group(3)))

    def identity(self) -> dict:
        return {"dedup": self.mode, "dedup_threshold": self.threshold, "dedup_margin": self.margin}

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        return signatures(texts, self.near)

    def spares(self, budget: int) -> int:
        return math.ceil(self.margin * budget)


OFF = Guard("off")


class Index:
    """Signatures by exact key and by band, to find the ones a new signature collides with."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self.exact: dict[int, list[int]] = {}
        self.bands: dict[int, list[int]] = {}
        self.sigs: dict[int, np.ndarray] = {}
        self.buckets: dict[int, list[int]] = {}  # each live signature's band keys: `remove` takes it out of them

    def keys(self, sig: np.ndarray) -> list[int]:
        """The buckets `sig` goes to beside its exact key (none under --dedup exact, or for a text under 5 words):
        computed once per unit, then given to `colliders` and `add` of every index it meets."""
        return bucket_keys(sig[None])[0] if self.guard.near else []

    def keys_of(self, sigs: np.ndarray) -> list[list[int]]:
        """`keys` of each row of `sigs`, at once."""
        return bucket_keys(sigs) if self.guard.near else [[] for _ in range(len(sigs))]

    def add(self, ident: int, sig: np.ndarray, keys: list[int] | None = None) -> None:
        keys = self.keys(sig) if keys is None else keys
        if ident in self.sigs:  # offered again: once in each bucket
            self.remove(ident)
        self.sigs[ident], self.buckets[ident] = sig, keys
        self.exact.setdefault(int(sig[0]), []).append(ident)
        for key in keys:
            self.bands.setdefault(key, []).append(ident)

    def remove(self, ident: int) -> None:
        """Forget `ident`, from its buckets too: what a keeper holds stays bounded by its prefix, however long
        the stream."""
        sig = self.sigs.pop(ident, None)
        if sig is None:
            return
        _unlist(self.exact, int(sig[0]), ident)
        for key in self.buckets.pop(ident):
            _unlist(self.bands, key, ident)

    def colliders(self, sig: np.ndarray, keys: list[int] | None = None) -> set[int]:
        """The signatures that collide with `sig` (`keys`: its `keys`, when known already)."""
        found = set(self.exact.get(int(sig[0]), ()))
        if not self.guard.near:
            return found
        seen: set[int] = set(found)
        for key in self.keys(sig) if keys is None else keys:
            seen.update(self.bands.get(key, ()))
        candidates = sorted(seen - found)
        if candidates:
            near = near_copies(sig, np.stack([self.sigs[i] for i in candidates]), self.guard.threshold)
            found.update(i for i, hit in zip(candidates, near.tolist(), strict=True) if hit)
        return found


def _discard(orders: list[tuple[float, int]], order: tuple[float, int]) -> None:
    """Take `order` out of the sorted list `orders`, which holds it."""
    del orders[bisect.bisect_left(orders, order)]


def _unlist(table: dict[int, list[int]], key: int, ident: int) -> None:
    bucket = table[key]
    bucket.remove(ident)
    if not bucket:
        del table[key]


@dataclass
class Exclusions:
    """Texts no selected unit may copy: each reason ("exclude FILE", "target copy") with its signatures."""

    guard: Guard
    indexes: list[tuple[str, Index]] = field(default_factory=list)

    def add(self, reason: str, sigs: np.ndarray) -> None:
        index = Index(self.guard)
        for i, (sig, keys) in enumerate(zip(sigs, index.keys_of(sigs), strict=True)):
            index.add(i, sig, keys)
        self.indexes.append((reason, index))

    def reason(self, sig: np.ndarray, keys: list[int] | None = None) -> str | None:
        """Why a unit with `sig` (and its Index.keys) may not be selected (the first reason that holds), or None."""
        for reason, index in self.indexes:
            if index.colliders(sig, keys):
                return reason
        return None

    def __bool__(self) -> bool:
        return bool(self.indexes)


@dataclass(slots=True)
class Unit:
    """A unit in a prefix: its rank and place, its signature, what it holds (None once it is dropped), why."""

    rank: float
    seq: int
    sig: np.ndarray
    item: object  # what the keeper writes (a Kept, an Entry); None for a dropped or excluded unit
    tokens: int = 0
    why: str | None = None  # None: eligible; "copy": dropped as a copy; else the exclusion's reason

    @property
    def order(self) -> tuple[float, int]:
        return (self.rank, self.seq)


class Prefix:
    """A rank-prefix of everything offered (the module's docstring says why it is exact): the eligible units
    with their items, the dropped ones as signatures, down to the cutoff.

    `budget` is k units, or `tokens` tokens (the best-first eligible units whose tokens first reach it); the
    spares are the guard's margin of that budget.
    """

    def __init__(self, guard: Guard, k: int | None = None, tokens: int | None = None, exclusions=None):
        self.guard, self.k, self.tokens = guard, k, tokens
        self.exclusions = exclusions if exclusions else None
        size = k if k is not None else tokens
        self.hold = size + guard.spares(size)  # eligible units (or tokens) held before the cutoff falls
        self.cutoff = math.inf
        self.units: dict[int, Unit] = {}
        # the orders (rank, seq) of every unit held and of the eligible ones, kept sorted as units come and go: the
        # cutoff and the tail to forget are found by bisection, not by sorting the prefix at every offer (a prefix
        # of many dropped copies holds hundreds of thousands of units)
        self._all: list[tuple[float, int]] = []
        self._eligible: list[tuple[float, int]] = []
        self.index = Index(guard)
        self.seq = 0

    def admits(self, ranks: np.ndarray) -> np.ndarray:
        """Which of these ranks enter the prefix (at or above the cutoff): only these need signatures."""
        return ranks <= self.cutoff

    def offer(self, ranks, sigs, items, tokens=None, whys=None, seqs=None) -> None:
        """Units in input order (their `seq`s are counted here unless given); `whys`: a reason known already
        (a merged line's), else the exclusions are asked."""
        inside = np.flatnonzero(np.asarray(ranks, np.float64) <= self.cutoff).tolist()
        # each unit's buckets once, all at once: the exclusions' indexes and this one look the same ones up
        rows = np.stack([sigs[i] for i in inside]) if inside else np.zeros((0, WIDTH), np.int64)
        buckets = dict(zip(inside, self.index.keys_of(rows), strict=True))
        for i in range(len(items)):
            seq = self.seq if seqs is None else seqs[i]
            self.seq = max(self.seq, seq) + 1
            rank = float(ranks[i])
            if rank > self.cutoff:
                continue
            sig = sigs[i]
            keys = buckets[i]
            why = whys[i] if whys is not None else None
            if why is None and self.exclusions is not None:
                why = self.exclusions.reason(sig, keys)
            unit = Unit(rank, seq, sig, items[i] if why is None else None, int(tokens[i]) if tokens is not None else 0)
            unit.why = why
            self._insert(seq, unit, keys)
        self._truncate()

    def _insert(self, ident: int, unit: Unit, keys: list[int]) -> None:
        if ident in self.units:  # offered again: the newer one stands
            self._forget(ident)
        self.units[ident] = unit
        bisect.insort(self._all, unit.order)
        if unit.why not in (None, "copy"):
            return  # excluded: counted, never blocks
        for other in self.index.colliders(unit.sig, keys):
            held = self.units[other]
            if held.order < unit.order:
                unit.why, unit.item = "copy", None
            elif held.why is None:
                held.why, held.item = "copy", None
                _discard(self._eligible, held.order)
        if unit.why is None:
            bisect.insort(self._eligible, unit.order)
        self.index.add(ident, unit.sig, keys)

    def _forget(self, ident: int) -> None:
        unit = self.units.pop(ident)
        _discard(self._all, unit.order)
        if unit.why is None:
            _discard(self._eligible, unit.order)
        self.index.remove(ident)

    def ordered(self) -> list[Unit]:
        return [self.units[seq] for _, seq in self._all]

    def _truncate(self) -> None:
        """Lower the cutoff to the last spare once the eligible units hold the budget and the margin."""
        if self.k is not None:
            if len(self._eligible) >= max(self.hold, 1):
                self.limit(self._eligible[max(self.hold, 1) - 1][0])
            return
        held = 0
        for rank, seq in self._eligible:
            held += self.units[seq].tokens
            if held >= self.hold:
                self.limit(rank)
                return

    def limit(self, cutoff: float) -> None:
        """Forget everything ranked below `cutoff` (a merged shard's: its prefix ends there)."""
        if cutoff >= self.cutoff:
            return
        self.cutoff = cutoff
        end = (cutoff, math.inf)
        cut = bisect.bisect_right(self._all, end)
        for _, ident in self._all[cut:]:
            del self.units[ident]
            self.index.remove(ident)
        del self._all[cut:]
        del self._eligible[bisect.bisect_right(self._eligible, end) :]

    def selected(self) -> list[Unit]:
        """The budget's best eligible units, best first; MarginExceeded when the prefix cannot tell them."""
        chosen, held = [], 0
        need = self.k if self.k is not None else self.tokens
        for _, seq in self._eligible:
            if held >= need:
                return chosen
            unit = self.units[seq]
            chosen.append(unit)
            held += 1 if self.k is not None else unit.tokens
        if held < need and self.cutoff < math.inf:
            budget = f"{setting('k')} {self.k:,}" if self.k is not None else f"{setting('tokens')} {self.tokens:,}"
            raise MarginExceeded(
                f"the duplicate guard cannot tell the selection exactly: more copies ranked in the top than its "
                f"margin of spares holds ({held:,} eligible {'units' if self.k is not None else 'tokens'} left "
                f"above the cutoff, fewer than {budget}); score again with a larger {setting('dedup_margin')} "
                f"(now {self.guard.margin!r})"
            )
        return chosen

    def dropped(self, chosen: list[Unit] | None = None) -> dict[str, int]:
        """The units ranked above the last selected one that were dropped, by reason ("copy", an exclusion's):
        a count that merges exactly (it depends on the global ranking alone)."""
        chosen = self.selected() if chosen is None else chosen
        last = chosen[-1].order if chosen else (math.inf, math.inf)
        counts: dict[str, int] = {}
        for unit in self.units.values():
            if unit.why is not None and unit.order < last:
                counts[unit.why] = counts.get(unit.why, 0) + 1
        return counts


# candidate lines: a shard's prefixes (one per ranking), for merge and --state
#
#   {"gotd_guard":"near:t=0.6:m=0.5","gotd_cutoffs":[C or null, ...],"gotd_select":...,"gotd_fit":"...",
#    "gotd_of":{"lines":N,"sha256":"..."} (only in the prefix file beside a plain selection: which one it is)}
#   {"gotd_ranks":[r or null, ...],"gotd_whys":[null or "copy" or a reason, ...],"gotd_sig":"...","gotd_fit":...}
#   the unit's own line (as `score` writes it), when it is eligible in some ranking
#
# Units come in input order; a ranking's entry is null when the unit is not in that ranking's prefix.


def _json_str(text: str | None) -> str:
    import json

    return json.dumps(text)


def prefixes_lines(prefixes: Sequence[Prefix], fit_id: str, line_of, select: str | None = None) -> Iterable[bytes]:
    """The header, then every unit held by any prefix, in input order: its rank line, and its own line
    (`line_of(item)`) when it is eligible in one of them."""
    guard = prefixes[0].guard
    cuts = ",".join("null" if p.cutoff == math.inf else repr(float(p.cutoff)) for p in prefixes)
    yield (
        f'{{"gotd_guard":"{guard.tag}","gotd_cutoffs":[{cuts}],"gotd_select":{_json_str(select)},'
        f'"gotd_fit":"{fit_id}"}}'
    ).encode()
    for seq in sorted({seq for p in prefixes for seq in p.units}):
        held = [p.units.get(seq) for p in prefixes]
        ranks = ",".join("null" if u is None else repr(u.rank) for u in held)
        whys = ",".join("null" if u is None or u.why is None else _json_str(u.why) for u in held)
        present = [u for u in held if u is not None]
        item = next((u.item for u in present if u.item is not None), None)
        yield (
            f'{{"gotd_ranks":[{ranks}],"gotd_whys":[{whys}],"gotd_sig":"{encode_sig(present[0].sig)}",'
            f'"gotd_fit":"{fit_id}"}}'
        ).encode()
        if item is not None:
            yield line_of(item)


def is_guarded(line: bytes) -> bool:
    """Whether a line opens a guarded shard's candidates."""
    return line.startswith(b'{"gotd_guard":')


@dataclass
class Shard:
    """A shard's prefixes read back: the guard, each ranking's cutoff, the rule, and its units in input order as
    (ranks, whys, signature, own line or None); `of`: the plain selection a prefix file was written beside."""

    guard: Guard
    cutoffs: list[float]
    fit_id: str
    select: str | None
    units: list[tuple[list, list, np.ndarray, bytes | None]]
    of: dict | None = None


class NotCandidates(RuntimeProblem):
    """Lines that should be a guarded shard's candidates and are not."""


def read_shard(lines: Iterable[tuple[int, bytes]], name: str, rankings: int | None = None) -> Shard:
    """Candidate lines (a header, then units) back into a Shard; anything else is NotCandidates naming the line."""
    import json

    shard = None
    pending = None
    for lineno, line in lines:
        if not line or line.isspace():
            continue
        try:
            if shard is None:
                obj = json.loads(line)
                cuts = [math.inf if c is None else float(c) for c in obj["gotd_cutoffs"]]
                if rankings is not None and len(cuts) != rankings:
                    raise ValueError(f"{len(cuts)} rankings, not {rankings}")
                rankings = len(cuts)
                of = obj.get("gotd_of")
                if of is not None and not (isinstance(of, dict) and {"lines", "sha256"} <= set(of)):
                    raise ValueError(f"gotd_of is {of!r}")
                guard = Guard.from_tag(obj["gotd_guard"])
                shard = Shard(guard, cuts, obj["gotd_fit"], obj["gotd_select"], [], of)
                continue
            if line.startswith(b'{"gotd_ranks":'):
                if pending is not None:
                    raise ValueError("an eligible unit without its line")
                obj = json.loads(line)
                if obj["gotd_fit"] != shard.fit_id:
                    raise ValueError(f"fit {obj['gotd_fit']}, not the header's {shard.fit_id}")
                ranks = [None if r is None else float(r) for r in obj["gotd_ranks"]]
                whys = obj["gotd_whys"]
                if len(ranks) != rankings or len(whys) != rankings:
                    raise ValueError("ranks or reasons for another number of rankings")
                unit = (ranks, whys, decode_sig(obj["gotd_sig"]))
                if any(r is not None and w is None for r, w in zip(ranks, whys, strict=True)):
                    pending = unit
                else:
                    shard.units.append((*unit, None))
                continue
            if pending is None:
                raise ValueError("a line without its rank line")
            shard.units.append((*pending, line))
            pending = None
        except OldSignature as exc:
            raise NotCandidates(f"{name}:{lineno}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise NotCandidates(f"{name}:{lineno}: not a line of guarded candidates ({exc})") from None
    if shard is None:
        raise NotCandidates(f"{name}: no gotd_guard header")
    if pending is not None:
        raise NotCandidates(f"{name}: it ends with a unit without its line")
    return shard


def offer_shard(prefixes: Sequence[Prefix], shard: Shard, items: list, tokens: list[int] | None = None) -> None:
    """A shard read back, into the keeper's `prefixes` (one per ranking) under its cutoffs; `items[i]` is what
    unit i holds (parsed from its line by the keeper), None for one without a line."""
    base = max(p.seq for p in prefixes)
    for t, prefix in enumerate(prefixes):
        prefix.limit(shard.cutoffs[t])
        chosen = [i for i, unit in enumerate(shard.units) if unit[0][t] is not None]
        prefix.offer(
            np.array([shard.units[i][0][t] for i in chosen], np.float64),
            [shard.units[i][2] for i in chosen],
            [items[i] if shard.units[i][1][t] is None else None for i in chosen],
            None if tokens is None else [tokens[i] for i in chosen],
            [shard.units[i][1][t] for i in chosen],
            [base + i for i in chosen],
        )
    for prefix in prefixes:
        prefix.seq = base + len(shard.units)


# the prefix file: beside a plain guarded selection written to a file, what a merge of it needs
#
# A plain selection holds the kept units only; an exact merge also needs the shard's spares and the dropped units'
# signatures (the module's docstring). `score -o FILE` under the guard writes them, as the candidate lines of
# `--candidates`, to FILE + PREFIX_SUFFIX; `merge FILE` reads that file in FILE's place, once it has checked
# that the prefix file is FILE's (the number of lines and the sha256 of the selection's lines as written).

PREFIX_SUFFIX = ".guard.zst"


def prefix_path(output: str) -> str:
    """Where the prefix file of a plain guarded selection written to `output` goes."""
    return output + PREFIX_SUFFIX


class SelectionDigest:
    """The number of lines and the sha256 of a selection's lines (each with its newline), as they are written;
    `counted(n)`: a Parquet selection, whose rows read back as lines of their own spelling, by its rows alone."""

    def __init__(self) -> None:
        self.lines, self.sha = 0, hashlib.sha256()

    def add(self, line: bytes) -> None:
        self.lines += 1
        self.sha.update(line + b"\n")

    def counted(self, lines: int) -> None:
        self.lines, self.sha = lines, None

    def of(self) -> dict:
        return {"lines": self.lines, "sha256": self.sha.hexdigest() if self.sha is not None else None}


def header_of(header: bytes, of: dict) -> bytes:
    """A candidates header that also says which plain selection its prefix file stands beside."""
    import json

    return header[:-1] + b',"gotd_of":' + json.dumps(of, separators=(",", ":")).encode() + b"}"


def existing_prefix(path: str) -> str | None:
    """The prefix file beside a plain guarded selection at `path`, if there is one (a URL's is looked up there)."""
    from gotd_stream.io.remote import filesystem, is_url

    beside = prefix_path(path)
    if is_url(beside):
        fs, where = filesystem(beside)
        return beside if fs.exists(where) else None
    return beside if os.path.isfile(beside) else None


# exclusions: held-out texts, and the target's


def read_exclude(path: str, text_field: str = "text") -> list[str]:
    """The texts of an --exclude file: a .txt file holds one text per line; anything else is JSONL (plain or
    compressed, like the inputs) whose `text_field` is read. Lines without a text are refused, naming the line."""
    from gotd_stream.errors import UsageProblem
    from gotd_stream.io.records import parse_line
    from gotd_stream.io.streams import display_name, read_lines

    texts = []
    plain = path.endswith(".txt")
    for lineno, raw in read_lines(path):
        if not raw or raw.isspace():
            continue
        if plain:
            texts.append(raw.decode("utf-8", "replace").rstrip("\r"))
            continue
        parsed = parse_line(raw, text_field)
        if parsed[0] is None:
            raise UsageProblem(f"{display_name(path)}:{lineno}: {parsed[1]} ({parsed[2]}): not a text to exclude")
        texts.append(parsed[1])
    return texts


def exclusion(path: str, guard: Guard, text_field: str = "text") -> tuple[str, np.ndarray]:
    """(reason, signatures) of an --exclude file, for Plan.exclude."""
    from gotd_stream.io.streams import display_name

    return f"exclude {display_name(path)}", guard.signatures(read_exclude(path, text_field))


def stored_signatures(artifact) -> list[np.ndarray]:
    """Every target signature array an artifact carries (one per target; none for a file fitted before)."""
    parts = getattr(artifact, "parts", None)
    arrays = [part.copies for part in parts] if parts is not None else [getattr(artifact, "copies", None)]
    return [a for a in arrays if a is not None]


def target_signatures(artifact) -> np.ndarray | None:
    """The target texts' signatures an artifact carries, of this rule (None for one fitted before they were
    stored, or under the older rule: `stale_target_signatures` tells which)."""
    found = [a for a in stored_signatures(artifact) if a.shape[1] == WIDTH]
    return np.concatenate(found) if found else None


def stale_target_signatures(artifact) -> bool:
    """Whether the artifact's target signatures are an older rule's (fitted by an earlier gotd-stream)."""
    return any(a.shape[1] != WIDTH for a in stored_signatures(artifact))


def exclusions_digest(exclusions: Exclusions | None) -> str | None:
    """What a --state folder records of the exclusions: a hash of their reasons and signatures."""
    if exclusions is None:
        return None
    digest = hashlib.sha256()
    for reason, index in exclusions.indexes:
        digest.update(reason.encode() + b"\0")
        for i in sorted(index.sigs):
            digest.update(np.ascontiguousarray(index.sigs[i], "<i8").tobytes())
    return digest.hexdigest()[:16]

# ruff: noqa: E402, E501  (a measurement script behind the near rule, BENCHMARKS.md "Planted duplicates"; run as is from the repo root)
"""Issue 23, the planted groups kept twice: which rule joins every pair of every planted group, and what it costs
in pairs of distinct texts joined. Exact shingle sets (no MinHash: the rule's estimate adds noise).

Rules: containment of word 2-grams at threshold t for texts of 9 words or more (the near rule), plus, for texts of
5-8 words, the same number of words and at most h words changed in place.

    python bench/dedup_rule/nearrule_mkpool.py /tmp/standin.jsonl
    python bench/dedup_rule/nearrule_short.py /tmp/standin.jsonl > bench/dedup_rule/short-rule.txt
"""

import collections
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, ".")
from bench.defaults import load_pool
from gotd_stream.select.dedup import SHORT_CHANGES, normalise

pool = [json.loads(line) for line in open(sys.argv[1])]


def words(text):
    n = normalise(text)
    return n.split(" ") if n else []


def shingles(w):
    return {" ".join(w[i : i + 2]) for i in range(len(w) - 1)} if len(w) >= 2 else ({w[0]} if w else set())


def collide(a, b, t, h):
    wa, wb = words(a), words(b)
    if wa == wb:
        return True
    sa, sb = shingles(wa), shingles(wb)
    if min(len(sa), len(sb)) >= 8:
        return len(sa & sb) / min(len(sa), len(sb)) >= t
    if 5 <= len(wa) == len(wb) <= 8:
        return sum(x != y for x, y in zip(wa, wb, strict=True)) <= h(len(wa))
    return False


groups = collections.defaultdict(dict)
for r in pool:
    if r["id"].startswith("plant-"):
        _, g, j = r["id"].split("-")
        groups[g][int(j)] = r["text"]
RULES = {  # h: the words two texts of 5-8 words may differ by in place
    "h=0": lambda n: 0,
    "h=1": lambda n: 1,
    "h=1, 2 from 7 words (the rule before)": lambda n: 2 if n >= 7 else 1,
    f"h={SHORT_CHANGES} (the rule)": lambda n: SHORT_CHANGES,
}
print("## the stand-in's 50 planted groups: those whose every pair collides; the others by words of the text;")
print("## then the same, leaving out pairs of two lengths (a short text and its copy under a boilerplate line)")
for t in (0.6, 0.65, 0.7):
    for name, h in RULES.items():
        bad = [
            g for g in groups.values() if not all(collide(a, b, t, h) for a, b in itertools.combinations(g.values(), 2))
        ]
        same = [
            g
            for g in groups.values()
            if not all(
                collide(a, b, t, h)
                for a, b in itertools.combinations(g.values(), 2)
                if len(words(a)) == len(words(b)) or min(len(words(a)), len(words(b))) > 8
            )
        ]
        print(
            f"t={t} {name}: {50 - len(bad)}/50 joined; left: {sorted(len(words(g[0])) for g in bad)}; "
            f"of one length: {50 - len(same)}/50, left: {sorted(len(words(g[0])) for g in same)}"
        )

print("\n## distinct texts of the stand-in (10,050): pairs of 9 words or more joined by containment")
texts = [r["text"] for r in pool if not r["id"].startswith("plant-") or r["id"].endswith("-0")]
seen, distinct = set(), []
for text in texts:
    if normalise(text) not in seen:
        seen.add(normalise(text))
        distinct.append(text)
S = [shingles(words(t)) for t in distinct]
vocab, rows, cols = {}, [], []
for i, s in enumerate(S):
    for x in s:
        rows.append(i)
        cols.append(vocab.setdefault(x, len(vocab)))
X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(S), len(vocab)))
size = np.asarray(X.sum(1)).ravel()
joined = collections.Counter()
for lo in range(0, len(S), 2000):
    inter = (X[lo : lo + 2000] @ X.T).tocoo()
    m = inter.row + lo < inter.col
    r, c, v = inter.row[m] + lo, inter.col[m], inter.data[m]
    small = np.minimum(size[r], size[c])
    for t in (0.6, 0.65, 0.7):
        joined[t] += int(np.sum((v / np.maximum(small, 1) >= t) & (small >= 8)))
for t in (0.6, 0.65, 0.7):
    print(f"containment >= {t}: {joined[t]} pairs")

print("\n## the whole real pool's distinct texts of 5-8 words: pairs joined word by word, and those with a review")
all_texts, labels = load_pool(Path(".cache"))
seen, W, L = set(), [], []
for text, label in zip(all_texts, labels, strict=True):
    n = normalise(text)
    if n and n not in seen:
        seen.add(n)
        W.append(n.split(" "))
        L.append(label)
print(f"{len(W):,} distinct texts")
for n in range(5, 9):
    ids = [i for i, w in enumerate(W) if len(w) == n]
    for h in (1, 2):
        buckets = collections.defaultdict(set)
        for i in ids:
            for mask in itertools.combinations(range(n), h):
                buckets[tuple("\0" if k in mask else x for k, x in enumerate(W[i]))].add(i)
        pairs = {pair for b in buckets.values() for pair in itertools.combinations(sorted(b), 2)}
        reviews = sorted((a, b) for a, b in pairs if "reviews" in (L[a], L[b]))
        rule = " (the rule)" if h == SHORT_CHANGES else (" (the rule before)" if h == (2 if n >= 7 else 1) else "")
        print(
            f"{n} words ({len(ids)} texts, {sum(L[i] == 'reviews' for i in ids)} reviews), h={h}{rule}: "
            f"{len(pairs)} pairs, {len(reviews)} with a review"
        )
        for a, b in reviews[:4]:
            print(f"      {' '.join(W[a])!r} | {' '.join(W[b])!r}")

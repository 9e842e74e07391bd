# ruff: noqa: E402, E501, E731  (a measurement script behind the near rule, BENCHMARKS.md "Planted duplicates"; run as is from the repo root)
"""Issue 23 near rule: Jaccard and containment of planted copies, and pairs of distinct pool texts each rule flags."""

import collections
import json
import random
import sys

import numpy as np
import scipy.sparse as sp

from gotd_stream.select.dedup import normalise

pool = [json.loads(line) for line in open(sys.argv[1])]
KINDS = ["exact", "space", "punct", "word", "boiler"]


def shingles(text, n):
    if n == 12:
        return shingles(text, 1) | shingles(text, 2)
    w = normalise(text).split(" ") if normalise(text) else []
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


groups = collections.defaultdict(dict)
for r in pool:
    if r["id"].startswith("plant-"):
        _, g, j = r["id"].split("-")
        groups[g][int(j)] = r["text"]

print("## planted pairs: original vs copy j (kind j%5), and worst pair within a group")
lens = [len(normalise(g[0]).split()) for g in groups.values()]
print(f"originals: {len(groups)}, words p10/median/p90 {np.percentile(lens, [10, 50, 90])}, min {min(lens)}")
for n in (1, 2, 3, 12):
    per = collections.defaultdict(lambda: ([], []))
    worst_j, worst_c = [], []
    for g in groups.values():
        s = {j: shingles(t, n) for j, t in g.items()}
        for j in s:
            if j == 0:
                continue
            a, b = s[0], s[j]
            inter = len(a & b)
            per[KINDS[j % 5]][0].append(inter / len(a | b))
            per[KINDS[j % 5]][1].append(inter / min(len(a), len(b)))
        js, cs = [], []
        for i in s:
            for j in s:
                if i < j:
                    inter = len(s[i] & s[j])
                    js.append(inter / len(s[i] | s[j]))
                    cs.append(inter / min(len(s[i]), len(s[j])))
        worst_j.append(min(js))
        worst_c.append(min(cs))
        if n == 2 and min(cs) < 0.7:
            print(f"   n=2 group worst C {min(cs):.2f}, original {len(normalise(g[0]).split())} words: {g[0][:90]!r}")
    for kind in KINDS[1:]:
        J, C = map(np.array, per[kind])
        print(
            f"n={n} {kind:6s} pairs {len(J):3d}  J min {J.min():.2f} p10 {np.percentile(J, 10):.2f} med {np.median(J):.2f}"
            f" | C min {C.min():.2f} p10 {np.percentile(C, 10):.2f} med {np.median(C):.2f}"
        )
    wj, wc = np.array(worst_j), np.array(worst_c)
    for t in (0.5, 0.6, 0.7, 0.8):
        print(
            f"n={n} groups whose every pair has J>={t}: {np.sum(wj >= t)}/{len(wj)}; C>={t}: {np.sum(wc >= t)}/{len(wc)}"
        )

print("\n## distinct texts (pool-*, eval-*, planted originals): pairs flagged")
texts = [r["text"] for r in pool if not r["id"].startswith("plant-") or r["id"].endswith("-0")]
ids_ = [r["id"] for r in pool if not r["id"].startswith("plant-") or r["id"].endswith("-0")]
normals = [normalise(t) for t in texts]
# exact duplicates among the real pool are copies (not false positives): group them away first
first = {}
keep = []
for i, nm in enumerate(normals):
    if nm not in first:
        first[nm] = i
        keep.append(i)
print(f"texts {len(texts)}, distinct after exact key {len(keep)}")
texts = [texts[i] for i in keep]
ids_ = [ids_[i] for i in keep]
rng = random.Random(0)
NS = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1, 2, 3]
SHOW = len(sys.argv) > 3
for n in NS:
    vocab = {}
    rows, cols = [], []
    for i, t in enumerate(texts):
        for s in shingles(t, n):
            rows.append(i)
            cols.append(vocab.setdefault(s, len(vocab)))
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    size = np.asarray(X.sum(1)).ravel()
    hits = collections.defaultdict(list)
    for lo in range(0, len(texts), 2000):
        inter = (X[lo : lo + 2000] @ X.T).tocoo()
        m = inter.row + lo < inter.col
        r, c, v = inter.row[m] + lo, inter.col[m], inter.data[m]
        jac = v / (size[r] + size[c] - v)
        mn = np.minimum(size[r], size[c])
        con = v / mn
        for t in (0.5, 0.6, 0.7, 0.8):
            hits[("J", t, 0)] += list(zip(r[jac >= t], c[jac >= t], strict=True))
            for ms in (0, 4, 6, 8, 10):
                sel = (con >= t) & (mn >= ms)
                hits[("C", t, ms)] += list(zip(r[sel], c[sel], strict=True))
    print(
        f"n={n}: "
        + "; ".join(
            f"{k[0]}>={k[1]}" + (f",min{k[2]}" if k[0] == "C" else "") + f": {len(v)}" for k, v in sorted(hits.items())
        )
    )
    for key in [("C", 0.7, 6), ("C", 0.8, 6), ("J", 0.5, 0)] if SHOW else []:
        sample = hits[key][:]
        rng.shuffle(sample)
        for a, b in sample[:6]:
            print(f"   {key} {ids_[a]} | {texts[a][:110]!r}\n   {' ' * len(str(key))} {ids_[b]} | {texts[b][:110]!r}")

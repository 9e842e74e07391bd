# ruff: noqa: E402, E501, E731  (a measurement script behind the near rule, BENCHMARKS.md "Planted duplicates"; run as is from the repo root)
import json
import random
import sys

import numpy as np
import scipy.sparse as sp

sys.argv = sys.argv
from gotd_stream.select.dedup import normalise

pool = [json.loads(line) for line in open(sys.argv[1])]
recs = [r for r in pool if not r["id"].startswith("plant-") or r["id"].endswith("-0")]
n = int(sys.argv[2])
lo_c, hi_c = float(sys.argv[3]), float(sys.argv[4])
lo_m, hi_m = int(sys.argv[5]), int(sys.argv[6])


def sh(t):
    w = normalise(t).split()
    if n == 12:
        return set(w) | {" ".join(w[i : i + 2]) for i in range(len(w) - 1)}
    return {" ".join(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))} if w else set()


vocab = {}
rows = []
cols = []
for i, r in enumerate(recs):
    for s in sh(r["text"]):
        rows.append(i)
        cols.append(vocab.setdefault(s, len(vocab)))
X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(recs), len(vocab)))
size = np.asarray(X.sum(1)).ravel()
out = []
for lo in range(0, len(recs), 2000):
    inter = (X[lo : lo + 2000] @ X.T).tocoo()
    m = inter.row + lo < inter.col
    r, c, v = inter.row[m] + lo, inter.col[m], inter.data[m]
    mn = np.minimum(size[r], size[c])
    con = v / mn
    sel = (con >= lo_c) & (con < hi_c) & (mn >= lo_m) & (mn < hi_m)
    out += list(zip(r[sel], c[sel], con[sel], mn[sel], strict=True))
print(len(out), "pairs")
random.Random(1).shuffle(out)
for a, b, c, m in out[: int(sys.argv[7])]:
    print(
        f"C={c:.2f} min={m:.0f} {recs[a]['id']}: {recs[a]['text'][:150]!r}\n{' ' * 17}{recs[b]['id']}: {recs[b]['text'][:150]!r}"
    )

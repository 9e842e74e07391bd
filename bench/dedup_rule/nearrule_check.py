# ruff: noqa: E402, E501, E731  (a measurement script behind the near rule, BENCHMARKS.md "Planted duplicates"; run as is from the repo root)
"""The implemented rule (select.dedup) on a planted pool: planted pairs caught, and distinct texts flagged."""

import collections
import json
import sys
import time

from gotd_stream.select.dedup import Guard, Index, signatures

pool = [json.loads(line) for line in open(sys.argv[1])]
t = float(sys.argv[2]) if len(sys.argv) > 2 else 0.7
g = Guard("near", t)
t0 = time.time()
sigs = signatures([r["text"] for r in pool])
ts = time.time() - t0
idx = Index(g)
pairs = []
t0 = time.time()
for i, s in enumerate(sigs):
    for j in idx.colliders(s):
        pairs.append((j, i))
    idx.add(i, s)
tc = time.time() - t0
ids = [r["id"] for r in pool]
grp = lambda k: ids[k].rsplit("-", 1)[0] if ids[k].startswith("plant-") else None
within = [p for p in pairs if grp(p[0]) and grp(p[0]) == grp(p[1])]
cross = [p for p in pairs if not (grp(p[0]) and grp(p[0]) == grp(p[1]))]
exact = [p for p in cross if sigs[p[0]][0] == sigs[p[1]][0]]
# planted: pairs within a group that do not collide
members = collections.defaultdict(list)
for k in range(len(ids)):
    if grp(k):
        members[grp(k)].append(k)
caught = set(map(frozenset, within))
missed_groups = {
    gname for gname, m in members.items() if any(frozenset((a, b)) not in caught for a in m for b in m if a < b)
}
npairs = sum(len(m) * (len(m) - 1) // 2 for m in members.values())
print(f"threshold {t}: signatures {ts:.1f}s, index {tc:.1f}s for {len(pool)} texts")
print(
    f"planted pairs colliding {len(caught)}/{npairs}; groups with a pair that does not collide: {len(missed_groups)}/{len(members)}"
)
print(f"other colliding pairs: {len(cross)} ({len(exact)} by exact key)")
for a, b in cross[:: max(1, len(cross) // 8)][:8]:
    print(f"  {ids[a]}: {pool[a]['text'][:100]!r}\n  {ids[b]}: {pool[b]['text'][:100]!r}")
both_plant = [p for p in cross if grp(p[0]) and grp(p[1])]
pool_pairs = [p for p in cross if not (grp(p[0]) and grp(p[1]))]
print(
    f"of the others: {len(both_plant)} between two planted groups (boilerplate copies of different texts), {len(pool_pairs)} with a pool text"
)
miss = collections.Counter()
for gname in missed_groups:
    m = members[gname]
    for a in m:
        for b in m:
            if a < b and frozenset((a, b)) not in caught:
                ka, kb = sorted((int(ids[a].rsplit("-", 1)[1]) % 5, int(ids[b].rsplit("-", 1)[1]) % 5))
                miss[(ka, kb)] += 1
print("missed planted pairs by kinds (0 exact 1 space 2 punct 3 word 4 boiler):", dict(miss))
from gotd_stream.select.dedup import normalise

print(
    "missed groups' originals (words):",
    sorted(len(normalise(pool[members[g][0]]["text"]).split()) for g in missed_groups),
)

# ruff: noqa: E402, E501, E731  (a measurement script behind the near rule, BENCHMARKS.md "Planted duplicates"; run as is from the repo root)
"""A stand-in for bench/web.py's planted pool without the embeddings: 50 reviews planted with bench.web.variant,
in a seeded 10,000-text subsample of the mixed pool (news chunks, tweets, reviews)."""

import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from bench.defaults import load_pool
from bench.web import MAX_COPIES, variant

texts, labels = load_pool(Path(".cache"))
rng = random.Random(0)
reviews = [i for i in range(len(texts)) if labels[i] == "reviews"]
rng.shuffle(reviews)
planted = reviews[:50]
rest = np.random.default_rng(0).permutation([i for i in range(len(texts)) if i not in set(planted)])[:10000]
out = [{"id": f"pool-{i}", "text": texts[i], "label": str(labels[i])} for i in rest]
for g, i in enumerate(planted):
    for j in range(rng.randint(2, MAX_COPIES)):
        out.append({"id": f"plant-{g}-{j}", "text": variant(texts[i], j, rng)})
Path(sys.argv[1]).write_text("".join(json.dumps(r) + "\n" for r in out))

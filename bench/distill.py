"""How well the distilled scorer (the student) stands in for the teacher (MiniLM-hybrid), and how fast it scores.

For the four parity targets (speeches, reviews, dialogues, debates): the teacher is fitted on a sample of the pool
(the library's fit, on cached MiniLM rows), a student is trained from its scores (select/distill.py), and both
score the whole pool. Reported per target: the student's recall of the teacher's top-k (k = 1% and 0.2% of the
pool), Spearman's rank correlation, the cascade's recall of the teacher's top-k at Q = 0.02, 0.05, 0.1 (a record
reaches the teacher only when its student score is within the sample's Q-quantile), and the student's scoring
docs/s on one core. Student settings (buckets, ridge, tail weight, target rows) are compared on the same recalls.

    python bench/distill.py [--pool 20000] [--cache .cache] [--out bench/results/distill.md]

The pool is a seeded subsample of bench/baselines.py's corpus (less each target's held-out groups), so that its
MiniLM embeddings (cached under --cache) take minutes, not an hour, on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gotd_stream as gs  # noqa: E402
from bench.baselines import normalized, semantic  # noqa: E402
from bench.cached import CachedEmbedder  # noqa: E402
from bench.defaults import load_pool  # noqa: E402
from bench.parity import TARGETS  # noqa: E402
from bench.pool import EXTRA_DOMAINS, load_extra_domains  # noqa: E402

SEED = 0


def log(message: str) -> None:
    print(f"[distill] {message}", file=sys.stderr, flush=True)


def corpus(cache: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """bench/baselines.py's corpus (texts, domains, hold-out groups), without its embeddings."""
    texts, labels = load_pool(cache)
    groups = [f"text-{i}" for i in range(len(texts))]
    labels = list(labels)
    seen = set(texts)
    extra = load_extra_domains(cache / "data")
    for domain in EXTRA_DOMAINS:
        for group, text in extra[domain]:
            if text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(domain)
                groups.append(group)
    return texts, np.array(labels), np.array(groups)


def split(texts, labels, groups, pool_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each target's texts (whole groups of its domain, seeded, as parity holds them out: evaluation then target),
    and one pool for all: a seeded subsample of the rest, without exact copies (normalized) of any held-out text."""
    rng = np.random.default_rng(SEED)
    held, targets = [], {}
    for name, spec in TARGETS.items():
        members = np.flatnonzero(labels == name)
        order = list(dict.fromkeys(groups[members]))
        by_group: dict[str, list[int]] = {}
        for i in members:
            by_group.setdefault(groups[i], []).append(int(i))
        evaluation, target = [], []
        for g in np.random.default_rng(SEED).permutation(len(order)):
            chunks = by_group[order[g]]
            if len(evaluation) < spec["eval"]:
                evaluation += chunks
            elif len(target) < spec["target"]:
                target += chunks
            else:
                break
        held += evaluation + target
        targets[name] = np.array(target)
    copies = {normalized(texts[i]) for i in held}
    rest = np.setdiff1d(np.arange(len(texts)), np.array(held))
    rest = np.array([i for i in rest if normalized(texts[i]) not in copies])
    pool = np.sort(rng.choice(rest, size=min(pool_size, len(rest)), replace=False))
    return pool, targets


def prepared(cache: Path, pool_size: int):
    texts, labels, groups = corpus(cache)
    pool, targets = split(texts, labels, groups, pool_size)
    wanted = np.unique(np.concatenate([pool, *targets.values()]))
    log(f"pool {len(pool):,} of {len(texts):,} texts; targets " + ", ".join(f"{n} {len(t)}" for n, t in targets.items()))
    emb = semantic([texts[i] for i in wanted], cache / f"distill-emb-{pool_size}.npy")
    embedder = CachedEmbedder([texts[i] for i in wanted], emb)
    return texts, labels, pool, targets, embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/distill.md"))
    parser.add_argument("--embed-only", action="store_true", help="Only embed the pool (cached), then stop.")
    args = parser.parse_args()
    started = time.time()
    texts, labels, pool, targets, embedder = prepared(args.cache, args.pool)
    if args.embed_only:
        log(f"embedded in {time.time() - started:.0f}s")
        return


if __name__ == "__main__":
    main()

"""Several targets at once, measured: `--mix quota`, `--mix sum`, and separate single-target runs concatenated.

The pool is bench/baselines.py's (news chunks, health tweets, movie reviews, convention speeches, debate turns,
chatbot dialogues; MiniLM embeddings cached in .cache). For every target domain of a mixture, baselines'
`hold_out` sets aside a target sample and an evaluation set; the pool then loses the held-out texts of every
target of the mixture and their copies. Selections, at each budget k:

- quota: `gotd_stream.fit` on `Texts` (the default hybrid space, epsilon 0.05, a 10k reservoir sample, seed
  0) and the library's QuotaKeeper over every pool document's per-target scores: what `score --mix quota` does;
- sum: the same scores and the library's SumKeeper: what `score --mix sum` does;
- concat: one single-target fit per target (`gotd_stream.fit` of one target on the same sample), each target's own top
  q_t (its quota of k), concatenated. A document picked by two runs is kept once, so concat falls short of k
  by the duplicates. A single-target fit is, to the bit, the mixture's part for that target (checked here by
  its fit id), so its ranking is that part's column of scores.

Per selection: each target domain's share of it against the target's weight, the OT distance (exact EMD,
squared Euclidean, MiniLM embeddings, the selection subsampled to 1,000 as in baselines) to each target's sample
and to the weighted mixture of the targets, and concat's duplicates. Warm-up perplexity is not measured: on the
2-core CPU one warm-up per selection costs about 10 minutes (bench/baselines.py), beyond this bench's budget.

    python bench/mixtures.py [--cache .cache] [--budgets 1000,5000] [--out bench/results/mixtures.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gotd_stream as gs  # noqa: E402
from bench.baselines import SEED, TARGETS, Corpus, device_name, emd, hold_out, load_corpus, log  # noqa: E402
from bench.cached import CachedEmbedder  # noqa: E402
from gotd_stream.select.mix import QuotaKeeper, SumKeeper, score_matrix  # noqa: E402
from gotd_stream.select.sample import reservoir  # noqa: E402
from gotd_stream.select.targets import quotas  # noqa: E402

MIXTURES = {
    "reviews+dialogues": {"reviews": 0.7, "dialogues": 0.3},
    "speeches+reviews+dialogues": {"speeches": 0.4, "reviews": 0.4, "dialogues": 0.2},
}
BUDGETS = (1_000, 5_000)
OT_SAMPLE = 1_000
SELECTORS = ("quota", "sum", "concat")


def mixture_pool(corpus: Corpus, names: list[str]) -> tuple[dict, np.ndarray]:
    """Each target's held-out split; the pool without any target's held-out texts and their copies."""
    splits = {name: hold_out(corpus, name, TARGETS[name]["target"], TARGETS[name]["eval"]) for name in names}
    pool = splits[names[0]].pool
    for split in list(splits.values())[1:]:
        pool = np.intersect1d(pool, split.pool)
    return splits, pool


def score_pool(corpus: Corpus, splits: dict, pool: np.ndarray, weights: dict) -> tuple[object, np.ndarray, dict]:
    """The mixture fitted as `fit --target a=..:w ...` fits it, and every pool document's per-target scores."""
    settings = gs.FitSettings(seed=SEED, distill=False)  # the teacher only
    texts = [corpus.texts[i] for i in pool]
    sample, _ = reservoir(texts, settings.sample_size, settings.seed)
    targets = []
    for name, weight in weights.items():
        target, _ = reservoir((corpus.texts[i] for i in splits[name].target), settings.target_size, settings.seed)
        targets.append(gs.Target(name, None, weight, tuple(target)))
    embedder = CachedEmbedder(corpus.texts, corpus.emb)
    started = time.time()
    fitted = gs.fit(gs.Texts(sample), targets, embedder, settings)
    mixture, featurizer = fitted.potentials, fitted.featurizer
    log(f"fit {len(targets)} targets in {time.time() - started:.0f}s")
    single_ids = {}
    for target, part in zip(targets, mixture.parts, strict=True):
        single = gs.fit(gs.Texts(sample), gs.Texts(target.texts), embedder, settings).potentials
        single_ids[target.name] = (single.fit_id, part.fit_id)
        if single.fit_id != part.fit_id:
            raise SystemExit(f"{target.name}: the single-target fit {single.fit_id} is not the part {part.fit_id}")
    scorers = mixture.scorers()
    window = featurizer.window
    rows = ((start, texts[start : start + window]) for start in range(0, len(texts), window))
    started = time.time()
    scores = np.concatenate([score_matrix(emb, scorers) for _, emb in featurizer.stream(rows)])
    log(f"scored {len(texts):,} documents against {len(targets)} targets in {time.time() - started:.0f}s")
    return mixture, scores, single_ids


def select(selector: str, scores: np.ndarray, weights: list[float], k: int) -> tuple[np.ndarray, int]:
    """Positions in the pool, in selection order, and the duplicates dropped (concat only)."""
    raws = [str(i).encode() for i in range(len(scores))]
    if selector in ("quota", "sum"):
        keeper = QuotaKeeper(k, weights) if selector == "quota" else SumKeeper(k, weights)
        keeper.offer(scores, raws)
        return np.array([int(entry.raw) for entry, _, _ in keeper.selection()]), 0
    picked: list[int] = []
    seen: set[int] = set()
    duplicates = 0
    for t, quota in enumerate(quotas(k, weights)):
        for i in np.argsort(scores[:, t], kind="stable")[:quota]:
            if int(i) in seen:
                duplicates += 1
                continue
            seen.add(int(i))
            picked.append(int(i))
    return np.array(picked), duplicates


def measure(corpus: Corpus, splits: dict, weights: dict, chosen: np.ndarray) -> dict:
    """Each target domain's share and OT distance, and the OT distance to the weighted mixture of the targets."""
    sub = chosen
    if len(chosen) > OT_SAMPLE:  # the same seed for every selection, as in baselines
        sub = np.random.default_rng(SEED + 3).choice(chosen, OT_SAMPLE, replace=False)
    x = corpus.emb[sub]
    labels = corpus.labels[chosen]
    row = {"n": int(len(chosen)), "share": {}, "ot": {}}
    parts, b = [], []
    for name, weight in weights.items():
        target = corpus.emb[splits[name].target]
        row["share"][name] = float((labels == name).mean())
        row["ot"][name] = emd(x, target)
        parts.append(target)
        b.append(np.full(len(target), weight / len(target)))
    row["share"]["other"] = 1 - sum(row["share"].values())
    y, b = np.concatenate(parts), np.concatenate(b)
    import ot

    cost = ot.dist(x.astype(np.float64), y.astype(np.float64))
    row["ot"]["mixture"] = float(ot.emd2(np.full(len(x), 1 / len(x)), b / b.sum(), cost, numItermax=10_000_000))
    return row


def write(results: list[dict], budgets: tuple[int, ...], wall: float, path: Path, command: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    status = ["git", "status", "--porcelain", "--untracked-files=no"]
    dirty = subprocess.run(status, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [
        "# Several targets: quota, sum and single-target runs concatenated (`bench/mixtures.py`)",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; device: {device_name()}; wall time {wall / 60:.1f} min",
        f"- command: `{command}`",
        f"- commit: {commit.stdout.strip() or 'unknown'}{' (with uncommitted changes)' if dirty else ''}",
        "- space: hybrid (the default), epsilon 0.05, a 10k reservoir sample of the pool, seed 0; OT distance: exact"
        f" EMD in MiniLM space, selections subsampled to {OT_SAMPLE:,}; no warm-up (CPU budget)",
        "",
    ]
    for result in results:
        weights = result["weights"]
        names = list(weights)
        lines += [
            f"## {result['mixture']}: " + ", ".join(f"{n} {w:g}" for n, w in weights.items()),
            "",
            f"Pool {result['pool']:,} documents; in it, of each target's domain: "
            + ", ".join(f"{n} {result['available'][n]:,}" for n in names)
            + ".",
            "",
        ]
        head = ["budget", "selector", "kept"] + [f"{n} share (weight {weights[n]:g})" for n in names]
        head += ["other"] + [f"OT to {n}" for n in names] + ["OT to the mixture"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in result["rows"]:
            cells = [f"{row['budget']:,}", row["selector"], f"{row['n']:,}"]
            if row["duplicates"]:
                cells[2] += f" ({row['duplicates']} duplicates dropped)"
            cells += [f"{row['share'][n]:.1%}" for n in names] + [f"{row['share']['other']:.1%}"]
            cells += [f"{row['ot'][n]:.3f}" for n in names] + [f"{row['ot']['mixture']:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))
    log(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--mixtures", default=",".join(MIXTURES), help="comma-separated names of MIXTURES")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/mixtures.md")
    args = parser.parse_args()
    budgets = tuple(int(b) for b in args.budgets.split(","))
    started = time.time()
    corpus = load_corpus(args.cache)
    results = []
    for name in args.mixtures.split(","):
        weights = MIXTURES[name]
        splits, pool = mixture_pool(corpus, list(weights))
        mixture, scores, _ = score_pool(corpus, splits, pool, weights)
        result = {
            "mixture": name,
            "weights": weights,
            "pool": int(len(pool)),
            "available": {n: int((corpus.labels[pool] == n).sum()) for n in weights},
            "rows": [],
        }
        for k in budgets:
            for selector in SELECTORS:
                chosen, duplicates = select(selector, scores, list(mixture.weights), k)
                row = {"budget": k, "selector": selector, "duplicates": duplicates}
                row.update(measure(corpus, splits, weights, pool[chosen]))
                shares = ", ".join(f"{n} {s:.1%}" for n, s in row["share"].items())
                log(f"{name} k={k} {selector}: {shares}; OT mixture {row['ot']['mixture']:.3f}")
                result["rows"].append(row)
        results.append(result)
    command = "python bench/mixtures.py " + " ".join(sys.argv[1:])
    write(results, budgets, time.time() - started, args.out, command.strip())


if __name__ == "__main__":
    main()

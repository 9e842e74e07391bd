"""Which feature space serves a target best: semantic, lexical or hybrid, measured on several targets.

Same real pool and targets as bench/defaults.py (three domains, four sources: one news outlet or one Twitter
account). For every space and epsilon the potentials are fitted on a 10k sample and every pool document is
scored by the c-transform, exactly as `gotd-stream score` does. Reported per selection (top-1k, top-5k):
the share from the target's domain or source, and the OT distance between the selection and the target
(exact EMD, squared Euclidean, in the semantic space for every selector so they are comparable), against
random selection. Warm-up perplexity: bench/baselines.py, which `make quality` runs next.

    python bench/quality.py [--cache .cache] [--out bench/results/quality.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gotd_stream as gs  # noqa: E402
from bench.defaults import embeddings, load_pool, log, source_labels, targets  # noqa: E402
from gotd_stream.features.hybrid import combine  # noqa: E402
from gotd_stream.features.lexical import Lexical  # noqa: E402
from gotd_stream.select.ot import CalibratedGradient, fit_potentials  # noqa: E402

EPSILONS = (0.05, 0.1)  # bench/defaults.py: 0.01-0.1 is one plateau; 0.01 costs 5-10x the iterations
BUDGETS = (1_000, 5_000)
SAMPLE = 10_000


def emd(x: np.ndarray, y: np.ndarray) -> float:
    """Exact OT distance (squared Euclidean) between two uniform point clouds."""
    import ot

    cost = ot.dist(x.astype(np.float64), y.astype(np.float64))
    return float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost, numItermax=10_000_000))


def spaces_for(texts: list[str], semantic: np.ndarray, sample: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every text in the three spaces: the lexical one fitted on the sample, the hybrid one the library's."""
    lexical = Lexical.fit([texts[i] for i in sample], seed=seed)
    lex = np.concatenate([lexical.encode(texts[i : i + 8192]) for i in range(0, len(texts), 8192)])
    return {"semantic": semantic, "lexical": lex, "hybrid": combine(semantic, lex, gs.FitSettings().hybrid_weight)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--out", default="bench/results/quality.md", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts, labels = load_pool(args.cache)
    semantic = embeddings(texts, args.cache)[128]
    sources = source_labels(args.cache, texts, labels)
    rows = []
    for spec in targets(labels, sources):
        name, lab = spec["name"], spec["labels"]
        rng = np.random.default_rng(1)
        target = rng.choice(np.flatnonzero(lab == name), size=spec["held_out"], replace=False)
        pool = np.setdiff1d(np.arange(len(texts)), target)
        sample = np.sort(np.random.default_rng(0).choice(pool, size=SAMPLE, replace=False))
        t = time.time()
        feats = spaces_for(texts, semantic, sample, seed=0)
        log(f"{name}: lexical space fitted and {len(texts):,} texts featurized in {time.time() - t:.1f}s")
        picks = {"random": np.random.default_rng(2).permutation(pool)}
        for space in gs.SPACES:
            emb = feats[space]
            for eps in EPSILONS:
                try:
                    fit = fit_potentials(emb[sample], emb[target], eps, max_iter=5_000, tol=1e-5)
                    scores = CalibratedGradient(emb[target], fit.g, eps, float(fit.f.mean()))(emb[pool])
                except gs.NotConverged as exc:
                    log(f"{name} {space} eps={eps}: {exc}")
                    continue
                picks[f"{space} eps={eps}"] = pool[np.argsort(scores, kind="stable")]
        for selector, order in picks.items():
            row = {"target": name, "selector": selector}
            for k in BUDGETS:
                row[f"share@{k}"] = float((lab[order[:k]] == name).mean())
                row[f"ot@{k}"] = emd(semantic[order[:k]], semantic[target])
            rows.append(row)
            log(
                f"{name:22s} {selector:20s} "
                + " ".join(f"{key} {value:.3f}" for key, value in row.items() if key not in ("target", "selector"))
            )
    write_report(rows, args.out)


def write_report(rows: list[dict], path: Path) -> None:
    names = list(dict.fromkeys(r["target"] for r in rows))
    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    lines = [
        f"# Feature spaces ({time.strftime('%Y-%m-%d')}, `make quality`, 2-core CPU)",
        "",
        "Share of the top-k from the target's domain (news, tweets, reviews) or source (one outlet or account); "
        "fit on a 10k sample, target 1,000 held-out texts (300 for sources), hybrid weight 0.5.",
        "",
    ]
    for metric, title, fmt in (
        ("share", "Target share", "{:.1%}"),
        ("ot", "OT distance to the target (exact EMD, semantic space; lower is closer)", "{:.3f}"),
    ):
        lines += [
            f"## {title}",
            "",
            "| selector | " + " | ".join(f"{n} {k // 1000}k" for n in names for k in BUDGETS) + " | mean |",
            "|" + "---|" * (2 + len(names) * len(BUDGETS)),
        ]
        for selector in selectors:
            cells, values = [], []
            for n in names:
                row = next((r for r in rows if r["target"] == n and r["selector"] == selector), None)
                for k in BUDGETS:
                    value = row[f"{metric}@{k}"] if row else None
                    cells.append(fmt.format(value) if value is not None else "n/c")
                    if value is not None:
                        values.append(value)
            mean = fmt.format(np.mean(values)) if len(values) == len(names) * len(BUDGETS) else ""
            lines.append(f"| {selector} | " + " | ".join(cells) + f" | {mean} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

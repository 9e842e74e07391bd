"""The experiment behind gotd-stream's defaults (epsilon, sample size, target size, max tokens).

On a real mixed pool (news chunks, health tweets, movie reviews: bench/pool.py), each domain in turn is the
target: 1,000 of its texts are held out as the target and removed from the pool. We fit the potentials on a
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

from bench.pool import DEFAULT_DOMAINS, _dedup, load_domains  # noqa: E402
from gotd_stream.embed import Embedder  # noqa: E402
from gotd_stream.ot import CTransform, NotConverged, fit_potentials  # noqa: E402

BASE = {"epsilon": 0.05, "sample": 10_000, "target": 1_000, "tokens": 128}
VARY = {
    "epsilon": [0.01, 0.02, 0.05, 0.1, 0.2],
    "sample": [2_000, 5_000, 10_000, 20_000],
    "target": [100, 300, 1_000],
    "tokens": [128, 256],
}
BUDGETS = (1_000, 5_000)
HELD_OUT = 1_000


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


def run(
    emb: np.ndarray, pool: np.ndarray, target: np.ndarray, labels: np.ndarray, domain: str, cfg: dict, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(pool, size=min(cfg["sample"], len(pool)), replace=False))
    tgt = target[: cfg["target"]]
    t = time.time()
    fit = fit_potentials(emb[sample], emb[tgt], cfg["epsilon"], max_iter=20_000, tol=1e-5)
    fit_s = time.time() - t
    scores = CTransform(emb[tgt], fit.g, cfg["epsilon"])(emb[pool]) - fit.f.mean()
    order = pool[np.argsort(scores, kind="stable")]
    row = {"iterations": fit.iterations, "fit_s": fit_s}
    for k in BUDGETS:
        row[k] = float((labels[order[:k]] == domain).mean())
    row["order"] = order
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--out", default="bench/results/defaults.md", type=Path)
    parser.add_argument(
        "--full-ot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also solve one OT over the whole pool (needs ~5 GB of RAM)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts_by_domain, _ = _dedup(load_domains(args.cache / "data"), DEFAULT_DOMAINS)
    texts, labels = [], []
    for d in DEFAULT_DOMAINS:
        texts += texts_by_domain[d]
        labels += [d] * len(texts_by_domain[d])
    labels = np.array(labels)
    log(f"{len(texts):,} texts: " + ", ".join(f"{d} {int((labels == d).sum()):,}" for d in DEFAULT_DOMAINS))
    embs = embeddings(texts, args.cache)

    rows = []
    for domain in DEFAULT_DOMAINS:
        rng = np.random.default_rng(1)
        members = np.flatnonzero(labels == domain)
        target = rng.choice(members, size=HELD_OUT, replace=False)
        pool = np.setdiff1d(np.arange(len(texts)), target)
        random_share = float((labels[pool] == domain).mean())
        seen = set()
        for name, values in VARY.items():
            for value in values:
                cfg = dict(BASE, **{name: value})
                key = tuple(sorted(cfg.items()))
                if key in seen:
                    continue
                seen.add(key)
                try:
                    r = run(embs[cfg["tokens"]], pool, target, labels, domain, cfg)
                except NotConverged as exc:
                    log(f"{domain} {cfg}: {exc}")
                    continue
                r.update(cfg, domain=domain, random=random_share, varied=name)
                rows.append(r)
                log(
                    f"{domain:8s} {name}={value}: top-1k {r[1000]:.1%} top-5k {r[5000]:.1%} "
                    f"({r['iterations']} it, {r['fit_s']:.1f}s); random {random_share:.1%}"
                )
        if args.full_ot:  # the streaming design against one OT over the whole pool, at the base settings
            cfg = dict(BASE, sample=len(pool))
            full = run(embs[128], pool, target, labels, domain, cfg)
            base = next(r for r in rows if r["domain"] == domain and all(r[k] == v for k, v in BASE.items()))
            for k in BUDGETS:
                overlap = len(np.intersect1d(full["order"][:k], base["order"][:k])) / k
                log(
                    f"{domain}: top-{k} overlap sample-fit vs whole-pool OT {overlap:.1%} "
                    f"(share {base[k]:.1%} vs {full[k]:.1%})"
                )
                rows.append(
                    {
                        "domain": domain,
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
        f"# Defaults experiment ({time.strftime('%Y-%m-%d')}, `python bench/defaults.py`, CPU)",
        "",
        f"Pool: {n:,} deduplicated texts (news chunks, health tweets, movie reviews) minus 1,000 held-out target "
        "texts of the target's domain. Share of the top-k from the target's domain; one setting varied at a time "
        f"around {BASE}.",
        "",
    ]
    domains = list(DEFAULT_DOMAINS)
    header = "| varied | value | " + " | ".join(f"{d} top-1k | {d} top-5k" for d in domains) + " | mean |"
    lines += [header, "|" + "---|" * (2 + 2 * len(domains) + 1)]
    random_row = ["random", "-"]
    for d in domains:
        r = next(x for x in rows if x["domain"] == d and "random" in x)
        random_row += [f"{r['random']:.1%}"] * 2
    lines.append("| " + " | ".join(random_row) + " | |")
    for name, values in VARY.items():
        for value in values:
            cells, shares = [name, str(value)], []
            for d in domains:
                match = [
                    x
                    for x in rows
                    if x.get("domain") == d
                    and x.get("varied") in (name, None)
                    and "random" in x
                    and x[name] == value
                    and all(x[k] == v for k, v in BASE.items() if k != name)
                ]
                if match:
                    cells += [f"{match[0][1000]:.1%}", f"{match[0][5000]:.1%}"]
                    shares += [match[0][1000], match[0][5000]]
                else:
                    cells += ["n/c", "n/c"]
            cells.append(f"{np.mean(shares):.1%}" if shares else "")
            lines.append("| " + " | ".join(cells) + " |")
    full = [x for x in rows if "full_ot" in x]
    if full:
        lines += [
            "",
            "Streaming check: top-k after fitting on a 10k sample vs one OT over the whole pool (base settings).",
            "",
            "| target | k | overlap | share (sample fit) | share (whole pool) | whole-pool fit |",
            "|---|---|---|---|---|---|",
        ]
        for x in full:
            lines.append(
                f"| {x['domain']} | {x['full_ot']:,} | {x['overlap']:.1%} | {x['sample_share']:.1%} | "
                f"{x['full_share']:.1%} | {x['iterations']} it, {x['fit_s']:.0f}s |"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

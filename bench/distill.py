"""How well the distilled scorer (the student) stands in for the teacher (MiniLM-hybrid), and how fast it scores.

For the four parity targets (speeches, reviews, dialogues, debates): the teacher is fitted on a sample of the pool
(the library's fit, on cached MiniLM rows), a student is trained from its scores (select/distill.py), and both
score the whole pool. Reported per target: the student's recall of the teacher's top-k (k = 1% and 0.2% of the
pool), Spearman's rank correlation, the cascade's recall of the teacher's top-k at Q = 0.02, 0.05, 0.1 (a record
reaches the teacher only when its student score is within the sample's Q-quantile), and the student's scoring
docs/s on one core. Student settings (buckets, ridge, tail weight, target rows) are compared on the same recalls.

    python bench/distill.py [--pool 20000] [--cache .cache] [--out bench/results/distill.md]
    python bench/distill.py --sample-sizes 2000,5000,10000 [--out bench/results/distill-samples.md]

`--sample-sizes`: the fit's own cost, as a quality question (issue 22). For each sample size n, the teacher is
fitted on a seeded n-text sample (the smaller samples are prefixes of the larger draw's order: the same texts
plus more) and its student trained on it; against the default fit's selection (the 10,000-text teacher's top 1%
of the pool), it reports the recall of the n-sample teacher's own top 1% and of the default scorer's (the cascade
at Q = 0.05, its student taught on n texts), and the fit's seconds on cached rows (OT and the student: the
embedding of n texts is apart, at the model's documents/s).

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
    log(
        f"pool {len(pool):,} of {len(texts):,} texts; targets " + ", ".join(f"{n} {len(t)}" for n, t in targets.items())
    )
    emb = semantic([texts[i] for i in wanted], cache / f"distill-emb-{pool_size}.npy")
    embedder = CachedEmbedder([texts[i] for i in wanted], emb)
    return texts, labels, pool, targets, embedder


VARIANTS = {  # one setting changed at a time around the default (select/distill.py StudentSettings)
    "default": {},
    "buckets 2^16": {"buckets": 1 << 16},
    "buckets 2^20": {"buckets": 1 << 20},
    "ridge 0.03": {"ridge": 0.03},
    "ridge 0.1": {"ridge": 0.1},
    "ridge 1": {"ridge": 1.0},
    "ridge 3": {"ridge": 3.0},
    "tail 0 (plain LSQ)": {"tail": 0.0},
    "tail 4": {"tail": 4.0},
    "tail 16": {"tail": 16.0},
    "no target rows": {"with_target": False},
}
SHARES = (0.02, 0.05, 0.1)


def recall(chosen: np.ndarray, best: np.ndarray) -> float:
    return len(np.intersect1d(chosen, best)) / len(best)


def top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(scores, kind="stable")[:k]


def measure(student, teacher: np.ndarray, pool_texts: list[str], ks: list[int]) -> dict:
    """The student's recalls of the teacher's top-k, Spearman, and the cascade's recalls at each share."""
    from gotd_stream.select.distill import spearman

    own = student(pool_texts)
    row = {"spearman": spearman(own, teacher)}
    for k in ks:
        best = top(teacher, k)
        row[f"recall@{k}"] = recall(top(own, k), best)
        for q in SHARES:
            passed = np.flatnonzero(own <= student.threshold(q))
            chosen = passed[top(teacher[passed], k)] if len(passed) else passed
            row[f"cascade {q:g} recall@{k}"] = recall(chosen, best)
            row[f"cascade {q:g} passed"] = len(passed) / len(own)
    return row


def speed(student, texts: list[str]) -> float:
    """Documents a second the student scores (features and product), on one thread, in windows of 4,096."""
    from gotd_stream.select.distill import STUDENT_WINDOW, student_matrix
    from gotd_stream.threads import one_thread

    with one_thread():
        started = time.perf_counter()
        for i in range(0, len(texts), STUDENT_WINDOW):
            student_matrix([student], texts[i : i + STUDENT_WINDOW])
        return len(texts) / (time.perf_counter() - started)


def run_target(name, texts, pool, target, embedder, sample_size: int) -> list[dict]:
    from gotd_stream.select.distill import StudentSettings, train
    from gotd_stream.select.sample import reservoir

    pool_texts = [texts[i] for i in pool]
    target_texts = [texts[i] for i in target]
    sample, _ = reservoir(iter(pool_texts), sample_size, SEED)
    t = time.time()
    settings = gs.FitSettings(target_size=len(target_texts), distill=False)  # the students are trained below
    fitted = gs.fit(gs.Texts(sample), gs.Texts(target_texts), embedder, settings)
    teacher = gs.score_texts(pool_texts, fitted.featurizer, fitted.potentials)
    sample_scores = gs.score_texts(sample, fitted.featurizer, fitted.potentials)
    target_scores = gs.score_texts(target_texts, fitted.featurizer, fitted.potentials)
    log(f"{name}: teacher fitted and scored {len(pool_texts):,} pool texts in {time.time() - t:.0f}s")
    ks = [max(1, round(len(pool_texts) * share)) for share in (0.01, 0.002)]
    rows = []
    for label, change in VARIANTS.items():
        settings = replace(StudentSettings(), **change)
        t = time.time()
        student = train(sample, sample_scores, settings, target_texts, target_scores)
        row = {"target": name, "student": label, "train_s": time.time() - t, "buckets used": len(student.rows)}
        row.update(measure(student, teacher, pool_texts, ks))
        if label == "default":
            row["docs/s"] = speed(student, pool_texts)
        rows.append(row)
        log(f"{name} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    return rows, ks


def run_sizes(name, texts, pool, target, embedder, sizes: list[int], reference: int) -> list[dict]:
    """Per sample size: the recall of the reference (default-sample) teacher's top 1% by the smaller fit's teacher
    and by its cascade at the default share, and the fit's seconds (select/fit.py on cached rows)."""
    from gotd_stream.select.distill import DEFAULT_CASCADE_SHARE, StudentSettings, train

    pool_texts = [texts[i] for i in pool]
    target_texts = [texts[i] for i in target]
    order = np.random.default_rng(SEED).permutation(len(pool_texts))
    k = max(1, round(len(pool_texts) * 0.01))
    settings = gs.FitSettings(target_size=len(target_texts), distill=False)
    scores, rows = {}, []
    for n in sorted(set(sizes) | {reference}, reverse=True):  # the reference first: the others are measured on it
        sample = [pool_texts[i] for i in np.sort(order[:n])]
        t = time.time()
        fitted = gs.fit(gs.Texts(sample), gs.Texts(target_texts), embedder, settings)
        teacher = gs.score_texts(pool_texts, fitted.featurizer, fitted.potentials)
        fit_s = time.time() - t
        t = time.time()
        sample_scores = gs.score_texts(sample, fitted.featurizer, fitted.potentials)
        target_scores = gs.score_texts(target_texts, fitted.featurizer, fitted.potentials)
        student = train(sample, sample_scores, StudentSettings(), target_texts, target_scores)
        train_s = time.time() - t
        scores[n] = teacher
        best = top(scores[reference], k)
        own = student(pool_texts)
        passed = np.flatnonzero(own <= student.threshold(DEFAULT_CASCADE_SHARE))
        chosen = passed[top(teacher[passed], k)] if len(passed) else passed
        row = {"target": name, "sample": n, "teacher recall": recall(top(teacher, k), best)}
        row.update({"cascade recall": recall(chosen, best), "passed": len(passed) / len(pool_texts)})
        row.update({"student recall": recall(top(own, k), best), "fit_s": fit_s, "train_s": train_s, "k": k})
        rows.append(row)
        log(f"{name} sample {n}: " + ", ".join(f"{key} {v:.3f}" for key, v in row.items() if isinstance(v, float)))
    return rows


def sizes_table(rows: list[dict], pool_size: int, reference: int, command: str) -> str:
    k = rows[0]["k"]
    out = [
        "# The fit's sample size: what a smaller (cheaper) MiniLM fit keeps of the default's selection",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, 2-core CPU). Pool: {pool_size:,} texts (a seeded subsample "
        f"of the parity corpus, less the targets' held-out groups). Reference: the teacher fitted on "
        f"{reference:,} texts (the default sample), its top {k:,} (1%). Each smaller sample holds the same "
        "seeded order's first n texts. Recall: the share of the reference's top 1% that a selector's top 1% holds "
        f"(the cascade: the teacher's top {k:,} among the records its student passes at Q = 0.05).",
        "",
        "| target | sample | teacher recall | cascade recall (the default scorer) | share passed | student alone | "
        "OT fit s (cached rows) | student train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["target"], r["sample"])):
        out.append(
            f"| {r['target']} | {r['sample']:,} | {r['teacher recall']:.3f} | {r['cascade recall']:.3f} | "
            f"{r['passed']:.3f} | {r['student recall']:.3f} | {r['fit_s']:.1f} | {r['train_s']:.1f} |"
        )
    out += ["", "| sample | mean teacher recall | mean cascade recall | min cascade recall |", "|---|---|---|---|"]
    for n in sorted({r["sample"] for r in rows}):
        chosen = [r for r in rows if r["sample"] == n]
        cascade = [r["cascade recall"] for r in chosen]
        teacher = np.mean([r["teacher recall"] for r in chosen])
        out.append(f"| {n:,} | {teacher:.3f} | {np.mean(cascade):.3f} | {min(cascade):.3f} |")
    return "\n".join(out) + "\n"


def table(rows: list[dict], ks: list[int], pool_size: int, command: str) -> str:
    k1, k2 = ks
    out = [
        "# The distilled scorer against its teacher (MiniLM-hybrid)",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, 2-core CPU shared with other jobs). Pool: {pool_size:,} texts "
        "(a seeded subsample of the parity corpus, less the targets' held-out groups); the teacher fitted on a "
        "10,000-text sample of it; recall@k = share of the teacher's top-k (k = 1% and 0.2% of the pool) that "
        "the student's top-k holds; cascade Q: the teacher's top-k among the records whose student score is "
        "within the sample's Q-quantile.",
        "",
        "## The default student, per target",
        "",
        f"| target | Spearman | recall@{k1} | recall@{k2} | cascade 0.02 @{k1} | cascade 0.05 @{k1} | "
        f"cascade 0.1 @{k1} | cascade 0.05 @{k2} | share passed at 0.05 | docs/s (1 core) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["student"] != "default":
            continue
        out.append(
            f"| {r['target']} | {r['spearman']:.3f} | {r[f'recall@{k1}']:.3f} | {r[f'recall@{k2}']:.3f} | "
            f"{r[f'cascade 0.02 recall@{k1}']:.3f} | {r[f'cascade 0.05 recall@{k1}']:.3f} | "
            f"{r[f'cascade 0.1 recall@{k1}']:.3f} | {r[f'cascade 0.05 recall@{k2}']:.3f} | "
            f"{r['cascade 0.05 passed']:.3f} | {r['docs/s']:,.0f} |"
        )
    out += [
        "",
        "## Student settings (mean over the targets)",
        "",
        f"| student | Spearman | recall@{k1} | recall@{k2} | cascade 0.05 @{k1} | cascade 0.1 @{k1} | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in VARIANTS:
        chosen = [r for r in rows if r["student"] == label]
        mean = {key: float(np.mean([r[key] for r in chosen])) for key in chosen[0] if key not in ("target", "student")}
        out.append(
            f"| {label} | {mean['spearman']:.3f} | {mean[f'recall@{k1}']:.3f} | {mean[f'recall@{k2}']:.3f} | "
            f"{mean[f'cascade 0.05 recall@{k1}']:.3f} | {mean[f'cascade 0.1 recall@{k1}']:.3f} | "
            f"{mean['train_s']:.1f} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/distill.md"))
    parser.add_argument("--embed-only", action="store_true", help="Only embed the pool (cached), then stop.")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of the parity targets")
    parser.add_argument("--sample-size", type=int, default=10_000)
    parser.add_argument("--sample-sizes", help="comma-separated: the sample-size study against --sample-size's fit")
    args = parser.parse_args()
    started = time.time()
    texts, labels, pool, targets, embedder = prepared(args.cache, args.pool)
    if args.embed_only:
        log(f"embedded in {time.time() - started:.0f}s")
        return
    command = "python bench/distill.py " + " ".join(sys.argv[1:])
    if args.sample_sizes:
        sizes = [int(n) for n in args.sample_sizes.split(",")]
        rows = []
        for name in args.targets.split(","):
            rows += run_sizes(name, texts, pool, targets[name], embedder, sizes, args.sample_size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(sizes_table(rows, len(pool), args.sample_size, command.strip()))
        log(f"wrote {args.out} in {time.time() - started:.0f}s")
        return
    rows, ks = [], None
    for name in args.targets.split(","):
        got, ks = run_target(name, texts, pool, targets[name], embedder, args.sample_size)
        rows += got
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(rows, ks, len(pool), command.strip()))
    log(f"wrote {args.out} in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()

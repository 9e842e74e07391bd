"""`make bench`: gotd-stream end to end against DSIR, side by side in one run, on the real pool (issue 13).

For each selector, on the same documents (the real pool of bench/defaults.py, 224 characters on average,
shuffled, with 1,000 held-out reviews as the target), as real processes:

- gotd-stream with the static model in the hybrid space (`--model static`; again with a 300-text target, as the
  c-transform's cost grows with the target), with MiniLM in the hybrid space (the defaults: `fit` trains a
  distilled student too, and `score` runs the cascade; then the student alone, and the teacher alone), and in the
  lexical space: `fit` (a 10k reservoir sample read from the corpus file), the
  start-up of `score` (on 100 documents), and `zstd -dc corpus | gotd-stream score -p A -k K` end to end;
- DSIR from its PyPI package (`HashedNgramDSIR`, num_proc = the cores, min_example_length 0): fitting the
  importance estimator, computing the weights and resampling the top k, on the decompressed file.

Each row gives wall time, documents/s, CPU seconds (every process), peak RSS and the artifact's size; the
distillation of the static model (once per machine) and peak RSS at a tenth of the documents (flat memory, each
scorer of the whole corpus) have rows of their own. MiniLM alone (`--scorer teacher`) scores a subset (its forward
pass runs at ~55-78 documents/s on 2 cores); the row says how many. The cascade runs once (not the median of
--repeats): it embeds minutes' worth. A shared machine makes wall times noisy: the CPU seconds are the steadier
figure.

    python bench/endtoend.py [--docs N] [--minilm-docs 2000] [--target-size 1000] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.throughput import PYTHON_UNZSTD, commit, device_name, run_pipeline  # noqa: E402

K = 1000
DSIR_SCRIPT = """
import sys, time
from data_selection import HashedNgramDSIR
raw, target, work, k, procs = sys.argv[1:6]
t = time.perf_counter()
dsir = HashedNgramDSIR([raw], [target], cache_dir=work + "/weights", num_proc=int(procs), min_example_length=0)
dsir.fit_importance_estimator(num_tokens_to_fit="all")
fitted = time.perf_counter()
dsir.compute_importance_weights()
dsir.resample(out_dir=work + "/selected", num_to_sample=int(k), cache_dir=work + "/tmp", top_k=True)
print(f"{fitted - t} {time.perf_counter() - fitted}", file=sys.stderr)
"""


def write_table(lines: list[str], out: Path) -> None:
    """A results table: printed, and written to `out` (bench/million.py writes its own the same way)."""
    table = "\n".join(lines) + "\n"
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    log(f"wrote {out}")


def log(message: str) -> None:
    print(f"[endtoend] {message}", file=sys.stderr, flush=True)


def write(path: Path, texts: list[str], zst: bool) -> Path:
    import orjson
    import zstandard

    data = b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(texts))
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data) if zst else data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=ROOT / ".cache", type=Path)
    parser.add_argument("--docs", type=int, help="documents scored [the whole pool less the target: ~87,700]")
    parser.add_argument("--minilm-docs", type=int, default=2_000, help="documents MiniLM scores [2,000]")
    parser.add_argument("--target-size", type=int, default=1_000, help="held-out reviews as the target [1,000]")
    parser.add_argument("--skip-minilm", action="store_true", help="leave MiniLM out (it takes minutes)")
    parser.add_argument("--small-target", type=int, default=300, help="static-hybrid again with this target [300]")
    parser.add_argument("--repeats", type=int, default=5, help="end-to-end runs on the whole pool, median reported [5]")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "endtoend-cpu.md")
    args = parser.parse_args()

    from bench.defaults import load_pool

    texts, labels = load_pool(args.cache)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    target_rows = [i for i in order if labels[i] == "reviews"][: args.target_size]
    held = set(target_rows)
    pool = [texts[i] for i in order if i not in held][: args.docs]
    work = args.cache / "endtoend"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    corpus = write(work / "corpus.jsonl.zst", pool, zst=True)
    plain = write(work / "corpus.jsonl", pool, zst=False)
    small = write(work / "corpus-100.jsonl.zst", pool[:100], zst=True)
    tenth = write(work / "corpus-tenth.jsonl.zst", pool[: len(pool) // 10], zst=True)
    minilm = write(work / f"corpus-{args.minilm_docs}.jsonl.zst", pool[: args.minilm_docs], zst=True)
    target = write(work / "target.jsonl", [texts[i] for i in target_rows], zst=False)
    chars = sum(map(len, pool)) / len(pool)
    log(f"{len(pool):,} documents of {chars:.0f} characters on average; target {len(target_rows):,} reviews")

    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    tool = f"{sys.executable} -m gotd_stream"
    unzstd = "zstd -dc" if shutil.which("zstd") else f'{sys.executable} -c "{PYTHON_UNZSTD}"'
    unzip_name = "zstd -dc" if shutil.which("zstd") else "python zstandard"  # a table cell: "|" is escaped
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows: list[dict] = []

    def add(selector: str, what: str, docs: int | None, result: dict | None, note: str = "", size: int = 0):
        rows.append({"selector": selector, "what": what, "docs": docs, "run": result, "note": note, "size": size})
        seconds = f"{result['seconds']:.1f}s" if result else ""
        log(f"{selector}: {what} {seconds} {note}")

    # the static model, distilled into a fresh cache: the once-per-machine cost
    cache = work / "model-cache"
    os.environ["GOTD_STREAM_CACHE"] = str(cache)
    distil = f"{sys.executable} -c \"import gotd_stream as gs; gs.ModelSettings(model='static').load()\""
    add("gotd static-hybrid", "distil all-MiniLM-L6-v2 (once per machine)", None, run_pipeline(distil, work / "d.log"))

    # (name, space, fit flags, score flags, corpus scored, its documents, target); one fit per (space, fit flags,
    # target): MiniLM's three scorers share one default fit
    selectors = [("gotd static-hybrid", "hybrid", "--model static", "--model static", corpus, len(pool), target)]
    if args.small_target:  # the c-transform's cost grows with the target: the same with a smaller one
        few = write(work / "target-small.jsonl", [texts[i] for i in target_rows[: args.small_target]], zst=False)
        selectors.append((f"gotd static-hybrid, {args.small_target}-text target", "hybrid", "--model static",
                          "--model static", corpus, len(pool), few))  # fmt: skip
    if not args.skip_minilm:  # one default fit (MiniLM-hybrid, with its student), three scorers
        minilm_name = "gotd MiniLM-hybrid"
        selectors.append((f"{minilm_name} (default: the cascade)", "hybrid", "", "", corpus, len(pool), target))
        selectors.append((f"{minilm_name}, --scorer student", "hybrid", "", "--scorer student", corpus, len(pool),
                          target))  # fmt: skip
        selectors.append((f"{minilm_name}, --scorer teacher", "hybrid", "", "--scorer teacher", minilm,
                          args.minilm_docs, target))  # fmt: skip
    selectors.append(("gotd lexical", "lexical", "", "", corpus, len(pool), target))
    fitted: dict[tuple, Path] = {}
    for name, space, fit_flags, model, scored, n, aim in selectors:
        artifact = fitted.get((space, fit_flags, aim))
        if artifact is None:
            artifact = fitted[(space, fit_flags, aim)] = work / f"{len(fitted)}.gotd"
            fit = f"{tool} fit --target {aim} {corpus} --features {space} {fit_flags} -q -o {artifact}"
            what = f"fit {fit_flags or '(defaults)'}: 10k reservoir sample of the corpus file"
            add(name, what, len(pool), run_pipeline(fit, work / "fit.log"), size=artifact.stat().st_size)

        def score(path: Path, artifact=artifact, model=model) -> dict:
            command = f"{unzstd} {path} | {tool} score -p {artifact} -k {K} {model} -q -o {work / 'selected.jsonl'}"
            return run_pipeline(command, work / "score.log")

        add(name, "score: start-up (100 documents)", 100, score(small))
        repeats = 1 if "cascade" in name else args.repeats  # the cascade runs the teacher: minutes a run
        if n == len(pool) and repeats > 1:  # a shared machine's speed varies from run to run: the median
            runs = sorted((score(scored) for _ in range(repeats)), key=lambda r: r["seconds"])
            walls = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            note = f"median of {len(runs)} runs; walls {walls} s; best {n / runs[0]['seconds']:,.0f} documents/s"
            add(name, f"score: `{unzip_name} \\| gotd-stream score -k {K}` end to end", n, runs[len(runs) // 2], note)
        else:
            add(name, f"score: `{unzip_name} \\| gotd-stream score -k {K}` end to end", n, score(scored))
        if n == len(pool) and not name.endswith("target"):  # every scorer of the whole corpus
            note = "the teacher sees the share of the fit's corpus: fewer than k here" if "cascade" in name else ""
            add(name, "score: a tenth of the documents (flat memory)", len(pool) // 10, score(tenth), note)

    dsir = f"{sys.executable} -c '{DSIR_SCRIPT}' {plain} {target} {work / 'dsir'} {K} {cores}"
    started = time.perf_counter()
    result = run_pipeline(dsir, work / "dsir.log")
    fitted, resampled = map(float, (work / "dsir.log").read_text().split()[-2:])
    add("DSIR (data-selection 1.0.3)", "fit importance estimator + weights + top-k resample", len(pool), result,
        f"fit {fitted:.1f}s, weights and resample {resampled:.1f}s; num_proc {cores}")  # fmt: skip
    log(f"DSIR in {time.perf_counter() - started:.1f}s")

    import torch

    lines = [
        "# End to end, side by side: `make bench` (bench/endtoend.py)",
        "",
        f"- device: {device_name('cpu')}; torch threads {torch.get_num_threads()}",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; commit {commit()}; "
        f"Python {platform.python_version()}",
        f"- corpus: {len(pool):,} real documents of {chars:.0f} characters on average (bench/defaults.py's pool, "
        f"shuffled); target: {len(target_rows):,} held-out reviews; k = {K:,}; defaults otherwise "
        f"(ε 0.05, 10k sample, hybrid weight 0.5)",
        "- wall: elapsed time of the whole pipeline (decompression included); CPU: user + system seconds of "
        "every process; RSS: the largest process's peak",
        "",
        "| selector | what | documents | wall | documents/s | CPU s | peak RSS | artifact | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r, docs = row["run"], row["docs"]
        rate = (
            f"{docs / r['seconds']:,.0f}"
            if docs and ("end to end" in row["what"] or "DSIR" in row["selector"])
            else "-"
        )
        size = f"{row['size'] / 2**20:.1f} MiB" if row["size"] else "-"
        lines.append(
            f"| {row['selector']} | {row['what']} | {f'{docs:,}' if docs else '-'} | {r['seconds']:.1f} s | {rate} | "
            f"{r['cpu_s']:.1f} | {r['rss_mib']:,.0f} MiB | {size} | {row['note']} |"
        )
    dsir_rate = len(pool) / result["seconds"]
    lines += [
        "",
        f"End-to-end documents/s against DSIR's {dsir_rate:,.0f} (fit + weights + top-k) on the same documents:",
        "",
    ]
    for row in rows:
        if "end to end" in row["what"] and row["docs"] == len(pool):
            rate = row["docs"] / row["run"]["seconds"]
            lines.append(f"- {row['selector']}: {rate:,.0f} documents/s, {rate / dsir_rate:.1f}× DSIR")
    write_table(lines, args.out)


if __name__ == "__main__":
    main()

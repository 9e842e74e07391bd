"""`make bench`: documents per second of every scoring stage alone, of plain encode, and of our pipeline end to end.

One run measures, on the same ~1,000-character real documents (texts of the real pool, bench/pool.py, joined
and cut deterministically) written as .jsonl.zst:

- each stage alone: the reader (decompression and JSON parsing of the text field), the model's HF tokenizer in
  one process, our tokenizer in one process and with N worker processes, the forward pass on pre-tokenised
  full-length batches (the ceiling), the c-transform, the top-k heap;
- plain `SentenceTransformer.encode` (max_seq_length 128, batch 256, fp16 on a GPU) and our engine in-process,
  and the cosine between their embeddings of the same texts;
- end to end, a real shell pipeline `zstd -dc corpus | python -m gotd_stream score -p P -k K` in the semantic
  and the hybrid space; a run on a few documents gives the start-up time, subtracted in the "marginal" rows;
- the peak RSS of the same pipeline at M and 10 M documents;
- end to end as well, the hybrid fit's distilled scorers (`fit --distill`): `score --scorer student` (no model)
  and `--scorer cascade` (the model embeds only the records the student lets through);
- the lexical half of the hybrid space alone (hash, TF-IDF, projection; one process), to check that hybrid
  end to end costs no more per document than that over semantic end to end (issue 6).

`--standin DIR` builds a 2-layer, 32-wide random BERT with the default model's tokenizer in DIR and measures
with it: its forward pass is so cheap that the tokenizer, the reader and the lexical part bound the pipeline,
as they do on a GPU host. Its embeddings mean nothing; only the speeds of the other stages do.

It prints a markdown table and writes it to bench/results/throughput-<cpu|gpu>.md.

    python bench/throughput.py                       # CPU-sized defaults (a few minutes on 2 cores)
    python bench/throughput.py --gpu-size --model DIR  # 200k documents, GPU-sized stages
    python bench/throughput.py --write-seed .cache/bench-seed.jsonl.zst   # a few MB of pool texts, to carry
    python bench/throughput.py --seed-corpus .cache/bench-seed.jsonl.zst   # build the corpus from it (no pip)
    python bench/throughput.py --standin .cache/standin --docs 50000 --out bench/results/throughput-cpu-standin.md
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from gotd_stream.features import DEFAULT_MAX_TOKENS  # noqa: E402  (light: no numpy, no torch)

DOC_CHARS = (800, 1200)  # each document's length is drawn uniformly from this range: ~1,000 on average
MAX_TOKENS = DEFAULT_MAX_TOKENS  # the tool's default, what the pipeline runs below use
PYTHON_UNZSTD = (
    "import sys, zstandard; zstandard.ZstdDecompressor().copy_stream(open(sys.argv[1], 'rb'), sys.stdout.buffer)"
)
# A fresh process runs the pipeline so that RUSAGE_CHILDREN holds that pipeline's processes alone.
RSS_HELPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "code = subprocess.run(['bash', '-o', 'pipefail', '-c', sys.argv[1]]).returncode\n"
    "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(code, time.perf_counter() - t, use.ru_maxrss, use.ru_utime + use.ru_stime)\n"
)


def log(message: str) -> None:
    print(f"[throughput] {message}", file=sys.stderr, flush=True)


# --- the corpus --------------------------------------------------------------------------------------------


def pool_texts(cache: Path) -> list[str]:
    from bench.defaults import load_pool

    texts, _ = load_pool(cache)
    return texts


def read_seed(path: Path) -> list[str]:
    import orjson
    import zstandard

    with open(path, "rb") as fh:
        data = zstandard.ZstdDecompressor().stream_reader(fh).read()
    return [orjson.loads(line)["text"] for line in data.splitlines() if line.strip()]


def write_seed(texts: list[str], path: Path, megabytes: float) -> None:
    """A deterministic sample of pool texts, about `megabytes` of text, zstd level 19: small enough to carry."""
    import orjson
    import zstandard

    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    picked, size = [], 0
    for i in order:
        if size >= megabytes * 1e6:
            break
        picked.append(texts[i])
        size += len(texts[i])
    data = b"".join(orjson.dumps({"text": t}) + b"\n" for t in picked)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    log(f"wrote {len(picked):,} texts ({size / 1e6:.1f} MB of text) to {path} ({path.stat().st_size / 1e6:.1f} MB)")


def make_docs(texts: list[str], n: int, seed: int) -> list[str]:
    """n documents of ~1,000 characters: random source texts joined by spaces, cut at a space. Deterministic."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        want = rng.randint(*DOC_CHARS)
        parts, size = [], 0
        while size < want:
            text = texts[rng.randrange(len(texts))]
            parts.append(text)
            size += len(text) + 1
        doc = " ".join(parts)
        cut = doc.rfind(" ", 0, want + 1)
        docs.append(doc[: cut if cut > want // 2 else want])
    return docs


def write_corpus(docs: list[str], path: Path) -> None:
    import orjson
    import zstandard

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh, zstandard.ZstdCompressor(level=3).stream_writer(fh) as sink:
        for i, doc in enumerate(docs):
            sink.write(orjson.dumps({"id": i, "text": doc}) + b"\n")
    tmp.replace(path)


def corpus_file(texts: list[str], n: int, seed: int, folder: Path, tag: str) -> Path:
    path = folder / f"corpus-{tag}-{n}-{seed}.jsonl.zst"
    if not path.exists():
        started = time.perf_counter()
        write_corpus(make_docs(texts, n, seed), path)
        log(f"wrote {path} ({n:,} documents) in {time.perf_counter() - started:.1f}s")
    return path


# --- measuring ---------------------------------------------------------------------------------------------


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn, device: str = "cpu") -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), {os.cpu_count()} CPU cores"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU only: {model}, {os.cpu_count()} cores"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown (no git here)"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants now (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_pipeline(command: str, log_path: Path) -> dict:
    """Wall time, the largest process's peak RSS, the whole tree's peak RSS and CPU seconds of a shell pipeline."""
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", RSS_HELPER, f"{command} 2>>{log_path}"], stdout=subprocess.PIPE, stderr=err
        )
        peak = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_rss(proc.pid))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        out, _ = proc.communicate()
        done.set()
        poller.join()
    fields = out.decode().split()
    if proc.returncode or not fields or fields[0] != "0":
        raise SystemExit(f"pipeline failed: {command}\n{log_path.read_text()[-3000:]}")
    return {
        "seconds": float(fields[1]),
        "rss_mib": int(fields[2]) / 1024,
        "tree_mib": peak[0] / 2**20,
        "cpu_s": float(fields[3]),  # every process of the pipeline, workers included
    }


# --- the stages ----------------------------------------------------------------------------------------------


def stage_reader(path: Path) -> float:
    from gotd_stream.io.records import Skips, read_records

    started = time.perf_counter()
    n = sum(1 for _ in read_records([str(path)], "text", Skips()))
    return n / (time.perf_counter() - started)


def stage_hf_tokenizer(embedder, texts: list[str]) -> float:
    """The model's own HF tokenizer as encode() calls it: batches of 256, truncation, padding, tensors."""
    tokenizer = embedder.model.tokenizer

    def run() -> None:
        for i in range(0, len(texts), 256):
            tokenizer(texts[i : i + 256], truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="pt")

    return len(texts) / timed(run)


def stage_our_tokenizer(embedder, texts: list[str], workers: int) -> float:
    """Our tokenizer: inline, or in `workers` processes (started and warmed before the clock starts)."""
    from gotd_stream.features.engine.workers import CHUNK_DOCS, Tokenize, tokenize_job

    if workers == 0:
        tokenize = Tokenize(embedder.engine.spec)
        return len(texts) / timed(lambda: tokenize(texts))
    engine = embedder.engine
    default, engine.workers = engine.workers, workers
    try:
        pool = engine._executor(None)
        list(pool.map(tokenize_job, [["warm up"]] * workers * 2))
        chunks = [texts[i : i + CHUNK_DOCS] for i in range(0, len(texts), CHUNK_DOCS)]
        return len(texts) / timed(lambda: list(pool.map(tokenize_job, chunks)))
    finally:
        engine.close()
        engine.workers = default


def stage_forward(embedder, texts: list[str], rows: int, repeats: int) -> float:
    """The model alone on full-length pre-tokenised batches already on the device: the ceiling for docs/s."""
    import torch

    from gotd_stream.features.engine.workers import Tokenize

    chunk = Tokenize(embedder.engine.spec)(texts[:rows])
    ids = torch.full((rows, MAX_TOKENS), embedder.engine.pad_id, dtype=torch.long)
    start = 0
    for r, length in enumerate(chunk.lengths.tolist()):
        ids[r, :length] = torch.from_numpy(chunk.ids[start : start + length])
        start += length
    ids = ids.to(embedder.device)
    features = dict(embedder.engine.extra, input_ids=ids, attention_mask=(ids != embedder.engine.pad_id).long())
    if embedder.engine.wants_types:
        features["token_type_ids"] = torch.zeros_like(ids)
    model = embedder.model

    def run() -> None:
        with torch.inference_mode():
            for _ in range(repeats):
                model(dict(features))["sentence_embedding"]

    with torch.inference_mode():
        model(dict(features))  # warm-up (kernels, allocator)
    return rows * repeats / timed(run, embedder.device)


def stage_lexical(potentials: Path, embedder, texts: list[str]) -> float:
    """The lexical half of a hybrid artifact alone, in one process, in the calls the tokenizer stage makes."""
    import gotd_stream as gs
    from gotd_stream.features import restore
    from gotd_stream.features.engine.workers import CHUNK_DOCS

    fitted = gs.load(str(potentials))
    lexical = restore(fitted.features, fitted.arrays, embedder).lexical  # the model is not run
    lexical.encode(texts[:256])  # warm-up (imports)

    def run() -> None:
        for i in range(0, len(texts), CHUNK_DOCS):
            lexical.encode(texts[i : i + CHUNK_DOCS])

    return len(texts) / min(timed(run) for _ in range(3))  # the fastest of three, as end to end


def stage_ctransform(device: str, n: int, m: int, dim: int, window: int) -> float:
    import numpy as np

    import gotd_stream as gs
    from gotd_stream.select.ot import CTransform

    rng = np.random.default_rng(0)
    y = rng.standard_normal((m, dim)).astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = rng.standard_normal((min(n, window), dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scorer = CTransform(y, rng.standard_normal(m) * 0.01, gs.FitSettings().epsilon, device)
    scorer(x[:16])
    windows = max(1, n // len(x))
    return windows * len(x) / timed(lambda: [scorer(x) for _ in range(windows)], device)


def stage_heap(n: int, k: int, window: int) -> float:
    import numpy as np

    from gotd_stream.select.topk import TopK

    scores = np.random.default_rng(0).standard_normal(n)
    items = [b"x"] * window
    top = TopK(k)

    def run() -> None:
        for i in range(0, n, window):
            part = scores[i : i + window]
            top.offer(part, items[: len(part)])

    return n / timed(run)


def stage_plain(embedder, texts: list[str]):
    import numpy as np

    model = embedder.model
    model.encode(texts[:256], batch_size=256, show_progress_bar=False)  # warm-up
    out = {}

    def run() -> None:
        out["emb"] = model.encode(texts, batch_size=256, convert_to_numpy=True, show_progress_bar=False)

    seconds = timed(run, embedder.device)
    emb = out["emb"].astype(np.float32)
    return len(texts) / seconds, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def stage_engine(embedder, texts: list[str]):
    embedder.encode(texts[:256])  # warm-up; starts the workers
    out = {}
    seconds = timed(lambda: out.setdefault("emb", embedder.encode(texts)), embedder.device)
    return len(texts) / seconds, out["emb"]


# --- main -----------------------------------------------------------------------------------------------------


def hybrid_verdict(semantic: float, hybrid: float, lexical: float) -> str:
    """Issue 6's bound: hybrid end to end may cost per document at most what the lexical half costs alone."""
    extra, bound = 1e6 / hybrid - 1e6 / semantic, 1e6 / lexical
    return (
        f"- hybrid against semantic, end to end (marginal): {extra:+,.1f} us per document; the lexical half alone "
        f"costs {bound:,.1f} us per document in one process; the extra is {extra / bound:.2f} of it: "
        + ("within the bound (at most the hashing cost)" if extra <= bound else "ABOVE the bound (the hashing cost)")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="sentence-transformers folder [default: the packaged all-MiniLM-L6-v2]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", default=ROOT / ".cache", type=Path)
    parser.add_argument("--seed-corpus", type=Path, help="build the corpus from this seed file, not the pool")
    parser.add_argument("--write-seed", type=Path, help="write a seed file of pool texts and stop")
    parser.add_argument("--seed-mb", type=float, default=6.0, help="megabytes of text in the seed file")
    parser.add_argument("--gpu-size", action="store_true", help="200k documents and GPU-sized stages")
    parser.add_argument("--docs", type=int, help="documents end to end [1,000; 200,000 with --gpu-size]")
    parser.add_argument("--rss-docs", type=int, help="peak RSS at this many documents and 10x [300; 40,000]")
    parser.add_argument("--plain-docs", type=int, help="documents for plain encode and the cosine [300; 20,000]")
    parser.add_argument("--stage-docs", type=int, help="documents for the tokenizer stages [5,000; 50,000]")
    parser.add_argument(
        "--workers", type=int, help="tokenizer processes, in the stage alone and end to end [the engine's default]"
    )
    parser.add_argument("--standin", type=Path, help="build a tiny random model here and measure with it (above)")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs per space, fastest kept [3]")
    parser.add_argument("-k", type=int, help="documents kept [half the corpus]")
    parser.add_argument("--out", type=Path, help="where to write the table [bench/results/throughput-<cpu|gpu>.md]")
    args = parser.parse_args()

    if args.write_seed:
        write_seed(pool_texts(args.cache), args.write_seed, args.seed_mb)
        return

    from gotd_stream.features.engine.workers import auto_workers
    from gotd_stream.features.semantic import Embedder, pick_device

    device = pick_device(args.device)
    if args.standin:
        if not (args.standin / "modules.json").exists():
            from tests.conftest import build_tiny_model

            build_tiny_model(args.standin)
        args.model = str(args.standin)
    gpu = device.startswith("cuda")
    big = args.gpu_size
    n_docs = args.docs or (200_000 if big else 1_000)
    rss_docs = args.rss_docs or (40_000 if big else 300)
    plain_docs = args.plain_docs or (20_000 if big else 300)
    stage_docs = args.stage_docs or (50_000 if big else 5_000)
    k = args.k or max(1, n_docs // 2)
    workers = args.workers if args.workers is not None else max(auto_workers(device), 0 if gpu else 2)
    kind = "gpu" if gpu else "cpu"
    out_path = args.out or ROOT / "bench" / "results" / f"throughput-{kind}.md"
    work = args.cache / "throughput"
    work.mkdir(parents=True, exist_ok=True)

    if args.seed_corpus:
        source, tag = (
            read_seed(args.seed_corpus),
            "seed-" + hashlib.sha256(args.seed_corpus.read_bytes()).hexdigest()[:8],
        )
    else:
        source, tag = pool_texts(args.cache), "pool"
    log(f"{len(source):,} source texts ({tag})")
    corpus = corpus_file(source, n_docs, 1, work, tag)
    docs = make_docs(source, max(plain_docs, stage_docs), 1)  # the corpus's first documents

    embedder = Embedder(args.model, device=device, max_tokens=MAX_TOKENS)
    if embedder.engine is None:
        raise SystemExit("this model does not take the fast path (not plain text through a fast tokenizer)")
    spec = embedder.engine.spec
    from gotd_stream.features.engine.workers import Tokenize

    lengths = Tokenize(spec)(docs[:2000]).lengths
    tokens_per_doc = float(lengths.mean())
    chars_per_doc = sum(map(len, docs[:2000])) / min(2000, len(docs))
    log(f"{chars_per_doc:.0f} characters and {tokens_per_doc:.1f} tokens per document (after truncation)")

    rows: list[dict] = []

    def add(stage: str, docs_per_s: float | None, note: str = "", rss: dict | None = None, per_doc=tokens_per_doc):
        tps = docs_per_s * per_doc if docs_per_s and per_doc else None
        rows.append({"stage": stage, "dps": docs_per_s, "tps": tps, "note": note, "rss": rss})
        log(f"{stage}: {docs_per_s:,.0f} docs/s {note}" if docs_per_s else f"{stage}: {note}")

    # stages alone
    add("reader: decompress + parse JSON (one thread)", stage_reader(corpus), f"{n_docs:,} docs", per_doc=None)
    tok_docs = docs[:stage_docs]
    add("HF tokenizer, one process (batches of 256, padded)", stage_hf_tokenizer(embedder, tok_docs))
    add("our tokenizer, one process", stage_our_tokenizer(embedder, tok_docs, 0))
    if workers:
        add(f"our tokenizer, {workers} worker processes", stage_our_tokenizer(embedder, tok_docs, workers))
    fwd_rows = 2048 if gpu else 64
    ceiling = stage_forward(embedder, docs, fwd_rows, 50 if gpu else 3)
    add(
        f"forward only, pre-tokenised {fwd_rows}x{MAX_TOKENS} batches on the device (ceiling)",
        ceiling,
        "fp16" if gpu else "fp32",
        per_doc=MAX_TOKENS,
    )
    n_ct, m_ct = (1_000_000, 10_000) if gpu else (50_000, 1_000)
    add(
        f"c-transform, {n_ct:,} docs x {m_ct:,} targets, d={embedder.dim}",
        stage_ctransform(device, n_ct, m_ct, embedder.dim, embedder.window),
        per_doc=None,
    )
    n_heap = 1_000_000 if gpu else 200_000
    add(f"top-k heap, {n_heap:,} scores, k={k:,}", stage_heap(n_heap, k, embedder.window), per_doc=None)

    # plain encode against our engine, on the same texts
    sample = docs[:plain_docs]
    plain_rate, plain_emb = stage_plain(embedder, sample)
    add(f"plain SentenceTransformer.encode, batch 256 ({plain_docs:,} docs)", plain_rate)
    engine_rate, engine_emb = stage_engine(embedder, sample)
    cosine = (plain_emb * engine_emb).sum(1)
    add(
        f"our engine in-process, no reader ({plain_docs:,} docs)",
        engine_rate,
        f"cosine to plain encode: min {cosine.min():.6f}, mean {cosine.mean():.6f}",
    )
    embedder.close()

    # end to end, as a shell pipeline
    target = work / f"target-{tag}.jsonl"
    if not target.exists():
        import orjson

        target.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in make_docs(source, 300, 7)))
    fit_sample = corpus_file(source, 3000 if big else 300, 3, work, tag)
    decompress = "zstd -dc" if shutil.which("zstd") else f'{sys.executable} -c "{PYTHON_UNZSTD}"'
    tool = f"{sys.executable} -m gotd_stream"
    model_arg = f"--model {args.model}" if args.model else ""
    if args.workers is not None:
        model_arg += f" --workers {args.workers}"
    env_note = f"decompressor: {decompress.split()[0] if 'zstd -dc' in decompress else 'python zstandard'}"
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    spaces = ("semantic", "hybrid")
    # the plain spaces with --no-distill: a default fit of 1,000 or more texts trains a student, and `score` would
    # then run the cascade, not the teacher these rows measure
    for space, features, flags in (("semantic", "semantic", "--no-distill"), ("hybrid", "hybrid", "--no-distill"),
                                   ("hybrid-distill", "hybrid", "--distill")):  # fmt: skip
        fit = (
            f"{tool} fit --target {target} {fit_sample} --features {features} {flags} "
            f"--sample-size {3000 if big else 300} --target-size 300 {model_arg} --device {device} -q "
            f"-o {work / f'{space}-{tag}.gotd'}"
        )
        log(f"fit ({space}): {fit}")
        run_pipeline(fit, work / f"fit-{space}.log")
    # the distilled scorers of a hybrid fit (`fit --distill`): the student alone, and the cascade, whose teacher
    # embeds only the records the student lets through (about --cascade-share of them)
    scorers = {"student": "--scorer student", "cascade": "--scorer cascade"}

    def score(space: str, path: Path, keep: int) -> dict:
        pot = work / f"{'hybrid-distill' if space in scorers else space}-{tag}.gotd"
        extra = scorers.get(space, "")
        command = f"{decompress} {path} | {tool} score -p {pot} -k {keep} {extra} {model_arg} --device {device} -q"
        return run_pipeline(f"{command} -o {work / 'selected.jsonl'}", work / f"score-{space}.log")

    # the two spaces alternate, each run `repeats` times; the fastest run of each counts (the least disturbed)
    small = max(100, n_docs // 100)
    small_corpus = corpus_file(source, small, 1, work, tag)
    piped = (*spaces, *scorers)
    runs: dict[str, dict[str, list[dict]]] = {space: {"start": [], "full": []} for space in piped}
    for _ in range(args.repeats):
        for space in piped:
            runs[space]["start"].append(score(space, small_corpus, min(k, small)))
            runs[space]["full"].append(score(space, corpus, k))
    marginals = {}
    for space in piped:
        name = f"hybrid --distill, --scorer {space}" if space in scorers else space
        start = min(runs[space]["start"], key=lambda r: r["seconds"])
        full = min(runs[space]["full"], key=lambda r: r["seconds"])
        spread = max(r["seconds"] for r in runs[space]["full"]) / full["seconds"] - 1
        marginals[space] = (n_docs - small) / max(1e-9, full["seconds"] - start["seconds"])
        add(
            f"end to end, {name}: wall clock incl. start-up ({n_docs:,} docs)",
            n_docs / full["seconds"],
            f"fastest of {args.repeats} (slowest +{spread:.0%}); start-up ~{start['seconds']:.1f}s; {env_note}",
            full,
        )
        add(f"end to end, {name}: marginal (start-up subtracted)", marginals[space], f"{n_docs - small:,} docs")
    e2e_semantic, e2e_hybrid = marginals["semantic"], marginals["hybrid"]
    # CPU seconds per document of the whole pipeline (median run): hybrid's extra work, wherever it runs
    cpu_per_doc = {space: statistics.median(r["cpu_s"] for r in runs[space]["full"]) / n_docs for space in spaces}
    lexical_rate = stage_lexical(work / f"hybrid-{tag}.gotd", embedder, tok_docs)
    add("lexical half of hybrid alone: hash + TF-IDF + projection (one process)", lexical_rate)

    # peak RSS at M and 10 M documents, the same k (what is kept is bounded by k, by design)
    rss = {}
    rss_k = max(1, min(k, rss_docs // 2))
    for n in (rss_docs, 10 * rss_docs):
        pot = work / f"semantic-{tag}.gotd"
        path = corpus_file(source, n, 1, work, tag)
        command = f"{decompress} {path} | {tool} score -p {pot} -k {rss_k} {model_arg} --device {device} -q"
        rss[n] = run_pipeline(f"{command} -o {work / 'selected.jsonl'}", work / "score-rss.log")
        log(f"{n:,} docs: peak RSS {rss[n]['rss_mib']:.0f} MiB (tree {rss[n]['tree_mib']:.0f} MiB)")
    small_rss, large_rss = rss[rss_docs], rss[10 * rss_docs]

    # the table
    import torch

    def fmt(value: float | None) -> str:
        return f"{value:,.0f}" if value else "-"

    def short(ratio: float) -> str:
        return f"{ratio:.2f}" if ratio < 100 else f"{ratio:,.0f}"

    lines = [
        f"# Throughput: {'GPU' if gpu else 'CPU'}",
        "",
        f"- device: {device_name(device)}; torch threads {torch.get_num_threads()}",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; commit {commit()}; "
        f"Python {platform.python_version()}",
        f"- model: {embedder.name}, {MAX_TOKENS} tokens, {'fp16' if gpu else 'fp32'}; engine: "
        f"{embedder.engine.batch_tokens:,} tokens per batch, window {embedder.window:,} docs, "
        f"{args.workers if args.workers is not None else embedder.engine.workers} tokenizer workers in the pipeline",
        f"- corpus: {n_docs:,} documents of {chars_per_doc:.0f} characters on average ({tokens_per_doc:.1f} tokens "
        f"after truncation), recombined from {len(source):,} real texts ({tag}); k = {k:,}",
        "",
        "| stage | documents/s | tokens/s | vs plain encode | of forward ceiling | peak RSS (largest process / tree) "
        "| note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        dps = row["dps"]
        ratio = f"{short(dps / plain_rate)}x" if dps else "-"
        frac = short(dps / ceiling) if dps else "-"
        memory = f"{row['rss']['rss_mib']:,.0f} / {row['rss']['tree_mib']:,.0f} MiB" if row["rss"] else "-"
        lines.append(
            f"| {row['stage']} | {fmt(dps)} | {fmt(row['tps'])} | {ratio} | {frac} | {memory} | {row['note']} |"
        )
    lines += [
        "",
        f"- end to end (semantic, marginal) against plain encode: {e2e_semantic / plain_rate:.2f}x; "
        f"fraction of the forward ceiling: {e2e_semantic / ceiling:.2f}",
        f"- peak RSS at {rss_docs:,} and {10 * rss_docs:,} documents (semantic, k = {rss_k:,}): "
        f"{small_rss['rss_mib']:,.0f} -> "
        f"{large_rss['rss_mib']:,.0f} MiB largest process ({large_rss['rss_mib'] / small_rss['rss_mib']:.2f}x), "
        f"{small_rss['tree_mib']:,.0f} -> {large_rss['tree_mib']:,.0f} MiB whole tree, sampled every 0.2 s "
        f"({large_rss['tree_mib'] / max(1e-9, small_rss['tree_mib']):.2f}x)",
        f"- the distilled scorers of the hybrid fit, end to end (marginal) against the hybrid teacher: student "
        f"{marginals['student'] / e2e_hybrid:,.1f}x, cascade {marginals['cascade'] / e2e_hybrid:,.1f}x",
        f"- embeddings: cosine of our engine to plain encode on {plain_docs:,} documents: min {cosine.min():.6f}",
        hybrid_verdict(e2e_semantic, e2e_hybrid, lexical_rate),
        f"- CPU time of the whole pipeline (all processes, median of {args.repeats}): semantic "
        f"{cpu_per_doc['semantic'] * 1e6:,.0f} us, hybrid {cpu_per_doc['hybrid'] * 1e6:,.0f} us per document; "
        f"hybrid's extra work is {(cpu_per_doc['hybrid'] - cpu_per_doc['semantic']) * lexical_rate:.2f} of the "
        "lexical half alone",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(table)
    log(f"wrote {out_path}")


if __name__ == "__main__":
    main()

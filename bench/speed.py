"""`make bench`: documents per second of the featurizers, on one core, on the real pool, in one run.

Compares gotd-stream's lexical space (hashing alone, and the full TF-IDF + projection) with DSIR's own hashed
n-gram featurizer from its PyPI package (`data_selection.hashed_ngram_dsir.get_ngram_counts`, what
HashedNgramDSIR runs on every document), and, for scale, sentence embeddings with the default model.

    python bench/speed.py [--docs 20000] [--semantic-docs 1000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per core: BLAS in one thread, as DSIR's loop runs in one
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.defaults import load_pool  # noqa: E402
from gotd_stream.features.base import LEXICAL_BUCKETS, LEXICAL_DIM  # noqa: E402
from gotd_stream.features.lexical import Lexical, hashed_tf  # noqa: E402
from gotd_stream.text import CHAR_BUDGET  # noqa: E402


def rate(fn, texts: list[str], repeat: int = 2) -> float:
    """Best documents/s over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--semantic-docs", type=int, default=1_000)
    args = parser.parse_args()
    pool, _ = load_pool(args.cache)
    texts = [pool[i] for i in np.random.default_rng(0).choice(len(pool), size=args.docs, replace=False)]
    chars = sum(map(len, texts)) / len(texts)

    from data_selection.hashed_ngram_dsir import get_ngram_counts

    lexical = Lexical.fit(texts[:10_000], buckets=LEXICAL_BUCKETS, dim=LEXICAL_DIM)
    step = lexical.window  # texts per encode() call, as the pipeline featurizes
    results = [
        (
            "DSIR featurizer (data-selection 1.0.3, 10,000 buckets)",
            rate(lambda ts: [get_ngram_counts(t) for t in ts], texts, 1),
        ),
        (
            f"gotd-stream lexical hashing ({LEXICAL_BUCKETS:,} buckets)",
            rate(lambda ts: hashed_tf(ts, LEXICAL_BUCKETS, CHAR_BUDGET), texts),
        ),
        (
            f"gotd-stream lexical space (hashing + TF-IDF + projection to {LEXICAL_DIM})",
            rate(lambda ts: [lexical.encode(ts[i : i + step]) for i in range(0, len(ts), step)], texts),
        ),
    ]
    if args.semantic_docs:
        import torch

        torch.set_num_threads(1)
        from gotd_stream.features import DEFAULT_MAX_TOKENS
        from gotd_stream.features.semantic import Embedder

        embedder = Embedder(None, device="cpu", max_tokens=DEFAULT_MAX_TOKENS, batch_size=64)
        results.append(
            (
                f"sentence embeddings, all-MiniLM-L6-v2, {DEFAULT_MAX_TOKENS} tokens",
                rate(embedder.encode, texts[: args.semantic_docs], 1),
            )
        )
    dsir = results[0][1]
    print(
        f"\n{args.docs:,} documents of the real pool (mean {chars:.0f} characters); one core; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}\n"
    )
    print("| featurizer | documents/s (one core) | vs DSIR |")
    print("|---|---|---|")
    for name, value in results:
        print(f"| {name} | {value:,.0f} | {value / dsir:.1f}x |")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

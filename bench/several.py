"""The several-targets paths timed against one target's, so that a regression shows (`make bench`).

Issue 25 measured `merge -p mix.gotd` of 730 lines at 23 s (0.27 s for one target) and `score -p mix.gotd
--state` at 163 s (4.3 s for one target): the artifact's fit id, a hash of every array, was computed for every
line. Here, on a pool made in the script (lexical space, no model): score, score --state (first run and a re-run
with nothing new), and merge of --candidates outputs, each for one target and for a mixture of three, with the
ratio of their times. Every several-targets path should cost about what one target's does (a few times at most:
it scores against each target).

    python bench/several.py [--docs 6000] [--shards 6] [--out bench/results/several.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import make_docs, write_jsonl  # noqa: E402


def tool(*args, cwd: Path) -> float:
    """Run gotd-stream as a user does; its wall time in seconds."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gotd_stream", *map(str, args)], cwd=cwd, env=env, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=6000)
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "bench/results/several.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gotd-several-") as folder:
        d = Path(folder)
        docs = make_docs(args.docs, seed=1)
        shards = [f"s{i}.jsonl" for i in range(args.shards)]
        for i, name in enumerate(shards):
            write_jsonl(d / name, docs[i :: args.shards])
        for seed, topic in ((2, "cooking"), (3, "football"), (4, "astronomy")):
            write_jsonl(d / f"{topic}.jsonl", [x for x in make_docs(90, seed=seed) if x["topic"] == topic])
        fit = ["fit", "--features", "lexical", "--sample-size", 2000, "-q", *shards]
        tool(*fit, "--target", "cooking.jsonl", "-o", "one.gotd", cwd=d)
        mix = [a for t in ("cooking", "football", "astronomy") for a in ("--target", f"{t}={t}.jsonl:1")]
        tool(*fit, *mix, "-o", "mix.gotd", cwd=d)
        rows = []
        for label, artifact in (("one target", "one.gotd"), ("three targets", "mix.gotd")):
            score = ["score", "-p", artifact, "-k", args.k, "-q"]
            times = {"score": tool(*score, *shards, "-o", "out.jsonl", cwd=d)}
            times["score --state"] = tool(*score, "--state", f"st-{artifact}", *shards, "-o", "o.jsonl", cwd=d)
            times["score --state, nothing new"] = tool(
                *score, "--state", f"st-{artifact}", *shards, "-o", "o.jsonl", cwd=d
            )
            extra = ["--candidates"] if artifact == "mix.gotd" else []
            parts = []
            for i in range(2):
                part = f"part-{i}.jsonl"
                tool(*score, *extra, "--shard-index", i, "--num-shards", 2, *shards, "-o", part, cwd=d)
                parts.append(part)
            times["merge -p"] = tool("merge", "-p", artifact, "-k", args.k, "-q", *parts, "-o", "m.jsonl", cwd=d)
            rows.append((label, times))
    names = list(rows[0][1])
    lines = [
        "# Several targets against one: the same paths timed (`bench/several.py`)",
        "",
        f"{args.docs:,} documents in {args.shards} shards, lexical space, -k {args.k}; wall seconds of the command "
        "(Python start included).",
        "",
        "| path | one target | three targets | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        one, three = rows[0][1][name], rows[1][1][name]
        lines.append(f"| {name} | {one:.2f} | {three:.2f} | {three / one:.1f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

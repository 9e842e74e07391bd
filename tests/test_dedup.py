"""The duplicate guard: planted copies are kept once (the best-ranked), in every mode; merges and --state stay
exact; a margin too small says so; --exclude and the target's texts are never selected."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import numpy as np
import pytest

from gotd_stream.select.dedup import (
    MIN_SHINGLES,
    PERMS,
    SHORT_CHANGES,
    WIDTH,
    Guard,
    MarginExceeded,
    signatures,
)
from gotd_stream.select.guard import DEFAULT_THRESHOLD
from tests.conftest import run as run_cli
from tests.conftest import write_jsonl


def run(args: list, **kwargs):
    """The CLI as a user runs it, the guard at its default (near) unless the test names a mode itself."""
    return run_cli(args, guard=True, **kwargs)


def test_the_guard_is_on_by_default(pool):
    done = run_cli(["score", "-p", pool["one"], "-k", 10, pool["a"], pool["b"]], guard=True)
    lines = done.stdout_bytes.splitlines()
    assert lines and all(b',"gotd_guard":"near:t=0.6:m=0.5","gotd_fit":"' in line for line in lines)
    assert "dedup near: dropped" in done.stderr


NEAR = "school garden market village river forest ocean mountain desert city harbour bridge tower castle meadow".split()
FAR = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma upsilon omega".split()


def text(rng: random.Random, vocab: list[str], n: int = 60) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n))


def variants(base: str) -> dict[str, str]:
    """Planted copies of `base`: each must collide with it at the default threshold."""
    words = base.split()
    changed = [*words[:20], "zebra", *words[21:]]
    return {
        "case": base.upper(),
        "space": base.replace(" ", "   \t "),
        "punct": base.replace(" ", ", ") + "!",
        "word": " ".join(changed),
        "boiler": "Home | About us | Contact. " + base,
    }


def collide(a: np.ndarray, b: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """The rule, written out: equal exact keys, or (both of MIN_SHINGLES shingles or more) an estimated
    containment of the smaller 2-gram set in the other of at least `threshold`, or (both of SHORT_WORDS to
    MIN_SHINGLES words) the same words but for at most SHORT_CHANGES of them in place."""
    if a[0] == b[0]:
        return True
    words_a, words_b = a[2 + PERMS :], b[2 + PERMS :]
    if np.count_nonzero(words_a) and np.count_nonzero(words_a) == np.count_nonzero(words_b):
        if np.count_nonzero(words_a != words_b) <= SHORT_CHANGES:
            return True
    small = min(a[1], b[1])
    if small < MIN_SHINGLES:
        return False
    jaccard = np.count_nonzero(a[2 : 2 + PERMS] == b[2 : 2 + PERMS]) / PERMS
    return jaccard * (a[1] + b[1]) / (1 + jaccard) / small >= threshold - 1e-12


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Two shards of distinct texts, near the target or far from it; copies of the near ones in the other shard."""
    d = tmp_path_factory.mktemp("dedup")
    rng = random.Random(7)
    near = [text(rng, NEAR) for _ in range(12)]
    far = [text(rng, FAR) for _ in range(60)]
    docs_a = [{"id": f"n{i}", "text": t} for i, t in enumerate(near)] + [
        {"id": f"f{i}", "text": t} for i, t in enumerate(far[:30])
    ]
    docs_b = [{"id": f"f{i + 30}", "text": t} for i, t in enumerate(far[30:])]
    for i in range(0, 6):  # copies of n0..n5, of every kind, across the shard boundary
        for kind, copy in variants(near[i]).items():
            docs_b.append({"id": f"n{i}-{kind}", "text": copy})
    rng.shuffle(docs_b)
    a, b = write_jsonl(d / "a.jsonl", docs_a), write_jsonl(d / "b.jsonl", docs_b)
    target_a = write_jsonl(d / "ta.jsonl", [{"text": text(rng, NEAR)} for _ in range(6)])
    target_b = write_jsonl(d / "tb.jsonl", [{"text": text(rng, NEAR[:8] + FAR[:4])} for _ in range(6)])
    one = d / "one.gotd"
    run(["fit", "--features", "lexical", "--target", target_a, a, b, "-o", one, "-q"])
    two = d / "two.gotd"
    run(["fit", "--features", "lexical", "--target", f"a={target_a}:0.5", "--target", f"b={target_b}:0.5", a, b,
         "-o", two, "-q"])  # fmt: skip
    return {"dir": d, "a": a, "b": b, "one": one, "two": two, "near": near, "target_a": target_a}


def ids(out: bytes) -> list[str]:
    return [json.loads(line)["id"] for line in out.splitlines()]


def texts_of(out: bytes) -> list[str]:
    return [json.loads(line)["text"] for line in out.splitlines()]


def no_two_collide(out: bytes) -> None:
    sigs = signatures(texts_of(out))
    for i in range(len(sigs)):
        for j in range(i):
            assert not collide(sigs[i], sigs[j]), (ids(out)[j], ids(out)[i])


def test_planted_copies_collide_and_distinct_texts_do_not(pool):
    for base in pool["near"][:3]:
        sigs = signatures([base, *variants(base).values()])
        assert all(collide(sigs[0], s) for s in sigs[1:])
    sigs = signatures(pool["near"])
    assert not any(collide(sigs[i], sigs[j]) for i in range(len(sigs)) for j in range(i))


def test_the_best_ranked_of_each_group_is_kept(pool):
    """-k under the guard = the --dedup off ranking with every unit that collides with a better one removed."""
    p, shards = pool, [pool["a"], pool["b"]]
    ranking = run(["score", "-p", p["one"], "-k", 200, "--dedup", "off", *shards]).stdout_bytes
    sigs = signatures(texts_of(ranking))
    expected = [i for i in range(len(sigs)) if not any(collide(sigs[i], sigs[j]) for j in range(i))]
    kept = run(["score", "-p", p["one"], "-k", 10, *shards])
    assert ids(kept.stdout_bytes) == [ids(ranking)[i] for i in expected[:10]]
    assert len(expected) < len(sigs)  # copies were in the way
    off = ids(run(["score", "-p", p["one"], "-k", 10, "--dedup", "off", *shards]).stdout_bytes)
    assert any("-" in name for name in off)  # without the guard, copies are selected
    dropped = sum(1 for i in range(len(sigs)) if i not in expected and i < expected[9])
    assert f"dedup near: dropped {dropped} as copies" in kept.stderr


@pytest.mark.parametrize(
    "mode",
    [
        ["-k", 10],
        ["-k", 10, "--dedup", "exact"],
        ["--tokens", 600],
        ["-k", 10, "--unit", "chunk"],
        ["-k", 10, "--select", "sample", "--temperature", 0.5],
        ["-k", 10, "--mix", "sum"],
        ["-k", 10, "--mix", "quota"],
    ],
    ids=["k", "exact", "tokens", "pieces", "sample", "sum", "quota"],
)
def test_copies_never_kept_twice_and_merges_equal_one_pass(pool, mode, tmp_path):
    p = pool
    artifact = p["two"] if "--mix" in mode else p["one"]
    base = ["score", "-p", artifact, *mode]
    done = run([*base, p["a"], p["b"]])
    one = done.stdout_bytes
    dropped = dropped_of(done.stderr)
    assert dropped.get("copies", 0) > 0  # the guard had copies to drop in this mode: the equalities below test it
    if "exact" in mode:  # only case, spacing and punctuation are exact copies
        names = ids(one)
        assert not any(f"{a}-{kind}" in names for a in names for kind in ("case", "space", "punct"))
    else:
        no_two_collide(one)
    # shards merged (copies split across them) and --state resumed equal the one pass
    parts = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.cand"
        run([*base, "--candidates", p[name], "-o", out, "-q"])
        parts.append(out)
    merge = ["merge", "-k", 10] if "--tokens" not in mode else ["merge", "--tokens", 600]
    if "--mix" in mode:
        merge += ["-p", artifact]
    merged = run([*merge, *parts])
    assert merged.stdout_bytes == one and dropped_of(merged.stderr) == dropped  # merge's summary counts them too
    state = tmp_path / "state"
    run([*base, "--state", state, p["a"], "-q"])
    resumed = run([*base, "--state", state, p["a"], p["b"]])
    assert resumed.stdout_bytes == one and dropped_of(resumed.stderr) == dropped
    assert run([*merge, state]).stdout_bytes == one
    # plain selections written to files merge through the prefix files beside them, listed or not
    plain = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        run([*base, p[name], "-o", out, "-q"])
        assert (tmp_path / f"{name}.jsonl.guard.zst").is_file()
        plain.append(out)
    merged = run([*merge, *plain])
    assert merged.stdout_bytes == one and dropped_of(merged.stderr) == dropped
    both = [plain[0], tmp_path / "a.jsonl.guard.zst", plain[1]]  # a glob that matches the prefix files too
    assert run([*merge, *both]).stdout_bytes == one


def dropped_of(summary: str) -> dict[str, int]:
    """What a summary line says the guard dropped: {"copies": n, "target copy": m, ...} ({} for "none")."""
    import re

    found = re.search(r"dedup (?:near|exact): dropped ([^)]*)\)", summary)
    assert found is not None, summary
    if found.group(1) == "none":
        return {}
    parts = [part.split(" ", 1) for part in found.group(1).split(", ")]
    return {why.removeprefix("as "): int(n.replace(",", "")) for n, why in parts}


@pytest.mark.parametrize("budget", [["-k", 10], ["--tokens", 600]], ids=["k", "tokens"])
def test_slurm_shares_under_the_guard_equal_one_pass(pool, budget, tmp_path):
    """Each task scores its share of the inputs into its state folder (copies split across the shares); the
    folders merge to the bytes and the counts of one pass, and so do the tasks' plain outputs (their prefix
    files beside them)."""
    p = pool
    base = ["score", "-p", p["one"], *budget]
    inputs = sorted([p["b"], p["a"]], key=str)  # a share is a block of the sorted paths
    done = run([*base, *inputs])
    assert dropped_of(done.stderr).get("copies", 0) > 0
    outputs = []
    for i in range(2):
        out = tmp_path / f"task-{i}.jsonl"
        run([*base, "--shard-index", i, "--num-shards", 2, "--state", tmp_path / f"state-{i}", "-o", out, *inputs])
        outputs.append(out)
    merge = ["merge", *budget]
    merged = run([*merge, tmp_path / "state-1", tmp_path / "state-0"])
    assert merged.stdout_bytes == done.stdout_bytes and dropped_of(merged.stderr) == dropped_of(done.stderr)
    plain = run([*merge, *outputs])
    assert plain.stdout_bytes == done.stdout_bytes and dropped_of(plain.stderr) == dropped_of(done.stderr)


def test_a_plain_guarded_selection_merges_through_its_prefix_file(pool, tmp_path):
    """A guarded selection says so (its lines carry gotd_guard, in JSONL and Parquet); written to a file, its
    prefix (spares, dropped units) goes to FILE.guard.zst, which merge reads in its place. Written to stdout, or
    beside a prefix file of another selection, merge exits 2 naming the file instead of giving another one."""
    p = pool
    for name, args in (("one", ["-k", 10]), ("sum", ["-k", 10, "--mix", "sum"]), ("quota", ["-k", 10])):
        artifact = p["two"] if name != "one" else p["one"]
        merge = ["merge", "-k", 10] + (["-p", artifact] if name != "one" else [])
        whole = run(["score", "-p", artifact, *args, p["a"], p["b"]]).stdout_bytes
        for suffix in (".jsonl", ".parquet"):
            outs = []
            for shard in ("a", "b"):
                out = tmp_path / f"{name}-{shard}{suffix}"
                run(["score", "-p", artifact, *args, p[shard], "-o", out, "-q"])
                assert Path(f"{out}.guard.zst").is_file()
                outs.append(out)
            assert run([*merge, *outs]).stdout_bytes == whole, (name, suffix)
        lines = (tmp_path / f"{name}-a.jsonl").read_bytes().splitlines()
        assert lines and all(b',"gotd_guard":"near:t=0.6:m=0.5","gotd_fit":"' in line for line in lines)
        # the Parquet selection reads back as the same lines (report and merge see the tag)
        from gotd_stream.io.parquet_out import selection_lines

        assert [raw for _, raw in selection_lines(str(tmp_path / f"{name}-a.parquet"))] == lines
        # stdout has nowhere to put a prefix file: the saved output is refused, saying what to do
        saved = tmp_path / f"{name}-stdout.jsonl"
        saved.write_bytes(run(["score", "-p", artifact, *args, p["a"]]).stdout_bytes)
        refused = run([*merge, saved], code=2).stderr
        assert f"{saved}:1: a selection made with the duplicate guard (near:t=0.6:m=0.5) cannot be merged" in refused
        assert f"no {saved}.guard.zst beside it" in refused and "--candidates" in refused
    # a prefix file that belongs to another selection (the output edited, or written again elsewhere) is refused
    edited = tmp_path / "one-a.jsonl"
    edited.write_bytes(b"\n".join(edited.read_bytes().splitlines()[:-1]) + b"\n")
    refused = run(["merge", "-k", 10, edited], code=2).stderr
    assert f"{edited}.guard.zst is not the prefix file of {edited}" in refused
    # without the guard, nothing changes: no tag, no prefix file, and the selection merges as before
    off = tmp_path / "off.jsonl"
    run(["score", "-p", p["one"], "-k", 10, "--dedup", "off", p["a"], "-o", off, "-q"])
    assert b"gotd_guard" not in off.read_bytes() and not Path(f"{off}.guard.zst").exists()
    assert run(["merge", "-k", 10, off]).stdout_bytes == off.read_bytes()
    # a merged guarded selection written to a file gets its own prefix file: merges of merges stay exact
    cand = tmp_path / "a.cand"
    run(["score", "-p", p["one"], "-k", 10, "--candidates", p["a"], "-o", cand, "-q"])
    merged = tmp_path / "merged.jsonl"
    run(["merge", "-k", 10, cand, "-o", merged, "-q"])
    assert merged.read_bytes() == run(["score", "-p", p["one"], "-k", 10, p["a"]]).stdout_bytes
    assert run(["merge", "-k", 10, merged]).stdout_bytes == merged.read_bytes()


def test_a_margin_too_small_says_so(tmp_path):
    """P and Q do not collide, M collides with both and ranks above them; with no spare, Z (needed) was cut."""
    from gotd_stream.select.budget import Budget
    from gotd_stream.select.keep import RankKeeper

    rng = random.Random(3)
    words = [f"w{i}" for i in range(80)]  # distinct words: every shingle once
    m = " ".join(words)
    p_text = " ".join(words[:55])  # P and Q are inside M; they share 29 of their 54 2-grams
    q_text = " ".join(words[25:])
    z_text = text(rng, FAR)
    sigs = signatures([m, p_text, q_text])
    assert collide(sigs[0], sigs[1]) and collide(sigs[0], sigs[2]) and not collide(sigs[1], sigs[2])
    keeper = RankKeeper(Budget(k=2), "0123456789ab", guard=Guard("near", margin=0.0))
    keeper.offer(np.array([0.2, 0.3, 0.5]), [b'{"i":"p"}', b'{"i":"q"}', b'{"i":"z"}'], [p_text, q_text, z_text])
    keeper.offer(np.array([0.1]), [b'{"i":"m"}'], [m])
    with pytest.raises(MarginExceeded, match="dedup_margin"):
        keeper.selection()
    roomy = RankKeeper(Budget(k=2), "0123456789ab", guard=Guard("near", margin=1.0))
    roomy.offer(np.array([0.2, 0.3, 0.5]), [b'{"i":"p"}', b'{"i":"q"}', b'{"i":"z"}'], [p_text, q_text, z_text])
    roomy.offer(np.array([0.1]), [b'{"i":"m"}'], [m])
    assert [item.raw for item in roomy.selection()] == [b'{"i":"m"}', b'{"i":"z"}']
    # the command line: candidates written with no spare merge to a clear error, exit 1
    cand = tmp_path / "short.cand"
    cand.write_bytes(b"".join(line + b"\n" for line in keeper.lines(candidates=True)))
    failed = run(["merge", "-k", 2, cand], code=1)
    assert "--dedup-margin" in failed.stderr and "cannot tell the selection exactly" in failed.stderr


def test_exclude_and_target_copies(pool, tmp_path):
    p, shards = pool, [pool["a"], pool["b"]]
    plain = run(["score", "-p", p["one"], "-k", 10, "--allow-target-copies", *shards]).stdout_bytes
    best = texts_of(plain)[:3]  # an evaluation split: the three best texts, as copies of each kind
    split_txt = tmp_path / "test.txt"
    split_txt.write_text("\n".join(t.upper() for t in best[:2]) + "\n")
    split_jsonl = write_jsonl(tmp_path / "test.jsonl", [{"text": variants(best[2])["word"]}])
    done = run(["score", "-p", p["one"], "-k", 10, "--allow-target-copies", "--exclude", split_txt,
                "--exclude", split_jsonl, *shards])  # fmt: skip
    assert not set(texts_of(done.stdout_bytes)) & set(best)
    sigs = signatures(texts_of(done.stdout_bytes))
    held_out = signatures([t.upper() for t in best[:2]] + [variants(best[2])["word"]])
    assert not any(collide(s, h) for s in sigs for h in held_out)
    assert f"exclude {split_txt}" in done.stderr and f"exclude {split_jsonl}" in done.stderr
    # the target's texts, planted in the corpus: dropped by default, kept when allowed
    targets = [json.loads(line)["text"] for line in Path(p["target_a"]).read_text().splitlines()]
    planted = write_jsonl(tmp_path / "planted.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(targets)])
    guarded = run(["score", "-p", p["one"], "-k", 10, *shards, planted])
    assert not any(name.startswith("t") for name in ids(guarded.stdout_bytes))
    assert "target copy" in guarded.stderr
    allowed = run(["score", "-p", p["one"], "-k", 10, "--allow-target-copies", *shards, planted]).stdout_bytes
    assert any(name.startswith("t") for name in ids(allowed))


def test_an_artifact_without_target_signatures_loads_and_warns(pool, tmp_path, caplog):
    import gotd_stream as gs

    old = gs.load(str(pool["one"]))
    assert old.copies is not None and old.copies.shape[1] == WIDTH
    old.copies = None
    path = tmp_path / "old.gotd"
    old.save(str(path))
    again = gs.load(str(path))
    assert again.copies is None and again.fit_id == old.fit_id
    done = run(["score", "-p", path, "-k", 3, pool["a"]])
    assert "before target signatures were stored" in done.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--dedup", "fuzzy"],
        ["--dedup-threshold", 0],
        ["--dedup-threshold", 1.5],
        ["--dedup-margin", -1],
        ["--dedup", "off", "--allow-target-copies"],
        ["--dedup", "exact", "--dedup-threshold", 0.9],
    ],
)
def test_bad_guard_flags_exit_2(pool, flags):
    run(["score", "-p", pool["one"], "-k", 3, *flags, pool["a"]], code=2)


def test_report_shows_what_the_guard_dropped(pool, tmp_path):
    """report reads the guard from the lines and its counts (copies, each exclusion) from the selection's manifest,
    for a score and for a merge; without a manifest it says the counts are not known."""
    import shutil

    p, shards = pool, [pool["a"], pool["b"]]
    best = texts_of(run(["score", "-p", p["one"], "-k", 3, *shards]).stdout_bytes)[0]
    held_out = tmp_path / "held-out.txt"
    held_out.write_text(best.upper() + "\n")
    sel = tmp_path / "sel.jsonl"
    done = run(["score", "-p", p["one"], "-k", 10, "--exclude", held_out, *shards, "-o", sel])
    said = dropped_of(done.stderr)
    excluded = said[f"exclude {held_out}"]  # the best text and its planted copies
    assert said["copies"] > 0 and excluded > 1
    expected = {"copy": said["copies"], f"exclude {held_out}": excluded}
    report = json.loads(run(["report", "-p", p["one"], sel, "--json"]).stdout)
    assert report["guard"]["dedup"] == "near" and report["guard"]["dedup_threshold"] == DEFAULT_THRESHOLD
    assert report["guard"]["dropped"] == expected and report["guard"]["note"] is None
    page = tmp_path / "page"
    summary = run(["report", "-p", p["one"], sel, "-o", page]).stderr
    assert f"dedup near: dropped {said['copies']} as copies, {excluded} exclude {held_out}" in summary
    html = (page / "index.html").read_text()
    assert "duplicate guard" in html and f"dropped {said['copies']} as copies" in html
    recorded = json.loads(Path(f"{sel}.manifest.json").read_text())
    assert recorded["plan"]["guard"]["dedup"] == "near" and recorded["counts"]["dropped_by_guard"] == expected
    info = run(["info", f"{sel}.manifest.json"]).stdout
    assert f"dropped {said['copies']} as copies, {excluded} exclude {held_out}" in info
    # moved without its manifest: the guard is known from the lines, its counts are not; moved with it, they are
    alone = tmp_path / "elsewhere" / "sel.jsonl"
    alone.parent.mkdir()
    shutil.copy(sel, alone)
    bare = run(["report", "-p", p["one"], alone, "--json"])
    assert json.loads(bare.stdout)["guard"]["dropped"] is None and "not known (no manifest)" in bare.stderr
    shutil.copy(f"{sel}.manifest.json", f"{alone}.manifest.json")
    assert json.loads(run(["report", "-p", p["one"], alone, "--json"]).stdout)["guard"]["dropped"] == expected
    # a manifest of another selection beside it: its counts are not shown, and the report says why
    shutil.copy(sel, tmp_path / "short.jsonl")
    (tmp_path / "short.jsonl").write_bytes(b"".join(sel.read_bytes().splitlines(keepends=True)[:4]))
    shutil.copy(f"{sel}.manifest.json", tmp_path / "short.jsonl.manifest.json")
    stale = json.loads(run(["report", "-p", p["one"], tmp_path / "short.jsonl", "--json"]).stdout)["guard"]
    assert stale["dropped"] is None and "describes another selection" in stale["note"]
    # a merge's manifest holds the same counts as the one pass's
    parts = []
    for name in ("a", "b"):
        parts.append(tmp_path / f"{name}.cand")
        run(["score", "-p", p["one"], "-k", 10, "--exclude", held_out, "--candidates", p[name], "-o", parts[-1]])
    merged = tmp_path / "merged.jsonl"
    run(["merge", "-k", 10, *parts, "-o", merged, "-q"])
    assert merged.read_bytes() == sel.read_bytes()
    assert json.loads(run(["report", "-p", p["one"], merged, "--json"]).stdout)["guard"]["dropped"] == expected
    # the guard off: no guard in the report
    off = tmp_path / "off.jsonl"
    run(["score", "-p", p["one"], "-k", 10, "--dedup", "off", *shards, "-o", off, "-q"])
    assert json.loads(run(["report", "-p", p["one"], off, "--json"]).stdout)["guard"] is None


# short texts (issue 23's planted reviews are 20-40 words): the rule is containment of 2-grams, not 3-gram Jaccard

REVIEWS = [
    "A sincerely crafted picture that deserves to be seen by everyone who loves the old westerns of the fifties.",
    "Too gory to be a comedy and too silly to be an effective horror film, it falls between every chair.",
    "Although it follows the standard formula, the voice cast brings real warmth to a story we know by heart.",
    "The director has made a substantive movie out of several slight ideas, and the actors carry it home well.",
    "Evokes the style and flash of the double cross thrillers without ever finding a pulse of its own.",
    "A quiet, patient drama about two brothers who inherit a failing farm and a grudge they cannot drop.",
]
BOILER = "Posted by admin | Share this review | Comments (0)"


def short_copies(base: str) -> dict[str, str]:
    """The planted edits of bench/web.py on a short review: a changed word, a boilerplate line in front."""
    words = base.split(" ")
    return {"word": " ".join([*words[:5], "really", *words[6:]]), "boiler": f"{BOILER}\n{base}"}


def test_short_texts_with_a_changed_word_or_a_boilerplate_line_collide():
    for base in REVIEWS:
        copies = short_copies(base)
        sigs = signatures([base, copies["word"], copies["boiler"]])
        assert collide(sigs[0], sigs[1]) and collide(sigs[0], sigs[2]) and collide(sigs[1], sigs[2]), base
        assert Guard().signatures([base, copies["word"]]).shape == (2, WIDTH)
    # a Jaccard rule would not: the boilerplate copy's 3-gram Jaccard with the review is under 0.7
    words = [t.lower().split() for t in (REVIEWS[0], short_copies(REVIEWS[0])["boiler"])]
    grams = [set(zip(w, w[1:], w[2:], strict=False)) for w in words]
    assert len(grams[0] & grams[1]) / len(grams[0] | grams[1]) < 0.7


def test_distinct_short_texts_sharing_words_do_not_collide():
    """Reviews that share a few words or a phrase, and texts under 9 words that differ by one word."""
    distinct = [
        *REVIEWS,
        "A sincerely crafted picture, but the westerns it loves were never this slow or this pleased with itself.",
        "Too silly to be a comedy and too dull to be anything else, the film wastes a fine cast on nothing.",
        "Fairly run of the mill.",
        "The only thing worse than a run of the mill picture is one that wants to be profound.",
        "A pure delight.",
        "A real delight.",
    ]
    sigs = signatures(distinct)
    pairs = [(i, j) for i in range(len(sigs)) for j in range(i)]
    assert not [(distinct[j], distinct[i]) for i, j in pairs if collide(sigs[i], sigs[j])]
    assert sigs[distinct.index("A pure delight."), 1] < MIN_SHINGLES  # too short: only the exact key counts


SHORT = [  # 5, 6, 7 and 8 words
    "A fascinating and fun film.",
    "Spend your Benjamins on a matinee.",
    "A chick flick for guys, mostly fun.",
    "Smart, sad and funny about families at war.",
]


def changed(text: str, place: int, word: str) -> str:
    words = text.split(" ")
    words[place] = word
    return " ".join(words)


def test_texts_of_five_to_eight_words_are_compared_word_by_word():
    """Up to two changed words in place is a copy (so two copies of one text, each with another word changed, are
    copies of each other too); three changes, another number of words, or a text under 5 words is another text."""
    from gotd_stream.select.dedup import Index

    for base in SHORT:
        one, other = changed(base, 0, "really"), changed(base, 3, "quite")
        both = changed(one, 3, "quite")
        three = changed(both, 1, "truly")
        sigs = signatures([base, one, other, both, three, base + " Indeed"])
        assert collide(sigs[0], sigs[1]) and collide(sigs[0], sigs[2]) and collide(sigs[0], sigs[3]), base
        assert collide(sigs[1], sigs[2]), base  # siblings: each changed another word of the text
        assert not collide(sigs[0], sigs[4]) and not collide(sigs[0], sigs[5]), base
        index = Index(Guard())
        for i, sig in enumerate(sigs[1:], 1):
            index.add(i, sig)
        assert index.colliders(sigs[0]) == {1, 2, 3}, base  # the bands find what the rule joins, nothing else
        assert index.colliders(sigs[4]) - {4} == {1, 2, 3}, base  # "three": 2 changes from "one", "other"; 1 "both"
    # the planted group bench/web.py kept three times under the rule of 1 change in 5 words: siblings now collide
    planted = ["A fascinating and fun truly", "A fascinating and really film.", "A fascinating very fun film."]
    sigs = signatures(planted)
    assert collide(sigs[0], sigs[1]) and collide(sigs[0], sigs[2]) and collide(sigs[1], sigs[2])
    # distinct texts: three words in five, or one word in a text under 5 words
    assert not collide(*signatures(["A moving and important film.", "A dull and pointless mess."]))
    assert not collide(*signatures(["A pure delight.", "A pure disaster."]))
    assert not collide(*signatures(["Feral and uncomfortable.", "Feral and really"]))


def test_two_copies_each_with_another_word_changed_collide():
    """The planted pool's 14-word review whose two copies, each with its own changed word, came out at a
    containment of 0.69: both were kept while the review itself ranked below them."""
    base = "Pure of intention and passably diverting, His Secret Life is light, innocuous and unremarkable."
    sigs = signatures([base, changed(base, 2, "really"), changed(base, 9, "quite")])
    assert collide(sigs[0], sigs[1]) and collide(sigs[0], sigs[2]) and collide(sigs[1], sigs[2])


def test_signatures_of_an_older_rule_are_refused_by_name():
    from gotd_stream.select.dedup import OLD_WIDTHS, OldSignature, check_width

    for width, rule in OLD_WIDTHS.items():
        with pytest.raises(OldSignature, match=f"older rule \\({width} values: {rule}\\)"):
            check_width(width, "the line")
    with pytest.raises(ValueError, match="signatures of 7 values"):
        check_width(7, "the line")


def test_short_review_copies_kept_once_by_score(tmp_path):
    """A pool of short reviews with their planted copies: the guard keeps one of each group and every
    distinct review; without it, copies are selected."""
    rng = random.Random(11)
    docs = [{"id": f"r{i}", "text": t} for i, t in enumerate(REVIEWS)]
    for i, base in enumerate(REVIEWS):
        docs += [{"id": f"r{i}-{kind}", "text": copy} for kind, copy in short_copies(base).items()]
    far = [{"id": f"f{i}", "text": text(rng, FAR, 20)} for i in range(30)]
    pool = write_jsonl(tmp_path / "pool.jsonl", docs + far)
    target = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in REVIEWS[::-1]])
    art = tmp_path / "a.gotd"
    run(["fit", "--features", "lexical", "--target", target, pool, "-o", art, "-q"])
    k = 2 * len(REVIEWS)
    off = ids(run(["score", "-p", art, "-k", k, "--dedup", "off", pool]).stdout_bytes)
    assert sum(1 for name in off if name.startswith("r")) > len(REVIEWS)  # copies bought
    kept = ids(run(["score", "-p", art, "-k", k, "--allow-target-copies", pool]).stdout_bytes)
    groups = sorted(name.split("-")[0] for name in kept if name.startswith("r"))
    assert groups == sorted(f"r{i}" for i in range(len(REVIEWS)))  # every review once, the rest far texts


def test_signatures_of_the_older_rule_are_refused_or_ignored_with_a_message(pool, tmp_path):
    import gotd_stream as gs

    # candidate lines whose signatures are an older rule's (without the sizes; without the short texts' words):
    # merge names the line and what to do
    cand = tmp_path / "a.cand"
    run(["score", "-p", pool["one"], "-k", 5, "--candidates", pool["a"], "-o", cand, "-q"])
    for older in (lambda sig: np.delete(sig[: 2 + PERMS], 1), lambda sig: sig[: 2 + PERMS]):
        lines = cand.read_bytes().splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(b'{"gotd_ranks":'))
        row = json.loads(lines[at])
        sig = np.frombuffer(base64.b64decode(row["gotd_sig"]), "<i8")
        row["gotd_sig"] = base64.b64encode(older(sig).astype("<i8").tobytes()).decode()
        lines[at] = json.dumps(row, separators=(",", ":")).encode()
        old = tmp_path / "old.cand"
        old.write_bytes(b"\n".join(lines) + b"\n")
        failed = run(["merge", "-k", 5, old], code=1)
        assert f"old.cand:{at + 1}" in failed.stderr and "older rule" in failed.stderr
    # an artifact whose target signatures are the older rule's: it loads and scores, and the guard says why
    # it cannot drop target copies
    art = gs.load(str(pool["one"]))
    art.copies = art.copies[:, : 2 + PERMS]
    path = tmp_path / "old.gotd"
    art.save(str(path))
    done = run(["score", "-p", path, "-k", 3, pool["a"]])
    assert "older duplicate rule" in done.stderr and len(done.stdout_bytes.splitlines()) == 3


def test_a_prefix_file_that_would_overwrite_an_input_is_refused_before_any_work(pool, tmp_path):
    """The prefix file is an output like -o: one that is an input (or -p) is refused, exit 2, nothing written."""
    import shutil

    shutil.copy(pool["a"], tmp_path / "sel.jsonl.guard.zst")
    refused = run(["score", "-p", pool["one"], "-k", 5, tmp_path / "sel.jsonl.guard.zst", "-o", tmp_path / "sel.jsonl"],
                  code=2)  # fmt: skip
    assert "-o (its prefix file)" in refused.stderr and not (tmp_path / "sel.jsonl").exists()
    assert (tmp_path / "sel.jsonl.guard.zst").read_bytes() == pool["a"].read_bytes()
    # without the guard there is no prefix file, so nothing to refuse
    run(["score", "-p", pool["one"], "-k", 5, "--dedup", "off", pool["a"], "-o", tmp_path / "off.jsonl", "-q"])
    assert not (tmp_path / "off.jsonl.guard.zst").exists()


def test_minhash_slabs_give_the_rows_of_the_definition():
    """signatures() hashes SLAB shingles at a time; each row is still min over the text's distinct 2-gram hashes
    of (a h + b) mod 2^64 >> 32, for a text far longer than a slab, for tiny ones and for one without a word."""
    from gotd_stream.select import dedup

    rng = random.Random(3)
    long = " ".join(f"w{rng.randrange(10**6)}" for _ in range(3000))
    texts = [long, "", "one", *[text(rng, FAR, rng.randint(2, 40)) for _ in range(300)]]
    sigs = signatures(texts)
    for i in (0, 2, 3, 200, len(texts) - 1):
        shingles = np.unique(dedup._shingles(dedup.normalise(texts[i]).split(" ")))
        with np.errstate(over="ignore"):
            rows = ((shingles[:, None] * dedup._A[None, :] + dedup._B[None, :]) >> np.uint64(32)).min(axis=0)
        assert np.array_equal(sigs[i, 2 : 2 + PERMS], rows.astype(np.int64)), i
        assert sigs[i, 1] == len(shingles)
    assert sigs[0, 1] > 2 * dedup.SLAB  # the long text spans several slabs
    assert np.array_equal(sigs[1, 2 : 2 + PERMS], -1 - np.arange(PERMS))  # no word: rows no real text has


def test_bucket_keys_are_shared_exactly_when_a_band_or_a_masked_row_is():
    """The 64-bit bucket keys stand for the bands (ROWS equal MinHash rows in one band) and the short texts' words
    with SHORT_CHANGES places left out: two signatures share a key when, and only when, they share one of those."""
    import itertools

    from gotd_stream.select.dedup import BANDS, ROWS, bucket_keys

    rng = random.Random(5)
    bases = [text(rng, NEAR, 24) for _ in range(4)] + ["A fascinating and fun film.", "Smart, sad and funny about it."]
    texts = []
    for base in bases:
        texts += [base, *variants(base).values()] if len(base.split()) > 8 else [base]
        texts += [changed(base, i, w) for i, w in ((0, "really"), (2, "quite"), (3, "truly"))]
    sigs = signatures(texts)
    keys = bucket_keys(sigs)

    def units(sig):
        if sig[1] >= MIN_SHINGLES:
            return {(b, *sig[2 + b * ROWS : 2 + (b + 1) * ROWS]) for b in range(BANDS)}
        n = int(np.count_nonzero(sig[2 + PERMS :]))
        if n < 5:
            return set()
        words = sig[2 + PERMS : 2 + PERMS + n].tolist()
        return {(n, m, *[w for k, w in enumerate(words) if k not in m]) for m in itertools.combinations(range(n), 2)}

    shared = 0
    for i, j in itertools.combinations(range(len(sigs)), 2):
        expect = bool(units(sigs[i]) & units(sigs[j]))
        assert bool(set(keys[i]) & set(keys[j])) == expect, (texts[i], texts[j])
        shared += expect
    assert shared > 20 and [len(k) for k in keys[:1]] == [BANDS]


def test_the_guard_signs_best_first_in_slabs_with_the_same_result(pool, tmp_path, monkeypatch):
    """A window's admitted units are signed a slab at a time, best first (the cutoff falls between slabs): any
    slab size gives the same selection, prefix file and counts, and a small slab signs fewer units."""
    from gotd_stream.select import dedup, keep

    signed = []
    real = dedup.signatures
    monkeypatch.setattr(dedup, "signatures", lambda texts, near=True: signed.append(len(texts)) or real(texts, near))
    outs = {}
    for slab in (2, 10**9):
        monkeypatch.setattr(keep, "GUARD_SLAB", slab)
        signed.clear()
        out = tmp_path / f"sel-{slab}.jsonl"
        done = run(["score", "-p", pool["one"], "-k", 6, "--dedup-margin", 0, pool["a"], pool["b"], "-o", out])
        prefix = (tmp_path / f"sel-{slab}.jsonl.guard.zst").read_bytes()
        outs[slab] = (out.read_bytes(), prefix, dropped_of(done.stderr), sum(signed))
    assert outs[2][:3] == outs[10**9][:3]
    assert outs[2][3] < outs[10**9][3]


@pytest.mark.parametrize("budget", [{"k": 20}, {"tokens": 500}], ids=["k", "tokens"])
def test_a_prefix_selects_the_same_in_any_order_of_offers(budget):
    """Units offered to a rank-prefix (select.dedup.Prefix) in input order, or in shuffled slabs of any size (shards
    merged in any order), give the same selection and the same counts of drops: eligibility depends on the ranks
    alone. Offered best first in slabs (the keeper's way within a window), the prefix itself is the same too: its
    cutoff and every unit it holds, with its reason (a later, worse slab never changes an earlier one's units)."""
    from gotd_stream.select.dedup import Prefix

    rng = random.Random(11)
    bases = [text(rng, NEAR + FAR, 30) for _ in range(30)]
    texts = [b for b in bases for _ in range(rng.randint(2, 6))]  # exact and near copies, many of them
    texts = [t if rng.random() < 0.5 else changed(t, rng.randrange(20), "zebra") for t in texts]
    rng.shuffle(texts)
    sigs = signatures(texts)
    ranks = np.array([rng.random() for _ in texts])
    tokens = [rng.randint(5, 40) for _ in texts]

    def offered(order: list[int], size: int):
        prefix = Prefix(Guard(margin=0.2), **budget)
        for lo in range(0, len(order), size):
            chunk = order[lo : lo + size]
            prefix.offer(ranks[chunk], sigs[chunk], [f"u{i}" for i in chunk], [tokens[i] for i in chunk], seqs=chunk)
        assert [u.order for u in prefix.ordered()] == sorted(u.order for u in prefix.units.values())
        held = {seq: (unit.why, unit.item) for seq, unit in prefix.units.items()}
        return [u.item for u in prefix.selected()], prefix.dropped(), held, prefix.cutoff

    one = offered(list(range(len(texts))), len(texts))
    assert one[1].get("copy", 0) > 5  # copies ranked in the top: the test tests the guard
    for size in (1, 3, 17, 50):
        shuffled = rng.sample(range(len(texts)), len(texts))
        assert offered(shuffled, size)[:2] == one[:2], size
        best_first = [int(i) for i in np.argsort(ranks, kind="stable")]
        assert offered(best_first, size) == one, size

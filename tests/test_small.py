"""The small holes of issue 11, each as a user meets it: exit code and message asserted (lexical space, no model)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import orjson
import pytest
import zstandard

from tests.conftest import make_docs, run, write_jsonl


@pytest.fixture(scope="module")
def lexical(tmp_path_factory) -> dict:
    """A pool, a target and a lexical artifact fitted on them, shared by the module (a fit takes seconds)."""
    d = tmp_path_factory.mktemp("small")
    pool = write_jsonl(d / "pool.jsonl", make_docs(60, seed=1))
    target = write_jsonl(d / "target.jsonl", [doc for doc in make_docs(30, seed=2) if doc["topic"] == "cooking"])
    artifact = d / "task.gotd"
    run(["fit", "--features", "lexical", "--target", target, pool, "--sample-size", 50, "-o", artifact, "-q"])
    return {"dir": d, "pool": pool, "target": target, "artifact": artifact}


def score(s, *args, code=0, env=None):
    return run(["score", "-p", s["artifact"], "-k", 5, *args], code=code, env=env)


# --- non-finite numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--epsilon", "nan", "'--epsilon': must be a finite number, not nan"),
        ("--epsilon", "inf", "'--epsilon': must be a finite number, not inf"),
        ("--epsilon", "1e308", "'--epsilon': 1e+308 is not in the range 0<x<=100"),
        ("--tol", "nan", "'--tol': must be a finite number, not nan"),
        ("--tol", "inf", "'--tol': must be a finite number, not inf"),
        ("--hybrid-weight", "nan", "'--hybrid-weight': must be a finite number, not nan"),
    ],
)
def test_non_finite_fit_numbers_are_refused_up_front(lexical, option, value, says):
    s = lexical
    out = s["dir"] / "never.gotd"
    failed = run(["fit", "--target", s["target"], s["pool"], option, value, "-o", out], code=2)
    assert says in failed.stderr and "raise --epsilon" not in failed.stderr
    assert not out.exists()
    failed = run(["score", "--target", s["target"], "-k", 3, s["pool"], option, value], code=2)
    assert says in failed.stderr


@pytest.mark.parametrize("option", ["--lr", "--epochs", "--weight-decay", "--mlm-probability"])
def test_non_finite_finetune_numbers_are_refused(lexical, option):
    failed = run(["finetune", "--data", lexical["pool"], "-o", lexical["dir"] / "ckpt", option, "nan"], code=2)
    assert f"'{option}': must be a finite number, not nan" in failed.stderr


# --- fit options with -p -----------------------------------------------------------------------------------------


def test_fit_options_with_an_artifact_are_refused(lexical):
    s = lexical
    one = score(s, s["pool"], "--epsilon", 0.2, code=2)
    assert f"--epsilon is a fit option, and {s['artifact']} is already fitted (with --epsilon 0.05)" in one.stderr
    assert "leave it out, or fit again" in one.stderr
    two = score(s, s["pool"], "--sample-size", 10, "--hybrid-weight", 0.3, code=2)
    assert "--sample-size, --hybrid-weight are fit options" in two.stderr
    assert "(with --sample-size 50, --hybrid-weight none)" in two.stderr
    for option, value in [("--target-size", 5), ("--tol", 1e-3), ("--max-iter", 5), ("--seed", 1)]:
        assert f"{option} is a fit option" in score(s, s["pool"], option, value, code=2).stderr
    # the defaults, left alone, are no mistake
    assert score(s, s["pool"], "-q").stdout.count("\n") == 5


def test_a_model_for_the_lexical_space_is_named_unused(lexical, tmp_path):
    s = lexical
    plain = score(s, s["pool"], "-q").stdout
    warned = score(s, s["pool"], "--model", tmp_path, "-q")
    assert "warning: --model is not used: the lexical space of" in warned.stderr and warned.stdout == plain
    # a site-wide GOTD_MODEL must not make every lexical run noisy
    quiet = score(s, s["pool"], "-q", env={"GOTD_MODEL": str(tmp_path)})
    assert quiet.stderr == "" and quiet.stdout == plain
    fit = ["fit", "--features", "lexical", "--target", s["target"], s["pool"], "-o", tmp_path / "x.gotd", "-q"]
    assert "warning: --model is not used: the lexical space needs no model" in run([*fit, "--model", tmp_path]).stderr
    assert "--max-tokens has no meaning for the lexical space" in run([*fit, "--max-tokens", 64], code=2).stderr
    assert "--hybrid-weight applies to the hybrid space only" in run([*fit, "--hybrid-weight", 0.3], code=2).stderr


# --- every record skipped ----------------------------------------------------------------------------------------


def test_a_run_that_skipped_every_record_fails(lexical, tmp_path):
    s = lexical
    out = tmp_path / "sel.jsonl"
    out.write_text("yesterday's selection\n")
    failed = score(s, s["pool"], "--text-field", "body", "-o", out, code=1)
    assert (
        f"Error: no usable record in {s['pool']}: all 60 records read were skipped "
        "(missing text field 'body': 60); check --text-field" in failed.stderr
    )
    assert out.read_text() == "yesterday's selection\n"  # cron keeps the last good output
    npy = tmp_path / "x.npy"
    assert (
        "all 60 records read were skipped"
        in run(["embed", "-p", s["artifact"], s["pool"], "--text-field", "body", "-o", npy], code=1).stderr
    )
    assert not npy.exists()
    # gzip inside zstd: every line is binary garbage
    nested = tmp_path / "nested.jsonl.zst"
    nested.write_bytes(zstandard.ZstdCompressor().compress(gzip.compress(s["pool"].read_bytes())))
    assert "no usable record in" in score(s, nested, code=1).stderr
    state = score(s, s["pool"], "--text-field", "body", "--state", tmp_path / "st", code=1)
    assert "all 60 records read were skipped" in state.stderr
    # truly empty input (no record, or blank lines only) is an empty selection, not a failure
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    done = score(s, empty, "--text-field", "body")
    assert done.stdout == "" and "read 0 records" in done.stderr


# --- BOM, symlink loop, dotted text field ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "zst", "gz"])
def test_a_byte_order_mark_is_accepted(lexical, tmp_path, kind):
    s = lexical
    data = b"\xef\xbb\xbf" + b"".join(orjson.dumps(d) + b"\r\n" for d in make_docs(6, seed=5))
    path = tmp_path / {"plain": "bom.jsonl", "zst": "bom.jsonl.zst", "gz": "bom.jsonl.gz"}[kind]
    path.write_bytes({"plain": data, "zst": zstandard.ZstdCompressor().compress(data), "gz": gzip.compress(data)}[kind])
    done = score(s, path, "-k", 6, "--no-score")
    assert "skipped 0" in done.stderr and "warning" not in done.stderr
    assert sorted(done.stdout_bytes.splitlines()) == sorted(orjson.dumps(d) for d in make_docs(6, seed=5))
    merged = run(["merge", "-k", 6, "-"], input=score(s, path, "-k", 6).stdout_bytes)
    assert merged.stdout.count("\n") == 6


def test_a_symlink_loop_is_named_as_such(lexical, tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    failed = score(lexical, tmp_path / "a", code=2)
    assert f"'{tmp_path / 'a'}' is a symlink loop" in failed.stderr and "does not exist" not in failed.stderr
    assert "is a symlink loop" in run(["merge", "-k", 1, tmp_path / "b"], code=2).stderr
    assert "is a dangling symlink" in score(lexical, tmp_path / "dangling", code=2).stderr
    assert "does not exist" in score(lexical, tmp_path / "missing", code=2).stderr


def test_a_dotted_text_field_reads_nested_objects(lexical, tmp_path):
    docs = make_docs(4, seed=6)
    rows = [{"id": d["id"], "meta": {"text": d["text"]}} for d in docs]
    rows += [{"meta": {"body": "x"}}, {"meta": "flat"}, {"other": 1}, {"meta.text": "simmer the onions"}]
    path = write_jsonl(tmp_path / "nested.jsonl", rows)
    done = score(lexical, path, "--text-field", "meta.text", "-k", 10, "--no-score")
    assert "scored 5, skipped 3" in done.stderr
    assert {orjson.loads(line).get("id") for line in done.stdout.splitlines()} == {d["id"] for d in docs} | {None}
    assert '"meta.text":"simmer the onions"' in done.stdout  # a literal key with a dot wins
    assert "nested.jsonl:5: missing text field 'meta.text': keys seen in meta: body" in done.stderr
    assert "nested.jsonl:6: missing text field 'meta.text': meta is a str, not an object" in done.stderr
    assert "nested.jsonl:7: missing text field 'meta.text': keys seen: other" in done.stderr


# --- --state and a shard rewritten in place ----------------------------------------------------------------------


def _vowels_rotated(doc: dict) -> dict:
    """The same document with other words of the same length: the shard keeps its size byte for byte."""
    return dict(doc, text=doc["text"].translate(str.maketrans("aeiou", "eioua")))


def test_state_notices_a_shard_rewritten_with_the_same_size_and_mtime(lexical, tmp_path):
    s = lexical
    docs = make_docs(40, seed=7)
    shards = [write_jsonl(tmp_path / f"part-{i}.jsonl", docs[i::2]) for i in range(2)]
    state, before = tmp_path / "state", os.stat(shards[1])
    score(s, *shards, "--state", state, "-q")
    write_jsonl(shards[1], [_vowels_rotated(d) for d in docs[1::2]])
    os.utime(shards[1], ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(shards[1])
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    resumed = score(s, *shards, "--state", state)
    assert "1 shards from" in resumed.stderr
    assert resumed.stdout == score(s, *shards).stdout
    # a shard record written before the fingerprint existed is scored again once
    for meta in (state / "shards").glob("*.json"):
        record = json.loads(meta.read_text())
        del record["fingerprint"]
        meta.write_text(json.dumps(record))
    assert "0 shards from" in score(s, *shards, "--state", state).stderr
    assert "2 shards from" in score(s, *shards, "--state", state).stderr


# --- the same file twice -----------------------------------------------------------------------------------------


def test_the_same_file_twice_is_refused(lexical, tmp_path):
    s = lexical
    pool = s["pool"]
    os.symlink(pool, tmp_path / "link.jsonl")
    twice = score(s, pool, pool, code=2)
    assert f"{pool} is given twice: its records would be read (and picked) twice; give it once" in twice.stderr
    dotted = Path(os.path.relpath(pool.parent)) / "." / pool.name  # another spelling of the same file
    assert f"{pool} and {dotted} are the same file" in score(s, pool, dotted, code=2).stderr
    assert (
        f"{pool} and {tmp_path / 'link.jsonl'} are the same file"
        in score(s, pool, tmp_path / "link.jsonl", code=2).stderr
    )
    fit = ["fit", "--features", "lexical", "--target", s["target"], pool, pool, "-o", tmp_path / "x.gotd"]
    assert "is given twice" in run(fit, code=2).stderr
    selected = tmp_path / "sel.jsonl"
    score(s, pool, "-o", selected, "-q")
    assert "is given twice" in run(["merge", "-k", 5, selected, selected], code=2).stderr
    # a copy is another file: its duplicates are the user's to keep (with --dedup off; the guard drops them)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(pool.read_bytes())
    assert score(s, pool, copy, "-k", 120, "--dedup", "off", "-q").stdout.count("\n") == 120

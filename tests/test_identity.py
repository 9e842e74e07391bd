"""A record's identity never depends on how its path is spelled: `x`, `./x`, `/abs/x`, a symlink and a copy under
another folder (a mount) select the same records and pieces in every mode, and odd file names work end to end."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOPICS, run, write_jsonl

WORDS = [w for phrases in TOPICS.values() for p in phrases for w in p.split()]
SOURCE = re.compile(rb'"gotd_source":"(?:[^"\\]|\\.)*"')


def docs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": i, "text": " ".join(rng.choices(WORDS, k=rng.choice([4, 10, 40, 90])))} for i in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One shard seen five ways, and a lexical artifact fitted on it."""
    folder = tmp_path_factory.mktemp("identity")
    shard = write_jsonl(folder / "s0.jsonl", docs(160, 1))
    (folder / "link.jsonl").symlink_to("s0.jsonl")
    (folder / "mnt").mkdir()
    shutil.copy(shard, folder / "mnt" / "s0.jsonl")
    target = write_jsonl(folder / "target.jsonl", [{"text": p} for p in TOPICS["cooking"] * 4])
    art = folder / "lex.gotd"
    run(["fit", "--features", "lexical", "--target", target, shard, "--sample-size", 160, "-o", art, "-q"])
    return {"dir": folder, "art": art, "target": target}


SPELLINGS = ["s0.jsonl", "./s0.jsonl", "ABS", "link.jsonl", "mnt/s0.jsonl"]


def spelled(world, spelling: str) -> str:
    return str(world["dir"] / "s0.jsonl") if spelling == "ABS" else spelling


def without_source(out: bytes) -> list[bytes]:
    """The selection with the provenance's path left out (it carries the path as typed, by design)."""
    return [SOURCE.sub(b'"gotd_source":""', line) for line in out.splitlines()]


MODES = {
    "k sample": ["-k", 25, "--select", "sample", "--temperature", 0.5],
    "tokens pieces": ["--tokens", 700, "--tokenizer", "estimate", "--chunk-tokens", 16],
    "tokens pieces sample": ["--tokens", 700, "--tokenizer", "estimate", "--chunk-tokens", 16, "--select", "sample"],
    "k pieces sample": [
        "-k",
        40,
        "--unit",
        "chunk",
        "--chunk-tokens",
        12,
        "--tokenizer",
        "estimate",
        "--select",
        "sample",
    ],
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_spelling_of_a_shard_selects_the_same(world, monkeypatch, mode):
    monkeypatch.chdir(world["dir"])
    outs = {}
    for spelling in SPELLINGS:
        result = run(["score", "-p", world["art"], *MODES[mode], spelled(world, spelling), "-q"])
        outs[spelling] = result.stdout_bytes
    first = without_source(outs["s0.jsonl"])
    assert len(first) > 5
    for spelling, out in outs.items():
        assert without_source(out) == first, spelling
    if "pieces" in mode:  # the provenance says where each piece was read from, as typed
        assert b'"gotd_source":"./s0.jsonl:' in outs["./s0.jsonl"]
        assert b'"gotd_source":"mnt/s0.jsonl:' in outs["mnt/s0.jsonl"]
    else:
        assert len(set(outs.values())) == 1  # whole records: the very same bytes


def test_a_state_folder_knows_a_shard_by_its_content_under_any_path(world, monkeypatch, tmp_path):
    monkeypatch.chdir(world["dir"])
    mode = MODES["tokens pieces sample"]
    one_pass = without_source(run(["score", "-p", world["art"], *mode, "s0.jsonl", "-q"]).stdout_bytes)
    state = tmp_path / "state"
    for i, spelling in enumerate(SPELLINGS):
        result = run(["score", "-p", world["art"], *mode, "--state", state, spelled(world, spelling)])
        assert without_source(result.stdout_bytes) == one_pass, spelling
        assert (", 1 shards from" in result.stderr) == (i > 0), (spelling, result.stderr)
    assert len(list((state / "shards").glob("*.json"))) == 1  # one shard, whatever its names
    # merge of the folder (its inputs.json names the shard's content) gives the same selection
    merged = run(["merge", "--tokens", 700, state, "-q"])
    assert without_source(merged.stdout_bytes) == one_pass


def test_a_state_folder_of_the_earlier_version_starts_over_and_says_so(world, monkeypatch, tmp_path):
    monkeypatch.chdir(world["dir"])
    state = tmp_path / "state"
    args = ["score", "-p", world["art"], "-k", 10, "--state", state, "s0.jsonl"]
    first = run(args).stdout_bytes
    identity = json.loads((state / "state.json").read_text())
    (state / "state.json").write_text(json.dumps(dict(identity, state_version=2)))
    again = run(args)
    assert "starting it over" in again.stderr and "state_version 2 -> 3" in again.stderr
    assert again.stdout_bytes == first


def test_the_fit_sample_is_the_same_under_every_spelling(world, monkeypatch, tmp_path):
    """The bottom-k fit sample keys a record by its shard's content and line: one artifact, one fit id."""
    monkeypatch.chdir(world["dir"])
    outs = set()
    for spelling in SPELLINGS:
        art = tmp_path / f"fit-{SPELLINGS.index(spelling)}.gotd"
        fit = ["fit", "--features", "lexical", "--target", world["target"], "--sample-size", 60]
        run([*fit, spelled(world, spelling), "-o", art, "-q"])
        outs.add(run(["score", "-p", art, "-k", 30, "s0.jsonl", "-q"]).stdout_bytes)  # gotd_fit: the fit id
    assert len(outs) == 1


# -- a file name that is not UTF-8 ------------------------------------------------------------------------------


def tool(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The installed command as a shell runs it, with its arguments as bytes (a file name is bytes)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), HF_HUB_OFFLINE="1")
    argv = [sys.executable, "-m", "gotd_stream", *(a if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=300)


def test_a_file_name_that_is_not_utf8_works_in_every_mode(world, tmp_path):
    name = b"caf\xe9.jsonl"
    (tmp_path / os.fsdecode(name)).write_bytes((world["dir"] / "s0.jsonl").read_bytes())
    art = world["art"]
    pieces = tool(
        "score", "-p", art, "--tokens", 300, "--tokenizer", "estimate", "--chunk-tokens", 16, name, cwd=tmp_path
    )
    assert pieces.returncode == 0 and b"Traceback" not in pieces.stderr, pieces.stderr.decode(errors="replace")
    sources = {json.loads(line)["gotd_source"].rsplit(":", 1)[0] for line in pieces.stdout.splitlines()}
    assert sources == {"caf\\xe9.jsonl"}  # the byte that is not UTF-8, written as \xNN
    for extra in (["--state", "st"], ["--state", "st"]):  # the second run takes the shard from the state
        state = tool(
            "score",
            "-p",
            art,
            "--tokens",
            300,
            "--tokenizer",
            "estimate",
            "--chunk-tokens",
            16,
            *extra,
            name,
            cwd=tmp_path,
        )
        assert state.returncode == 0 and b"Traceback" not in state.stderr, state.stderr.decode(errors="replace")
        assert state.stdout == pieces.stdout
    assert b"1 shards from st" in state.stderr
    whole = tool("score", "-p", art, "-k", 5, "--select", "sample", name, cwd=tmp_path)
    assert whole.returncode == 0 and len(whole.stdout.splitlines()) == 5
    fit = tool(
        "fit",
        "--features",
        "lexical",
        "--target",
        world["target"],
        "--sample-size",
        50,
        name,
        "-o",
        "x.gotd",
        "-q",
        cwd=tmp_path,
    )
    assert fit.returncode == 0 and b"Traceback" not in fit.stderr, fit.stderr.decode(errors="replace")

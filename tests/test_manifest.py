"""The manifest beside a selection: what it records, `info` of it, and `score --from-manifest` (checked re-runs)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from gotd_stream import manifest as mf
from tests.conftest import make_docs, run, write_jsonl

SIGNED = "part-1.jsonl?X-Amz-Signature=0123456789abcdef"  # as wget names a presigned URL's download


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    """Two shards (one named with a presigned URL's signature) and a target, a lexical artifact; run from tmp."""
    monkeypatch.chdir(tmp_path)
    docs = make_docs(120, seed=7)
    write_jsonl(tmp_path / "part-0.jsonl", docs[:70])
    write_jsonl(tmp_path / SIGNED, docs[70:])
    write_jsonl(tmp_path / "target.jsonl", make_docs(24, seed=8, topics=("astronomy",)))
    run(["fit", "--features", "lexical", "--sample-size", 80, "--target", "target.jsonl", "part-0.jsonl", SIGNED,
         "-o", "task.gotd", "-q"])  # fmt: skip
    return tmp_path


def as_user(monkeypatch, args: list) -> list[str]:
    """sys.argv as the shell would hand it to gotd-stream for `args` (CliRunner leaves pytest's)."""
    argv = ["gotd-stream", *map(str, args)]
    monkeypatch.setattr(sys, "argv", argv)
    return argv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_score_writes_a_manifest_beside_the_selection(setup, monkeypatch):
    import gotd_stream as gs

    args = ["score", "-p", "task.gotd", "-k", 10, "--tokenizer", "estimate", "part-0.jsonl", SIGNED, "-o", "sel.jsonl"]
    argv = as_user(monkeypatch, args)
    loaded_before = set(sys.modules)  # the versions list what the process imported: this test's run, and before
    summary = run(args).stderr
    manifest = json.loads((setup / "sel.jsonl.manifest.json").read_text())
    assert manifest["format"] == mf.FORMAT and manifest["command"] == "score"
    assert manifest["artifact"]["fit_id"] == gs.load(str(setup / "task.gotd")).fit_id
    assert manifest["artifact"]["header"]["fit"]["sample_size"] == 80 and manifest["space"]["space"] == "lexical"
    files = [setup / "part-0.jsonl", setup / SIGNED]
    assert [entry["sha256"] for entry in manifest["inputs"]] == [sha256(path) for path in files]
    assert [entry["size"] for entry in manifest["inputs"]] == [path.stat().st_size for path in files]
    said = re.search(r"read (\d+) records, scored (\d+), skipped 0, selected (\d+) records holding (\d+) tok", summary)
    read, scored, selected, tokens = map(int, said.groups())
    counts = manifest["counts"]
    assert (counts["read"], counts["scored"], counts["selected"], counts["selected_tokens"]) == (
        read,
        scored,
        selected,
        tokens,
    )
    assert (read, selected, counts["skipped"]) == (120, 10, 0)
    assert manifest["plan"]["budget"] == {"k": 10, "tokens": None} and manifest["plan"]["rule"]["select"] == "top"
    assert manifest["cwd"] == str(setup) and manifest["output"]["path"] == "sel.jsonl"
    masked = "part-1.jsonl?X-Amz-Signature=***"
    assert manifest["argv"] == [masked if word == SIGNED else word for word in argv]
    assert "0123456789abcdef" not in (setup / "sel.jsonl.manifest.json").read_text()
    assert {"gotd-stream", "numpy"} <= set(manifest["versions"]) and manifest["environment"]["python"]
    if "sentence_transformers" not in loaded_before:  # another test of this process may have imported it
        assert "sentence-transformers" not in manifest["versions"]  # the lexical space loads no model
    # a masked value cannot be replayed as recorded
    refused = run(["score", "--from-manifest", "sel.jsonl.manifest.json", "-o", "again.jsonl"], code=2)
    assert "masks a credential" in refused.stderr and not (setup / "again.jsonl").exists()


def test_merge_writes_one_listing_its_inputs(setup):
    for i, shard in enumerate(["part-0.jsonl", SIGNED]):
        run(["score", "-p", "task.gotd", "-k", 8, shard, "-o", f"node{i}.jsonl", "-q"])
    run(["merge", "-k", 8, "node0.jsonl", "node1.jsonl", "-o", "merged.jsonl", "-q"])
    manifest = json.loads((setup / "merged.jsonl.manifest.json").read_text())
    assert manifest["command"] == "merge"
    assert [entry["path"] for entry in manifest["inputs"]] == ["node0.jsonl", "node1.jsonl"]
    assert [entry["sha256"] for entry in manifest["inputs"]] == [sha256(setup / f"node{i}.jsonl") for i in (0, 1)]
    assert manifest["counts"]["read"] == 16 and manifest["counts"]["selected"] == 8
    assert (
        manifest["artifact"]["fit_id"]
        == json.loads((setup / "node0.jsonl.manifest.json").read_text())["artifact"]["fit_id"]
    )


def test_state_folder_and_stdout(setup):
    """--state keeps the manifest of its last run; a selection on stdout has none unless --manifest names one."""
    out = run(["score", "-p", "task.gotd", "-k", 5, "--state", "state", "part-0.jsonl", SIGNED, "-q"]).stdout
    assert out.count("\n") == 5
    assert not list(setup.glob("*.manifest.json"))
    in_state = json.loads((setup / "state" / mf.IN_STATE).read_text())
    assert in_state["state"] == "state" and in_state["counts"]["selected"] == 5 and in_state["output"]["path"] is None
    keys = json.loads((setup / "state" / "inputs.json").read_text())["keys"]  # the state's own names of the shards
    assert [entry["content_key"][:20] for entry in in_state["inputs"]] == keys
    again = run(["score", "-p", "task.gotd", "-k", 5, "--state", "state", "part-0.jsonl", SIGNED, "-q"])
    assert again.stdout == out
    reused = json.loads((setup / "state" / mf.IN_STATE).read_text())
    assert reused["counts"]["reused_shards"] == 2 and [e["sha256"] for e in reused["inputs"]] == [None, None]
    run(["score", "-p", "task.gotd", "-k", 5, "part-0.jsonl", "--manifest", "run.json", "-q"])
    assert json.loads((setup / "run.json").read_text())["counts"]["selected"] == 5


def test_info_shows_a_manifest(setup):
    run(["score", "-p", "task.gotd", "-k", 6, "--state", "state", "part-0.jsonl", SIGNED, "-o", "sel.jsonl", "-q"])
    fit_id = json.loads((setup / "sel.jsonl.manifest.json").read_text())["artifact"]["fit_id"]
    for given in ("sel.jsonl", "sel.jsonl.manifest.json", "state"):
        shown = run(["info", given]).stdout
        assert f"fit id:          {fit_id}" in shown, given
        assert "read 120, skipped 0, selected 6" in shown and "part-0.jsonl" in shown
    assert json.loads(run(["info", "--json", "sel.jsonl"]).stdout)["artifact"]["fit_id"] == fit_id
    assert "fit id:          " + fit_id in run(["info", "task.gotd"]).stdout  # an artifact is still an artifact
    (setup / "empty").mkdir()
    assert "without a manifest" in run(["info", "empty"], code=2).stderr


@pytest.fixture()
def plain(setup):
    """The shards without a credential in a name, as a replay can use them."""
    (setup / SIGNED).rename(setup / "part-1.jsonl")
    return setup


def test_from_manifest_makes_the_same_bytes(plain, monkeypatch):
    args = ["score", "-p", "task.gotd", "--tokens", 300, "--tokenizer", "estimate", "--select", "sample",
            "--temperature", 0.2, "part-0.jsonl", "part-1.jsonl", "-o", "sel.jsonl.zst", "-q"]  # fmt: skip
    run(args)
    (plain / "elsewhere").mkdir()
    monkeypatch.chdir(plain / "elsewhere")  # relative inputs are found in the recorded folder
    run(["score", "--from-manifest", "../sel.jsonl.zst.manifest.json", "-o", "again.jsonl.zst", "-q"])
    assert (plain / "elsewhere" / "again.jsonl.zst").read_bytes() == (plain / "sel.jsonl.zst").read_bytes()
    replayed = json.loads((plain / "elsewhere" / "again.jsonl.zst.manifest.json").read_text())
    assert replayed["replayed_from"] == str(plain / "sel.jsonl.zst.manifest.json")
    assert replayed["run"] == json.loads((plain / "sel.jsonl.zst.manifest.json").read_text())["run"]
    # not over the recorded selection unless --force; nothing else beside the manifest
    refused = run(["score", "--from-manifest", "../sel.jsonl.zst.manifest.json", "-o", "../sel.jsonl.zst"], code=2)
    assert "--force" in refused.stderr
    run(["score", "--from-manifest", "../sel.jsonl.zst.manifest.json", "-o", "../sel.jsonl.zst", "--force", "-q"])
    assert (plain / "sel.jsonl.zst").read_bytes() == (plain / "elsewhere" / "again.jsonl.zst").read_bytes()
    extra = run(["score", "--from-manifest", "../sel.jsonl.zst.manifest.json", "-o", "x.jsonl", "-k", 3], code=2)
    assert "leave out -k/--top-k" in extra.stderr


def test_from_manifest_of_a_fit_first_run(plain):
    args = ["score", "--features", "lexical", "--sample-size", 60, "--target", "target.jsonl", "-k", 7]
    run([*args, "part-0.jsonl", "part-1.jsonl", "-o", "fitted.jsonl", "-q"])
    manifest = json.loads((plain / "fitted.jsonl.manifest.json").read_text())
    assert manifest["targets"][0]["sha256"] == sha256(plain / "target.jsonl") and manifest["artifact"]["path"] is None
    run(["score", "--from-manifest", "fitted.jsonl.manifest.json", "-o", "refit.jsonl", "-q"])
    assert (plain / "refit.jsonl").read_bytes() == (plain / "fitted.jsonl").read_bytes()


def test_a_changed_input_or_artifact_is_refused(plain):
    run(["score", "-p", "task.gotd", "-k", 10, "part-0.jsonl", "part-1.jsonl", "-o", "sel.jsonl", "-q"])
    shard = plain / "part-1.jsonl"
    kept = shard.read_bytes()
    shard.write_bytes(kept.replace(b"the", b"THE", 1))  # the same size, other bytes
    refused = run(["score", "--from-manifest", "sel.jsonl.manifest.json", "-o", "again.jsonl"], code=2)
    assert "input part-1.jsonl changed" in refused.stderr and not (plain / "again.jsonl").exists()
    shard.write_bytes(kept)
    fit_id = json.loads((plain / "sel.jsonl.manifest.json").read_text())["artifact"]["fit_id"]
    run(["fit", "--features", "lexical", "--sample-size", 40, "--target", "target.jsonl", "part-0.jsonl",
         "-o", "task.gotd", "-q"])  # fmt: skip
    refused = run(["score", "--from-manifest", "sel.jsonl.manifest.json", "-o", "again.jsonl"], code=2)
    assert f"manifest recorded fit {fit_id}" in refused.stderr and "task.gotd is fit " in refused.stderr
    assert not (plain / "again.jsonl").exists()


def test_stdin_is_checked_as_it_was_read(plain):
    """A stream has no content key to look at first: its sha256 is checked once read, before anything is written."""
    corpus = (plain / "part-0.jsonl").read_text()
    run(["score", "-p", "task.gotd", "-k", 4, "--manifest", "stdin.json", "-o", "sel.jsonl", "-q"], input=corpus)
    manifest = json.loads((plain / "stdin.json").read_text())
    assert manifest["inputs"] == [
        {"path": "-", "size": len(corpus), "content_key": None, "sha256": sha256(plain / "part-0.jsonl")}
    ]
    run(["score", "--from-manifest", "stdin.json", "-o", "again.jsonl", "-q"], input=corpus)
    assert (plain / "again.jsonl").read_bytes() == (plain / "sel.jsonl").read_bytes()
    other = corpus.replace("the", "THE", 1)
    refused = run(["score", "--from-manifest", "stdin.json", "-o", "other.jsonl"], input=other, code=2)
    assert "input - changed" in refused.stderr and not (plain / "other.jsonl").exists()


@pytest.mark.parametrize(
    ("word", "shown"),
    [
        ("https://ops:hunter2@example.org/x.jsonl", "https://ops:***@example.org/x.jsonl"),
        (
            "s3://b/k.jsonl?X-Amz-Credential=AKIAX&X-Amz-Signature=abc&part=2",
            "s3://b/k.jsonl?X-Amz-Credential=***&X-Amz-Signature=***&part=2",
        ),  # fmt: skip
        ("--hf-token=hf_abcdefghijklmnopqrstuvwxyz0123456789", "--hf-token=***"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY=***"),
        ("hf_abcdefghijklmnopqrstuvwxyz0123456789", "***"),
        ("--tokens", "--tokens"),
        ("50M", "50M"),
        ("legal=legal.jsonl:0.7", "legal=legal.jsonl:0.7"),
    ],
)
def test_credentials_are_masked(word, shown):
    assert mf.masked_argv([word]) == [shown]


def test_a_flag_named_like_a_secret_hides_its_value():
    assert mf.masked_argv(["--api-key", "abc", "--tokens", "50M", "--token", "-"]) == [
        "--api-key",
        "***",
        "--tokens",
        "50M",
        "--token",
        "-",
    ]

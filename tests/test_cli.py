"""The commands as a user runs them (CliRunner), on a tiny corpus and a tiny model built in the tests."""

from __future__ import annotations

import gzip
import json

import numpy as np
import orjson
import pytest
import zstandard

from gotd_stream.io.records import split_scored
from gotd_stream.select.artifact import FORMAT_VERSION
from tests.conftest import make_docs, run, write_jsonl


@pytest.fixture()
def fitted(corpus, tiny_model):
    out = corpus["dir"] / "task.gotd"
    run(
        [
            "fit",
            "--target",
            corpus["target"],
            corpus["pool"],
            "--model",
            tiny_model,
            "--sample-size",
            50,
            "--epsilon",
            0.05,
            "--features",
            "semantic",
            "-o",
            out,
            "-q",
        ]
    )
    return out


def selected(stdout: bytes) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def test_fit_info_and_score(corpus, tiny_model, fitted):
    info = run(["info", fitted]).stdout
    assert "tiny-st" in info and "epsilon:         0.05" in info and "50 candidates by bottom-k" in info
    header = json.loads(run(["info", "--json", fitted]).stdout)
    assert header["format_version"] == FORMAT_VERSION and header["target_shape"] == [20, 32]
    result = run(["score", "-p", fitted, "-k", 10, corpus["pool"], "--model", tiny_model])
    rows = selected(result.stdout_bytes)
    assert len(rows) == 10
    scores = [r["gotd_score"] for r in rows]
    assert scores == sorted(scores)
    assert {r["gotd_fit"] for r in rows} == {header["fit_id"]}
    by_id = {d["id"]: d for d in corpus["docs"]}
    for row in rows:  # every original field intact
        assert {k: v for k, v in row.items() if not k.startswith("gotd_")} == by_id[row["id"]]
    assert "score: read 120 records, scored 120, skipped 0, selected 10" in result.stderr


def test_stdin_and_file_identical_and_runs_repeatable(corpus, tiny_model, fitted):
    args = ["score", "-p", fitted, "-k", 15, "--model", tiny_model, "-q"]
    from_file = run(args + [corpus["pool"]]).stdout_bytes
    from_stdin = run(args + ["-"], input=corpus["pool"].read_bytes()).stdout_bytes
    zst = zstandard.ZstdCompressor().compress(corpus["pool"].read_bytes())
    from_zstd_stdin = run(args, input=zst).stdout_bytes
    again = run(args + [corpus["pool"]]).stdout_bytes
    assert from_file == from_stdin == from_zstd_stdin == again
    assert len(from_file.splitlines()) == 15


def test_no_score_writes_original_lines(corpus, tiny_model, fitted):
    original = set(corpus["pool"].read_bytes().splitlines())
    out = run(["score", "-p", fitted, "-k", 7, "--no-score", "--model", tiny_model, corpus["pool"]]).stdout_bytes
    lines = out.splitlines()
    assert len(lines) == 7 and set(lines) <= original


@pytest.mark.parametrize("suffix", [".jsonl.zst", ".jsonl.gz", ".jsonl"])
def test_output_file_compressed_by_extension(corpus, tiny_model, fitted, suffix):
    out = corpus["dir"] / f"sel{suffix}"
    result = run(["score", "-p", fitted, "-k", 5, "--model", tiny_model, corpus["pool"], "-o", out])
    assert result.stdout_bytes == b""
    data = out.read_bytes()
    if suffix.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    elif suffix.endswith(".gz"):
        data = gzip.decompress(data)
    assert len(selected(data)) == 5
    assert sorted(p.name for p in corpus["dir"].iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_merge_of_shards_equals_one_run(corpus, tiny_model, fitted):
    docs = corpus["docs"]
    # (the guard off: plain outputs merge without it)
    # duplicate texts across shards make exact ties: merge must break them exactly as one run does
    docs = docs + [dict(d, id=d["id"] + "-dup") for d in docs[:10]]
    shards = [write_jsonl(corpus["dir"] / f"part-{i}.jsonl", docs[i::4]) for i in range(4)]
    common = ["-k", 25, "--dedup", "off", "-p", fitted, "--model", tiny_model, "-q"]
    whole = run(["score", *common, *shards]).stdout_bytes
    outputs = []
    for i, shard in enumerate(shards):
        out = corpus["dir"] / f"node{i}.jsonl.zst"
        run(["score", *common, shard, "-o", out])
        outputs.append(out)
    merged = run(["merge", "-k", 25, *outputs]).stdout_bytes
    assert merged == whole
    raw_merge = run(["merge", "-k", 25, "--no-score", *outputs]).stdout_bytes
    assert raw_merge.splitlines() == [split_scored(line)[0] for line in whole.splitlines()]


def test_merge_refuses_mixed_artifacts_and_unscored_input(corpus, tiny_model, fitted):
    other = corpus["dir"] / "other.gotd"
    run(
        [
            "fit",
            "--target",
            corpus["target"],
            corpus["pool"],
            "--model",
            tiny_model,
            "--sample-size",
            40,
            "--epsilon",
            0.1,
            "-o",
            other,
            "-q",
        ]
    )
    a, b = corpus["dir"] / "a.jsonl", corpus["dir"] / "b.jsonl"
    run(["score", "-p", fitted, "-k", 5, "--model", tiny_model, corpus["pool"], "-o", a, "-q"])
    run(["score", "-p", other, "-k", 5, "--model", tiny_model, corpus["pool"], "-o", b, "-q"])
    result = run(["merge", "-k", 5, a, b], code=2)
    assert "different potentials" in result.stderr and "b.jsonl" in result.stderr
    result = run(["merge", "-k", 5, corpus["pool"]], code=1)
    assert "pool.jsonl:1: no gotd_score" in result.stderr


def test_score_with_target_fits_first_on_files_and_stdin(corpus, tiny_model):
    saved = corpus["dir"] / "saved.gotd"
    args = ["score", "--target", corpus["target"], "-k", 10, "--model", tiny_model, "--sample-size", 120]
    from_files = run(args + ["--save-potentials", saved, corpus["pool"]])
    # with the sample as large as the pool, the stream prefix is the whole pool: the same fit and selection
    from_stdin = run(args, input=corpus["pool"].read_bytes())
    assert from_files.stdout_bytes == from_stdin.stdout_bytes
    assert json.loads(run(["info", "--json", saved]).stdout)["fit"]["sampling"] == "bottom-k"
    assert "fit: Sinkhorn converged" in from_files.stderr


def test_embed_matches_library(corpus, tiny_model):
    from gotd_stream.features.semantic import Embedder

    out = corpus["dir"] / "emb.npy"
    result = run(["embed", corpus["pool"], "--model", tiny_model, "-o", out])
    emb = np.load(out)
    assert emb.shape == (120, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    direct = Embedder(tiny_model, device="cpu").encode([d["text"] for d in corpus["docs"]])
    np.testing.assert_allclose(emb, direct, atol=1e-6)
    assert "embedded 120" in result.stderr


# --- errors and bad input -------------------------------------------------------------------------------------


def test_bad_records_skipped_and_reported(corpus, tiny_model, fitted):
    good = corpus["pool"].read_bytes().splitlines()
    bad = corpus["dir"] / "bad.jsonl"
    bad.write_bytes(
        b"\n".join(
            [good[0], b"{not json", good[1], b'{"text": 5}', b'{"t": "x"}', b'"str"', b'{"text": "\xff\xfe"}', good[2]]
        )
        + b"\r\n"
    )
    result = run(["score", "-p", fitted, "-k", 100, "--model", tiny_model, bad])
    assert len(result.stdout_bytes.splitlines()) == 3
    for where in (
        ":2: malformed JSON",
        ":4: text field 'text' not a string",
        ":5: missing text field 'text'",
        ":6: not a JSON object",
        ":7: invalid UTF-8",
    ):
        assert f"bad.jsonl{where}" in result.stderr
    assert "read 8 records, scored 3, skipped 5" in result.stderr
    strict = run(["score", "-p", fitted, "-k", 100, "--model", tiny_model, "--strict", bad], code=1)
    assert "bad.jsonl:2: malformed JSON" in strict.stderr and strict.stdout_bytes == b""


def test_corrupt_stream_fails_and_keeps_previous_output(corpus, tiny_model, fitted):
    out = corpus["dir"] / "sel.jsonl"
    out.write_bytes(b"previous\n")
    data = zstandard.ZstdCompressor().compress(corpus["pool"].read_bytes())
    cut = corpus["dir"] / "cut.jsonl.zst"
    cut.write_bytes(data[:-10])
    result = run(["score", "-p", fitted, "-k", 5, "--model", tiny_model, cut, "-o", out], code=1)
    assert "cut.jsonl.zst: truncated or damaged zstd stream" in result.stderr
    assert out.read_bytes() == b"previous\n"


@pytest.mark.parametrize("case", ["empty target", "k zero", "missing file", "both", "neither", "tokens"])
def test_usage_errors_exit_2(corpus, tiny_model, fitted, case):
    empty = corpus["dir"] / "empty.jsonl"
    empty.write_bytes(b'\n{"x": 1}\n')
    args = {
        "empty target": ["score", "--target", empty, "-k", 3, corpus["pool"]],
        "k zero": ["score", "-p", fitted, "-k", 0, corpus["pool"]],
        "missing file": ["score", "-p", fitted, "-k", 3, corpus["dir"] / "nope.jsonl"],
        "both": ["score", "-p", fitted, "--target", corpus["target"], "-k", 3, corpus["pool"]],
        "neither": ["score", "-k", 3, corpus["pool"]],
        "tokens": ["score", "-p", fitted, "-k", 3, "--max-tokens", 64, corpus["pool"]],
    }[case]
    result = run(args + ["--model", tiny_model], code=2)
    message = {
        "empty target": "holds no usable records",
        "k zero": "x>=1",
        "missing file": "does not exist",
        "both": "exactly one of",
        "neither": "exactly one of",
        "tokens": "differs from the 128",
    }[case]
    assert message in result.stderr


def test_score_refuses_a_different_model(corpus, tiny_model, fitted, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_model, device="cpu")
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    other = tmp_path / "other-model"
    model.save(str(other))
    result = run(["score", "-p", fitted, "-k", 3, "--model", other, corpus["pool"]], code=2)
    assert "was fitted with model tiny-st" in result.stderr and "this run uses other-model" in result.stderr


def test_non_convergence_fails_loudly(corpus, tiny_model):
    out = corpus["dir"] / "x.gotd"
    result = run(
        [
            "fit",
            "--target",
            corpus["target"],
            corpus["pool"],
            "--model",
            tiny_model,
            "--epsilon",
            0.0005,
            "--max-iter",
            5,
            "-o",
            out,
        ],
        code=1,
    )
    assert "did not converge" in result.stderr and not out.exists()


def test_artifact_damage_is_refused(corpus, fitted):
    cut = corpus["dir"] / "cut.gotd"
    cut.write_bytes(fitted.read_bytes()[:-100])
    assert "truncated" in run(["info", cut], code=1).stderr
    from safetensors import safe_open
    from safetensors.numpy import save

    with safe_open(str(fitted), framework="numpy") as fh:
        header = json.loads(fh.metadata()["gotd_stream"])
        arrays = {key: fh.get_tensor(key) for key in fh.keys()}
    newer = corpus["dir"] / "newer.gotd"
    newer.write_bytes(save(arrays, metadata={"gotd_stream": json.dumps(dict(header, format_version=99))}))
    assert "format version 99 is newer" in run(["info", newer], code=1).stderr
    notes = corpus["dir"] / "notes.gotd"
    notes.write_bytes(b"hello")
    assert "not a gotd-stream potentials file" in run(["info", notes], code=1).stderr


def test_many_documents_different_sizes_stay_in_order(tmp_path, tiny_model):
    docs = make_docs(300, seed=9)
    pool = write_jsonl(tmp_path / "pool.jsonl", docs)
    target = write_jsonl(tmp_path / "t.jsonl", make_docs(10, seed=8, topics=("astronomy",)))
    out = run(
        ["score", "--dedup", "off", "--target", target, "-k", 300, "--model", tiny_model, "--batch-size", 4, pool, "-q"]
    )
    assert sorted(r["id"] for r in selected(out.stdout_bytes)) == sorted(d["id"] for d in docs)

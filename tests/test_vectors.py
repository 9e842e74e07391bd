"""The vectors space: precomputed embeddings read from a field, of any modality (`--features vectors`).

Synthetic vectors whose right answer is known (three kinds, tight clusters in 32 dimensions: the target's kind is
selected first, all of it before any other), the checks of each vector (a bad one is a skipped record with its
reason), Parquet list columns equal to JSONL, and the same exactness as the other spaces: merge, --state, Slurm
shares, a stream. No model: every run here is quick.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.conftest import run, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
DIM = 32
KINDS = ("portrait", "street", "food")


def photos(n: int, seed: int, kinds=(0, 1, 2), prefix: str = "img") -> list[dict]:
    """n records of an id, a kind and its vector (the kind's direction plus a little noise, as float32), no text."""
    centres = np.random.default_rng(1234).standard_normal((len(KINDS), DIM))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        vector = centres[kind] + 0.3 * rng.standard_normal(DIM)
        out.append({"id": f"{prefix}{seed}-{i}", "kind": KINDS[kind], "emb": vector.astype(np.float32).tolist()})
    return out


@pytest.fixture()
def corpus(tmp_path):
    """Three JSONL shards of 30 photos (10 of each kind), a target of street photos, an artifact fitted on them."""
    shards = [write_jsonl(tmp_path / f"photos-{i}.jsonl", photos(30, seed=i)) for i in range(3)]
    target = write_jsonl(tmp_path / "street.jsonl", photos(12, seed=9, kinds=(1,), prefix="t"))
    artifact = tmp_path / "street.gotd"
    fit = ["fit", "--features", "vectors", "--vector-field", "emb", "--target", target, "--sample-size", 200]
    run([*fit, *shards, "-o", artifact, "-q"])
    return {"dir": tmp_path, "shards": shards, "target": target, "artifact": artifact}


def lines(output: bytes) -> list[dict]:
    return [orjson.loads(line) for line in output.splitlines()]


def test_the_targets_kind_is_selected_first_all_of_it(corpus):
    out = run(["score", "-p", corpus["artifact"], "-k", 40, *corpus["shards"]])
    kept = lines(out.stdout_bytes)
    assert [r["kind"] for r in kept[:30]] == ["street"] * 30  # every street photo of the corpus, first
    assert {r["kind"] for r in kept[30:]} <= {"portrait", "food"} and len(kept) == 40
    scores = [r["gotd_score"] for r in kept]
    assert scores == sorted(scores) and scores[29] < scores[30]
    assert "read 90 records, scored 90, skipped 0, selected 40 records" in out.stderr
    assert "tokens" not in out.stderr  # a vector has no tokens to count


def test_a_bad_vector_is_a_skipped_record_with_its_reason(corpus):
    good = photos(3, seed=5)
    bad = corpus["dir"] / "bad.jsonl"
    rows = [
        good[0],  # line 1: fine, and holds no text at all
        {"id": "short", "emb": [1.0, 2.0]},
        {"id": "nan", "emb": [None] + [1.0] * (DIM - 1)},  # a NaN, as JSON writers put it
        {"id": "zero", "emb": [0.0] * DIM},
        {"id": "str", "emb": "0.1 0.2"},
        {"id": "none"},
        {"id": "mixed", "emb": ["a"] + [1.0] * (DIM - 1)},
        {"id": "huge", "emb": [1e39] + [1.0] * (DIM - 1)},  # finite in JSON, not in float32
        good[1],
    ]
    write_jsonl(bad, rows)
    with bad.open("ab") as fh:
        fh.write(b'{"id": "inf", "emb": [1E400' + b", 1" * (DIM - 1) + b"]}\n")  # JSON allows it: infinite
    out = run(["score", "-p", corpus["artifact"], "-k", 5, bad], code=0)
    assert "read 10 records, scored 2, skipped 8" in out.stderr
    for reason in (
        f"{bad}:2: vector of the wrong width: 2 numbers where the fit's vectors have {DIM}",
        f"{bad}:3: vector not finite: number 1 is null",
        f"{bad}:4: vector of zero norm",
        f"{bad}:5: vector field 'emb' not a list of numbers: got a str",
        f"{bad}:6: missing vector field 'emb': keys seen: id",
        f"{bad}:7: vector field 'emb' not a list of numbers: item 1 is a str",
        f"{bad}:8: vector not finite: number 1 (1e+39) is beyond float32",
        f"{bad}:10: vector not finite: number 1 is inf",
    ):
        assert reason in out.stderr
    summary = (
        "missing vector field 'emb': 1, vector field 'emb' not a list of numbers: 2, vector not finite: 3, "
        "vector of the wrong width: 1, vector of zero norm: 1"
    )
    assert summary in out.stderr
    assert {r["id"] for r in lines(out.stdout_bytes)} == {good[0]["id"], good[1]["id"]}
    strict = run(["score", "-p", corpus["artifact"], "-k", 5, "--strict", bad], code=1)
    assert f"{bad}:2: vector of the wrong width" in strict.stderr
    assert "skipped 8" in run(["score", "-p", corpus["artifact"], "-k", 5, "--max-skipped", 8, bad], code=3).stderr


def test_target_vectors_must_share_one_width(corpus):
    d = corpus["dir"]
    target = photos(4, seed=7, kinds=(1,))
    target[2]["emb"] = target[2]["emb"][:16]
    mixed = write_jsonl(d / "mixed.jsonl", target)
    fit = ["fit", "--features", "vectors", "--vector-field", "emb", *corpus["shards"], "-o", d / "x.gotd"]
    failed = run([*fit, "--target", mixed], code=2)
    assert f"{mixed}:3: a vector of 16 numbers, but the target's first ({mixed}:1) has {DIM}" in failed.stderr
    narrow = write_jsonl(d / "narrow.jsonl", [dict(r, emb=r["emb"][:16]) for r in photos(3, seed=8, kinds=(0,))])
    several = run([*fit, "--target", f"a={corpus['target']}:1", "--target", f"b={narrow}:1"], code=2)
    assert (
        f"{narrow}:1: a vector of 16 numbers, but the target's first ({corpus['target']}:1) has {DIM}" in several.stderr
    )
    # the candidates of another width are skipped, not fatal: the target sets the width
    shard = write_jsonl(d / "narrow-shard.jsonl", [dict(r, emb=r["emb"][:16]) for r in photos(3, seed=8)])
    done = run(["fit", "--features", "vectors", "--vector-field", "emb", "--target", corpus["target"],
                *corpus["shards"], shard, "-o", d / "y.gotd"])  # fmt: skip
    assert "skipped 3 (vector of the wrong width: 3)" in done.stderr


def _parquet(path: Path, docs: list[dict], kind) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "id": [d["id"] for d in docs],
        "kind": [d["kind"] for d in docs],
        "emb": pa.array([d["emb"] for d in docs], type=kind),
    }
    pq.write_table(pa.table(columns), path, row_group_size=7)
    return path


def test_parquet_list_columns_select_what_jsonl_selects(corpus):
    import pyarrow as pa

    d = corpus["dir"]
    docs = [r for i in range(3) for r in photos(30, seed=i)]
    docs[4]["emb"] = [float("nan")] + docs[4]["emb"][1:]  # a NaN in the column: skipped, as in JSONL
    shortest = d / "shortest.jsonl"  # the float32 values as float32's shortest decimals, as many writers put them
    shortest.write_bytes(
        b"".join(
            b'{"id":"%s","emb":[%s]}\n' % (r["id"].encode(), ",".join(str(np.float32(v)) for v in r["emb"]).encode())
            if i != 4
            else orjson.dumps(r) + b"\n"
            for i, r in enumerate(docs)
        )
    )
    exact = write_jsonl(d / "exact.jsonl", docs)  # orjson writes each float32 value exactly, as a float64
    inputs = {
        "fixed": _parquet(d / "fixed.parquet", docs, pa.list_(pa.float32(), DIM)),
        "list64": _parquet(d / "list64.parquet", docs, pa.list_(pa.float64())),
        "exact": exact,
        "shortest": shortest,
    }
    chosen = {}
    for name, path in inputs.items():
        out = run(["score", "-p", corpus["artifact"], "-k", 50, path])
        assert "scored 89, skipped 1 (vector not finite: 1)" in out.stderr, name
        assert f"{path}:5: vector not finite" in out.stderr
        chosen[name] = [(r["id"], r["gotd_score"]) for r in lines(out.stdout_bytes)]
    assert chosen["fixed"] == chosen["list64"] == chosen["exact"] == chosen["shortest"]  # the same bits
    one = lines(run(["score", "-p", corpus["artifact"], "-k", 1, "--no-score", inputs["fixed"]]).stdout_bytes)[0]
    emb = next(r["emb"] for r in docs if r["id"] == one["id"])
    assert one["emb"] == emb and isinstance(one["emb"][0], float)  # the row's vector written back exactly


def test_merge_state_shares_and_a_stream_equal_one_pass(corpus):
    d, shards, artifact = corpus["dir"], corpus["shards"], corpus["artifact"]
    score = ["score", "-p", artifact, "-k", 25]
    one = run([*score, *shards]).stdout_bytes
    parts = []
    for i, shard in enumerate(shards):
        run([*score, shard, "-o", d / f"part-{i}.jsonl"])
        parts.append(d / f"part-{i}.jsonl")
    assert run(["merge", "-k", 25, *parts]).stdout_bytes == one
    first = run([*score, "--state", d / "state", *shards[:2], "-o", d / "a.jsonl"])
    again = run([*score, "--state", d / "state", *shards, "-o", d / "b.jsonl"])
    assert "0 shards from" in first.stderr and "2 shards from" in again.stderr
    assert (d / "b.jsonl").read_bytes() == one
    for i in range(2):
        run([*score, "--shard-index", i, "--num-shards", 2, "--state", d / f"st-{i}", "-o", d / f"o-{i}", *shards])
    assert run(["merge", "-k", 25, d / "st-0", d / "st-1"]).stdout_bytes == one
    # fitted on a stream's first records (all of them here) or on the files' bottom-k sample (all of them): the
    # same sample in the same order, so the same selection
    fit = ["--target", corpus["target"], "--features", "vectors", "--vector-field", "emb", "--sample-size", 200]
    stream = b"".join(s.read_bytes() for s in shards) + b'{"id": "narrow", "emb": [1.0, 2.0]}\n'
    piped = run(["score", *fit, "-k", 25, "--no-score"], input=stream)
    assert "skipped 1 (vector of the wrong width: 1)" in piped.stderr
    cat = d / "all.jsonl"
    cat.write_bytes(stream)
    assert piped.stdout_bytes == run(["score", *fit, "-k", 25, "--no-score", cat]).stdout_bytes
    assert piped.stdout_bytes == run([*score, "--no-score", *shards]).stdout_bytes


def test_several_targets_in_the_vectors_space(corpus):
    d = corpus["dir"]
    portraits = write_jsonl(d / "portraits.jsonl", photos(10, seed=11, kinds=(0,), prefix="p"))
    targets = ["--target", f"street={corpus['target']}:0.5", "--target", f"portrait={portraits}:0.5"]
    fit = ["fit", "--features", "vectors", "--vector-field", "emb", *targets, *corpus["shards"]]
    run([*fit, "-o", d / "mix.gotd", "-q"])
    out = run(["score", "-p", d / "mix.gotd", "-k", 20, "--mix", "quota", *corpus["shards"]])
    kinds = sorted(r["kind"] for r in lines(out.stdout_bytes))
    assert kinds == ["portrait"] * 10 + ["street"] * 10
    info = run(["info", d / "mix.gotd"]).stdout
    assert f"vectors (precomputed, {DIM} dims, read from the field 'emb')" in info and "targets:         2" in info
    parts = [d / f"m-{i}.jsonl" for i in range(3)]
    for shard, part in zip(corpus["shards"], parts, strict=True):
        run(["score", "-p", d / "mix.gotd", "-k", 20, "--candidates", shard, "-o", part])
    assert run(["merge", "-p", d / "mix.gotd", "-k", 20, *parts]).stdout_bytes == out.stdout_bytes


def test_info_on_a_vectors_artifact(corpus):
    shown = run(["info", corpus["artifact"]]).stdout
    assert f"features:        vectors (precomputed, {DIM} dims, read from the field 'emb')" in shown
    assert "model:           none (the vectors space needs no model)" in shown
    header = json.loads(run(["info", "--json", corpus["artifact"]]).stdout)
    assert header["features"] == {"space": "vectors", "field": "emb", "dim": DIM, "min_norm": 1e-06}
    assert header["model"] is None and header["target_shape"] == [12, DIM]


def test_another_field_at_score_and_the_options_that_make_no_sense(corpus, tmp_path):
    d, artifact, shards = corpus["dir"], corpus["artifact"], corpus["shards"]
    renamed = write_jsonl(d / "renamed.jsonl", [{"id": r["id"], "clip": r["emb"]} for r in photos(30, seed=0)])
    same = run(["score", "-p", artifact, "-k", 10, "--vector-field", "clip", renamed]).stdout_bytes
    ids = [r["id"] for r in lines(run(["score", "-p", artifact, "-k", 10, shards[0]]).stdout_bytes)]
    assert [r["id"] for r in lines(same)] == ids
    nothing = run(["score", "-p", artifact, "-k", 10, renamed], code=1).stderr
    assert "skipped (missing vector field 'emb': 30); check --vector-field and the input format" in nothing
    assert "has no meaning" not in run(["score", "-p", artifact, "-k", 3, shards[0]]).stderr
    refused = {
        "--tokens": (["score", "-p", artifact, "--tokens", 100, *shards], "the vectors space has no text to count"),
        "--unit chunk": (["score", "-p", artifact, "-k", 5, "--unit", "chunk", *shards], "--unit chunk: the vectors"),
        "no field": (["fit", "--features", "vectors", "--target", corpus["target"], *shards, "-o", d / "n.gotd"],
                     "the vectors space reads the field --vector-field names"),
        "field elsewhere": (["fit", "--features", "lexical", "--vector-field", "emb", "--target", corpus["target"],
                             *shards, "-o", d / "n.gotd"], "--vector-field applies to the vectors space only"),
        "max tokens": (["score", "-p", artifact, "-k", 5, "--max-tokens", 64, *shards], "--max-tokens has no meaning"),
        "fit then tokens": (["score", "--target", corpus["target"], "--features", "vectors", "--vector-field", "emb",
                             "--tokens", 100, *shards], "the vectors space has no text to count"),
    }  # fmt: skip
    for name, (args, message) in refused.items():
        assert message in run(args, code=2).stderr, name
    lexical_docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": "the striker scored a goal"}] * 3)
    run(["fit", "--features", "lexical", "--target", lexical_docs, lexical_docs, "-o", d / "lex.gotd", "-q"])
    wrong = run(["score", "-p", d / "lex.gotd", "-k", 2, "--vector-field", "emb", lexical_docs], code=2)
    assert "--vector-field has no meaning for the lexical space" in wrong.stderr


def test_the_space_loads_no_model_and_imports_no_torch(corpus):
    code = f"""
import sys
from gotd_stream.features import featurizer_for, ModelSettings
from gotd_stream.io.records import Skips, read_records
from gotd_stream.select.artifact import load
featurizer = featurizer_for(load({str(corpus["artifact"])!r}), ModelSettings())
rows = featurizer.encode([r.text for r in read_records([{str(corpus["shards"][0])!r}], featurizer.field, Skips())])
assert rows.shape == (30, {DIM}) and abs((rows * rows).sum(1) - 1).max() < 1e-6
print(sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules))
"""
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    import os

    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # the space itself; the OT (select.ot) runs in torch, in every space
    from gotd_stream.features import ModelSettings, semantic_model

    assert semantic_model("vectors", ModelSettings(device="cpu"))[0] is None  # no model to load


def test_report_reads_the_vector_field(corpus):
    selected = corpus["dir"] / "selected.jsonl"
    run(["score", "-p", corpus["artifact"], "-k", 10, *corpus["shards"], "-o", selected])
    pool = corpus["dir"] / "pool.jsonl"
    pool.write_bytes(corpus["shards"][0].read_bytes() + b'{"id": "zero", "emb": [' + b",".join([b"0"] * DIM) + b"]}\n")
    made = run(["report", "-p", corpus["artifact"], selected, "--pool", pool, "--json"])
    report = json.loads(made.stdout)
    assert report["selection"]["records"] == 10 and report["pool"]["records"] == 30
    assert report["pool"]["skipped"] == {"vector of zero norm": 1}  # in the report, with its reason
    ot = report["ot"]["targets"][0]
    assert ot["to_selection"] < ot["to_pool"]  # the selection (all street photos) is nearer the target

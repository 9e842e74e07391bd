"""The distilled scorer (the student) and the cascade: stored and checked in the artifact, scoring without torch,
ranking like the teacher, and exact under merge and --state (the lexical space as teacher: no model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import make_docs, run, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Three shards of mixed topics, a football target, a plain and a distilled artifact (lexical space)."""
    d = tmp_path_factory.mktemp("distill")
    docs = make_docs(240, seed=5)
    shards = [write_jsonl(d / f"part-{i}.jsonl", docs[i::3]) for i in range(3)]
    target = write_jsonl(d / "target.jsonl", make_docs(12, seed=6, topics=("football",)))
    plain, distilled = d / "plain.gotd", d / "distilled.gotd"
    base = ["fit", "--features", "lexical", "--target", target, *shards, "-q"]
    run([*base, "-o", plain])
    run([*base, "--distill", "-o", distilled])
    return {"dir": d, "shards": shards, "target": target, "plain": plain, "distilled": distilled, "docs": docs}


def score(artifact, shards, *extra, k=20, code=0):
    return run(["score", "-p", artifact, "-k", k, *extra, *shards], code=code)


def lines(result) -> list[dict]:
    return [orjson.loads(line) for line in result.stdout_bytes.splitlines()]


def test_student_is_stored_checksummed_and_reloaded(fitted):
    import gotd_stream as gs

    plain, distilled = gs.load(str(fitted["plain"])), gs.load(str(fitted["distilled"]))
    assert plain.student is None and distilled.student is not None
    # the teacher's fit is the same: the student is not part of the fit id
    assert plain.fit_id == distilled.fit_id and distilled.student_id not in (None, distilled.fit_id)
    again = fitted["dir"] / "again.gotd"
    distilled.save(str(again))
    reloaded = gs.load(str(again))
    assert reloaded.student.digest() == distilled.student.digest()
    assert (reloaded.student.weights == distilled.student.weights).all()
    info = run(["info", fitted["distilled"]])
    assert info.exit_code == 0


def resave(path: Path, out: Path, change) -> Path:
    """The artifact at `path` with `change(header, tensors)` applied, checksummed again (or not)."""
    from safetensors.numpy import save

    from gotd_stream.select.artifact import checksum, load

    artifact = load(str(path))
    header, tensors = artifact.header(), artifact.tensors()
    keep_sum = change(header, tensors)
    header["checksum"] = checksum(header, tensors) if keep_sum is not False else "sha256:0"
    out.write_bytes(save(tensors, metadata={"gotd_stream": json.dumps(header)}))
    return out


def test_damaged_student_is_refused(fitted):
    from gotd_stream.select.artifact import ArtifactError, load

    d = fitted["dir"]

    def flip(header, tensors):
        tensors["student.weights"] = tensors["student.weights"].copy()
        tensors["student.weights"][0] += 1
        return False  # the old checksum: damage after the fit

    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load(str(resave(fitted["distilled"], d / "flipped.gotd", flip)))

    def nan_bias(header, tensors):
        header["student"]["bias"] = "x"

    with pytest.raises(ArtifactError, match="student bias 'x' is not a finite number"):
        load(str(resave(fitted["distilled"], d / "bias.gotd", nan_bias)))

    def unsorted(header, tensors):
        tensors["student.sample"] = tensors["student.sample"][::-1].copy()

    with pytest.raises(ArtifactError, match="student sample scores are not sorted"):
        load(str(resave(fitted["distilled"], d / "unsorted.gotd", unsorted)))

    def orphan(header, tensors):
        del header["student"]

    damaged = resave(fitted["distilled"], d / "orphan.gotd", orphan)
    with pytest.raises(ArtifactError, match="student arrays without a student header"):
        load(str(damaged))
    result = run(["score", "-p", damaged, "-k", 3, fitted["shards"][0]], code=1)
    assert "orphan.gotd" in result.stderr and "student arrays without a student header" in result.stderr


def test_student_ranks_target_like_documents_first(fitted):
    chosen = lines(score(fitted["distilled"], fitted["shards"], "--scorer", "student"))
    assert len(chosen) == 20
    assert sum(doc["topic"] == "football" for doc in chosen) >= 18
    import gotd_stream as gs
    from gotd_stream.select.distill import spearman

    artifact = gs.load(str(fitted["distilled"]))
    texts = [d["text"] for d in fitted["docs"]]
    teacher = gs.score_texts(texts, gs.featurizer_for(artifact, gs.ModelSettings()), artifact)
    assert spearman(artifact.student(texts), teacher) > 0.8
    # the student's lines carry its id, not the fit's
    assert {d["gotd_fit"] for d in chosen} == {artifact.student_id}
    # auto is the cascade on a distilled artifact: the student's sieve, the teacher's scores
    auto = score(fitted["distilled"], fitted["shards"])
    assert auto.stdout_bytes == score(fitted["distilled"], fitted["shards"], "--scorer", "cascade").stdout_bytes
    assert "scorer cascade" in auto.stderr and "below the cascade threshold" in auto.stderr


def test_a_thin_cascade_warns_on_the_corpus_not_on_a_shard_of_it(fitted):
    """The warning that the teacher saw fewer than twice the records kept: on the whole corpus the fit sampled, but
    not on one of its shards (with k the merge's, a shard keeps a larger share than the merged selection does)."""
    thin = "too thin a margin"
    whole = score(fitted["distilled"], fitted["shards"], "--scorer", "cascade", "--cascade-share", "0.3", k=60)
    assert thin in whole.stderr
    shard = score(fitted["distilled"], fitted["shards"][:1], "--scorer", "cascade", "--cascade-share", "0.3", k=60)
    assert thin not in shard.stderr and "below the cascade threshold" in shard.stderr


def test_teacher_on_a_distilled_artifact_is_the_plain_selection(fitted):
    plain = score(fitted["plain"], fitted["shards"])
    teacher = score(fitted["distilled"], fitted["shards"], "--scorer", "teacher")
    assert plain.stdout_bytes == teacher.stdout_bytes and plain.stdout_bytes


def test_student_or_cascade_needs_a_student(fitted):
    for scorer in ("student", "cascade"):
        result = score(fitted["plain"], fitted["shards"], "--scorer", scorer, code=2)
        assert "--distill" in result.stderr and "--scorer" in result.stderr


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan"])
def test_bad_cascade_share_is_refused(fitted, value):
    result = score(fitted["distilled"], fitted["shards"], "--scorer", "cascade", "--cascade-share", value, code=2)
    assert "--cascade-share" in result.stderr


def test_cascade_share_needs_the_cascade(fitted):
    result = score(fitted["distilled"], fitted["shards"], "--scorer", "teacher", "--cascade-share", "0.5", code=2)
    assert "--cascade-share" in result.stderr and "--scorer" in result.stderr
    # auto is the cascade only where the artifact holds a student
    result = score(fitted["plain"], fitted["shards"], "--cascade-share", "0.5", code=2)
    assert "--cascade-share" in result.stderr and "--distill" in result.stderr
    auto = score(fitted["distilled"], fitted["shards"], "--cascade-share", "0.5")
    assert (
        auto.stdout_bytes
        == score(fitted["distilled"], fitted["shards"], "--scorer", "cascade", "--cascade-share", "0.5").stdout_bytes
    )


def test_cascade_keeps_teacher_scores_of_passing_records(fitted):
    import gotd_stream as gs
    from gotd_stream.select.distill import passing

    artifact = gs.load(str(fitted["distilled"]))
    result = score(fitted["distilled"], fitted["shards"], "--scorer", "cascade", "--cascade-share", "0.5", k=500)
    kept = lines(result)
    passed = passing([artifact.student], 0.5, [d["text"] for d in fitted["docs"]])
    assert 0 < len(kept) == int(passed.sum()) < len(fitted["docs"])
    assert f"{len(fitted['docs']) - len(kept)} below the cascade threshold" in result.stderr
    # k = 500 is more than the cascade passed: its share was short, not the input
    below = len(fitted["docs"]) - len(kept)
    assert (
        f"the records the cascade passed ({below} were below its threshold: raise --cascade-share) held fewer "
        "than 500 usable records: every one was kept" in result.stderr
    )
    plain = score(fitted["plain"], fitted["shards"], k=500)
    assert "score: the input held fewer than 500 usable records: every one was kept" in plain.stderr
    teacher = {d["id"]: d["gotd_score"] for d in lines(score(fitted["plain"], fitted["shards"], k=500))}
    assert all(d["gotd_score"] == teacher[d["id"]] for d in kept)  # the teacher's own scores
    assert len({d["gotd_fit"] for d in kept}) == 1 and kept[0]["gotd_fit"] != artifact.fit_id


@pytest.mark.parametrize("scorer", [["--scorer", "student"], ["--scorer", "cascade", "--cascade-share", "0.3"]])
def test_merge_of_shards_and_state_resume_equal_one_pass(fitted, scorer, tmp_path):
    one = score(fitted["distilled"], fitted["shards"], *scorer)
    outs = []
    for i, shard in enumerate(fitted["shards"]):
        out = tmp_path / f"node{i}.jsonl"
        score(fitted["distilled"], [shard], *scorer, "-o", out)
        outs.append(out)
    merged = run(["merge", "-k", 20, *outs])
    assert merged.stdout_bytes == one.stdout_bytes
    state = tmp_path / "state"
    score(fitted["distilled"], fitted["shards"][:2], *scorer, "--state", state, "-q")
    resumed = score(fitted["distilled"], fitted["shards"], *scorer, "--state", state)
    assert "2 shards from" in resumed.stderr and resumed.stdout_bytes == one.stdout_bytes
    if "cascade" in scorer:  # the records the cascade left out are counted for the reused shards too
        said = one.stderr.split("skipped 0, ")[1].split(" below")[0]
        assert int(said) > 0 and f"skipped 0, {said} below the cascade threshold" in resumed.stderr


def test_merge_refuses_student_with_teacher_lines(fitted, tmp_path):
    student, teacher = tmp_path / "student.jsonl", tmp_path / "teacher.jsonl"
    score(fitted["distilled"], fitted["shards"][:1], "--scorer", "student", "-o", student)
    score(fitted["distilled"], fitted["shards"][1:], "--scorer", "teacher", "-o", teacher)
    result = run(["merge", "-k", 5, student, teacher], code=2)
    assert "different potentials or scorers" in result.stderr
    # with the artifact: the scorer named must be the one the lines were scored by
    run(["merge", "-k", 5, "-p", fitted["distilled"], "--scorer", "student", student])
    result = run(["merge", "-k", 5, "-p", fitted["distilled"], student], code=2)  # auto: the cascade
    assert "scored by its student, pass --scorer student" in result.stderr
    result = run(["merge", "-k", 5, "-p", fitted["distilled"], "--scorer", "teacher", student], code=2)
    assert "not with" in result.stderr


@pytest.mark.parametrize("rule", [[], ["--select", "sample"]])
def test_student_with_tokens_and_pieces_merges_exactly(fitted, rule, tmp_path):
    extra = ["--scorer", "student", "--tokens", "300", "--tokenizer", "estimate", "--chunk-tokens", "8", *rule]
    one = run(["score", "-p", fitted["distilled"], *extra, *fitted["shards"]])
    pieces = lines(one)
    assert pieces and all("gotd_span" in d and "gotd_tokens" in d for d in pieces)
    assert sum(d["topic"] == "football" for d in pieces) >= 0.8 * len(pieces)
    outs = []
    for i, shard in enumerate(fitted["shards"]):
        outs.append(tmp_path / f"t{i}.jsonl")
        run(["score", "-p", fitted["distilled"], *extra, shard, "-o", outs[-1]])
    assert run(["merge", "--tokens", "300", *outs]).stdout_bytes == one.stdout_bytes


def test_student_path_imports_no_torch(fitted):
    code = f"""
import sys
from gotd_stream.cli import cli
try:
    cli(["score", "-p", {str(fitted["distilled"])!r}, "-k", "5", "--scorer", "student", "-q",
         *{[str(s) for s in fitted["shards"]]!r}], standalone_mode=False)
finally:
    heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
    print("HEAVY", heavy, file=sys.stderr)
"""
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    assert len(done.stdout.splitlines()) == 5


def test_several_targets_one_student_each(fitted, tmp_path):
    import gotd_stream as gs

    cooking = write_jsonl(tmp_path / "cooking.jsonl", make_docs(12, seed=7, topics=("cooking",)))
    mix = tmp_path / "mix.gotd"
    run(
        [
            "fit",
            "--features",
            "lexical",
            "--distill",
            "--target",
            f"football={fitted['target']}:1",
            "--target",
            f"cooking={cooking}:1",
            *fitted["shards"],
            "-o",
            mix,
            "-q",
        ]
    )
    artifact = gs.load(str(mix))
    assert all(part.student is not None for part in artifact.parts)
    one = score(mix, fitted["shards"], "--scorer", "student", "--mix", "sum")
    chosen = lines(one)
    assert {d["topic"] for d in chosen} <= {"football", "cooking"} and len(chosen) == 20
    outs = []
    for i, shard in enumerate(fitted["shards"]):
        out = tmp_path / f"mix{i}.jsonl"
        score(mix, [shard], "--scorer", "cascade", "--candidates", "-o", out)
        outs.append(out)
    whole = score(mix, fitted["shards"], "--scorer", "cascade")
    merged = run(["merge", "-k", 20, "-p", mix, "--scorer", "cascade", *outs])
    assert merged.stdout_bytes == whole.stdout_bytes
    refused = run(["merge", "-k", 20, "-p", mix, "--scorer", "student", *outs], code=2)
    assert "not with the artifact" in refused.stderr


@pytest.fixture(scope="module")
def transformer_fits(tiny_model, tmp_path_factory):
    """Default fits with a transformer teacher: on 1,200 documents (a student by default) and on 300 (none)."""
    d = tmp_path_factory.mktemp("auto")
    docs = make_docs(1200, seed=8)
    big, small = write_jsonl(d / "big.jsonl", docs), write_jsonl(d / "small.jsonl", docs[:300])
    target = write_jsonl(d / "target.jsonl", make_docs(12, seed=9, topics=("football",)))
    paths = {"dir": d, "big": big, "small": small}
    for name, corpus in (("big", big), ("small", small)):
        paths[f"{name}.gotd"] = d / f"{name}.gotd"
        run(["fit", "--model", tiny_model, "--target", target, corpus, "-o", paths[f"{name}.gotd"], "-q"])
    return paths


def test_default_fit_distills_a_transformer_teacher_and_score_uses_the_cascade(transformer_fits, tiny_model):
    import gotd_stream as gs

    big, small = gs.load(str(transformer_fits["big.gotd"])), gs.load(str(transformer_fits["small.gotd"]))
    assert big.student is not None  # the default on a transformer space with a sample of 1,000 or more
    assert small.student is None  # 300 documents: too few to teach a student
    result = run(
        ["score", "-p", transformer_fits["big.gotd"], "--model", tiny_model, "-k", 10, transformer_fits["big"]]
    )
    assert "scorer cascade" in result.stderr and "below the cascade threshold" in result.stderr
    cascade = run(
        [
            "score",
            "-p",
            transformer_fits["big.gotd"],
            "--model",
            tiny_model,
            "-k",
            10,
            "--scorer",
            "cascade",
            transformer_fits["big"],
        ]
    )
    assert result.stdout_bytes == cascade.stdout_bytes and len(lines(result)) == 10
    plain = run(
        ["score", "-p", transformer_fits["small.gotd"], "--model", tiny_model, "-k", 10, transformer_fits["small"]]
    )
    assert "cascade" not in plain.stderr and len(lines(plain)) == 10


def test_the_cascade_share_follows_the_budget(transformer_fits, tiny_model):
    import gotd_stream as gs
    from gotd_stream.select.distill import CASCADE_MARGIN, CHARS_PER_TOKEN, DEFAULT_CASCADE_SHARE, cascade_share

    artifact = gs.load(str(transformer_fits["big.gotd"]))
    assert artifact.fit["candidates_seen"] == 1200
    # k = 10 keeps 0.8% of the corpus: the floor; k = 50 keeps 4.2%: the teacher sees CASCADE_MARGIN times that
    assert cascade_share(artifact, 10, None) == DEFAULT_CASCADE_SHARE
    assert cascade_share(artifact, 50, None) == pytest.approx(CASCADE_MARGIN * 50 / 1200, abs=1e-4)
    assert cascade_share(artifact, 600, None) == 1.0
    chars = artifact.student.info["sample_chars"]
    assert chars > 0
    tokens = 2000
    assert cascade_share(artifact, None, tokens) == pytest.approx(
        CASCADE_MARGIN * tokens / (1200 * chars / CHARS_PER_TOKEN), abs=1e-4
    )
    args = ["score", "-p", transformer_fits["big.gotd"], "--model", tiny_model, transformer_fits["big"]]
    wide = run([*args, "-k", 50])
    assert f"above its {cascade_share(artifact, 50, None):g}-quantile" in wide.stderr and len(lines(wide)) == 50
    assert "warning" not in wide.stderr
    # told a share too small for the budget: fewer records reach the teacher than twice the kept, and it says so
    thin = run([*args, "-k", 50, "--cascade-share", "0.05"])
    assert "warning: the cascade sent the model only" in thin.stderr and "--cascade-share" in thin.stderr


def test_cascade_shards_merge_with_the_artifact_at_their_budget(transformer_fits, tiny_model, tmp_path):
    docs = [orjson.loads(line) for line in transformer_fits["big"].read_bytes().splitlines()]
    shards = [write_jsonl(tmp_path / f"s{i}.jsonl", docs[i::3]) for i in range(3)]
    base = ["score", "-p", transformer_fits["big.gotd"], "--model", tiny_model, "-k", 60]
    one = run([*base, *shards])
    outs = [tmp_path / f"out{i}.jsonl" for i in range(3)]
    for shard, out in zip(shards, outs, strict=True):
        run([*base, shard, "-o", out, "-q"])
    merged = run(["merge", "-k", 60, "-p", transformer_fits["big.gotd"], *outs])
    assert merged.stdout_bytes == one.stdout_bytes and len(lines(merged)) == 60
    other = run(["merge", "-k", 30, "-p", transformer_fits["big.gotd"], *outs], code=2)
    assert "merge with the budget they were scored with" in other.stderr


def test_explicit_distill_wins_over_the_default(transformer_fits, tiny_model, tiny_static):
    import gotd_stream as gs

    d = transformer_fits["dir"]
    target = d / "target.jsonl"
    forced, static = d / "forced.gotd", d / "static.gotd"
    run(["fit", "--model", tiny_model, "--distill", "--target", target, transformer_fits["small"], "-o", forced, "-q"])
    assert gs.load(str(forced)).student is not None
    run(["fit", "--model", tiny_static, "--target", target, transformer_fits["big"], "-o", static, "-q"])
    assert gs.load(str(static)).student is None  # a static model is already cheap: no student by default

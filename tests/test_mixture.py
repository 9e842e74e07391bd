"""Several targets with weights, as a user runs them: `--target NAME=FILE:WEIGHT`, `--mix quota|sum`, exact merges.

The lexical space (no model) with 1,024 hashed buckets keeps every fit quick. The checks are made against
computations of their own: the quotas of exact rationals, a brute-force draft over every record's scores, the
weighted sum of single-target runs, and one run against its shards merged or resumed.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from gotd_stream.select.artifact import FORMAT_VERSION, MIX_FORMAT_VERSION
from gotd_stream.select.targets import quotas
from tests.conftest import make_docs, run, write_jsonl

LEXICAL = ["--features", "lexical", "--sample-size", 120]


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,024 buckets instead of 32,768: a 1 MB projection, so that the many fits below take milliseconds."""
    monkeypatch.setattr("gotd_stream.select.fit.LEXICAL_BUCKETS", 1024)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three pool shards of mixed topics, and a target file per topic."""
    d = tmp_path_factory.mktemp("mixture")
    docs = make_docs(300, seed=1)
    shards = [write_jsonl(d / f"shard{i}.jsonl", docs[i * 100 : (i + 1) * 100]) for i in range(3)]
    targets = {}
    for seed, topic in ((2, "cooking"), (3, "football"), (4, "astronomy")):
        targets[topic] = write_jsonl(d / f"{topic}.jsonl", [x for x in make_docs(60, seed=seed) if x["topic"] == topic])
    return {"dir": d, "shards": shards, "targets": targets, "docs": docs}


def fit(data: dict, out: str, *targets: str, extra=()) -> Path:
    path = data["dir"] / out
    args = [a for spec in targets for a in ("--target", spec)]
    run(["fit", *LEXICAL, *args, *data["shards"], "-o", path, "-q", *extra])
    return path


def refused(args: list, code: int = 2) -> str:
    """The stderr of a run that must fail with `code`."""
    return run(args, code=code).stderr


def lines(result) -> list[dict]:
    return [orjson.loads(line) for line in result.stdout_bytes.splitlines()]


@pytest.fixture(scope="module")
def mixture(data: dict) -> Path:
    """cooking 0.7, football 0.3."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gotd_stream.select.fit.LEXICAL_BUCKETS", 1024)
        t = data["targets"]
        return fit(data, "mix.gotd", f"cook={t['cooking']}:0.7", f"foot={t['football']}:0.3")


# --- one target: today's artifact and today's bytes ----------------------------------------------------------------


def test_one_target_in_any_form_gives_todays_artifact_and_bytes(data: dict) -> None:
    """A plain --target FILE is untouched; a lone named target means the same (its name and weight change nothing)."""
    import gotd_stream as gs

    cooking = data["targets"]["cooking"]
    plain = fit(data, "plain.gotd", str(cooking))
    named = fit(data, "named.gotd", f"cook={cooking}:0.25")
    assert plain.read_bytes() == named.read_bytes()
    artifact = gs.load(str(plain))
    assert (
        isinstance(artifact, gs.Potentials)
        and artifact.format_version == FORMAT_VERSION
        and "targets" not in artifact.header()
    )
    out = run(["score", "-p", plain, "-k", 20, *data["shards"], "-q"]).stdout_bytes
    assert out == run(["score", "--target", f"cook={cooking}:0.25", *LEXICAL, "-k", 20, *data["shards"]]).stdout_bytes
    assert all(b'"gotd_scores"' not in line and line.endswith(b'"}') for line in out.splitlines())
    assert all(b',"gotd_score":' in line for line in out.splitlines())
    # the library's single-target fit is that artifact
    fitted = gs.fit(
        [str(p) for p in data["shards"]],
        str(cooking),
        None,
        gs.FitSettings(space="lexical", sample_size=120, buckets=1024),
    )
    assert fitted.potentials.fit_id == artifact.fit_id


# --- the artifact --------------------------------------------------------------------------------------------------


def test_one_artifact_holds_every_target_and_info_lists_them(data: dict, mixture: Path) -> None:
    import gotd_stream as gs

    loaded = gs.load(str(mixture))
    assert isinstance(loaded, gs.Mixture) and loaded.format_version == MIX_FORMAT_VERSION
    assert loaded.names == ["cook", "foot"] and loaded.weights == [0.7, 0.3]
    # each part is exactly the single-target fit of its target on the same sample (the same fit id)
    single = gs.load(str(fit(data, "cook-only.gotd", str(data["targets"]["cooking"]))))
    assert loaded.parts[0].fit_id == single.fit_id != loaded.parts[1].fit_id
    text = run(["info", mixture]).stdout
    assert f"format version:  {MIX_FORMAT_VERSION} (several targets)" in text and "targets:         2" in text
    assert f"  cook: weight 0.7, 20 texts (of 20 in {data['targets']['cooking']})" in text
    assert "  foot: weight 0.3" in text and f"fit {single.fit_id}" in text
    header = json.loads(run(["info", "--json", mixture]).stdout)
    assert [(t["name"], t["weight"], t["fit_id"]) for t in header["targets"]][0] == ("cook", 0.7, single.fit_id)
    assert header["fit_id"] == loaded.fit_id and "mean_f" not in header


def test_a_damaged_mixture_is_refused(data: dict, mixture: Path, tmp_path: Path) -> None:
    from gotd_stream.select.artifact import checksum
    from tests.test_artifact import read, write

    raw = mixture.read_bytes()
    flipped = tmp_path / "flipped.gotd"
    flipped.write_bytes(raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 1]) + raw[len(raw) // 2 + 1 :])
    assert "checksum mismatch" in refused(["info", flipped], 1)
    for name, edit, detail in [
        ("dup", lambda h: h["targets"][1].update(name="cook"), "two targets are named 'cook'"),
        ("badname", lambda h: h["targets"][0].update(name="a b"), "is not a target name"),
        ("weight", lambda h: h["targets"][0].update(weight=-1), "weight -1 is not a positive finite number"),
        ("sum", lambda h: h["targets"][0].update(weight=0.9), "the target weights sum to 1.2, not 1"),
        ("v3", lambda h: h.update(format_version=3), "several targets in a format version 3 file"),
        ("meanf", lambda h: h["targets"][1].update(mean_f=1e9), "target foot: mean_f 1000000000.0 is not"),
    ]:
        header, arrays = read(mixture)
        edit(header)
        header["checksum"] = checksum(header, arrays)
        damaged = write(tmp_path / f"{name}.gotd", header, arrays)
        stderr = run(["score", "-p", damaged, "-k", 5, data["shards"][0]], code=1).stderr
        assert f"{damaged}: damaged or incompatible artifact (" in stderr and detail in stderr, (name, stderr)


# --- quota ---------------------------------------------------------------------------------------------------------


def reference_draft(records: list[dict], names: list[str], weights: list[float], k: int) -> list[tuple[str, str]]:
    """The quota rule by brute force: shares by exact rationals and largest remainder, every target's full
    ranking (score, then input order), then the draft rank by rank. [(id, target)] in the draft's order."""
    exact = [Fraction(w) for w in weights]
    shares = [k * w / sum(exact) for w in exact]
    quota = [int(s) for s in shares]
    for t in sorted(range(len(names)), key=lambda t: (-(shares[t] - quota[t]), t))[: k - sum(quota)]:
        quota[t] += 1
    rankings = [sorted(range(len(records)), key=lambda i: (records[i]["gotd_scores"][n], i)) for n in names]
    taken, counts, picked = set(), [0] * len(names), []
    for rank in range(len(records)):
        for t, ranking in enumerate(rankings):
            if counts[t] < quota[t] and ranking[rank] not in taken:
                taken.add(ranking[rank])
                counts[t] += 1
                picked.append((records[ranking[rank]]["id"], names[t]))
    return picked


def every_score(data: dict, artifact: Path) -> list[dict]:
    """Every record with its per-target scores, in input order (a sum selection of everything, re-sorted)."""
    everything = lines(
        run(["score", "--dedup", "off", "-p", artifact, "--mix", "sum", "-k", 10_000, *data["shards"], "-q"])
    )
    order = {doc["id"]: i for i, doc in enumerate(data["docs"])}
    return sorted(everything, key=lambda r: order[r["id"]])


@pytest.mark.parametrize("k", [1, 7, 10, 99, 250, 300, 400])
def test_quota_shares_hold_exactly_and_follow_the_draft(data: dict, mixture: Path, k: int) -> None:

    selected = lines(run(["score", "--dedup", "off", "-p", mixture, "-k", k, *data["shards"], "-q"]))
    expected = quotas(min(k, 300), [0.7, 0.3]) if k <= 300 else None
    counted = [sum(1 for r in selected if r["gotd_target"] == name) for name in ("cook", "foot")]
    if expected is not None:
        assert counted == expected and sum(counted) == k
    assert len({r["id"] for r in selected}) == len(selected) == min(k, 300)  # each document once
    for r in selected:
        assert r["gotd_score"] == r["gotd_scores"][r["gotd_target"]]
    if k <= 300:
        assert [(r["id"], r["gotd_target"]) for r in selected] == reference_draft(
            every_score(data, mixture), ["cook", "foot"], [0.7, 0.3], k
        )


def test_quota_with_three_targets_and_weights_to_normalise(data: dict) -> None:
    t = data["targets"]
    specs = [f"c={t['cooking']}:2", f"f={t['football']}:1", f"a={t['astronomy']}:1"]
    args = [a for spec in specs for a in ("--target", spec)]
    result = run(["score", *LEXICAL, *args, "-k", 10, *data["shards"]])
    assert "(weights normalised to sum to 1)" in result.stderr and "targets c 0.5, f 0.25, a 0.25" in result.stderr
    assert "selected 10 (c 5, f 3, a 2)" in result.stderr  # 5, 2.5, 2.5: the tie's extra one to the first given
    assert [r["gotd_target"] for r in lines(result)].count("f") == 3


def test_identical_targets_split_one_ranking(data: dict) -> None:
    """Two names for one target file rank everything alike: the draft takes each document once, the first target
    given reaching it first, and the second target takes the next ones down the ranking."""
    cooking = data["targets"]["cooking"]
    artifact = fit(data, "twins.gotd", f"a={cooking}:1", f"b={cooking}:1")
    selected = lines(run(["score", "--dedup", "off", "-p", artifact, "-k", 10, *data["shards"], "-q"]))
    single = lines(run(["score", "--dedup", "off", "--target", cooking, *LEXICAL, "-k", 10, *data["shards"]]))
    assert sorted(r["id"] for r in selected) == sorted(r["id"] for r in single)  # the same ten documents
    assert [r["gotd_target"] for r in selected].count("a") == 5
    assert {r["id"] for r in selected if r["gotd_target"] == "a"} == {r["id"] for r in single[:5]}


# --- sum -----------------------------------------------------------------------------------------------------------


def test_sum_is_the_weighted_sum_of_single_target_runs(data: dict, mixture: Path) -> None:
    """Each target's score is, to the bit, what a single-target fit of it gives; the sum is w1 s1 + w2 s2."""
    t = data["targets"]
    singles = {}
    for name, topic in (("cook", "cooking"), ("foot", "football")):
        out = run(["score", "--dedup", "off", "--target", t[topic], *LEXICAL, "-k", 10_000, *data["shards"]])
        singles[name] = {r["id"]: r["gotd_score"] for r in lines(out)}
    summed = lines(run(["score", "--dedup", "off", "-p", mixture, "--mix", "sum", "-k", 10_000, *data["shards"], "-q"]))
    assert len(summed) == 300
    for r in summed:
        assert r["gotd_scores"] == {"cook": singles["cook"][r["id"]], "foot": singles["foot"][r["id"]]}
        assert r["gotd_score"] == 0.7 * singles["cook"][r["id"]] + 0.3 * singles["foot"][r["id"]]
        assert "gotd_target" not in r
    order = {doc["id"]: i for i, doc in enumerate(data["docs"])}
    expected = sorted(
        summed, key=lambda r: (0.7 * singles["cook"][r["id"]] + 0.3 * singles["foot"][r["id"]], order[r["id"]])
    )
    top = lines(run(["score", "--dedup", "off", "-p", mixture, "--mix", "sum", "-k", 25, *data["shards"], "-q"]))
    assert [r["id"] for r in top] == [r["id"] for r in expected[:25]]


# --- merge and --state: exact ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [10, 150])
def test_merge_of_shard_candidates_equals_one_run(data: dict, mixture: Path, k: int) -> None:
    d = data["dir"]
    one = run(["score", "-p", mixture, "-k", k, *data["shards"], "-q"]).stdout_bytes
    parts = []
    for i, shard in enumerate(data["shards"]):
        part = d / f"cand{i}-{k}.jsonl{'.zst' if i == 1 else ''}"
        run(["score", "-p", mixture, "-k", k, "--candidates", shard, "-o", part, "-q"])
        parts.append(part)
    assert run(["merge", "-p", mixture, "-k", k, *parts]).stdout_bytes == one
    # a merge of merges: candidates of the first two shards, then with the third
    both = d / f"cand01-{k}.jsonl"
    run(["merge", "-p", mixture, "-k", k, "--candidates", parts[0], parts[1], "-o", both, "-q"])
    assert run(["merge", "-p", mixture, "-k", k, both, parts[2], "-q"]).stdout_bytes == one


def test_merge_is_exact_where_each_shard_must_keep_more_than_its_quota(data: dict, tmp_path: Path) -> None:
    """Twin targets draft down to rank k of one ranking: a shard that kept only its targets' top-(quota) would lose
    documents the merged draft needs. Each shard keeps every target's top-k, and the merge is exact."""
    cooking = data["targets"]["cooking"]
    artifact = fit(data, "twins2.gotd", f"a={cooking}:1", f"b={cooking}:1")
    one = run(["score", "-p", artifact, "-k", 40, *data["shards"], "-q"]).stdout_bytes
    parts = [tmp_path / f"c{i}.jsonl" for i in range(3)]
    for shard, part in zip(data["shards"], parts, strict=True):
        run(["score", "-p", artifact, "-k", 40, "--candidates", shard, "-o", part, "-q"])
    assert run(["merge", "-p", artifact, "-k", 40, *parts, "-q"]).stdout_bytes == one


def test_sum_outputs_merge_as_they_are(data: dict, mixture: Path, tmp_path: Path) -> None:
    one = run(["score", "--dedup", "off", "-p", mixture, "--mix", "sum", "-k", 30, *data["shards"], "-q"]).stdout_bytes
    parts = [tmp_path / f"s{i}.jsonl" for i in range(3)]
    for shard, part in zip(data["shards"], parts, strict=True):
        run(["score", "--dedup", "off", "-p", mixture, "--mix", "sum", "-k", 30, shard, "-o", part, "-q"])
    assert run(["merge", "-k", 30, *parts, "-q"]).stdout_bytes == one
    assert run(["merge", "-p", mixture, "-k", 30, *parts, "-q"]).stdout_bytes == one


@pytest.mark.parametrize("mix", ["quota", "sum"])
def test_state_resumes_to_one_runs_bytes(data: dict, mixture: Path, tmp_path: Path, mix: str) -> None:
    state = tmp_path / "state"
    one = run(["score", "-p", mixture, "--mix", mix, "-k", 40, *data["shards"], "-q"]).stdout_bytes
    first = run(["score", "-p", mixture, "--mix", mix, "-k", 40, "--state", state, data["shards"][0], "-q"])
    assert first.stdout_bytes != one
    again = run(["score", "-p", mixture, "--mix", mix, "-k", 40, "--state", state, *data["shards"]])
    assert again.stdout_bytes == one and "1 shards from" in again.stderr
    other = "sum" if mix == "quota" else "quota"  # the other mix keeps other candidates: the state starts over
    changed = run(["score", "-p", mixture, "--mix", other, "-k", 40, "--state", state, *data["shards"]])
    assert "starting it over" in changed.stderr and "0 shards from" in changed.stderr


def test_stdin_fits_on_the_head_and_keeps_the_quotas(data: dict) -> None:
    t = data["targets"]
    stream = b"".join(p.read_bytes() for p in data["shards"])
    args = ["score", *LEXICAL, "--target", f"cook={t['cooking']}:0.6", "--target", f"astro={t['astronomy']}:0.4"]
    result = run([*args, "-k", 10], input=stream)
    assert [r["gotd_target"] for r in lines(result)].count(
        "astro"
    ) == 4 and "selected 10 (cook 6, astro 4)" in result.stderr


def test_a_mixture_output_scores_again_as_plain_records(data: dict, mixture: Path, tmp_path: Path) -> None:
    """Re-scoring a selection strips the old fields first, several targets' fields too."""
    selected = tmp_path / "q.jsonl"
    run(["score", "-p", mixture, "-k", 10, *data["shards"], "-o", selected, "-q"])
    plain = fit(data, "cook2.gotd", str(data["targets"]["cooking"]))
    again = run(["score", "-p", plain, "-k", 10, selected, "-q", "--no-score"]).stdout_bytes
    originals = {orjson.dumps(doc) for doc in data["docs"]}
    assert again.splitlines() and all(line in originals for line in again.splitlines())


# --- what is refused -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a={cooking}:abc", "weight 'abc' is not a number"),
        ("a={cooking}:0", "weight 0.0 is not a positive finite number"),
        ("a={cooking}:-1", "weight -1.0 is not a positive finite number"),
        ("a={cooking}:nan", "weight nan is not a positive finite number"),
        ("a={cooking}:inf", "weight inf is not a positive finite number"),
        ("a b={cooking}:1", "target name 'a b' must be 1 to 64 letters, digits"),
        ('a"b={cooking}:1', "target name 'a\"b' must be"),
        ("={cooking}:1", "target name '' must be"),
        ("a={dir}/missing.jsonl:1", "missing.jsonl' does not exist"),
        ("a={dir}:1", "is a directory"),
    ],
)
def test_bad_target_specs_are_usage_errors_naming_the_flag(data: dict, spec: str, message: str) -> None:
    value = spec.format(cooking=data["targets"]["cooking"], dir=data["dir"])
    other = f"f={data['targets']['football']}:1"
    for command in (["fit", *LEXICAL, "-o", data["dir"] / "x.gotd"], ["score", *LEXICAL, "-k", 5]):
        stderr = run([*command, "--target", value, "--target", other, data["shards"][0]], code=2).stderr
        assert "Invalid value for '--target'" in stderr and message in stderr, stderr


def test_targets_that_cannot_go_together(data: dict, tmp_path: Path) -> None:
    t = data["targets"]
    shard = data["shards"][0]
    base = ["fit", *LEXICAL, "-o", tmp_path / "x.gotd", shard]
    stderr = run([*base, "--target", f"a={t['cooking']}", "--target", f"a={t['football']}:2"], code=2).stderr
    assert "two targets are named 'a' (--target)" in stderr
    stderr = run([*base, "--target", f"a={t['cooking']}", "--target", t["football"]], code=2).stderr
    assert "name each of several targets: --target NAME=FILE:WEIGHT" in stderr and str(t["football"]) in stderr
    many = [a for i in range(33) for a in ("--target", f"t{i}={t['cooking']}")]
    assert "33 targets given; at most 32" in refused([*base, *many], 2)
    big = ["--target", f"a={t['cooking']}:1e308", "--target", f"b={t['football']}:1e308"]
    assert "sum to inf" in refused([*base, *big], 2)


def test_an_empty_target_names_itself(data: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    junk = write_jsonl(tmp_path / "junk.jsonl", [{"body": "no text field"}])
    for bad in (empty, junk):
        args = ["--target", f"cook={data['targets']['cooking']}", "--target", f"legal={bad}:2"]
        stderr = run(["fit", *LEXICAL, *args, data["shards"][0], "-o", tmp_path / "x.gotd"], code=2).stderr
        assert f"target legal ({bad}) holds no usable records" in stderr


def test_mix_options_need_several_targets_and_fit_options_are_refused(data: dict, mixture: Path) -> None:
    cooking, shard = data["targets"]["cooking"], data["shards"][0]
    stderr = run(["score", "--target", cooking, *LEXICAL, "--mix", "sum", "-k", 5, shard], code=2).stderr
    assert "--mix applies to several targets, and there is one" in stderr
    single = fit(data, "single.gotd", str(cooking))
    stderr = run(["score", "--dedup", "off", "-p", single, "--candidates", "-k", 5, shard], code=2).stderr
    assert "--candidates applies to several targets (or to one target with --dedup on)" in stderr
    stderr = run(
        ["score", "--dedup", "off", "-p", mixture, "--mix", "sum", "--candidates", "-k", 5, shard], code=2
    ).stderr
    assert "--candidates is for --mix quota" in stderr
    for extra in (["--tokens", "500"], ["-k", 5, "--unit", "chunk"], ["-k", 5, "--select", "sample"]):
        stderr = run(["score", "-p", mixture, *extra, shard], code=2).stderr
        assert "several targets keep --top-k whole records by their scores" in stderr, extra
    assert "--tokens applies to one target" in refused(["merge", "-p", mixture, "--tokens", 500, shard], 2)
    stderr = run(["score", "-p", mixture, "--epsilon", "0.1", "-k", 5, shard], code=2).stderr
    assert "--epsilon is a fit option" in stderr
    stderr = run(["score", "-p", mixture, "--features", "semantic", "-k", 5, shard], code=2).stderr
    assert "--features semantic differs from the lexical space" in stderr


def test_merge_refuses_what_it_cannot_merge_exactly(data: dict, mixture: Path, tmp_path: Path) -> None:
    shard = data["shards"][0]
    selection, candidates = tmp_path / "q.jsonl", tmp_path / "c.jsonl"
    run(["score", "-p", mixture, "-k", 10, shard, "-o", selection, "-q"])
    run(["score", "-p", mixture, "-k", 10, "--candidates", shard, "-o", candidates, "-q"])
    stderr = run(["merge", "-k", 10, selection], code=2).stderr
    assert f"{selection}:1: a quota selection of several targets cannot be merged exactly" in stderr
    assert "score each shard with --candidates" in stderr
    stderr = run(["merge", "-k", 10, candidates], code=2).stderr
    assert f"{candidates}:1: quota candidates of several targets: merge them with --potentials" in stderr
    assert "a quota selection cannot be merged exactly" in refused(["merge", "-p", mixture, "-k", 10, selection], 2)
    other = fit(data, "other.gotd", f"x={data['targets']['astronomy']}:1", f"y={data['targets']['football']}:1")
    assert "was scored with fit" in refused(["merge", "-p", other, "-k", 10, candidates], 2)
    single = fit(data, "single2.gotd", str(data["targets"]["cooking"]))
    plain = tmp_path / "plain.jsonl"
    run(["score", "-p", single, "-k", 10, shard, "-o", plain, "-q"])
    assert "no gotd_scores/gotd_fit" in refused(["merge", "-p", mixture, "-k", 10, plain], 1)
    stderr = run(["merge", "-p", other, "-k", 10, plain], code=1).stderr
    assert "no gotd_scores/gotd_fit" in stderr
    wrong = run(["merge", "-p", single, "-k", 10, plain]).stdout_bytes
    assert wrong == plain.read_bytes()
    unrelated = fit(data, "single3.gotd", str(data["targets"]["football"]))
    assert "the inputs were scored with fit" in refused(["merge", "-p", unrelated, "-k", 10, plain], 2)
    assert "--candidates needs --potentials with an artifact of several targets" in refused(
        ["merge", "--candidates", "-k", 5, plain], 2
    )


# --- several targets run where one runs: --state folders that merge, Ray (tests/test_ray.py) -------------------------


@pytest.mark.parametrize("mix", ["quota", "sum"])
def test_state_folders_of_several_targets_merge_like_one_run(data: dict, mixture: Path, mix: str) -> None:
    """`score -p mix.gotd --state` records its inputs (inputs.json), so `merge -p mix.gotd state-0 state-1` equals
    one run over every shard, for either mix; a re-run with nothing new takes every shard from the folder."""
    d, shards = data["dir"], data["shards"]
    one = run(["score", "-p", mixture, "--mix", mix, "-k", 12, *shards]).stdout_bytes
    a, b = d / f"state-{mix}-0", d / f"state-{mix}-1"
    run(["score", "-p", mixture, "--mix", mix, "-k", 12, "--state", a, shards[0], "-o", d / "a.jsonl", "-q"])
    first = run(["score", "-p", mixture, "--mix", mix, "-k", 12, "--state", b, *shards[1:], "-o", d / "b.jsonl"])
    again = run(["score", "-p", mixture, "--mix", mix, "-k", 12, "--state", b, *shards[1:], "-o", d / "b2.jsonl"])
    assert "0 shards from" in first.stderr and "2 shards from" in again.stderr
    assert (d / "b.jsonl").read_bytes() == (d / "b2.jsonl").read_bytes()
    assert json.loads((a / "inputs.json").read_text())["inputs"] == [str(shards[0].resolve())]
    merged = run(["merge", "-p", mixture, "-k", 12, a, b])
    assert merged.stdout_bytes == one
    assert f"mix {mix}" in merged.stderr


def test_merge_of_state_folders_of_other_mixes_is_refused(data: dict, mixture: Path) -> None:
    d, shards = data["dir"], data["shards"]
    quota, total = d / "mixed-quota", d / "mixed-sum"
    run(["score", "-p", mixture, "-k", 5, "--state", quota, shards[0], "-o", d / "q.jsonl", "-q"])
    run(["score", "-p", mixture, "--mix", "sum", "-k", 5, "--state", total, shards[1], "-o", d / "s.jsonl", "-q"])
    assert "the inputs mix sum selections and quota candidates" in refused(
        ["merge", "-p", mixture, "-k", 5, quota, total]
    )

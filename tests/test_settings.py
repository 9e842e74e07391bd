"""Settings refuse bad values on construction, in the library, with typed errors naming the setting; the method's
rules (what several targets keep, what --state needs) are the library's too, and the CLI words them as flags."""

from __future__ import annotations

import math

import pytest

import gotd_stream as gs
from gotd_stream.select.pipeline import check_select
from tests.conftest import make_docs, run, write_jsonl


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"epsilon": -1}, "epsilon"),
        ({"epsilon": math.inf}, "epsilon"),
        ({"sample_size": 0}, "sample_size"),
        ({"target_size": 1.5}, "target_size"),
        ({"tol": math.nan}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"hybrid_weight": 2}, "hybrid_weight"),
        ({"space": "nope"}, "features"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_fit_settings_refuse_bad_values(values: dict, named: str) -> None:
    with pytest.raises(gs.BadSetting) as raised:
        gs.FitSettings(**values)
    assert named in str(raised.value)
    assert isinstance(raised.value, gs.UsageProblem)


@pytest.mark.parametrize(
    "values", [{"k": 0}, {"k": -3}, {"tokens": 0}, {"k": 2.5}, {"k": True}, {}, {"k": 1, "tokens": 1}]
)
def test_budgets_refuse_bad_values(values: dict) -> None:
    with pytest.raises(gs.UsageProblem):
        gs.Budget(**values)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: gs.ModelSettings(max_tokens=4), "max_tokens"),
        (lambda: gs.ModelSettings(batch_size=0), "batch_size"),
        (lambda: gs.ModelSettings(batch_tokens=-1), "batch_tokens"),
        (lambda: gs.ModelSettings(workers=-1), "workers"),
        (lambda: gs.ModelSettings(workers=1.5), "workers"),
        (lambda: gs.ModelSettings(device=""), "device"),
        (lambda: gs.ModelSettings(model=""), "model"),
        (lambda: gs.RaySettings(actors=0), "ray_actors"),
        (lambda: gs.RaySettings(gpus=-0.5), "ray_gpus"),
        (lambda: gs.RaySettings(gpus=math.nan), "ray_gpus"),
        (lambda: gs.RaySettings(address=" "), "ray_address"),
        (lambda: gs.Units(chunk_tokens=4, counter=object()), "chunk_tokens"),
        (lambda: gs.Units(chunk_tokens=128), "chunk_tokens"),
        (lambda: gs.Units(text_field=""), "text_field"),
        (lambda: gs.Plan(gs.Budget(k=5), mix="average"), "mix"),
        (lambda: gs.Plan(5), "Budget"),
        (lambda: gs.ReportSettings(examples=-1), "examples"),
        (lambda: gs.ReportSettings(max_points=1), "max_points"),
        (lambda: gs.ReportSettings(group_field=""), "group_field"),
        (lambda: gs.ReportSettings(text_field=None), "text_field"),
    ],
)
def test_model_ray_unit_and_plan_settings_refuse_bad_values(make, named: str) -> None:
    with pytest.raises(gs.BadSetting) as raised:
        make()
    assert named in str(raised.value)


def test_a_bad_value_from_the_environment_is_exit_2_naming_its_flag(tmp_path) -> None:
    """An option read from its environment variable is checked as the flag is (GOTD_WORKERS=-2: exit 2)."""
    pool = write_jsonl(tmp_path / "pool.jsonl", make_docs(20))
    assert "--workers" in run(["embed", pool, "-o", tmp_path / "e.npy"], code=2, env={"GOTD_WORKERS": "-2"}).stderr


def test_good_settings_construct() -> None:
    assert gs.FitSettings(epsilon=0.1, sample_size=1, tol=1e-3).sample_size == 1
    assert gs.Budget(k=1).k == 1 and gs.Budget(tokens=5).tokens == 5


def test_the_methods_rules_are_typed_errors_naming_settings() -> None:
    """Several targets keep k whole records by score; --mix and --candidates need several; the library says so."""
    plan = gs.Plan(gs.Budget(tokens=100))
    with pytest.raises(gs.UsageProblem) as raised:
        check_select(["a.jsonl"], plan, gs.Local(), "mix.gotd", [], several=True)
    assert "several targets keep k whole records" in str(raised.value)
    with pytest.raises(gs.UsageProblem, match="mix applies to several targets"):
        check_select(["a.jsonl"], gs.Plan(gs.Budget(k=5), mix="sum"), gs.Local(), "one.gotd", [])
    with pytest.raises(gs.UsageProblem, match="state needs potentials and input files"):
        check_select(["-"], gs.Plan(gs.Budget(k=5)), gs.Resumable("st"), "one.gotd", [])
    with pytest.raises(gs.UsageProblem, match="give exactly one of potentials"):
        check_select(["a.jsonl"], gs.Plan(gs.Budget(k=5)), gs.Local(), None, [])


def test_the_cli_words_the_librarys_rules_as_flags(tmp_path) -> None:
    docs = write_jsonl(tmp_path / "pool.jsonl", make_docs(40, seed=1))
    target = write_jsonl(tmp_path / "t.jsonl", make_docs(10, seed=2, topics=("cooking",)))
    stdin = run(["score", "--target", target, "--features", "lexical", "-k", 3, "--state", tmp_path / "s"], code=2)
    assert "--state needs --potentials and input files" in stdin.stderr
    artifact = tmp_path / "one.gotd"
    run(["fit", "--features", "lexical", "--target", target, docs, "--sample-size", 30, "-o", artifact, "-q"])
    piped = run(["score", "-p", artifact, "-k", 3, "--state", tmp_path / "s"], input=docs.read_bytes(), code=2)
    assert "--state needs --potentials and input files" in piped.stderr


def test_one_fit_for_texts_files_and_several_targets(tmp_path) -> None:
    """fit(Texts, Texts) is fit(files, file) on the same texts, and each part of a mixture is that target's fit."""
    pool = make_docs(60, seed=3)
    cook = [d for d in make_docs(40, seed=4) if d["topic"] == "cooking"]
    ball = [d for d in make_docs(40, seed=5) if d["topic"] == "football"]
    settings = gs.FitSettings(space="lexical", sample_size=100, target_size=100)
    alone = gs.fit(gs.Texts([d["text"] for d in pool]), gs.Texts([d["text"] for d in cook]), None, settings)
    assert isinstance(alone.potentials, gs.Potentials) and alone.potentials.format_version == 4
    targets = [
        gs.Target("cook", None, 0.5, tuple(d["text"] for d in cook)),
        gs.Target("ball", None, 0.5, tuple(d["text"] for d in ball)),
    ]
    several = gs.fit(gs.Texts([d["text"] for d in pool]), targets, None, settings)
    assert several.potentials.names == ["cook", "ball"] and several.potentials.format_version == 5
    assert several.potentials.parts[0].fit_id == alone.potentials.fit_id
    write_jsonl(tmp_path / "pool.jsonl", pool)
    write_jsonl(tmp_path / "cook.jsonl", cook)
    files = gs.fit([str(tmp_path / "pool.jsonl")], str(tmp_path / "cook.jsonl"), None, settings)
    assert files.potentials.target.shape == alone.potentials.target.shape

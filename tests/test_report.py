"""`gotd-stream report` as a user runs it: report.json's numbers against computations made here (POT's exact EMD
on a tiny case), an HTML page that parses and holds its plots, and bad input refused with a clear message.

The lexical space (no model) keeps it quick; --max-points is large enough that nothing is subsampled, so every
distance is over whole sets and can be computed again here.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.conftest import make_docs, run, sourced_docs, write_jsonl

LEXICAL = ["--features", "lexical", "--sample-size", 80]


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gotd_stream.select.fit.LEXICAL_BUCKETS", 1024)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A pool with a source field, a pool sample, a cooking artifact, a selection of 12; a two-target artifact."""
    d = tmp_path_factory.mktemp("report")
    docs = sourced_docs(120, seed=1)
    docs[0]["src"] = "<script>alert(1)</script>"  # a value from the data, shown in the composition table
    pool = write_jsonl(d / "pool.jsonl", docs)
    sample = write_jsonl(d / "sample.jsonl", docs[::3] + docs[1:30:3])
    target = write_jsonl(d / "cook.jsonl", [x for x in make_docs(30, seed=2) if x["topic"] == "cooking"])
    football = write_jsonl(d / "foot.jsonl", [x for x in make_docs(30, seed=3) if x["topic"] == "football"])
    artifact, mixture = d / "cook.gotd", d / "mix.gotd"
    selected, quota = d / "selected.jsonl", d / "quota.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gotd_stream.select.fit.LEXICAL_BUCKETS", 1024)
        run(["fit", *LEXICAL, "--target", target, pool, "-o", artifact, "-q"])
        run(["score", "-p", artifact, "-k", 12, pool, "-o", selected, "-q"])
        specs = ["--target", f"cook={target}:0.75", "--target", f"foot={football}:0.25"]
        run(["fit", *LEXICAL, *specs, pool, "-o", mixture, "-q"])
        run(["score", "-p", mixture, "-k", 12, pool, "-o", quota, "-q"])
    return {
        "dir": d,
        "pool": pool,
        "sample": sample,
        "target": target,
        "football": football,
        "artifact": artifact,
        "mixture": mixture,
        "selected": selected,
        "quota": quota,
        "docs": docs,
    }


def refused(args: list, code: int = 2) -> str:
    """The stderr of a run that must fail with `code`."""
    return run(args, code=code).stderr


def rows_of(artifact: Path, texts: list[str]) -> np.ndarray:
    import gotd_stream as gs

    featurizer = gs.featurizer_for(gs.load(str(artifact)), gs.ModelSettings())
    return featurizer.encode(texts).astype(np.float64)


def emd(x: np.ndarray, y: np.ndarray, b: np.ndarray | None = None) -> float:
    """The exact OT distance, computed here: squared Euclidean costs by hand, POT's network simplex."""
    import ot

    cost = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    a = np.full(len(x), 1 / len(x))
    return float(ot.emd2(a, np.full(len(y), 1 / len(y)) if b is None else b, np.maximum(cost, 0)))


def texts(path: Path) -> list[str]:
    return [orjson.loads(line)["text"] for line in path.read_bytes().splitlines()]


def not_json(name: str):
    raise ValueError(f"report.json is not strict JSON: it holds {name}")


def strict_json(text: str) -> dict:
    """Parsed as a strict parser does: NaN, Infinity and -Infinity are refused."""
    return json.loads(text, parse_constant=not_json)


def report_json(made: dict, *args) -> dict:
    result = run(["report", "--json", "--max-points", 10_000, "-q", *args])
    return strict_json(result.stdout)


def test_report_numbers_match_an_independent_computation(made: dict) -> None:
    import gotd_stream as gs

    got = report_json(made, "-p", made["artifact"], made["selected"], "--pool", made["sample"], "--group-field", "src")
    artifact = gs.load(str(made["artifact"]))
    selection, sample = texts(made["selected"]), texts(made["sample"])
    target = artifact.target.astype(np.float64)
    sel_rows, pool_rows = rows_of(made["artifact"], selection), rows_of(made["artifact"], sample)
    distances = got["ot"]["targets"][0]
    assert got["ot"]["selection_points"] == 12 and got["ot"]["pool_points"] == 50 == got["pool"]["records"]
    assert distances["to_selection"] == pytest.approx(emd(sel_rows, target), rel=1e-9, abs=1e-12)
    assert distances["to_pool"] == pytest.approx(emd(pool_rows, target), rel=1e-9, abs=1e-12)
    # the random subset: 12 pool rows drawn as documented (seed + 2); the selection is closer than chance
    chosen = np.sort(np.random.default_rng(2).choice(50, 12, replace=False))
    assert distances["to_random"] == pytest.approx(emd(pool_rows[chosen], target), rel=1e-9, abs=1e-12)
    assert distances["to_selection"] < distances["to_random"]
    assert distances["moved"] == pytest.approx(1 - distances["to_selection"] / distances["to_pool"])
    # the scores: the selection's as written, the pool's as the library scores them
    written = [orjson.loads(line)["gotd_score"] for line in made["selected"].read_bytes().splitlines()]
    scores = got["scores"][0]
    assert scores["name"] == "score" and scores["selection"]["n"] == 12
    assert scores["selection"]["mean"] == pytest.approx(np.mean(written)) and scores["selection"]["min"] == min(written)
    pooled = gs.score_texts(sample, gs.featurizer_for(artifact, gs.ModelSettings()), artifact)
    assert scores["pool"]["mean"] == pytest.approx(np.mean(pooled)) and sum(scores["pool"]["counts"]) == 50
    assert got["lengths"]["selection"]["median"] == np.median([len(t) for t in selection])
    # the composition and the examples
    by_src = Counter(orjson.loads(line)["src"] for line in made["selected"].read_bytes().splitlines())
    rows = {row["value"]: row for row in got["composition"]["rows"]}
    assert {value: row["selection"] for value, row in rows.items() if row["selection"]} == dict(by_src)
    in_pool = Counter(orjson.loads(line)["src"] for line in made["sample"].read_bytes().splitlines())
    assert {value: row["pool"] for value, row in rows.items() if row["pool"]} == dict(in_pool)
    shown = got["examples"][0]
    assert shown["cut"] == max(written) and shown["best"][0]["score"] == min(written)
    assert [r["score"] for r in shown["worst"]] == sorted(written, reverse=True)[:5]
    below = [s for s, text in zip(pooled, sample, strict=True) if s > max(written) and text not in selection]
    assert [r["score"] for r in shown["below_cut"]] == pytest.approx(sorted(below)[:5])


def test_the_reference_check_warns_when_the_pool_is_far(made: dict) -> None:
    args = ["-p", made["artifact"], made["selected"], "--pool", made["sample"]]
    near = report_json(made, *args, "--reference", made["pool"])["reference"]
    assert near["warning"] is None and near["ratio"] < 0.5
    # the floor: two halves of the reference, shuffled with seed + 4, 50 rows each (the pool sample's size)
    reference = rows_of(made["artifact"], texts(made["pool"]))[np.random.default_rng(4).permutation(120)]
    assert near["points"] == 50 and near["reference_halves"] == pytest.approx(emd(reference[:50], reference[50:100]))
    pool_rows = rows_of(made["artifact"], texts(made["sample"]))
    assert near["pool_to_reference"] == pytest.approx(emd(pool_rows, reference[50:100]))
    far = report_json(made, *args, "--reference", made["football"])["reference"]
    assert far["ratio"] >= 0.5 and "The pool sample is far from the pre-training sample" in far["warning"]
    result = run(["report", "--json", "-o", made["dir"] / "far.json", *args, "--reference", made["football"]])
    assert "warning: The pool sample is far from the pre-training sample" in result.stderr


def test_a_mixture_report_counts_each_target(made: dict) -> None:
    import gotd_stream as gs

    got = report_json(made, "-p", made["mixture"], made["quota"], "--pool", made["sample"])
    assert got["selection"]["mix"] == "quota" and got["counted"] == {"cook": 9, "foot": 3}
    assert [view["name"] for view in got["scores"]] == ["cook", "foot"]
    assert [block["kept"] for block in got["examples"]] == [9, 3]
    mixture = gs.load(str(made["mixture"]))
    sel_rows = rows_of(made["mixture"], texts(made["quota"]))
    both = np.concatenate([p.target for p in mixture.parts]).astype(np.float64)
    sizes = [len(p.target) for p in mixture.parts]
    b = np.concatenate([np.full(n, w / n) for n, w in zip(sizes, mixture.weights, strict=True)])
    by_name = {entry["name"]: entry for entry in got["ot"]["targets"]}
    assert by_name["mixture"]["to_selection"] == pytest.approx(emd(sel_rows, both, b / b.sum()))
    assert by_name["foot"]["to_selection"] == pytest.approx(emd(sel_rows, mixture.parts[1].target.astype(np.float64)))
    one = made["dir"] / "one.jsonl"  # k = 1: foot's quota is 0, and its panel and examples are empty
    run(["score", "-p", made["mixture"], "-k", 1, made["pool"], "-o", one, "-q"])
    result = run(["report", "-p", made["mixture"], one, "-o", made["dir"] / "one", "-q"])
    counted = json.loads((made["dir"] / "one" / "report.json").read_text())["counted"]
    assert result.stderr == "" and counted == {"cook": 1, "foot": 0}
    summed = made["dir"] / "sum.jsonl"
    run(["score", "-p", made["mixture"], "--mix", "sum", "-k", 12, made["pool"], "-o", summed, "-q"])
    got = report_json(made, "-p", made["mixture"], summed)
    assert got["selection"]["mix"] == "sum" and [view["name"] for view in got["scores"]] == ["sum", "cook", "foot"]
    assert got["pool"] is None and "to_pool" not in got["ot"]["targets"][0] and got["examples"][0]["below_cut"] is None


class Page(HTMLParser):
    """The page's images and its text, and whether every tag that opened closed."""

    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.images, self.open, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, tag

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_opens_and_holds_the_plots(made: dict) -> None:
    folder = made["dir"] / "out" / "report"  # made, in an existing folder
    (made["dir"] / "out").mkdir()
    args = ["-p", made["artifact"], made["selected"], "--pool", made["sample"], "--group-field", "src"]
    result = run(["report", *args, "--reference", made["pool"], "-o", folder])
    assert f"wrote {folder}/index.html and {folder}/report.json" in result.stderr and result.stdout == ""
    page = Page()
    page.feed((folder / "index.html").read_text(encoding="utf-8"))
    page.close()
    assert page.open == []
    assert len(page.images) == 5  # distances, scores, lengths, composition, reference
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    text = "".join(page.text)
    saved = strict_json((folder / "report.json").read_text())
    assert saved["artifact"]["fit_id"] in text and "Composition by src" in text
    assert "<script>alert(1)</script>" in text  # a value from the data shown as text, not run as markup
    assert b"<script>" not in (folder / "index.html").read_bytes()
    assert f"{saved['ot']['targets'][0]['to_selection']:.4f}" in text


def test_bad_input_gets_a_clear_message(made: dict, tmp_path: Path) -> None:
    base = ["report", "-p", made["artifact"], "--json"]
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert f"{empty} holds no scored record (it is empty): nothing to report" in refused([*base, empty], 2)
    stderr = refused([*base, made["selected"], "--group-field", "lang"])
    assert "--group-field 'lang' is in none of the 12 records" in stderr
    assert "keys of the first: id, topic, text" in stderr
    stderr = run(["report", "-p", made["mixture"], "--json", made["selected"]], code=1).stderr
    assert "no gotd_scores/gotd_fit at the end of the line" in stderr
    other = tmp_path / "other.gotd"
    run(["fit", *LEXICAL, "--target", made["football"], made["pool"], "-o", other, "-q"])
    stderr = run(["report", "-p", other, "--json", made["selected"]], code=2).stderr
    assert f"{made['selected']}:1 was scored with fit" in stderr and "give --potentials the artifact" in stderr
    unscored = tmp_path / "unscored.jsonl"
    run(["score", "-p", made["artifact"], "-k", 5, made["pool"], "--no-score", "-o", unscored, "-q"])
    stderr = run([*base, unscored], code=1).stderr
    assert "no gotd_score/gotd_fit at the end of the line: report takes a selection" in stderr
    candidates = tmp_path / "candidates.jsonl"
    run(["score", "-p", made["mixture"], "-k", 5, "--candidates", made["pool"], "-o", candidates, "-q"])
    assert "quota candidates of one shard" in refused(["report", "-p", made["mixture"], "--json", candidates], 2)
    assert "--reference needs --pool" in refused([*base, made["selected"], "--reference", made["pool"]], 2)
    no_out = ["report", "-p", made["artifact"], made["selected"]]
    assert "give -o FOLDER for index.html and report.json, or --json" in run(no_out, code=2).stderr
    assert "not a folder" in refused([*no_out, "-o", made["selected"]], 2)
    assert "does not exist; create it first" in refused([*no_out, "-o", tmp_path / "no" / "such"], 2)
    stderr = run([*base, made["selected"], "-o", made["selected"]], code=2).stderr
    assert "is the same file as input" in stderr and made["selected"].read_bytes().count(b"\n") == 12


DOLLARS = ["$5 and $10", r"$\\frac{1$", r"$\\undefinedcommand$", r"a_b^c $x^2$", "$$", "\\$ and $"]


def drawn_texts(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every figure the HTML report draws, kept as it is saved (to read its texts)."""
    from gotd_stream.report import html

    figures, png = [], html._png

    def keep(figure):
        figures.append(figure)
        return png(figure)

    monkeypatch.setattr(html, "_png", keep)
    return figures


def texts_of(figures: list) -> list:
    from matplotlib.text import Text

    return [text for figure in figures for text in figure.findobj(Text) if text.get_text()]


def test_dollar_strings_are_drawn_as_plain_text(made: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group value such as `$5 and $10` was mathtext (a formula, or a traceback for `$\\frac{1$`); a user's
    matplotlibrc with TeX on changes nothing either."""
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)  # TeX would fail here: no latex installed
    docs = make_docs(60, seed=1)
    for i, doc in enumerate(docs):
        doc["src"] = DOLLARS[i % len(DOLLARS)]
    pool = write_jsonl(tmp_path / "pool.jsonl", docs)
    selected = tmp_path / "selected.jsonl"
    run(["score", "-p", made["artifact"], "-k", 30, pool, "-o", selected, "-q"])
    figures = drawn_texts(monkeypatch)
    folder = tmp_path / "report"
    args = ["-p", made["artifact"], selected, "--pool", pool, "--group-field", "src", "--reference", made["pool"]]
    result = run(["report", *args, "-o", folder])
    assert "wrote" in result.stderr and len(figures) == 5
    saved = strict_json((folder / "report.json").read_text())
    assert {row["value"] for row in saved["composition"]["rows"]} == set(DOLLARS)
    drawn = texts_of(figures)
    assert all(not text.get_usetex() and not text.get_parse_math() for text in drawn)
    shown = {text.get_text() for text in drawn}
    assert set(DOLLARS) <= shown  # each value drawn as the very string, not a formula
    page = Page()
    page.feed((folder / "index.html").read_text(encoding="utf-8"))
    assert all(value in "".join(page.text) for value in DOLLARS)


def test_target_names_and_fields_with_dollars_and_markup_are_plain(made: dict, monkeypatch) -> None:
    """Target names come from the artifact (the CLI allows only [A-Za-z0-9_.-], the library does not check):
    drawn as plain text and escaped in the page, like every other string from the data."""
    from gotd_stream.report.html import render_html

    report = report_json(made, "-p", made["mixture"], made["quota"], "--pool", made["sample"], "--group-field", "src")
    names = {"cook": "$\\frac{cook$ <b>&amp;", "foot": "foot \"$1\" & '$2' <script>x</script>"}
    for entry in report["ot"]["targets"] + report["artifact"]["targets"] + report["scores"] + report["examples"]:
        key = "view" if "view" in entry else "name"
        entry[key] = names.get(entry[key], entry[key])
    report["counted"] = {names[k]: v for k, v in report["counted"].items()}
    report["composition"]["field"] = "$src$ <i>"
    figures = drawn_texts(monkeypatch)
    text = render_html(report)
    drawn = texts_of(figures)
    assert all(not t.get_parse_math() and not t.get_usetex() for t in drawn)
    shown = {t.get_text() for t in drawn}
    assert set(names.values()) <= shown and "score: " + names["foot"] in shown
    assert "share of records by $src$ <i>" in shown
    page = Page()
    page.feed(text)
    page.close()
    assert page.open == [] and all(name in "".join(page.text) for name in names.values())
    assert "<script>" not in text and "<b>" not in text and "<i>" not in text


def test_every_user_string_in_the_page_is_escaped(made: dict, tmp_path: Path) -> None:
    """Group values, file names (selection, pool, reference, artifact) and texts holding markup, `&` and quotes."""
    import shutil

    odd = "<i>&amp;\"q'"  # no slash: a file name
    docs = make_docs(40, seed=1)
    for i, doc in enumerate(docs):
        doc["src"] = ["<script>alert(1)</script>", "a & b", 'say "hi"', "it's"][i % 4]
        doc["text"] += " <b>bold</b> & more" if i % 2 else ""
    folder = tmp_path / f"dir {odd}"
    folder.mkdir()
    pool = write_jsonl(folder / f"pool {odd}.jsonl", docs)
    artifact = folder / f"art {odd}.gotd"
    shutil.copy(made["artifact"], artifact)
    selected = folder / f"sel {odd}.jsonl"
    run(["score", "-p", artifact, "-k", 20, pool, "-o", selected, "-q"])
    out = tmp_path / "report"
    args = ["-p", artifact, selected, "--pool", pool, "--reference", pool, "--group-field", "src", "-o", out]
    run(["report", *args, "-q"])
    html_text = (out / "index.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html_text)
    page.close()
    text = "".join(page.text)
    assert page.open == [] and len(page.images) == 5
    for shown in (str(selected), str(pool), str(artifact), "<script>alert(1)</script>", "a & b", 'say "hi"', "it's"):
        assert shown in text
    assert "<b>bold</b> & more" in text
    assert "<script>" not in html_text and "<i>" not in html_text and "<b>" not in html_text
    assert '"q' not in html_text.replace("&quot;q", "")  # the quote in a file name is an entity


def test_a_pool_that_is_its_own_reference_gives_no_false_warning(made: dict, tmp_path: Path) -> None:
    """The target, the pool and the reference one file: the target is no farther out than the reference's own
    halves, so the ratio is undefined (null in strict JSON, it was Infinity) and nothing warns (it said inf%)."""
    target = made["target"]
    args = ["-p", made["artifact"], made["selected"], "--pool", target, "--reference", target]
    reference = report_json(made, *args)["reference"]
    assert reference["ratio"] is None and reference["warning"] is None
    assert reference["target_to_reference"] <= reference["reference_halves"]
    assert reference["pool_to_reference"] - reference["reference_halves"] < 0.5 * reference["reference_halves"]
    result = run(["report", *args, "-o", tmp_path / "own"])
    assert "warning" not in result.stderr and "inf%" not in result.stderr
    page = (tmp_path / "own" / "report.json").read_text()
    assert "Infinity" not in page and "NaN" not in page and strict_json(page)["reference"]["ratio"] is None
    assert "no farther from the pre-training sample than two halves" in (tmp_path / "own" / "index.html").read_text()
    # the pool its own reference, against a real target: a ratio near 0, no warning
    own = report_json(
        made, "-p", made["artifact"], made["selected"], "--pool", made["pool"], "--reference", made["pool"]
    )
    assert own["reference"]["ratio"] is not None and own["reference"]["ratio"] < 0.5
    assert own["reference"]["warning"] is None


def test_report_json_is_strict_whatever_the_numbers() -> None:
    from gotd_stream.report.html import report_json as write

    data = {"a": float("inf"), "b": [float("nan"), 1.5, -float("inf")], "c": {"d": (2.0, float("nan"))}, "e": "x"}
    assert strict_json(write(data).decode()) == {"a": None, "b": [None, 1.5, None], "c": {"d": [2.0, None]}, "e": "x"}


def test_the_fit_id_is_computed_once_per_artifact_not_per_line(made: dict, tmp_path, monkeypatch) -> None:
    """A several-targets artifact's fit id hashes every array: report computed it for every line (13 ms each)."""
    from gotd_stream.select.artifact import Mixture, Potentials

    calls = Counter()
    for kind in (Mixture, Potentials):
        original = kind.__dict__["fit_id"]
        compute = original.fget if isinstance(original, property) else original.func

        def counted(self, compute=compute, kind=kind):
            calls[kind.__name__] += 1
            return compute(self)

        monkeypatch.setattr(kind, "fit_id", property(counted))
    many = tmp_path / "many.jsonl"
    big = write_jsonl(tmp_path / "big.jsonl", make_docs(400, seed=5))
    run(["score", "--dedup", "off", "-p", made["mixture"], "-k", 300, big, "-o", many, "-q"])
    counts = []
    for selection, lines in ((made["quota"], 12), (many, 300)):
        calls.clear()
        got = report_json(made, "-p", made["mixture"], selection)
        assert got["selection"]["records"] == lines
        counts.append(dict(calls))
    assert counts[0] == counts[1] and counts[0]["Mixture"] <= 3, counts

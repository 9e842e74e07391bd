"""Records with no usable features are never scored, selected, embedded or fitted on (issue 11).

A text without a word had a zero lexical vector, and a zero vector scores by the target potential alone: near
the top. Such a record is now skipped as a bad record ("no words"), in every space, with its file:line; in the
lexical space, a text none of whose words the fit saw (a zero vector too) is skipped as "no known words".
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from gotd_stream.text import wordless
from tests.conftest import make_docs, write_jsonl
from tests.conftest import run as run_cli

JUNK = ["", "   ", "!!! ??? ...", "\U0001f600\U0001f389\u2728", "- - - - -"]
SPACES = ("lexical", "semantic", "hybrid")


def run(args, code=0):
    """conftest's run (make_docs' records are near copies of each other: the guard off unless asked)."""
    return run_cli(args, code=code)


@pytest.fixture(scope="module")
def pools(tmp_path_factory) -> dict:
    """The same good records with and without junk between them, and a target with junk in it too."""
    d = tmp_path_factory.mktemp("junk")
    good = make_docs(45, seed=21)
    mixed, junk_lines = [], []
    for i, doc in enumerate(good):
        mixed.append(doc)
        if i % 9 == 4:
            mixed.append({"id": f"junk-{len(junk_lines)}", "text": JUNK[len(junk_lines)]})
            junk_lines.append(len(mixed))
    target = make_docs(12, seed=22, topics=("cooking",))
    target_mixed = [*target[:5], {"text": "?!"}, *target[5:], {"text": ""}]
    return {
        "dir": d,
        "clean": write_jsonl(d / "clean.jsonl", good),
        "mixed": write_jsonl(d / "mixed.jsonl", mixed),
        "junk_lines": junk_lines,
        "good_ids": {doc["id"] for doc in good},
        "target": write_jsonl(d / "target.jsonl", target_mixed),
        "clean_target": write_jsonl(d / "clean-target.jsonl", target),
        "target_size": len(target),
    }


def test_wordless_texts():
    for text in JUNK + ["\t\n", "...", "\u00a0", "*" * 5000]:
        assert wordless(text) is not None, text
    for text in ["x", "12345", "3.14", "https://t.co/AbC123", "#health", "snake_case", "日本語", "  ok  "]:
        assert wordless(text) is None, text
    assert wordless("") == "the text is empty"
    assert wordless("  \n ") == "the text is only whitespace"
    assert wordless("!?") == "only punctuation or symbols"
    # only the part the lexical space reads counts: a word after 4,096 characters of symbols does not
    assert wordless("-" * 4096 + " word") == "only punctuation or symbols in its first 4,096 characters"
    assert wordless("-" * 4095 + "a") is None


@pytest.mark.parametrize("space", SPACES)
def test_junk_is_skipped_and_never_selected_nor_fitted_on(pools, tiny_model, space):
    """In every space: skipped with its file:line and reason, counted, never selected; the fit excludes it."""
    d = pools["dir"]
    saved = d / f"{space}.gotd"
    args = ["score", "--features", space, "--target", pools["target"], "--model", tiny_model, "-k", 1000]
    result = run([*args, "--save-potentials", saved, pools["mixed"]])
    ids = [orjson.loads(line)["id"] for line in result.stdout_bytes.splitlines()]
    assert sorted(ids) == sorted(pools["good_ids"])  # every good record, and no junk
    for lineno in pools["junk_lines"]:
        assert f"warning: skipped {pools['mixed']}:{lineno}: no words: " in result.stderr
    assert f"{pools['target']}:6: no words: only punctuation or symbols" in result.stderr
    assert f"{pools['target']}:14: no words: the text is empty" in result.stderr
    good = len(pools["good_ids"])
    summary = f"read {good + len(JUNK)} records, scored {good}, skipped {len(JUNK)} (no words: {len(JUNK)})"
    assert summary in result.stderr
    header = json.loads(run(["info", "--json", saved]).stdout)
    assert header["fit"]["candidates_seen"] == good  # the fit neither sampled nor counted them
    assert header["fit"]["target_seen"] == header["fit"]["target_size"] == pools["target_size"]
    # the same selection as without the junk, byte for byte
    clean = run(["score", "-p", saved, "--model", tiny_model, "-k", 1000, pools["clean"]]).stdout_bytes
    assert run(["score", "-p", saved, "--model", tiny_model, "-k", 1000, pools["mixed"], "-q"]).stdout_bytes == clean


@pytest.fixture(scope="module")
def artifacts(pools, tiny_model) -> dict:
    """An artifact per space, fitted on the clean pool."""
    out = {}
    for space in SPACES:
        out[space] = pools["dir"] / f"clean-{space}.gotd"
        args = ["fit", "--features", space, "--target", pools["target"], "--model", tiny_model, pools["clean"]]
        run([*args, "-o", out[space], "-q"])
    return out


@pytest.mark.parametrize("space", SPACES)
def test_embed_gives_one_unit_row_per_usable_record(pools, artifacts, tiny_model, space):
    d, artifact = pools["dir"], artifacts[space]
    run(["embed", "-p", artifact, "--model", tiny_model, pools["clean"], "-o", d / f"clean-{space}.npy"])
    result = run(["embed", "-p", artifact, "--model", tiny_model, pools["mixed"], "-o", d / f"mixed-{space}.npy"])
    assert f"embedded {len(pools['good_ids'])}, skipped {len(JUNK)} (no words: {len(JUNK)})" in result.stderr
    rows = np.load(d / f"mixed-{space}.npy")
    assert rows.shape[0] == len(pools["good_ids"])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert (d / f"mixed-{space}.npy").read_bytes() == (d / f"clean-{space}.npy").read_bytes()


def test_junk_is_fatal_under_strict(pools):
    first = pools["junk_lines"][0]
    args = ["score", "--features", "lexical", "--target", pools["clean_target"], "-k", 5, "--strict", pools["mixed"]]
    result = run(args, 1)
    assert f"{pools['mixed']}:{first}: no words: the text is empty (--strict)" in result.stderr


@pytest.mark.parametrize("space", ["lexical", "hybrid"])
def test_unknown_words_have_no_lexical_features(pools, artifacts, tiny_model, space):
    """Words no fit text had give a zero lexical row: skipped as "no known words" in the lexical space; the hybrid
    space still has the semantic part and scores it."""
    d, artifact = pools["dir"], artifacts[space]
    odd = write_jsonl(d / "odd.jsonl", [*make_docs(3, seed=23), {"id": "odd", "text": "Zyxxqv wubbafrog!"}])
    result = run(["score", "-p", artifact, "--model", tiny_model, "-k", 10, odd])
    ids = [orjson.loads(line)["id"] for line in result.stdout_bytes.splitlines()]
    if space == "hybrid":
        assert "odd" in ids and "skipped 0" in result.stderr
        return
    assert "odd" not in ids and len(ids) == 3
    assert f"{odd}:4: no known words: none of its words or word pairs occurs in the fit sample" in result.stderr
    result = run(["embed", "-p", artifact, odd, "-o", d / "odd.npy"])
    assert np.load(d / "odd.npy").shape[0] == 3 and "no known words: 1" in result.stderr

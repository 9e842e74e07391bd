"""Issue 22: `score` with a lexical or a static artifact never imports torch (its import is most of the start-up),
and the numpy bag of the static model is torch's EmbeddingBag, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers")
# The command line's main run in this process, then which heavy modules it loaded (a line of JSON on stderr)
IN_PROCESS = """
import json, sys
from gotd_stream.cli import main
sys.argv = ["gotd-stream", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({"code": code, "loaded": [m for m in HEAVY if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def loaded_by(args: list, stdin: bytes | None = None) -> tuple[dict, bytes]:
    """What `gotd-stream ARGS` loaded, run in a fresh interpreter as a user runs it; and its stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, *map(str, args)], input=stdin, capture_output=True, env=env, timeout=120
    )
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr.decode()
    return report, done.stdout


def device_args() -> list[str]:
    """The default device where it needs no torch to be chosen (no GPU here), else --device cpu."""
    from gotd_stream.hf import no_gpu_here

    return [] if no_gpu_here() else ["--device", "cpu"]


@pytest.mark.parametrize("space", ["lexical", "static-hybrid", "static-semantic"])
def test_score_never_imports_torch_for_a_lexical_or_static_artifact(corpus, tiny_static, space):
    d = corpus["dir"]
    pot = d / f"{space}.gotd"
    model = [] if space == "lexical" else ["--model", tiny_static]
    features = {"lexical": "lexical", "static-hybrid": "hybrid", "static-semantic": "semantic"}[space]
    run(["fit", "--target", corpus["target"], corpus["pool"], "--features", features, *model, "-o", pot, "-q"])
    expected = run(["score", "-p", pot, "-k", 10, corpus["pool"], *model, "-q"], guard=True).stdout_bytes
    # from a file and from stdin, as `zstd -dc corpus | gotd-stream score -p A -k K` does
    report, out = loaded_by(["score", "-p", pot, "-k", 10, corpus["pool"], *model, *device_args(), "-q"])
    assert report["loaded"] == [] and out == expected
    piped = Path(corpus["pool"]).read_bytes()
    report, out = loaded_by(["score", "-p", pot, "-k", 10, *model, *device_args(), "-q"], stdin=piped)
    assert report["loaded"] == [] and out == expected


def test_the_numpy_bag_is_torchs_embedding_bag_bit_for_bit():
    """The mean of token rows as torch's EmbeddingBag (mode mean, CPU) computes it, empty texts and repeated tokens
    included; a text's row does not depend on the texts beside it."""
    import torch

    from gotd_stream.features.static import bag_means

    rng = np.random.default_rng(0)
    table = rng.standard_normal((500, 24)).astype(np.float32) * rng.uniform(1e-3, 1e3, (500, 1)).astype(np.float32)
    lengths = rng.integers(0, 140, 300).astype(np.int32)
    lengths[[0, 7, 299]] = 0  # texts without tokens: zero rows, also first and last
    ids = rng.integers(0, 500, int(lengths.sum())).astype(np.int32)
    ids[:50] = 3  # one token many times
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(table), freeze=True, mode="mean")
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]])
    with torch.inference_mode():
        theirs = bag(torch.from_numpy(ids).long(), torch.from_numpy(offsets)).numpy()
    ours = bag_means(table, ids, lengths)
    assert ours.dtype == np.float32 and ours.tobytes() == theirs.tobytes()
    assert not ours[[0, 7, 299]].any()
    # the rows of a slice of the texts alone: the same bits
    start, end = int(offsets[100]), int(offsets[200])
    assert bag_means(table, ids[start:end], lengths[100:200]).tobytes() == ours[100:200].tobytes()

"""The packaged default model (all-MiniLM-L6-v2) loads offline and finds the target's topic."""

from __future__ import annotations

from collections import Counter

import orjson
from click.testing import CliRunner

from gotd_stream.cli import cli


def test_default_model_selects_the_target_topic(corpus):
    # make_docs' records are near copies of each other and of the target's by construction (tests/conftest.py)
    args = ["score", "--dedup", "off", "--target", str(corpus["target"]), "-k", 20, str(corpus["pool"])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    topics = Counter(r["topic"] for r in rows)
    # the pool is one third cooking: random picks would give ~7 of 20
    assert topics["cooking"] >= 18, topics

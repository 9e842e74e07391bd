"""Damaged and foreign artifacts: each is refused with one "damaged or incompatible artifact" message (exit 1),
never a traceback and never a run that exits 0 with other scores; an old version-2 file still scores the same.

A damage is made three ways where it applies: left under the checksum `fit` wrote (the checksum catches it),
resealed with a fresh checksum (as a buggy or hostile writer would: the field checks catch it), and as a
version-2 file, which has no checksum (the field checks catch it).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gotd_stream.select.artifact import FORMAT_VERSION, MIX_FORMAT_VERSION, checksum
from tests.conftest import make_docs, run, write_jsonl

VERSION, NEWER = (f'\\"format_version\\": {v}'.encode() for v in (FORMAT_VERSION, MIX_FORMAT_VERSION + 1))  # as stored

DAMAGED = "damaged or incompatible artifact"
ROOT = Path(__file__).resolve().parent.parent
BUCKETS = 1024


def fit(folder: Path, *args) -> tuple[Path, Path]:
    """(artifact, pool): fitted by the CLI with 1,024 hashed buckets instead of 32,768, so that the projection
    is 1 MB and each of the many damaged copies below is written and read in milliseconds."""
    pool = write_jsonl(folder / "pool.jsonl", make_docs(120, seed=1))
    target = write_jsonl(folder / "t.jsonl", [d for d in make_docs(60, seed=2) if d["topic"] == "cooking"])
    out = folder / "x.gotd"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gotd_stream.select.fit.LEXICAL_BUCKETS", BUCKETS)
        run(["fit", *args, "--target", target, pool, "-o", out, "--sample-size", 50, "-q"])
    return out, pool


@pytest.fixture(scope="module")
def lexical(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A lexical artifact and its scores over the pool (no model needed)."""
    folder = tmp_path_factory.mktemp("lexical")
    out, pool = fit(folder, "--features", "lexical")
    return {"dir": folder, "pool": pool, "artifact": out, "scores": score(out, pool)}


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> dict:
    """A hybrid artifact (model settings and lexical arrays both) fitted with the tiny model."""
    folder = tmp_path_factory.mktemp("hybrid")
    out, pool = fit(folder, "--features", "hybrid", "--model", tiny_model)
    return {"dir": folder, "pool": pool, "artifact": out, "model": tiny_model}


def score(artifact: Path, pool: Path, *extra, code: int = 0):
    result = run(["score", "-p", artifact, "-k", 1000, pool, "-q", *extra], code=code)
    return result.stdout_bytes if code == 0 else result


# --- the safetensors layout: 8-byte little-endian header length, the JSON header, then the array bytes -----------


def split(data: bytes) -> tuple[dict, bytes]:
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join(layout: dict, body: bytes) -> bytes:
    head = json.dumps(layout, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + body


def read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Our header and the arrays, read without gotd-stream's checks."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        return json.loads(fh.metadata()["gotd_stream"]), {key: fh.get_tensor(key) for key in fh.keys()}


def write(path: Path, header, arrays: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save

    text = header if isinstance(header, str) else json.dumps(header)
    path.write_bytes(save(arrays, metadata={"gotd_stream": text}))
    return path


def rewrite(src: Path, dst: Path, edit: Callable[[dict, dict], None], seal: str) -> Path:
    """Apply `edit(header, arrays)`; seal: "stale" keeps the old checksum, "resealed" writes a fresh one, "v2"
    writes a version-2 header, which has none."""
    header, arrays = read(src)
    arrays = {key: array.copy() for key, array in arrays.items()}
    edit(header, arrays)
    if seal == "resealed":
        header["checksum"] = checksum(header, arrays)
    elif seal == "v2":
        header.pop("checksum")
        header["format_version"] = 2
    return write(dst, header, arrays)


def refused(artifact: Path, pool: Path, *extra) -> str:
    """`score` and `info` both exit 1 with the message naming the file; the message for the caller to check."""
    scored = score(artifact, pool, *extra, code=1).stderr
    info = run(["info", artifact], code=1).stderr
    assert f"{artifact}: {DAMAGED} (" in scored and f"{artifact}: {DAMAGED} (" in info, (scored, info)
    return info


# --- byte damage under the checksum --------------------------------------------------------------------------


def flip(data: bytes, offset: int, count: int = 1, mask: int = 0xFF) -> bytes:
    damaged = bytearray(data)
    for i in range(offset, offset + count):
        damaged[i] ^= mask
    return bytes(damaged)


def array_offset(data: bytes, name: str) -> int:
    """Where an array's bytes start in the file."""
    layout, body = split(data)
    return len(data) - len(body) + layout[name]["data_offsets"][0]


def test_sixteen_bytes_flipped_mid_file(lexical: dict) -> None:
    data = lexical["artifact"].read_bytes()
    damaged = lexical["dir"] / "mid.gotd"
    damaged.write_bytes(flip(data, len(data) // 2, 16))
    assert "checksum mismatch" in refused(damaged, lexical["pool"])


def test_one_byte_of_the_target_array(lexical: dict) -> None:
    data = lexical["artifact"].read_bytes()
    damaged = lexical["dir"] / "target-byte.gotd"
    damaged.write_bytes(flip(data, array_offset(data, "target") + 2, mask=0x01))  # a low bit of one value
    assert "checksum mismatch" in refused(damaged, lexical["pool"])


@pytest.mark.parametrize(
    "before, after, detail",
    [
        (rb"\"epsilon\": 0.05", rb"\"epsilon\": 0.06", "checksum mismatch"),  # still a valid epsilon
        (rb"\"space\": \"lexical\"", rb"\"space\": \"lexicaL\"", "checksum mismatch"),
        (rb'"{\"checksum', rb'"[\"checksum', "the header is not JSON"),
        (VERSION, rb"\"format_version\": 2", "checksum mismatch"),  # no way around it
        (VERSION, NEWER, "newer than this gotd-stream reads"),
        (rb"\"checksum\"", rb"\"checksuM\"", f"no checksum, which format version {FORMAT_VERSION} has"),
    ],
    ids=["epsilon", "space", "not-json", "version-down", "version-up", "key"],
)
def test_one_header_byte_changed(lexical: dict, before: bytes, after: bytes, detail: str) -> None:
    data = lexical["artifact"].read_bytes()
    assert data.count(before) == 1 and len(before) == len(after)
    damaged = lexical["dir"] / "header-byte.gotd"
    damaged.write_bytes(data.replace(before, after))
    assert detail in refused(damaged, lexical["pool"])


def test_subprocess_damaged_artifact_has_no_traceback(lexical: dict) -> None:
    """The real entry point: one line on stderr, exit 1."""
    data = lexical["artifact"].read_bytes()
    damaged = lexical["dir"] / "sub.gotd"
    damaged.write_bytes(flip(data, len(data) // 2, 16))
    out = subprocess.run(
        [sys.executable, "-m", "gotd_stream", "info", str(damaged)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"Error: {damaged}: {DAMAGED} (checksum mismatch") and "Traceback" not in out.stderr


# --- field and shape damage: under the old checksum, resealed, or as version 2 -------------------------------


def setter(*path, value) -> Callable[[dict, dict], None]:
    def edit(header: dict, arrays: dict) -> None:
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def deleter(key: str) -> Callable[[dict, dict], None]:
    return lambda header, arrays: header.pop(key)


def g_huge(header: dict, arrays: dict) -> None:
    arrays["g"][0] = 1e300


def target_wider(header: dict, arrays: dict) -> None:
    arrays["target"] = np.pad(arrays["target"], ((0, 0), (0, 1)))


def target_empty(header: dict, arrays: dict) -> None:
    arrays["target"], arrays["g"] = arrays["target"][:0], arrays["g"][:0]


def target_row_scaled(header: dict, arrays: dict) -> None:  # what one damaged value does to a unit row
    arrays["target"][0] *= 1.5


def target_float64(header: dict, arrays: dict) -> None:
    arrays["target"] = arrays["target"].astype(np.float64)


def idf_cut_short(header: dict, arrays: dict) -> None:
    arrays["lexical_idf"] = arrays["lexical_idf"][:-1]


def idf_nan(header: dict, arrays: dict) -> None:
    arrays["lexical_idf"][3] = np.nan


def extra_array(header: dict, arrays: dict) -> None:
    arrays["extra"] = np.zeros(3, np.float32)


def no_projection(header: dict, arrays: dict) -> None:
    del arrays["lexical_projection"]


def rows_reversed(header: dict, arrays: dict) -> None:
    arrays["lexical_rows"] = arrays["lexical_rows"][::-1].copy()


def rows_int64(header: dict, arrays: dict) -> None:
    arrays["lexical_rows"] = arrays["lexical_rows"].astype(np.int64)


def rows_one_short(header: dict, arrays: dict) -> None:
    arrays["lexical_rows"] = arrays["lexical_rows"][:-1].copy()


LEXICAL_DAMAGE = {
    "negative epsilon": (setter("epsilon", value=-0.05), "epsilon -0.05 is not a finite positive number"),
    "epsilon a string": (setter("epsilon", value="0.05"), "epsilon '0.05' is not a finite positive number"),
    "epsilon missing": (deleter("epsilon"), "epsilon None is not a finite positive number"),
    "epsilon too large for a float": (setter("epsilon", value=10**400), "is not a finite positive number"),
    "mean_f NaN": (setter("mean_f", value=float("nan")), "mean_f nan is not a finite number"),
    "mean_f 1e300": (setter("mean_f", value=1e300), "mean_f 1e+300 is not a finite number within"),
    "ot_cost negative": (setter("ot_cost", value=-3.0), "ot_cost -3.0 is not a finite number in [0, 8]"),
    "g = 1e300": (g_huge, "g holds values that are non-finite or beyond"),
    "a string where the space is expected": (setter("features", value="lexical"), "features is not an object"),
    "unknown space": (setter("features", "space", value="lexicon"), "unknown feature space 'lexicon'"),
    "space not a string": (setter("features", "space", value=["lexical"]), "unknown feature space ['lexical']"),
    "other hash": (setter("features", "hash", value="md5"), "lexical hash 'md5' differs from this gotd-stream's"),
    "buckets not the array's": (setter("features", "buckets", value=1000), "lexical_idf is float32[1024], expected"),
    "dim zero": (setter("features", "dim", value=0), "lexical dim 0 is not a positive integer"),
    "a model for the lexical space": (setter("model", value={"name": "x"}), "the lexical space needs no model"),
    "target of the wrong width": (target_wider, "target is float32[20, 257], expected float32[m >= 1, 256]"),
    "empty target": (target_empty, "target is float32[0, 256], expected float32[m >= 1, 256]"),
    "target row not unit": (target_row_scaled, "target rows are not unit vectors"),
    "target float64": (target_float64, "target is float64[20, 256]"),
    "IDF cut short": (idf_cut_short, "lexical_idf is float32[1023], expected float32[1024]"),
    "IDF NaN": (idf_nan, "lexical_idf holds non-finite values"),
    "projection missing": (no_projection, "arrays missing: lexical_projection"),
    "rows not increasing": (rows_reversed, "lexical_rows are not increasing buckets in [0, 1024)"),
    "rows int64": (rows_int64, "lexical_rows is int64"),
    "rows one short of the projection": (rows_one_short, "lexical_projection is float16["),
    "extra array": (extra_array, "arrays unexpected: extra"),
    "fit not an object": (setter("fit", value=[1]), "fit is not an object"),
    "fit count a string": (setter("fit", "target_seen", value="20"), "fit.target_seen '20' is not a count"),
    "unknown field": (setter("scores", value=[1]), "unknown header fields: 'scores'"),
}


@pytest.mark.parametrize("seal", ["stale", "resealed", "v2"])
@pytest.mark.parametrize("damage", list(LEXICAL_DAMAGE))
def test_damaged_lexical_artifact(lexical: dict, damage: str, seal: str) -> None:
    edit, detail = LEXICAL_DAMAGE[damage]
    damaged = rewrite(lexical["artifact"], lexical["dir"] / "damaged.gotd", edit, seal)
    message = refused(damaged, lexical["pool"])
    assert ("checksum mismatch" if seal == "stale" else detail) in message, message


@pytest.mark.parametrize(
    "header",
    ["[1, 2]", "not json", '{"format": "gotd-stream potentials", "format_version": "3"}', "[" * 5000 + "]" * 5000],
    ids=["list", "not-json", "version-string", "nested"],
)
def test_header_not_an_artifact_header(lexical: dict, header: str) -> None:
    _, arrays = read(lexical["artifact"])
    damaged = write(lexical["dir"] / "header.gotd", header, arrays)
    refused(damaged, lexical["pool"])


def test_version_2_file_loads_with_a_warning_and_scores_the_same(lexical: dict) -> None:
    old = rewrite(lexical["artifact"], lexical["dir"] / "v2.gotd", lambda header, arrays: None, "v2")
    result = run(["score", "-p", old, "-k", 1000, lexical["pool"], "-q"])
    assert result.stdout_bytes == lexical["scores"]  # same scores, same gotd_fit
    warning = f"warning: {old} is format version 2, without a checksum: damage to it cannot be detected"
    assert warning in result.stderr
    info = run(["info", old]).stdout
    assert "format version:  2 (no checksum: integrity not verified)" in info
    assert json.loads(run(["info", "--json", old]).stdout)["format_version"] == 2
    # refitting writes version 3 again, and no warning
    assert "warning" not in run(["info", lexical["artifact"]]).stderr


def test_a_dense_projection_before_version_4_scores_the_same(lexical: dict) -> None:
    """Version 4 keeps projection rows for the buckets the fit sample used; a file with one row per bucket (as
    versions 1-3 wrote) gives the same bytes."""

    def dense(header: dict, arrays: dict) -> None:
        full = np.zeros((header["features"]["buckets"], header["features"]["dim"]), np.float32)
        full[arrays.pop("lexical_rows")] = arrays["lexical_projection"]  # float16 -> float32: exact
        arrays["lexical_projection"] = full
        header["format_version"] = 3

    old = rewrite(lexical["artifact"], lexical["dir"] / "v3.gotd", dense, "resealed")

    def selection(stdout: bytes) -> list:  # the fit id names the arrays, so it differs: the rest must not
        return [{k: v for k, v in json.loads(line).items() if k != "gotd_fit"} for line in stdout.splitlines()]

    assert selection(score(old, lexical["pool"])) == selection(lexical["scores"])
    assert old.stat().st_size > 3 * lexical["artifact"].stat().st_size  # 120 texts use few of the 1,024 buckets


def test_fit_writes_a_checksum_of_header_and_arrays(lexical: dict) -> None:
    header, arrays = read(lexical["artifact"])
    assert header["format_version"] == FORMAT_VERSION and header["checksum"].startswith("sha256:")
    assert header["checksum"] == checksum(header, arrays)


# --- the model settings of the semantic and hybrid spaces --------------------------------------------------------


def model_dim(header: dict, arrays: dict) -> None:
    header["model"]["dim"] = 33


HYBRID_DAMAGE = {
    "no model": (setter("model", value=None), "model settings None are not an object"),
    "model a string": (setter("model", value="tiny-st"), "model settings 'tiny-st' are not an object"),
    "no fingerprint": (setter("model", "fingerprint", value=None), "model fingerprint None is not a string"),
    "max_tokens a float": (setter("model", "max_tokens", value=128.0), "model max_tokens 128.0 is not a positive"),
    "model dim not the target's": (model_dim, "target is float32[20, 288], expected float32[m >= 1, 289]"),
    "other character cut": (setter("model", "chars_per_token", value=8), "texts were cut at 8 characters per token"),
    "weight above 1": (setter("features", "weight", value=1.5), "hybrid weight 1.5 is not a number in [0, 1]"),
    "weight missing": (setter("features", "weight", value=None), "hybrid weight None is not a number in [0, 1]"),
    "semantic with lexical arrays": (
        setter("features", value={"space": "semantic"}),
        "arrays unexpected: lexical_idf, lexical_projection",
    ),
}


@pytest.mark.parametrize("seal", ["resealed", "v2"])
@pytest.mark.parametrize("damage", list(HYBRID_DAMAGE))
def test_damaged_hybrid_artifact(hybrid: dict, damage: str, seal: str) -> None:
    edit, detail = HYBRID_DAMAGE[damage]
    damaged = rewrite(hybrid["artifact"], hybrid["dir"] / "damaged.gotd", edit, seal)
    assert detail in refused(damaged, hybrid["pool"], "--model", hybrid["model"])


def test_hybrid_version_2_scores_the_same(hybrid: dict) -> None:
    new = score(hybrid["artifact"], hybrid["pool"], "--model", hybrid["model"])
    old = rewrite(hybrid["artifact"], hybrid["dir"] / "v2.gotd", lambda header, arrays: None, "v2")
    assert score(old, hybrid["pool"], "--model", hybrid["model"]) == new


@pytest.mark.parametrize("epsilon", ["20"])
def test_fits_at_extreme_epsilons_pass_the_checks(tmp_path: Path, epsilon: str) -> None:
    """The plausibility bounds (|g|, |mean_f| <= 100 + 100 epsilon) never refuse a real fit: at a large epsilon the
    potentials shift by about epsilon * log(sample size)."""
    out, pool = fit(tmp_path, "--features", "lexical", "--epsilon", epsilon)
    assert f"epsilon:         {float(epsilon):g}" in run(["info", out]).stdout
    assert len(score(out, pool, "--dedup", "off").splitlines()) == 120

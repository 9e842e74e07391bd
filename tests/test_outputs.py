"""Outputs never destroy what the user has: `-o` (and `--save-potentials`) as a user runs them.

An output that is the same file as anything the run reads is refused (exit 2) before any work; devices, FIFOs
and stdout are written as streams, never renamed over; a symlink is followed; an existing file keeps its mode;
a missing folder is found before the work. The lexical space needs no model, so every run here is quick.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gotd_stream.cli import cli
from gotd_stream.select.artifact import load
from tests.conftest import make_docs, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
LEXICAL = ["--features", "lexical", "--sample-size", "50"]


def invoke(args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def ok(args, input=None):
    result = invoke(args, input)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A pool, a target, a lexical artifact and a scored selection, made once for the module."""
    d = tmp_path_factory.mktemp("outputs")
    pool = write_jsonl(d / "pool.jsonl", make_docs(80, seed=1))
    target = write_jsonl(d / "target.jsonl", [doc for doc in make_docs(40, seed=2) if doc["topic"] == "cooking"])
    artifact = d / "task.gotd"
    ok(["fit", "--target", target, pool, *LEXICAL, "-o", artifact, "-q"])
    scored = d / "scored.jsonl"
    ok(["score", "-p", artifact, "-k", 10, pool, "-o", scored, "-q"])
    return {"dir": d, "pool": pool, "target": target, "artifact": artifact, "scored": scored}


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry of a folder: its type and bytes (or link target); a temporary file left behind shows too."""
    seen = {}
    for entry in sorted(folder.iterdir()):
        mode = entry.lstat().st_mode
        content = os.readlink(entry) if stat.S_ISLNK(mode) else entry.read_bytes() if stat.S_ISREG(mode) else ""
        seen[entry.name] = (stat.S_IFMT(mode), content)
    return seen


# --- 1. an output that is something the run reads ---------------------------------------------------------------

COLLISIONS = {  # name -> (arguments, the path the message must name as the output, what it collides with)
    "score -o input": (["score", "-p", "{artifact}", "-k", 5, "{pool}", "-o", "{pool}"], "-o {pool}", "input {pool}"),
    "score --save-potentials corpus": (
        ["score", "--target", "{target}", *LEXICAL, "-k", 5, "{pool}", "--save-potentials", "{pool}"],
        "--save-potentials {pool}",
        "input {pool}",
    ),
    "score --save-potentials target": (
        ["score", "--target", "{target}", *LEXICAL, "-k", 5, "{pool}", "--save-potentials", "{target}"],
        "--save-potentials {target}",
        "--target {target}",
    ),
    "score -p X -o X": (
        ["score", "-p", "{artifact}", "-k", 5, "{pool}", "-o", "{artifact}"],
        "-o {artifact}",
        "-p {artifact}",
    ),
    "fit -o target": (["fit", "--target", "{target}", "{pool}", *LEXICAL, "-o", "{target}"], "-o {target}", "--target"),
    "fit -o input": (["fit", "--target", "{target}", "{pool}", *LEXICAL, "-o", "{pool}"], "-o {pool}", "input {pool}"),
    "merge -o input": (["merge", "-k", 5, "{scored}", "-o", "{scored}"], "-o {scored}", "input {scored}"),
    "embed -o input": (["embed", "-p", "{artifact}", "{pool}", "-o", "{pool}"], "-o {pool}", "input {pool}"),
    "embed -o artifact": (["embed", "-p", "{artifact}", "{pool}", "-o", "{artifact}"], "-o {artifact}", "-p"),
    "score -o a symlink to the input": (
        ["score", "-p", "{artifact}", "-k", 5, "{pool}", "-o", "{dir}/link.jsonl"],
        "-o {dir}/link.jsonl",
        "input {pool}",
    ),
    "score -o a hard link to the input": (
        ["score", "-p", "{artifact}", "-k", 5, "{pool}", "-o", "{dir}/hard.jsonl"],
        "-o {dir}/hard.jsonl",
        "input {pool}",
    ),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_output_that_is_an_input_is_a_usage_error(files, case):
    folder = files["dir"]
    for name, make in (("link.jsonl", os.symlink), ("hard.jsonl", os.link)):
        if not os.path.lexists(folder / name):
            make(files["pool"], folder / name)
    args, output, other = COLLISIONS[case]
    fill = {key: str(value) for key, value in files.items()}
    before = snapshot(folder)
    result = invoke([str(a).format(**fill) for a in args])
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert f"{output.format(**fill)} is the same file as {other.format(**fill)}" in result.stderr
    assert "fit:" not in result.stderr  # refused before the work
    assert snapshot(folder) == before  # every input byte-identical, nothing left behind


def test_save_potentials_and_output_the_same_file(files, tmp_path):
    out = tmp_path / "same.out"
    args = ["score", "--target", files["target"], *LEXICAL, "-k", 5, files["pool"], "-o", out]
    result = invoke([*args, "--save-potentials", out])
    assert result.exit_code == 2
    assert f"-o {out} and --save-potentials {out} are the same file" in result.stderr
    both_stdout = invoke([*args[:-2], "--save-potentials", "-"])  # -o left out is stdout too
    assert (
        both_stdout.exit_code == 2
        and "-o - (stdout) and --save-potentials - (stdout) are the same file" in both_stdout.stderr
    )
    assert not out.exists()


def tool(args, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "gotd_stream", *map(str, args)], env=env, stderr=subprocess.PIPE, timeout=120, **kwargs
    )


def test_stdin_or_stdout_that_is_the_output_file(files, tmp_path):
    """`score - -o corpus < corpus` and `score corpus >> corpus`: the same file through a descriptor."""
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(files["pool"].read_bytes())
    with open(victim, "rb") as stdin:
        done = tool(["score", "-p", files["artifact"], "-k", 5, "-", "-o", victim], stdin=stdin)
    assert done.returncode == 2
    assert f"-o {victim} is the same file as input <stdin>" in done.stderr.decode()
    with open(victim, "ab") as stdout:
        done = tool(["score", "-p", files["artifact"], "-k", 5, victim], stdout=stdout)
    assert done.returncode == 2
    assert f"-o - (stdout) is the same file as input {victim}" in done.stderr.decode()
    assert victim.read_bytes() == files["pool"].read_bytes()


# --- 2. what is at the output path survives as what it is ----------------------------------------------------------


def score_to(files, output, k=5) -> CliRunner:
    return ok(["score", "-p", files["artifact"], "-k", k, files["pool"], "-o", output, "-q"])


def test_fifo_is_written_as_a_stream(files, tmp_path):
    fifo = tmp_path / "selected.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    score_to(files, fifo)
    reader.join(timeout=60)
    assert not reader.is_alive() and len(got[0].splitlines()) == 5
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["selected.fifo"]  # no temporary file beside it


def test_character_device_stays_a_device(files, tmp_path):
    """As /dev/null, on a node made here: a regression cannot clobber the system's /dev/null when run as root."""
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    score_to(files, null)
    ok(["fit", "--target", files["target"], files["pool"], *LEXICAL, "-o", null, "-q"])
    ok(["embed", "-p", files["artifact"], files["pool"], "-o", null, "-q"])
    assert stat.S_ISCHR(null.lstat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


def test_symlink_is_followed(files, tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real.name)
    score_to(files, link)
    assert link.is_symlink() and os.readlink(link) == real.name
    assert len(real.read_bytes().splitlines()) == 5
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to("made.jsonl")
    score_to(files, dangling)
    assert dangling.is_symlink() and len((tmp_path / "made.jsonl").read_bytes().splitlines()) == 5


def test_existing_file_keeps_its_mode_and_new_files_follow_the_umask(files, tmp_path):
    private = tmp_path / "private.jsonl"
    private.write_text("old\n")
    private.chmod(0o600)
    score_to(files, private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and len(private.read_bytes().splitlines()) == 5
    old = os.umask(0o027)
    try:
        score_to(files, tmp_path / "new.jsonl")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o640


# --- 3. a folder that is not there, names that are not files --------------------------------------------------------


@pytest.mark.parametrize("command", ["fit", "score --save-potentials", "score -o", "merge", "embed"])
def test_missing_folder_fails_before_the_work(files, tmp_path, command):
    missing = tmp_path / "no such folder"
    out = missing / "out.x"
    args = {
        "fit": ["fit", "--target", files["target"], files["pool"], *LEXICAL, "-o", out],
        "score --save-potentials": [
            *["score", "--target", files["target"], files["pool"], *LEXICAL, "-k", 5, "--save-potentials", out],
        ],
        "score -o": ["score", "-p", files["artifact"], "-k", 5, files["pool"], "-o", out],
        "merge": ["merge", "-k", 5, files["scored"], "-o", out],
        # a folder that is no model: the check comes before the model is loaded, or this would be a model error
        "embed": ["embed", "--model", tmp_path, files["pool"], "-o", out],
    }[command]
    result = invoke(args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    flag = "--save-potentials" if "save" in command else "-o"
    assert f"{flag} {out}: the folder {missing} does not exist; create it first" in result.stderr
    assert "fit:" not in result.stderr and ".tmp" not in result.stderr


@pytest.mark.parametrize(("name", "message"), [("", "-o: an empty file name"), ("sub/", "-o sub/: names a folder")])
def test_output_names_that_are_no_files(files, name, message):
    result = invoke(["score", "-p", files["artifact"], "-k", 5, files["pool"], "-o", name])
    assert result.exit_code == 2 and message in result.stderr


# --- 4. -o - is stdout for every command ------------------------------------------------------------------------------


def test_fit_and_embed_to_stdout(files, tmp_path):
    artifact = ok(["fit", "--target", files["target"], files["pool"], *LEXICAL, "-o", "-", "-q"]).stdout_bytes
    (tmp_path / "from-stdout.gotd").write_bytes(artifact)
    assert load(str(tmp_path / "from-stdout.gotd")).fit_id == load(str(files["artifact"])).fit_id
    for name in ("-", "/dev/stdout"):
        matrix = np.load(io.BytesIO(ok(["embed", "-p", files["artifact"], files["pool"], "-o", name]).stdout_bytes))
        assert matrix.shape == (80, 256) and matrix.dtype == np.float32
    result = ok(["merge", "-k", 3, files["scored"], "-o", "-"])
    assert result.stdout_bytes.splitlines() == files["scored"].read_bytes().splitlines()[:3]


def test_embed_through_a_real_pipe(files):
    """A pipe cannot seek back to patch the .npy header: the matrix is spooled, then copied out whole."""
    done = tool(["embed", "-p", files["artifact"], files["pool"], "-o", "/dev/stdout", "-q"], stdout=subprocess.PIPE)
    assert done.returncode == 0, done.stderr.decode()
    assert np.load(io.BytesIO(done.stdout)).shape == (80, 256)


def test_binary_output_refused_on_a_terminal(files):
    import pty

    leader, follower = pty.openpty()
    try:
        done = tool(["fit", "--target", files["target"], files["pool"], *LEXICAL, "-o", "-"], stdout=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert "-o - (stdout): will not write binary data to a terminal" in done.stderr.decode()

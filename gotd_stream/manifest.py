"""A selection's manifest: what made it, in a small JSON file beside it, enough to trust it and to make it again.

`score` and `merge` write one next to each selection written to a file (`sel.jsonl.zst` ->
`sel.jsonl.zst.manifest.json`) and in each --state folder (`manifest.json`): the versions of the tool and of
its libraries, the artifact (fit id and header), every input with its size and content fingerprints, the plan
(budget, rule, units), the counts, the wall time, the command line (credentials masked) and its folder. A
re-run from it (`score --from-manifest`) is refused when the artifact or an input is not what was recorded:
`check_artifact` and `check_inputs` before any work, `check_read` on the bytes as they were read.

An input's fingerprints: `sha256` of its bytes as read (io.digests hashes them while they stream: no second
read; None where this process did not read the whole input, as for a shard reused from --state, scored on Ray,
or a Parquet file, which is read by seeking) and `content_key`, the fingerprint --state and the fit's sample
know a shard by (select.state.fingerprint: its size and first and last MiB).
"""

from __future__ import annotations

import json
import os
import platform
import re
import stat
import sys
import time
from importlib import metadata

from gotd_stream.errors import UsageProblem
from gotd_stream.io.outputs import atomic_output, resolve_sink
from gotd_stream.io.streams import STDIN, read_chunks
from gotd_stream.version import __version__

FORMAT = "gotd-stream manifest"
FORMAT_VERSION = 1
SUFFIX = ".manifest.json"  # beside a selection: sel.jsonl.zst -> sel.jsonl.zst.manifest.json
IN_STATE = "manifest.json"  # in a --state folder: the manifest of its last run
MASK = "***"

# distribution -> the module it is imported as: listed when imported by the run (numpy always is)
LIBRARIES = {
    "numpy": "numpy",
    "torch": "torch",
    "sentence-transformers": "sentence_transformers",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "model2vec": "model2vec",
    "POT": "ot",
    "scipy": "scipy",
    "pyarrow": "pyarrow",
    "zstandard": "zstandard",
    "safetensors": "safetensors",
    "orjson": "orjson",
    "ray": "ray",
    "fsspec": "fsspec",
    "click": "click",
}


class NotAManifest(UsageProblem):
    """A file given as a manifest that is none (or of a later format)."""


class ChangedInput(UsageProblem):
    """An input of a recorded selection whose content is no longer what the manifest recorded."""


class ChangedArtifact(UsageProblem):
    """The artifact of a recorded selection is another fit now."""


def beside(output: str | None) -> str | None:
    """Where the manifest of a selection written to `output` goes: next to it for a regular file, else nowhere
    (stdout, a device, a FIFO: there is no folder of its own to put it in)."""
    if output is None or output == STDIN:
        return None
    try:
        sink = resolve_sink(output)
    except OSError:
        return output + SUFFIX  # writing the selection will say what is wrong
    return output + SUFFIX if sink.kind == "file" else None


def versions() -> dict[str, str]:
    """The tool's version and those of the libraries this run imported (read from their metadata: nothing is
    imported for it)."""
    found = {"gotd-stream": __version__}
    for dist, module in LIBRARIES.items():
        if module in sys.modules:
            try:
                found[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return found


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


_SECRET_NAME = re.compile(
    r"(?i)(?:^|[-_])(?:password|passwd|pass|pwd|secret|token|api[-_]?key|access[-_]?key|secret[-_]?key|key|"
    r"credentials?|signature|sig|auth)$"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@:\s]*):([^/@\s]+)@")
_QUERY = re.compile(r"([?&;])([A-Za-z0-9_.-]+)=([^&#\s]*)")
_TOKENS = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|sk-[A-Za-z0-9_-]{20,}|"
    r"(?:AKIA|ASIA)[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


def secret_name(name: str) -> bool:
    """A flag or variable named like a credential (--hf-token, --api-key, AWS_SECRET_ACCESS_KEY; not --tokens)."""
    return bool(_SECRET_NAME.search(name.lstrip("-")))


def mask(text: str) -> str:
    """`text` with what looks like a credential replaced by ***: a URL's password, a query value named like a
    secret (token=, X-Amz-Signature=, key=), and the shapes of known tokens (hf_, ghp_, sk-, AKIA, JWT)."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    text = _QUERY.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK if secret_name(m.group(2)) else m.group(3)}", text)
    return _TOKENS.sub(MASK, text)


def masked_argv(argv: list[str]) -> list[str]:
    """A command line with credentials masked: values of flags named like one (`--token X`, `--token=X`),
    `NAME=VALUE` words with such a name, and anything `mask` recognises."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next and not word.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        name, eq, value = word.partition("=")
        if eq and secret_name(name) and (name.startswith("-") or name.isidentifier()):
            out.append(f"{name}={MASK}")
            continue
        if word.startswith("--") and secret_name(word):
            hide_next = True
        out.append(mask(word))
    return out


def describe_inputs(paths: list[str], read: dict[str, tuple[str, int]]) -> list[dict]:
    """Each input as given, with its size and fingerprints (`read`: io.digests' sha256 and bytes by path)."""
    from gotd_stream.select.state import fingerprint

    entries = []
    for path in paths:
        entry: dict = {"path": mask(path), "size": None, "content_key": None, "sha256": None}
        try:
            info = os.stat(path) if path != STDIN else None
        except OSError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode):
            entry["size"], entry["content_key"] = info.st_size, fingerprint(path, info.st_size)
        if path in read:
            entry["sha256"], entry["size"] = read[path]
        entries.append(entry)
    return entries


def describe_artifact(artifact, path: str | None) -> dict:
    """The artifact (a Potentials or a Mixture): its file, fit id, format and header (its fit settings; the feature
    space and the model have sections of their own)."""
    return {
        "path": None if path is None else mask(path),
        "fit_id": artifact.fit_id,
        "format_version": artifact.format_version,
        "header": {key: value for key, value in artifact.header().items() if key not in ("features", "model")},
    }


def describe_plan(plan) -> dict:
    """A select.score.Plan's settings: the budget and its rule, the mix, the units, candidates or a selection."""
    budget, units = plan.budget, plan.units
    return {
        "budget": {"k": budget.k, "tokens": budget.tokens},
        "rule": {"select": budget.rule.name, "temperature": budget.rule.temperature, "seed": budget.rule.seed},
        "mix": plan.mix,
        "units": {
            "unit": "doc" if units.chunk_tokens is None else "chunk",
            "chunk_tokens": units.chunk_tokens,
            "text_field": units.text_field,
            "counter": getattr(units.counter, "name", None),
        },
        "candidates": plan.candidates,
        "guard": plan.guard.identity(),
    }


def describe_counts(counts, selected: int, tokens: int | None, dropped: dict[str, int] | None = None) -> dict:
    """A select.score.Counts as the summary line says it, and what was selected (`tokens`: None if uncounted);
    `dropped`: what the duplicate guard dropped above the selection's last unit, by reason ("copy", an
    exclusion's), None when it was off or the output is candidates (a shard's counts are not the selection's)."""
    skipped = dict(sorted(counts.skips.counts.items()))
    described = {
        "read": counts.scored + counts.skips.total,
        "scored": counts.scored,
        "skipped": counts.skips.total,
        "skipped_by_reason": skipped,
        "reused_shards": counts.reused,
    }
    described.update(selected=selected, selected_tokens=tokens, dropped_by_guard=dropped)
    return described


def build(command: str, started: float, output: str | None, **sections) -> dict:
    """A manifest of `command` begun at `started` (time.time()) that wrote `output`: the common parts (format,
    versions, environment, command line, folder, time) and the caller's `sections` (inputs, artifact, plan...)."""
    real = None if output in (None, STDIN) else os.path.realpath(output)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "command": command,
        "versions": versions(),
        "environment": environment(),
        "argv": masked_argv(list(sys.argv)),
        "cwd": os.getcwd(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 3),
        "output": {"path": None if output is None else mask(output), "realpath": real},
        **sections,
    }


def write(manifest: dict, path: str) -> None:
    """The manifest to `path`, atomically (io.outputs: a temporary file renamed into place)."""
    with atomic_output(path) as fh:
        fh.write(json.dumps(manifest, indent=2).encode() + b"\n")


def is_manifest(path: str) -> bool:
    """Whether `path` is a manifest: a look at its first bytes only (a selection beside it can be huge)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and f'"format": "{FORMAT}"'.encode() in head


def locate(path: str) -> str | None:
    """The manifest `path` names: itself, the one of a selection beside it, or the one of a --state folder."""
    if os.path.isdir(path):
        inside = os.path.join(path, IN_STATE)
        return inside if os.path.isfile(inside) else None
    if is_manifest(path):
        return path
    return path + SUFFIX if is_manifest(path + SUFFIX) else None


def load(path: str) -> dict:
    """A manifest read back; NotAManifest for any other file."""
    try:
        manifest = json.loads(b"".join(read_chunks(path)))
    except ValueError as exc:
        raise NotAManifest(f"{path}: not a manifest of gotd-stream (not JSON: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NotAManifest(f'{path}: not a manifest of gotd-stream (no "format": "{FORMAT}")')
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise NotAManifest(f"{path}: manifest format {manifest['format_version']} is newer than this gotd-stream's")
    return manifest


def check_artifact(recorded: dict, fit_id: str, name: str) -> None:
    """Refuse another fit than the recorded one (ChangedArtifact names both ids)."""
    expected = recorded["artifact"]["fit_id"]
    if fit_id != expected:
        raise ChangedArtifact(
            f"{name} is fit {fit_id}, but the manifest recorded fit {expected}: the artifact is not the one the "
            "selection was made with"
        )


def check_inputs(entries: list[dict]) -> None:
    """Before any work: each recorded file still has its size and content key (ChangedInput names it)."""
    from gotd_stream.select.state import fingerprint

    for entry in entries:
        path = entry["path"]
        if path == STDIN or entry.get("size") is None:
            continue
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise ChangedInput(f"input {path} of the recorded selection cannot be read ({exc.strerror})") from None
        if size != entry["size"]:
            raise ChangedInput(f"input {path} changed: {size:,} bytes, the manifest recorded {entry['size']:,}")
        if entry.get("content_key") and fingerprint(path, size) != entry["content_key"]:
            raise ChangedInput(f"input {path} changed: its content key is not the one the manifest recorded")


def check_read(entries: list[dict], read: dict[str, tuple[str, int]]) -> None:
    """After reading, before writing: each input read whole has the recorded sha256 (ChangedInput names it)."""
    for entry in entries:
        found = read.get(entry["path"])
        if entry.get("sha256") and found is not None and found[0] != entry["sha256"]:
            raise ChangedInput(
                f"input {entry['path']} changed: its bytes hash to sha256 {found[0][:16]}..., the manifest recorded "
                f"{entry['sha256'][:16]}..."
            )

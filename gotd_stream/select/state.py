"""Resumable, incremental scoring: per-shard results kept on disk under a lock.

`score --state DIR` keeps, for every input shard it finished, the shard's own top-k (with scores) and a small record
of what the shard was (size, mtime, a hash of its first and last MiB) and what reading it cost (records, skips). A
re-run, after a crash or from cron over a growing shard folder, scores only shards it has no valid record of and
merges the rest from disk; since a shard's top-k merged in shard order is exactly the top-k of one pass, the output
is byte-identical to an uninterrupted run. The state belongs to one artifact, budget, rule, unit and text field:
anything else starts it over.

A shard is known by its content (size and a hash of its first and last MiB), never by its path: `x`, `./x`, its
absolute path, a symlink to it and a copy of it under another mount are the same shard, so a re-run from another
node's mount takes what an earlier one scored. A shard whose content changed is scored again (its earlier
results stay in the folder, under the earlier content's key).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gotd_stream.errors import RuntimeProblem, SettingsMessage, UsageProblem, setting
from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.streams import absolute, open_input, read_lines, stat_input

STATE_VERSION = 3  # 2: scores by the one-matmul exact c-transform (select.ot.on_grid); 3: shards keyed by content


class StateLocked(SettingsMessage):
    """Another run holds the state folder."""


class StateError(RuntimeProblem):
    """The state folder is unusable (not ours, unreadable); the message says what to do."""


class NotAState(UsageProblem):
    """A folder given as a state folder (to merge) that no `score --state` run made."""


class ShardsFailed(RuntimeProblem):
    """Some shards could not be read (damaged): the others were scored and their selection written; the message
    names the failed shards and why. They are tried again once their content changes."""


@dataclass
class Shard:
    """What a finished shard was and what reading it gave."""

    path: str
    size: int
    mtime_ns: int
    scored: int
    skipped: dict[str, int]
    fingerprint: str = ""  # of its first and last MiB; a record from before it existed never matches


FINGERPRINT_BYTES = 1 << 20


def fingerprint(path: str, size: int) -> str:
    """sha256 of the size and the first and last MiB: catches a shard rewritten with the same size and mtime."""
    digest = hashlib.sha256(str(size).encode())
    with open_input(path) as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(fh.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:32]


def shard_key(path: str) -> str:
    """The name of a shard's files in a state folder of version 2: a hash of its absolute path (merge reads it)."""
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:20]


def content_key(prints: str) -> str:
    """The name of a shard's files: its content fingerprint, so that `x`, `./x`, `/abs/x`, a symlink and a copy of
    the same shard under another mount are one shard (a name, a folder or a node plays no part)."""
    return prints[:20]


def content_hash(path: str) -> str:
    """sha256 of a whole file: tells a damaged shard that was only touched from one that was replaced."""
    digest = hashlib.sha256()
    with open_input(path) as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()[:32]


def _atomic_json(path: Path, data: dict) -> None:
    with atomic_output(str(path)) as fh:
        fh.write(json.dumps(data, sort_keys=True, indent=1).encode() + b"\n")


class RemoteState(UsageProblem):
    """A state folder behind a URL: refused, it must be local (check_local)."""


def check_local(directory: str) -> None:
    """A state folder is local: its lock is an flock, which an object store has no equivalent of (a lock
    object there would outlive a holder killed by SIGKILL, or let two runs in), and its markers are renamed
    into place. Inputs may be remote; the state that records them may not."""
    from gotd_stream.io.remote import is_url

    if is_url(directory):
        raise RemoteState(
            f"{setting('state')} {directory}: a state folder must be local (its lock is an flock on a local or "
            "network file system); the inputs may stay remote"
        )


class State:
    """A state folder: `state.json` (what it is for), `lock`, and `shards/<key>.{jsonl.zst,json}` per input."""

    def __init__(self, directory: str, identity: dict, wait: bool = False, keep_going: bool = True):
        check_local(directory)
        self.dir = Path(directory)
        self.shards = self.dir / "shards"
        self.identity = dict(identity, state_version=STATE_VERSION)
        self.wait = wait
        self._lock_fd: int | None = None
        self._prints: dict[str, str] = {}  # the fingerprint of a shard when this run first looked at it
        self.message = ""  # why an old state was discarded, for the user
        self.keep_going = keep_going  # a damaged shard is recorded and the others go on; False: it fails the run
        self.failures: dict[str, str] = {}  # path -> why, for the shards that failed (now, or unchanged before)
        self.inputs: list[str] = []

    def __enter__(self) -> State:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        self._check_identity()
        self.shards.mkdir(exist_ok=True)
        for stale in self.shards.glob(".*.tmp"):  # left by a run killed with SIGKILL
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _lock(self) -> None:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateLocked(
                    f"state {self.dir} is in use by another gotd-stream run ({holder}): "
                    f"wait for it to end, or pass {setting('wait')} to queue behind it"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._lock_fd = fd

    def _check_identity(self) -> None:
        path = self.dir / "state.json"
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise StateError(f"{path}: unreadable ({exc}); remove the folder {self.dir} to start over") from None
            if old == self.identity:
                return
            changed = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in self.identity.items() if old.get(k) != v)
            self.message = f"state {self.dir} was made for other settings ({changed}): starting it over"
            for entry in self.shards.glob("*"):
                entry.unlink()
        _atomic_json(path, self.identity)

    def _print(self, path: str) -> str:
        if path not in self._prints:
            self._prints[path] = fingerprint(path, stat_input(path).st_size)
        return self._prints[path]

    def _key(self, path: str) -> str:
        return content_key(self._print(path))

    def finished(self, path: str) -> Shard | None:
        """The record of `path`'s content if it was scored (same size and fingerprint; the same mtime too when it
        was scored under this very path, which catches a rewrite in place), else None."""
        key = self._key(path)
        stat = stat_input(path)
        meta, kept = self.shards / f"{key}.json", self.shards / f"{key}.jsonl.zst"
        if not (meta.exists() and kept.exists()):
            return None
        try:
            shard = Shard(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if (shard.size, shard.fingerprint) != (stat.st_size, self._print(path)):
            return None
        if shard.path == absolute(path) and shard.mtime_ns != stat.st_mtime_ns:
            return None
        return shard

    def failed(self, path: str, stat, error: Exception) -> None:
        """Record that `path` (as `stat` and its fingerprint were before it was read) could not be read, and why;
        a re-run skips it until its content changes (known_failure). Whatever it kept before is dropped. A state
        that does not keep going (a temporary one) raises `error` instead."""
        if not self.keep_going:
            raise error
        reason = str(error)
        key = self._key(path)
        prints = self._prints.pop(path, None) or fingerprint(path, stat.st_size)
        record = {
            "path": absolute(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "fingerprint": prints,
            "content": content_hash(path),
            "reason": reason,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for stale in (self.shards / f"{key}.json", self.shards / f"{key}.jsonl.zst"):
            stale.unlink(missing_ok=True)  # a shard finished earlier, then damaged: its old lines are not it
        _atomic_json(self.shards / f"{key}.failed.json", record)
        self.failures[path] = reason

    def known_failure(self, path: str) -> str | None:
        """The reason `path` failed in an earlier run if its content is still the same, else None (try it again).
        The same size, mtime and fingerprint is the same file; a file only touched is hashed whole to be sure."""
        if path in self.failures:  # failed in this run (on a Ray actor): its own words
            return self.failures[path]
        meta = self.shards / f"{self._key(path)}.failed.json"
        try:
            record = json.loads(meta.read_text())
            stat = stat_input(path)
            prints = self._prints.get(path) or fingerprint(path, stat.st_size)
            same = (record["path"], record["size"], record["fingerprint"]) == (
                absolute(path),
                stat.st_size,
                prints,
            )
            if same and record["mtime_ns"] != stat.st_mtime_ns:
                same = record["content"] == content_hash(path)
            reason = f"{record['reason']} (unchanged since it failed, {record['when']})"
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not same:
            return None
        self.failures[path] = reason
        return reason

    def require_complete(self, written: bool = True) -> None:
        """Raise ShardsFailed naming the shards that failed (now or, unchanged, in an earlier run). Before the
        selection is written (`written` False) only when every input failed: there is then nothing to write."""
        if not self.failures or (not written and len(self.failures) < len(set(self.inputs))):
            return
        n = len(self.failures)
        named = [why if why.startswith(f"{path}:") else f"{path}: {why}" for path, why in self.failures.items()]
        listed = "; ".join(named[:10])
        more = f"; and {n - 10} more" if n > 10 else ""
        outcome = (
            f"the selection of the other {len(set(self.inputs)) - n} was written without {'them' if n > 1 else 'it'}"
            if written
            else "nothing was written"
        )
        raise ShardsFailed(
            f"{n} shard{'s' if n > 1 else ''} could not be read ({listed}{more}): {outcome}, and what was scored is "
            f"saved in {self.dir}. Replace or remove the damaged {'files' if n > 1 else 'file'}: a re-run skips "
            f"{'them' if n > 1 else 'it'} until {'their' if n > 1 else 'its'} content changes"
        )

    def note_inputs(self, paths: list[str]) -> None:
        """Record the shards this run is for (`inputs.json`), so that `merge` of the folder can tell a finished
        run from one that stopped part-way."""
        self.inputs = list(paths)
        inputs = {"inputs": [absolute(p) for p in paths], "keys": [self._key(p) for p in paths]}
        _atomic_json(self.dir / "inputs.json", inputs)

    def lines(self, path: str) -> Iterator[tuple[int, bytes]]:
        """(line number, line) of what a finished shard kept, as `save_lines` wrote it."""
        return read_lines(str(self.shards / f"{self._key(path)}.jsonl.zst"))

    def name(self, path: str) -> str:
        """The file that holds what `path` kept, for messages."""
        return str(self.shards / f"{self._key(path)}.jsonl.zst")

    def save_lines(self, path: str, stat, lines: Iterable[bytes], scored: int, skipped: dict) -> None:
        """What a shard kept (any lines: several targets keep candidates) first, then the record that marks the
        shard finished: both atomic."""
        key = self._key(path)
        with atomic_output(str(self.shards / f"{key}.jsonl.zst")) as fh:
            for line in lines:
                fh.write(line + b"\n")
        # the fingerprint taken before the shard was read, as its stat was
        prints = self._print(path)
        shard = Shard(absolute(path), stat.st_size, stat.st_mtime_ns, scored, dict(skipped), prints)
        _atomic_json(self.shards / f"{key}.json", shard.__dict__)
        self._forget_failures(path, key)

    def _forget_failures(self, path: str, key: str) -> None:
        """A shard scored now: its failure records go, under its key and under the key of the damaged content
        it had at this path (shards are keyed by content, and a fixed file has other content)."""
        where = absolute(path)
        for record in self.shards.glob("*.failed.json"):
            try:
                stale = record.name == f"{key}.failed.json" or json.loads(record.read_text()).get("path") == where
            except (OSError, ValueError, AttributeError):
                stale = False
            if stale:
                record.unlink(missing_ok=True)


@dataclass
class Folder:
    """What a state folder holds for `merge`: its settings, and the kept lines of the shards of its last run."""

    dir: Path
    identity: dict
    kept: dict[str, Path]  # absolute shard path -> its kept lines, for the finished shards of the last run
    unfinished: list[str]  # shards of the last run without a completion record


def read_folder(directory: str) -> Folder:
    """A state folder as `merge` reads it, without taking its lock; StateError when it is not one, or unreadable."""
    folder = Path(directory)
    try:
        identity = json.loads((folder / "state.json").read_text())
        recorded = json.loads((folder / "inputs.json").read_text())
        inputs = recorded["inputs"]
        keys = recorded.get("keys") or [shard_key(path) for path in inputs]  # version 2 folders: by path
    except FileNotFoundError as exc:
        what = "a state folder" if exc.filename.endswith("state.json") else "the record of its last run (inputs.json)"
        raise NotAState(
            f"{folder} is a folder without {what}: merge takes the state folders of `score --state`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{folder}: unreadable state ({exc}); score it again") from None
    kept, unfinished = {}, []
    for path, key in zip(inputs, keys, strict=True):
        meta, lines = folder / "shards" / f"{key}.json", folder / "shards" / f"{key}.jsonl.zst"
        if meta.exists() and lines.exists():
            kept[path] = lines
        else:
            unfinished.append(path)
    return Folder(folder, identity, kept, unfinished)

"""Where a selection runs, apart from what it does: one interface, and the executors that satisfy it.

    executor.run(paths, featurizer, artifact, plan, counts) -> a keeper (select.keep) of every shard

- `Local`: one pass over the inputs as one stream (stdin too); `records` reads a stream already begun (the fit
  on a stream's first records keeps them, to score them with the rest).
- `Resumable`: shard by shard through a `--state` folder (select.state): finished shards come from the folder,
  the others are scored and saved; every shard's candidates are offered in input order, so the result is one
  pass's, whatever the restarts.
- `Share`: a Slurm array task's share of the inputs (`share`: a contiguous block of the sorted paths), run by
  another executor.
- `distributed.ray.OnRay`: the unfinished shards on a Ray actor pool, then the folder merged as `Resumable` does.

Every executor ends in the same place: `score_shard` (what one shard does) and the keeper's candidates, which
merge exactly (select.keep). The pattern is datatrove's PipelineExecutor (local, Slurm, Ray), with our own code.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.io.records import Record

log = logging.getLogger(__name__)
DROPPED = "(left by the cascade)"  # a shard's record in a state folder: the records the cascade dropped


class Executor(Protocol):
    def run(self, paths: list[str], featurizer, artifact, plan, counts, device: str = "cpu", quiet: bool = False):
        """Score `paths` by `plan` and return the keeper of all of them."""


@dataclass
class Local:
    """One pass over the inputs, here; `records` is a stream already begun (else the inputs are read)."""

    records: Iterable[Record] | None = None

    def run(self, paths, featurizer, artifact, plan, counts, device="cpu", quiet=False):
        from gotd_stream.io.records import read_records
        from gotd_stream.select.score import score

        records = self.records if self.records is not None else read_records(paths, plan.units.text_field, counts.skips)
        return score(records, featurizer, artifact, plan, counts, device, quiet)


def check_files(paths: list[str], what: str) -> None:
    """--state and Ray record per-shard results: they need input files, read again on a re-run."""
    from gotd_stream.select.score import rereadable

    if not rereadable(paths):
        raise UsageProblem(f"{what} needs {setting('potentials')} and input files (it records per-shard results)")


@dataclass
class Resumable:
    """Shard by shard through a state folder: a re-run scores only the shards it has no valid record of."""

    directory: str
    wait: bool = False
    keep_going: bool = True  # a damaged shard is recorded as failed and the others go on (select.state)
    state: object = field(default=None, init=False)  # after run: the State, for its failures (failures_of)

    def run(self, paths, featurizer, artifact, plan, counts, device="cpu", quiet=False, scored_elsewhere=None):
        from gotd_stream.select.state import State

        check_files(paths, setting("state"))
        with State(self.directory, plan.identity(artifact), wait=self.wait, keep_going=self.keep_going) as state:
            log.info(state.message)
            if scored_elsewhere is not None:  # distributed.ray: the unfinished shards, scored on the actors
                scored_elsewhere(state)
            keeper = shards_through(state, paths, featurizer, artifact, plan, counts, device, quiet)
            state.require_complete(written=False)  # every shard damaged: nothing to write
            self.state = state if self.keep_going else None
            return keeper


def failures_of(executor):
    """The State of a resumable run (directly, on Ray, or as a Slurm share's), whose `failures` name the damaged
    shards it left out; None for a run without a state folder."""
    inner = getattr(executor, "inner", None)
    if inner is not None:
        return failures_of(inner)
    return getattr(executor, "state", None)


def shards_through(state, paths, featurizer, artifact, plan, counts, device="cpu", quiet=False):
    """Take finished shards from `state`, score and save the others, offer every shard's candidates in order.

    A damaged shard (CorruptInput) is recorded in the state as failed and left out, and the others go on; it is
    tried again only once its content changes (State.known_failure). The caller asks State.require_complete."""
    from gotd_stream.io.streams import CorruptInput, stat_input
    from gotd_stream.select.score import score_shard, scorers_of

    scorers = scorers_of(artifact, device) if plan.scoring(artifact) != "student" else None  # the student: no torch
    keeper = plan.keeper(artifact)
    fit_id = plan.scoring_id(artifact)
    state.note_inputs(paths)
    for path in paths:
        shard = state.finished(path)
        if shard is None:
            if state.known_failure(path) is not None:  # damaged in an earlier run, and still the same
                continue
            stat = stat_input(path)
            skipped_before, scored_before, dropped_before = Counter(counts.skips.counts), counts.scored, counts.dropped
            try:
                own = score_shard(path, featurizer, artifact, plan, counts, device, quiet, scorers)
            except CorruptInput as exc:  # recorded, and the other shards go on (a temporary state re-raises)
                counts.scored, counts.skips.counts, counts.dropped = scored_before, skipped_before, dropped_before
                state.failed(path, stat, exc)
                continue
            lines = list(own.lines(candidates=True))
            skipped = counts.skips.counts - skipped_before
            if counts.dropped > dropped_before:  # the cascade's count rides with the skips, under a key of its own
                skipped[DROPPED] = counts.dropped - dropped_before
            state.save_lines(path, stat, lines, counts.scored - scored_before, skipped)
        else:
            counts.scored += shard.scored
            skipped = dict(shard.skipped)
            counts.dropped += skipped.pop(DROPPED, 0)
            counts.skips.extend(skipped)
            counts.reused += 1
            lines = [line for _, line in state.lines(path)]
        offer_saved(keeper, lines, artifact, fit_id, state.name(path))
    return keeper


def offer_saved(keeper, lines: list[bytes], artifact, fit_id: str, name: str) -> None:
    """A shard's saved candidates, offered to `keeper`; lines of another artifact are a damaged state."""
    from gotd_stream.select.artifact import Mixture
    from gotd_stream.select.keep import GuardedSelection, NotScored, QuotaLines, offer_lines, read_line
    from gotd_stream.select.state import StateError

    mixture = artifact if isinstance(artifact, Mixture) else None
    if getattr(keeper, "guard", None) is not None:  # a guarded shard's prefix (select.dedup)
        from gotd_stream.select.dedup import NotCandidates, read_shard

        try:
            shard = read_shard(enumerate(lines, 1), name)
        except NotCandidates as exc:
            raise StateError(f"{exc}; remove the state to start over") from None
        if shard.fit_id != fit_id or shard.guard != keeper.guard:
            raise StateError(f"{name}: not candidates of this artifact and guard; remove the state to start over")
        keeper.offer_shard(shard, name)
        return
    read = []
    for lineno, line in enumerate(lines, 1):
        try:
            parsed = read_line(line, name, lineno, mixture)
        except (NotScored, QuotaLines, GuardedSelection):
            parsed = None
        if parsed is None or parsed.fit_id != fit_id or (mixture is not None and parsed.names != mixture.names):
            raise StateError(f"{name}:{lineno}: not a candidate line of this artifact; remove the state to start over")
        read.append(parsed)
    offer_lines(keeper, read, len(mixture.names) if mixture is not None else 1)


def sorted_inputs(paths: list[str]) -> list[str]:
    """The inputs in the order that shares and folder merges use: by absolute path (a URL as it is), as strings
    (code points)."""
    from gotd_stream.io.streams import absolute

    return sorted(paths, key=absolute)


def share(paths: list[str], index: int, count: int) -> list[str]:
    """Task `index` of `count`'s inputs: the block [index*n/count, (index+1)*n/count) of the sorted paths.

    Blocks are contiguous, so task outputs merged in task order are in the order of one sorted run, and their
    sizes differ by one at most; with more tasks than inputs, some tasks get none.
    """
    if not 0 <= index < count:
        raise UsageProblem(f"{setting('shard_index')} {index} is outside 0..{count - 1} (for {count} tasks)")
    ordered = sorted_inputs(paths)
    return ordered[index * len(ordered) // count : (index + 1) * len(ordered) // count]


@dataclass
class Share:
    """A Slurm array task: its block of the sorted inputs (`share`), run by `inner`."""

    index: int
    count: int
    inner: Executor

    def paths(self, paths: list[str]) -> list[str]:
        return share(paths, self.index, self.count)

    def run(self, paths, featurizer, artifact, plan, counts, device="cpu", quiet=False):
        return self.inner.run(self.paths(paths), featurizer, artifact, plan, counts, device, quiet)

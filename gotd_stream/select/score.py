"""Pass 2, as generators: records -> windows -> features -> calibrated gradients -> top-k -> the selection.

Windows never span two inputs: a shard is embedded the same way alone or among others, so scores (down to
the last bit) do not depend on how a corpus was split across nodes, and `merge` is exact.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.errors import RuntimeProblem, UsageProblem, setting
from gotd_stream.features.base import usable_rows
from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.records import Record, Skips, read_records
from gotd_stream.io.streams import STDIN, stat_input
from gotd_stream.progress import progress
from gotd_stream.select.budget import Budget
from gotd_stream.select.dedup import Guard, SelectionDigest, header_of, prefix_path
from gotd_stream.select.guard import DEFAULT_DEDUP
from gotd_stream.select.mix import score_matrix

WINDOW_BYTES = 16 << 20  # input bytes per window at most (16k documents of ~1,000 characters)


@dataclass
class Counts:
    """What a selection read: the records (or pieces) scored, the skipped ones by reason, the shards reused."""

    scored: int = 0
    skips: Skips = field(default_factory=Skips)
    reused: int = 0  # shards taken from a --state folder instead of being read
    dropped: int = 0  # records (or pieces) the cascade left out: their student score above its threshold


def rereadable(paths: Iterable[str]) -> bool:
    """True when every input is a regular file, so it can be read twice (a sample pass, then scoring)."""
    for path in paths:
        if path == STDIN:
            return False
        try:
            if not stat.S_ISREG(stat_input(path).st_mode):
                return False
        except (OSError, UsageProblem):
            return False
    return True


def windows(records: Iterable[Record], size: int, max_bytes: int = WINDOW_BYTES) -> Iterator[list[Record]]:
    """Consecutive records of one input, at most `size` at a time, and no more once they hold `max_bytes`.

    Both limits depend on the records alone, so an input is cut into the same windows on every run. The byte
    limit keeps the few windows in flight small when the documents are long.
    """
    window: list[Record] = []
    held = 0
    for record in records:
        if window and (len(window) >= size or held >= max_bytes or record.source != window[0].source):
            yield window
            window, held = [], 0
        window.append(record)
        held += len(record.raw)
    if window:
        yield window


def embedded(
    records: Iterable[Record], featurizer, skips: Skips, bar=None
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Featurize window by window; a record whose row is not finite (fp16 overflow) or is zero is skipped and counted.

    A zero row has no direction: it would score by the target potential alone, near the top. The lexical space
    gives one to a text none of whose words the fit sample had. A featurizer's stream() reads, tokenises and
    embeds the next windows while the caller scores this one.
    """
    items = ((window, [r.text for r in window]) for window in windows(records, featurizer.window))
    zero_reason, zero_detail = featurizer.zero_row
    for window, emb in featurizer.stream(items):
        if bar is not None:
            bar.update(len(window))
        usable = usable_rows(emb)
        if not usable.all():
            finite = np.isfinite(emb).all(axis=1)
            for i in np.flatnonzero(~usable):
                if finite[i]:
                    skips.add(window[i].name, window[i].lineno, zero_reason, zero_detail)
                else:
                    skips.add(window[i].name, window[i].lineno, "non-finite embedding", "the model overflowed")
            window = [r for r, ok in zip(window, usable, strict=True) if ok]
            emb = emb[usable]
        yield window, emb


@dataclass
class Units:
    """What is scored and how tokens are counted: whole records (chunk_tokens None) or pieces of chunk_tokens;
    a unit under min_tokens is skipped (select.units: the rule, and a short tail piece joined)."""

    counter: object | None = None  # features.tokens: needed for a token budget, chunks or min_tokens
    chunk_tokens: int | None = None
    text_field: str = "text"
    min_tokens: int = 0  # the library's default is no rule; score's --min-tokens default is DEFAULT_MIN_TOKENS

    def __post_init__(self):
        from gotd_stream.errors import BadSetting, whole
        from gotd_stream.select.units import MIN_CHUNK_TOKENS

        whole("chunk_tokens", self.chunk_tokens, MIN_CHUNK_TOKENS, optional=True)
        if self.chunk_tokens is not None and self.counter is None:
            raise BadSetting(f"{setting('chunk_tokens')} needs a token counter to cut pieces by")
        whole("min_tokens", self.min_tokens, 0)
        if self.min_tokens and self.counter is None:
            raise BadSetting(f"{setting('min_tokens')} needs a token counter to count units by")
        if self.chunk_tokens is not None and self.min_tokens > self.chunk_tokens:
            raise BadSetting(
                f"{setting('min_tokens')} {self.min_tokens} is over {setting('chunk_tokens')} {self.chunk_tokens}: "
                "no piece could be kept"
            )
        if not isinstance(self.text_field, str) or not self.text_field:
            raise BadSetting(f"{setting('text_field')} must name a field, not {self.text_field!r}")

    def of(self, records: Iterable[Record], skips: Skips | None = None) -> Iterable[Record]:
        """The units of `records`: pieces or the records, those under min_tokens counted in `skips`."""
        from gotd_stream.select.units import chunked, long_enough

        skips = skips if skips is not None else Skips(report=False)
        if self.chunk_tokens is not None:
            return chunked(records, self.text_field, self.chunk_tokens, self.counter, self.min_tokens, skips)
        if self.min_tokens:
            return long_enough(records, self.min_tokens, self.counter, skips)
        return records


def _as_budget(budget: Budget | int) -> Budget:
    return Budget(k=budget) if isinstance(budget, int) else budget


def scorers_of(artifact, device: str = "cpu") -> list:
    """Each target's calibrated gradient (Potentials.scorer): one for a single target, one per target of a Mixture."""
    from gotd_stream.select.artifact import Mixture

    return artifact.scorers(device) if isinstance(artifact, Mixture) else [artifact.scorer(device)]


@dataclass
class Plan:
    """What a selection keeps, wherever it runs: the budget, the mix of several targets, the units, and whether
    a shard writes its candidates (for an exact merge) instead of its selection."""

    budget: Budget
    mix: str | None = None
    units: Units = field(default_factory=Units)
    candidates: bool = False
    scorer: str = "auto"  # select.distill.SCORERS: the cascade if the artifact holds a student, else the teacher
    cascade_share: float | None = None  # the cascade's Q (None: from the budget, select.distill.cascade_share)
    guard: Guard = field(default_factory=lambda: Guard(DEFAULT_DEDUP))  # the duplicate guard (select.dedup)
    exclude: tuple = ()  # (reason, signatures) pairs: texts no selected unit may copy (select.dedup.read_exclude)
    target_copies: bool = False  # allow units that copy a target text (the artifact's signatures)

    def __post_init__(self):
        from gotd_stream.errors import BadSetting
        from gotd_stream.select.distill import SCORERS, check_share
        from gotd_stream.select.targets import MIXES

        if not isinstance(self.budget, Budget):
            raise BadSetting(f"a plan needs a Budget (k records or tokens), not {self.budget!r}")
        if self.mix is not None and self.mix not in MIXES:
            raise BadSetting(f"{setting('mix')} must be one of {', '.join(MIXES)}, not {self.mix!r}")
        if self.scorer not in SCORERS:
            raise BadSetting(f"{setting('scorer')} must be one of {', '.join(SCORERS)}, not {self.scorer!r}")
        if self.cascade_share is not None:
            check_share(self.cascade_share)
            if self.scorer not in ("auto", "cascade"):
                raise BadSetting(f"{setting('cascade_share')} applies to {setting('scorer')} cascade only")

        if not isinstance(self.guard, Guard):
            raise BadSetting(f"{setting('dedup')} needs a select.dedup.Guard, not {self.guard!r}")
        if self.exclude and not self.guard.on:
            raise BadSetting(f"{setting('exclude')} finds copies by the guard's rule: it needs {setting('dedup')} on")
        self.exclude = tuple(self.exclude)

    def scoring(self, artifact) -> str:
        """The scorer this plan uses on `artifact`: student, teacher or cascade (select.distill.resolve)."""
        from gotd_stream.select.distill import NoStudent, resolve

        kind = resolve(artifact, self.scorer)
        if self.cascade_share is not None and kind != "cascade":
            raise NoStudent(
                f"{setting('cascade_share')} applies to the cascade, which needs a distilled scorer in the artifact, "
                f"and it holds none: fit it with {setting('distill')}"
            )
        return kind

    def share(self, artifact) -> float:
        """The cascade's Q: --cascade-share, else what the budget asks of `artifact` (select.distill.cascade_share)."""
        from gotd_stream.select.distill import cascade_share

        return cascade_share(artifact, self.budget.k, self.budget.tokens, self.cascade_share)

    def scoring_id(self, artifact) -> str:
        """The id its lines carry (gotd_fit): the fit id for the teacher, another for the student or a cascade."""
        from gotd_stream.select.distill import scoring_id

        return scoring_id(artifact, self.scorer, self.share(artifact))

    def exclusions(self, artifact):
        """What no selected unit may copy: the excluded texts, then the target's (unless allowed)."""
        from gotd_stream.select.dedup import Exclusions, stale_target_signatures, target_signatures

        if not self.guard.on:
            return None
        found = Exclusions(self.guard)
        for reason, sigs in self.exclude:
            found.add(reason, sigs)
        if not self.target_copies:
            sigs = target_signatures(artifact)
            if sigs is not None:
                found.add("target copy", sigs)
            else:
                import logging

                why = (
                    "the artifact's target signatures are of an older duplicate rule (an earlier gotd-stream fitted it)"
                    if stale_target_signatures(artifact)
                    else "the artifact was fitted before target signatures were stored"
                )
                logging.getLogger(__name__).warning(
                    f"{why}: units that copy a target text are not dropped (fit again to check them; "
                    f"{setting('allow_target_copies')} silences this)"
                )
        return found if found else None

    def keeper(self, artifact):
        """A fresh keeper of this plan over `artifact` (select.keep.keeper_for: the method's rules checked)."""
        from gotd_stream.select.keep import keeper_for

        exclusions = self.exclusions(artifact)
        return keeper_for(
            artifact,
            self.budget,
            self.mix,
            self.units,
            self.candidates,
            self.scoring_id(artifact),
            self.guard,
            exclusions,
        )

    def guard_identity(self, artifact) -> dict:
        """The guard's part of a --state identity (nothing when it is off, as before it existed)."""
        if not self.guard.on:
            return {}
        from gotd_stream.select.dedup import exclusions_digest

        return {**self.guard.identity(), "exclusions": exclusions_digest(self.exclusions(artifact))}

    def identity(self, artifact) -> dict:
        """What a --state folder must share with the run that made it (a shard's candidates depend on it)."""
        from gotd_stream.select.artifact import Mixture

        if isinstance(artifact, Mixture):
            return {
                "fit_id": self.scoring_id(artifact),
                "k": self.budget.k,
                "text_field": self.units.text_field,
                "mix": self.mix or "quota",
                **({"min_tokens": self.units.min_tokens} if self.units.min_tokens else {}),
                **self.guard_identity(artifact),
            }
        chunks, least = self.units.chunk_tokens, self.units.min_tokens
        counted = self.budget.tokens is not None or chunks is not None or bool(least)
        return {
            "fit_id": self.scoring_id(artifact),
            **self.budget.identity(),
            "unit": "doc" if chunks is None else f"chunk:{chunks}",
            "tokenizer": self.units.counter.name if counted else None,
            "text_field": self.units.text_field,
            **({"min_tokens": least} if least else {}),
            **self.guard_identity(artifact),
        }


def _plan(budget: Budget | int | Plan, units: Units | None, mix: str | None) -> Plan:
    if isinstance(budget, Plan):
        return budget
    return Plan(_as_budget(budget), mix, units or Units())


def score(
    records: Iterable[Record],
    featurizer,
    artifact,
    budget: Budget | int | Plan,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    scorers: list | None = None,
    units: Units | None = None,
    mix: str | None = None,
):
    """Score every record (or piece) against every target of `artifact` (a Potentials or a Mixture) and keep
    what the budget holds: records -> units -> features -> a scores matrix (documents x targets) -> the keeper
    (select.keep). One target keeps the k lowest, or the lowest until their tokens reach the budget, ties to
    the earlier; several keep k by `mix` (select.mix). Returns the keeper."""
    from gotd_stream.select.distill import students_of

    plan = _plan(budget, units, mix)
    kind = plan.scoring(artifact)
    keeper = plan.keeper(artifact)
    records = plan.units.of(records, counts.skips)
    if kind == "student":  # no embedding: the student's scores are the scores
        from gotd_stream.select.distill import STUDENT_WINDOW, student_matrix

        students = students_of(artifact)
        with progress(quiet, "score") as bar:
            for window in windows(records, STUDENT_WINDOW):
                texts = [r.text for r in window]
                keeper.offer(
                    student_matrix(students, texts), [r.raw for r in window], texts, [r.tokens for r in window]
                )
                counts.scored += len(window)
                bar.update(len(window))
        return keeper
    scorers = scorers or scorers_of(artifact, device)
    if kind == "cascade":
        records = cascaded(records, students_of(artifact), plan.share(artifact), counts)
    with progress(quiet, "score") as bar:
        for window, emb in embedded(records, featurizer, counts.skips, bar):
            raws, texts = [r.raw for r in window], [r.text for r in window]
            keeper.offer(score_matrix(emb, scorers), raws, texts, [r.tokens for r in window])
            counts.scored += len(window)
    return keeper


def cascaded(records: Iterable[Record], students: list, share: float, counts: Counts) -> Iterator[Record]:
    """The records the cascade sends on to the teacher: their student score at or below the `share`-quantile of
    the fit sample's (any target's, with several); the others are counted in `counts.dropped`. A rule on each
    record alone: the teacher then embeds the passing records in windows of its own, as it would any stream."""
    from gotd_stream.select.distill import STUDENT_WINDOW, passing

    for window in windows(records, STUDENT_WINDOW):
        keep = passing(students, share, [r.text for r in window])
        counts.dropped += len(window) - int(keep.sum())
        yield from (r for r, ok in zip(window, keep, strict=True) if ok)


def score_shard(path: str, featurizer, artifact, plan: Plan, counts: Counts, device="cpu", quiet=False, scorers=None):
    """What one shard does, wherever it runs (here, or a Ray actor: distributed.ray): its own selection, scored
    alone. Merged in input order, the shards' candidates give the selection of one pass over all of them."""
    records = read_records([path], plan.units.text_field, counts.skips)
    return score(records, featurizer, artifact, plan, counts, device, quiet, scorers)


def write_selection(
    output: str | None, keeper, no_score: bool = False, candidates: bool = False, inputs: Iterable[str] = ()
) -> int:
    """The keeper's lines (its selection, or its candidates for a later merge), atomically to `output` (None:
    stdout); returns the lines written. An output named *.parquet gets them as rows (io.parquet_out), whose
    record columns keep the types of the Parquet and Arrow files among `inputs`."""
    from gotd_stream.io.parquet_out import is_parquet_output, write_parquet

    guard = getattr(keeper, "guard", None)
    beside = prefix_file(output, guard is not None and guard.on and not candidates and not no_score)
    digest = SelectionDigest()  # of the lines as written: the prefix file names the selection it stands beside
    if is_parquet_output(output):
        written = write_parquet(output, lambda: keeper.lines(candidates, no_score), inputs)
        digest.counted(written)
    else:
        with atomic_output(output) as sink:
            for line in keeper.lines(candidates, no_score):
                sink.write(line + b"\n")
                digest.add(line)
        written = digest.lines
    if beside is not None:
        write_prefix(beside, keeper, digest.of())
    return written


def prefix_file(output: str | None, guarded: bool) -> str | None:
    """Where a plain selection written to `output` puts its prefix file (select.dedup), when `guarded` (the
    guard on, the scores written): beside a regular file or a URL; None for stdout, a device or a FIFO."""
    from gotd_stream.io.outputs import resolve_sink
    from gotd_stream.io.remote import is_url

    if not guarded:
        return None
    return prefix_path(output) if is_url(output) or resolve_sink(output).kind == "file" else None


def write_prefix(path: str, keeper, of: dict) -> None:
    """The prefix file of the plain selection just written (`of`: its SelectionDigest): the keeper's candidate
    lines, their header naming that selection."""
    lines = iter(keeper.lines(True, False))
    with atomic_output(path) as sink:
        sink.write(header_of(next(lines), of) + b"\n")
        for line in lines:
            sink.write(line + b"\n")


def selected_tokens(keeper, text_field: str, counter) -> int:
    """The tokens of everything kept: counted while scoring under a token budget, else counted now."""
    items = keeper.selection()
    if any(item.tokens for item in items):
        return sum(item.tokens for item in items)
    from gotd_stream.io.records import parse_line

    texts = [text for raw, text in (parse_line(item.raw, text_field) for item in items) if raw is not None]
    return int(counter.count(texts).sum()) if texts else 0


class NothingUsable(RuntimeProblem):
    """Records were read but none could be used: a failure (an empty input is not one), so that cron notices."""


def require_usable(scored: int, skips: Skips, paths: list[str], field: str = "text_field") -> None:
    """Raise NothingUsable when every record read was skipped (a wrong text field, a wrong format); `field`: the
    setting that names the field read (vector_field in the vectors space)."""
    from gotd_stream.io.streams import display_name

    if scored == 0 and skips.total:
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(skips.counts.items()))
        raise NothingUsable(
            f"no usable record in {', '.join(map(display_name, paths))}: all {skips.total:,} records read were "
            f"skipped ({reasons}); check {setting(field)} and the input format"
        )


def score_texts(texts: list[str], featurizer, potentials, device: str = "cpu") -> np.ndarray:
    """The calibrated gradient of each text (lower is better); NaN for a text the space cannot represent."""
    rows = featurizer.encode(texts) if texts else np.zeros((0, featurizer.dim), np.float32)
    usable = usable_rows(rows)
    scores = np.full(len(texts), np.nan)
    scores[usable] = potentials.scorer(device)(rows[usable])
    return scores


def embed_to_npy(
    records: Iterable[Record], featurizer, skips: Skips, output: str, quiet: bool = False, paths: list[str] = ()
) -> int:
    """Featurize `records` into a float32 .npy file (one row per usable record, in order); returns the rows."""
    from gotd_stream.io.outputs import NpyWriter

    with atomic_output(output, seekable=True) as fh, progress(quiet, "embed") as bar:
        writer = NpyWriter(fh, featurizer.dim)
        for _, rows in embedded(records, featurizer, skips, bar):
            writer.write(rows)
        require_usable(writer.rows, skips, list(paths))
        writer.close()
    return writer.rows

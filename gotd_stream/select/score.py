"""Pass 2, as generators: records -> windows -> features -> calibrated gradients -> top-k -> the selection.

Windows never span two inputs: a shard is embedded the same way alone or among others, so scores (down to
the last bit) do not depend on how a corpus was split across nodes, and `merge` is exact.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gotd_stream.errors import RuntimeProblem, setting
from gotd_stream.features.base import usable_rows
from gotd_stream.io.records import Record, Skips, read_records, with_score
from gotd_stream.io.streams import STDIN, atomic_output
from gotd_stream.progress import progress
from gotd_stream.select.artifact import Potentials
from gotd_stream.select.ot import CalibratedGradient
from gotd_stream.select.topk import TopK

WINDOW_BYTES = 16 << 20  # input bytes per window at most (16k documents of ~1,000 characters)


@dataclass
class Counts:
    scored: int = 0
    skips: Skips = field(default_factory=Skips)
    reused: int = 0  # shards taken from a --state folder instead of being read


def rereadable(paths: Iterable[str]) -> bool:
    """True when every input is a regular file, so it can be read twice (a sample pass, then scoring)."""
    for path in paths:
        if path == STDIN:
            return False
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return False
        except OSError:
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


def score(
    records: Iterable[Record],
    featurizer,
    potentials: Potentials,
    k: int,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    scorer: CalibratedGradient | None = None,
) -> TopK:
    """Score every record by its calibrated gradient (Potentials.scorer) and keep the k lowest, ties to the earlier."""
    scorer = scorer or potentials.scorer(device)
    top = TopK(k)
    with progress(quiet, "score") as bar:
        for window, emb in embedded(records, featurizer, counts.skips, bar):
            top.offer(scorer(emb), [r.raw for r in window])
            counts.scored += len(window)
    return top


def score_shard(
    path: str,
    text_field: str,
    featurizer,
    potentials: Potentials,
    k: int,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
    scorer: CalibratedGradient | None = None,
) -> TopK:
    """What one shard does, wherever it runs (here, or a Ray actor: distributed.ray): its own top-k, scored alone.

    Merged in input order, the shards' top-k lists are the top-k of one pass over all of them.
    """
    records = read_records([path], text_field, counts.skips)
    return score(records, featurizer, potentials, k, counts, device, quiet, scorer)


def score_resumable(
    paths: list[str],
    text_field: str,
    state,
    featurizer,
    potentials: Potentials,
    k: int,
    counts: Counts,
    device: str = "cpu",
    quiet: bool = False,
) -> TopK:
    """Shard by shard: take finished shards from the state, score and record the others, merge in input order.

    Batches never span two inputs, so each shard scores exactly as in one pass over all of them, and the merge
    of per-shard top-k lists in input order is that pass's top-k: the output does not depend on restarts.
    """
    scorer = potentials.scorer(device)
    top = TopK(k)
    state.note_inputs(paths)
    for path in paths:
        shard = state.finished(path)
        if shard is None:
            stat = os.stat(path)
            skipped_before, scored_before = Counter(counts.skips.counts), counts.scored
            shard_top = score_shard(path, text_field, featurizer, potentials, k, counts, device, quiet, scorer)
            skipped = counts.skips.counts - skipped_before
            state.save(path, stat, shard_top, potentials.fit_id, counts.scored - scored_before, skipped)
            kept = shard_top.best_first()
        else:
            counts.scored += shard.scored
            counts.skips.extend(shard.skipped)
            counts.reused += 1
            kept = list(state.kept(path))
        top.offer(np.array([value for value, _ in kept], dtype=np.float64), [raw for _, raw in kept])
    return top


def write_selection(output: str | None, top: TopK, fit_id: str, no_score: bool = False) -> None:
    """The kept lines, best first, with or without the score suffix, atomically to `output` (None: stdout)."""
    with atomic_output(output) as sink:
        for value, raw in top.best_first():
            sink.write((raw if no_score else with_score(raw, value, fit_id)) + b"\n")


class NothingUsable(RuntimeProblem):
    """Records were read but none could be used: a failure (an empty input is not one), so that cron notices."""


def require_usable(scored: int, skips: Skips, paths: list[str]) -> None:
    """Raise NothingUsable when every record read was skipped (a wrong text field, a wrong format)."""
    from gotd_stream.io.streams import display_name

    if scored == 0 and skips.total:
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(skips.counts.items()))
        raise NothingUsable(
            f"no usable record in {', '.join(map(display_name, paths))}: all {skips.total:,} records read were "
            f"skipped ({reasons}); check {setting('text_field')} and the input format"
        )


def score_texts(texts: list[str], featurizer, potentials: Potentials, device: str = "cpu") -> np.ndarray:
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
    from gotd_stream.io.streams import NpyWriter

    with atomic_output(output, seekable=True) as fh, progress(quiet, "embed") as bar:
        writer = NpyWriter(fh, featurizer.dim)
        for _, rows in embedded(records, featurizer, skips, bar):
            writer.write(rows)
        require_usable(writer.rows, skips, list(paths))
        writer.close()
    return writer.rows

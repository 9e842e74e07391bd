"""One selection, from inputs to a keeper, for one target or several, wherever it runs: what the `score` command calls.

    pick(paths, plan, potentials=...)    load the artifact (one target or several), score, keep
    pick(paths, plan, targets=[...])     fit first (on files: a bottom-k sample; on a stream: its first records)

The executor (select.executors: Local, Resumable, Share; distributed.ray.OnRay) says where the shards are scored;
the plan (select.score.Plan) what is kept. The method's rules are checked here, before any work, as typed
errors naming settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from gotd_stream.errors import UsageProblem, setting


@dataclass
class Selection:
    """What `pick` gives: the keeper (write it with write_selection), the artifact, the counts."""

    keeper: object
    artifact: object  # a Potentials (one target) or a Mixture (several)
    featurizer: object
    counts: object  # select.score.Counts
    failed: object = None  # the select.state.State of a resumable run, whose `failures` name its damaged shards


def check_select(
    paths, plan, executor, potentials, targets, save_potentials=None, no_score=False, several=False, counted=False
) -> None:
    """The rules of a selection's settings, before any work (UsageProblem naming settings). `several`: the
    artifact or the targets are several; `counted`: pieces or a token counter were asked for."""
    from gotd_stream.select.executors import Resumable, Share, check_files
    from gotd_stream.select.keep import check_plan
    from gotd_stream.select.state import check_local

    if (potentials is None) == (not targets):
        raise UsageProblem(
            f"give exactly one of {setting('potentials')} (a fitted artifact) or {setting('target')} (fit first)"
        )
    if save_potentials and not targets:
        raise UsageProblem(f"{setting('save_potentials')} needs {setting('target')}")
    inner = executor.inner if isinstance(executor, Share) else executor
    if getattr(inner, "directory", None):
        check_local(inner.directory)
    if isinstance(inner, Resumable):
        if potentials is None:
            raise UsageProblem(
                f"{setting('state')} needs {setting('potentials')} and input files (it records per-shard results)"
            )
        check_files(paths, setting("state"))
    check_plan(several, plan.budget, plan.mix, counted, plan.candidates, plan.guard.on)
    if plan.candidates and no_score:
        raise UsageProblem(f"{setting('candidates')} writes the scores a merge needs: leave out {setting('no_score')}")


def pick(
    paths: list[str],
    plan,
    *,
    potentials=None,
    targets: list | None = None,
    executor=None,
    featurizer=None,
    embedder=None,
    settings=None,
    counts=None,
    device: str = "cpu",
    quiet: bool = False,
    sampler=None,
    save_potentials: str | None = None,
) -> Selection:
    """Score `paths` by `plan` against `potentials` (an artifact, with its `featurizer`) or against `targets`
    fitted first with `embedder` and `settings`; the executor (default: Local) runs it."""
    from gotd_stream.io.datasets import expand_inputs
    from gotd_stream.io.records import Skips, read_records
    from gotd_stream.select.artifact import Mixture
    from gotd_stream.select.executors import Local, Share, failures_of
    from gotd_stream.select.fit import fit
    from gotd_stream.select.keep import check_plan
    from gotd_stream.select.score import Counts, rereadable

    paths = expand_inputs(paths)  # a folder: its files, each a shard (io.datasets)
    counts = counts if counts is not None else Counts()
    executor = executor or Local()
    if isinstance(executor, Share):  # a Slurm task: its block of the inputs, run by the executor inside
        paths, executor = executor.paths(paths), executor.inner
    if potentials is not None:
        check_plan(
            isinstance(potentials, Mixture), plan.budget, plan.mix, _counted(plan), plan.candidates, plan.guard.on
        )
        plan = reading(plan, featurizer)
        keeper = executor.run(paths, featurizer, potentials, plan, counts, device, quiet)
        return Selection(keeper, potentials, featurizer, counts, failures_of(executor))
    check_plan(len(targets) > 1, plan.budget, plan.mix, _counted(plan), plan.candidates, plan.guard.on)
    if settings.space == "vectors":
        check_vectors(plan.budget, plan.units.chunk_tokens is not None, plan.units.counter is not None)
    if rereadable(paths):
        silent = Skips(strict=counts.skips.strict, report=False)  # the scoring pass reports the bad records
        fitted = fit(paths, targets, embedder, settings, skips=silent, device=device, quiet=quiet, sampler=sampler)
    else:  # a stream: fit on its first records, keep them, score them with the rest
        field = settings.field() if settings.space == "vectors" else plan.units.text_field
        stream = read_records(paths, field, counts.skips)
        fitted = fit(stream, targets, embedder, settings, skips=counts.skips, device=device, quiet=quiet)
        executor = Local(fitted.records)
    if save_potentials:
        fitted.potentials.save(save_potentials)
    plan = reading(plan, fitted.featurizer)
    keeper = executor.run(paths, fitted.featurizer, fitted.potentials, plan, counts, device, quiet)
    return Selection(keeper, fitted.potentials, fitted.featurizer, counts, failures_of(executor))


def reading(plan, featurizer):
    """The plan as the space reads records: in the vectors space, by its vector field (and width), not by text;
    pieces and token counts need a text, so they are refused there."""
    from dataclasses import replace

    from gotd_stream.features.vectors import Vectors

    if not isinstance(featurizer, Vectors):
        return plan
    check_vectors(plan.budget, plan.units.chunk_tokens is not None, plan.units.counter is not None)
    return replace(plan, units=replace(plan.units, text_field=featurizer.field))


def check_vectors(budget, chunks: bool = False, counted: bool = False) -> None:
    """The vectors space has no text: no tokens to count (a token budget, a token counter), no pieces to cut."""
    if budget.tokens is not None or counted:
        what = setting("tokens") if budget.tokens is not None else setting("tokenizer")
        raise UsageProblem(f"{what}: the vectors space has no text to count tokens of; keep {setting('k')} records")
    if chunks:
        raise UsageProblem(
            f"{setting('unit')} chunk: the vectors space scores whole records (a vector cannot be cut into pieces)"
        )


def _counted(plan) -> bool:
    return plan.units.chunk_tokens is not None or plan.units.counter is not None

"""The selection commands: fit, score, merge, embed, info. Each parses, calls the library's API, reports."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace

import click

import gotd_stream as gs
from gotd_stream.cli.manifest import (
    check_replayed,
    describe_manifest,
    dropped_words,
    manifest_for,
    manifest_option,
    merge_manifest,
    replay,
    replay_options,
    score_manifest,
    write_manifests,
)
from gotd_stream.cli.options import (
    CONTEXT,
    FIT,
    FORCE,
    InputPath,
    TargetParam,
    budget_from,
    budget_options,
    check_outputs,
    common_options,
    display_output,
    fit_options,
    flag,
    given,
    guard_from,
    guard_options,
    inputs_argument,
    log,
    model_unused,
    models_of,
    on_ray,
    partial_success,
    ray_options,
    ray_settings,
    refuse_fit_options,
    resolve_inputs,
    scorer_options,
    selection_options,
    shard_options,
    speaking,
    task_share,
    unit_for,
)
from gotd_stream.cli.several import checked_targets, described_selection, described_targets, target_reads
from gotd_stream.distributed.ray import running_on
from gotd_stream.distributed.shards import merge_inputs
from gotd_stream.features.base import MODEL_FREE
from gotd_stream.hf import pick_device
from gotd_stream.select.distill import DEFAULT_DISTILL
from gotd_stream.select.fit import check_space
from gotd_stream.select.merge import check_merge, expected_id
from gotd_stream.select.pipeline import check_select, check_vectors
from gotd_stream.select.targets import MIXES


@click.command(context_settings=CONTEXT)
@inputs_argument
@click.option(
    "--target",
    required=True,
    multiple=True,
    type=TargetParam(allow_dash=True),
    help="JSONL sample of the target task. Several targets: repeat as NAME=FILE:WEIGHT.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write the potentials (- for stdout).",
)
@FORCE
@click.option(
    "--distill/--no-distill",
    default=DEFAULT_DISTILL,
    help="Also train a distilled scorer (hashed n-grams, linear) of the fit's scores, that `score` uses to send only "
    "likely keepers to the model (--scorer). [default: on when the space embeds with a transformer model]",
)
@fit_options
@ray_options
@common_options
def fit(inputs, target, output, quiet, distill, **p) -> None:
    """Pass 1: fit the OT potentials on a sample of INPUTS and save them.

    Draws a uniform sample of --sample-size records from all INPUTS (the smallest keyed hashes of (seed, shard,
    line): the same sample on one process or on Ray; stdin is read to its end), embeds it and the target, and
    solves entropic OT between them. The saved artifact lets `score` run on any number of shards and nodes
    without re-fitting. With --ray the sample pass runs as one Ray task per shard.

    \b
      gotd-stream fit --target task.jsonl --sample-size 100000 shards/*.jsonl.zst -o task.gotd
      gotd-stream fit --target legal=legal.jsonl:0.7 --target contracts=contracts.jsonl:0.3 shards/* -o mix.gotd
    """
    paths = resolve_inputs(inputs)
    if any(t.path == "-" for t in target) and "-" in paths:
        raise click.UsageError("--target and the inputs cannot both be stdin")
    ray = ray_settings(p["ray_address"], p["ray_actors"], p["ray_gpus"], paths)
    skips = gs.Skips(strict=p["strict"], budget=p["max_skipped"])
    with speaking(quiet):
        targets, normalised = checked_targets(target)
        check_outputs({"-o": output}, paths, target_reads(targets), binary=("-o",))
        settings = replace(fit_settings(p), distill=distill)
        embedder, device = semantic_model(settings, models_of(p))
        with on_ray(ray) as cluster:
            sampler = cluster.sample if cluster else None
            fitted = gs.fit(
                paths, targets, embedder, settings, skips=skips, device=device, quiet=quiet, sampler=sampler
            )
        fitted.potentials.save(output)
    log(
        f"fit: read {fitted.seen + skips.total:,} records, sampled {fitted.potentials.fit['sample_size']:,}, "
        f"{skips.summary()}; wrote {display_output(output)} (fit {fitted.potentials.fit_id}"
        f"{described_targets(targets, normalised)})",
        quiet,
    )
    partial_success(p["max_skipped"], skips.total)


def fit_settings(p: dict):
    """The fit's settings from the options; a hybrid weight given outside the hybrid space is a mistake."""
    names = (
        "sample_size",
        "target_size",
        "epsilon",
        "max_iter",
        "tol",
        "seed",
        "hybrid_weight",
        "text_field",
        "strict",
        "vector_field",
    )
    settings = gs.FitSettings(space=p["features"] or FIT.space, **{name: p[name] for name in names})
    check_space(settings, weight_given=bool(given("hybrid_weight")))
    return settings


def semantic_model(settings: gs.FitSettings, models: gs.ModelSettings):
    """The sentence-embedding model the space needs (None for lexical), and the device of the OT."""
    if settings.space in MODEL_FREE:
        model_unused(f"the {settings.space} space")
    return gs.semantic_model(settings.space, models)


@click.command(context_settings=CONTEXT)
@inputs_argument
@budget_options
@click.option(
    "-p",
    "--potentials",
    type=InputPath(exists=True, dir_okay=False, remote=True),
    envvar="GOTD_POTENTIALS",
    help="Artifact from `fit`.",
)
@click.option(
    "--target",
    multiple=True,
    type=TargetParam(),
    help="Fit first on this target (no --potentials). Several targets: repeat as NAME=FILE:WEIGHT.",
)
@click.option(
    "--save-potentials", type=click.Path(dir_okay=False), help="With --target: also save the fitted artifact."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file; .zst/.gz compress, .parquet writes Parquet [default: plain JSONL on stdout].",
)
@click.option("--no-score", is_flag=True, help="Write the original lines byte for byte, without gotd_score/gotd_fit.")
@click.option(
    "--state",
    type=click.Path(file_okay=False),
    help="Folder that records finished shards: a re-run (after a crash, or from cron) scores only new shards.",
)
@click.option("--wait", is_flag=True, help="With --state: wait for another run holding it, instead of exit 75.")
@click.option(
    "--mix",
    type=click.Choice(MIXES),
    help="Several targets: quota (each target its weight's share of k, from its own ranking) or sum (the weighted "
    "sum of the scores) [default: quota].",
)
@click.option(
    "--candidates",
    is_flag=True,
    help="Write what an exact `merge` needs instead of the selection: quota: every target's own top-k (merge "
    "with -p); with the duplicate guard: each ranking's prefix, with the dropped units' signatures.",
)
@FORCE
@selection_options
@scorer_options
@guard_options
@shard_options
@ray_options
@fit_options
@manifest_option
@replay_options
@common_options
def score(inputs, output, no_score, quiet, **p) -> None:
    """Pass 2: score every record of INPUTS and write the best, best first: -k records, or --tokens tokens.

    The score is the calibrated OT gradient (lower is better); each selected line gets "gotd_score" and
    "gotd_fit" (the artifact id) appended ("gotd_tokens" too under --tokens, "gotd_select" under --select
    sample, "gotd_guard" unless --dedup off: -o FILE then writes FILE.guard.zst beside it, for `merge`). With
    --target instead of --potentials it fits first: on files by a bottom-k sample (a first read), on stdin on
    the first --sample-size records (kept in memory and scored too: nothing is read twice).

    On a cluster: --ray scores the shards on a Ray actor pool; --shard-index I --num-shards N scores task I's
    share of INPUTS (a Slurm array), and `merge` joins the tasks' outputs or --state folders.

    \b
      zstdcat corpus.jsonl.zst | gotd-stream score --target task.jsonl --tokens 50M -o selected.jsonl.zst
      gotd-stream score -p task.gotd -k 50000 shards/part-0*.jsonl.zst -o node3.jsonl.zst
      gotd-stream score -p task.gotd --tokens 50M --ray auto --state state/ shards/*.parquet -o selected.jsonl.zst
      gotd-stream score -p mix.gotd --mix quota -k 50000 shards/*.jsonl.zst -o selected.jsonl.zst
      gotd-stream score --from-manifest selected.jsonl.zst.manifest.json -o again.jsonl.zst
    """
    from gotd_stream.io.digests import digests
    from gotd_stream.select.artifact import holds_targets, space_of  # numpy: imported by the command, not --help
    from gotd_stream.select.dedup import exclusion
    from gotd_stream.select.score import prefix_file, require_usable, selected_tokens

    if p["from_manifest"]:
        return replay(click.get_current_context(), p["from_manifest"], output, p["force"], quiet, inputs)
    started = time.time()
    budget, unit = score_budget(p)
    guard = guard_from(p)
    inputs = resolve_inputs(inputs)
    paths = task_share(inputs, p["shard_index"], p["num_shards"])  # the share's flags checked, then its inputs
    share = (p["shard_index"], p["num_shards"]) if p["shard_index"] is not None else None
    ray = ray_settings(p["ray_address"], p["ray_actors"], p["ray_gpus"], paths)
    counts = gs.Counts(skips=gs.Skips(strict=p["strict"], budget=p["max_skipped"]))
    models, potentials = models_of(p), p["potentials"]
    manifest = manifest_for(output, p["manifest"])
    recorded = manifest is not None or p["state"] is not None  # a manifest goes beside -o and into --state
    with speaking(quiet), contextlib.ExitStack() as stack:
        read = stack.enter_context(digests()) if recorded else {}  # each input's sha256 as it streams
        targets, normalised = checked_targets(p["target"])
        several = len(targets) > 1 or bool(potentials and holds_targets(potentials))
        vectors = (space_of(potentials) if potentials else p["features"]) == "vectors"
        counted = budget.tokens is not None or unit == "chunk" or bool(p["tokenizer"])
        if vectors:
            check_vectors(budget, unit == "chunk", bool(p["tokenizer"]))
        executor = executor_for(p["state"], p["wait"], None, models, share)
        plan = gs.Plan(
            budget,
            p["mix"],
            gs.Units(text_field=p["text_field"]),
            p["candidates"],
            p["scorer"],
            p["cascade_share"],
            guard,
            target_copies=p["allow_target_copies"],
        )
        check_select(paths, plan, executor, potentials, targets, p["save_potentials"], no_score, several, counted)
        outputs = {"-o": "-" if output is None else output, "--save-potentials": p["save_potentials"]}
        outputs["--manifest"] = manifest
        outputs["-o (its prefix file)"] = prefix_file(output, guard.on and not p["candidates"] and not no_score)
        named = {"-p": potentials, **target_reads(targets), **{f"--exclude {path}": path for path in p["exclude"]}}
        check_outputs(outputs, paths, named, binary=("--save-potentials",))
        check_table(output, paths)
        plan.exclude = tuple(exclusion(path, guard, p["text_field"]) for path in p["exclude"])
        least = min_tokens_for(p["min_tokens"], several or vectors)
        counter = (
            token_counter(p["tokenizer"], p["model"], counted or bool(least)) if not (several or vectors) else None
        )
        plan.units = gs.Units(
            counter if counted or least else None,
            p["chunk_tokens"] if unit == "chunk" else None,
            p["text_field"],
            least,
        )
        cluster = stack.enter_context(on_ray(ray))
        executor = executor_for(p["state"], p["wait"], cluster, models, share)
        source = score_source(p, models, potentials, targets, cluster, plan)
        done = gs.pick(inputs if share else paths, plan, executor=executor, counts=counts, quiet=quiet, **source)
        require_usable(counts.scored, counts.skips, paths, "vector_field" if vectors else "text_field")
        replayed = check_replayed(done.artifact.fit_id, read)
        written = gs.write_selection(output, done.keeper, no_score, plan.candidates, inputs=paths)
        held = selected_tokens(done.keeper, p["text_field"], counter) if counter else 0
        if recorded:
            sources = {"paths": paths, "targets": targets, "artifact": potentials or p["save_potentials"], "read": read}
            options = dict(p, no_score=no_score)
            made = score_manifest(started, output, options, sources, done, plan, written, held, counter)
            write_manifests(made, manifest, p["state"], replayed)
    said, failed = described_targets(targets, normalised), done.failed
    summarise(dict(p, output=output, quiet=quiet), done, plan, written, held, counter, cluster, said, several, unit)
    if failed is not None:
        with speaking(quiet):
            failed.require_complete()  # exit 1: the selection is written, without the damaged shards
    partial_success(p["max_skipped"], counts.skips.bad)  # a unit under --min-tokens is no bad record


def summarise(p: dict, done, plan, written: int, held: int, counter, cluster, targets: str, several: bool, unit):
    """score's summary line on stderr: what was read, scored, skipped and kept, and where it went."""
    counts, output, quiet = done.counts, p["output"], p["quiet"]
    what = "pieces" if unit == "chunk" else "records"
    where = (f", {counts.reused} shards from {p['state']}" if p["state"] else "") + (
        f", {running_on(cluster)}" if cluster else ""
    )
    left_out = len(done.failed.failures) if done.failed is not None else 0
    where += f", {left_out} damaged shard{'s' if left_out > 1 else ''} left out" if left_out else ""
    where += dropped_note(done.keeper, plan.guard, plan.candidates)
    sent = f" -> {output}" if output and output != "-" else ""
    read = (
        f"score: read {counts.scored + counts.dropped + counts.skips.total:,} {what}, scored {counts.scored:,}, "
        f"{counts.skips.summary()}"
    )
    kind = plan.scoring(done.artifact)
    if kind == "cascade":
        share = plan.share(done.artifact)
        read += f", {counts.dropped:,} below the cascade threshold (student score above its {share:g}-quantile)"
    fit = f"fit {done.artifact.fit_id}"
    if kind != "teacher":
        fit += f", scorer {kind}: gotd_fit {done.keeper.fit_id}"
    if several:
        shares = done.keeper.shares() if not plan.candidates else {}
        kept = described_selection(written, shares, plan.candidates)
        log(f"{read}, {kept}{sent} ({fit}, mix {plan.mix or 'quota'}{where}{targets})", quiet)
        return
    counted = f" holding {held:,} tokens (counted with {counter.name})" if counter is not None else ""
    log(f"{read}, selected {written:,} {what}{counted}{sent} ({fit}{where})", quiet)
    dropped = sum(done.keeper.dropped().values()) if plan.guard.on and not plan.candidates else 0
    short_of(plan.budget, held, written, what, quiet, dropped, counts.dropped if kind == "cascade" else 0)
    from gotd_stream.select.distill import thin_cascade

    read_all = counts.scored + counts.dropped + counts.skips.total
    thin = thin_cascade(done.artifact, read_all, counts.scored, written)
    if kind == "cascade" and counts.dropped and not plan.candidates and thin:
        log(
            f"score: warning: the cascade sent the model only {counts.scored:,} {what} for {written:,} selected, "
            "too thin a margin to be sure they are the model's own best: raise --cascade-share, or --scorer teacher",
            quiet,
        )


def min_tokens_for(value: int, several: bool) -> int:
    """--min-tokens, for one target; several targets keep k whole records by their scores alone (exit 2 if set)."""
    if several:
        if given("min_tokens") and value:
            raise click.UsageError("--min-tokens applies to one target, and there are several")
        return 0
    return value


def dropped_note(keeper, guard, candidates: bool = False) -> str:
    """What the duplicate guard dropped above the selection's last unit, by reason, for a summary line."""
    if not guard.on or candidates:
        return ""
    return f", dedup {guard.mode}: {dropped_words(keeper.dropped())}"


def score_budget(p: dict):
    """The budget and the unit from score's options, and the options that need another one."""
    budget = budget_from(p["k"], p["tokens"], p["select"], p["temperature"], p["select_seed"])
    unit = unit_for(p["unit"], budget)
    for name, needs, value in (("chunk_tokens", "--unit chunk", unit), ("temperature", "--select sample", p["select"])):
        if given(name) and value != needs.split()[-1]:
            raise click.UsageError(f"{flag(name)} needs {needs}")
    if given("select_seed") and p["select"] != "sample":
        raise click.UsageError("--select-seed needs --select sample")
    return budget, unit


def executor_for(state: str | None, wait: bool, cluster, models, share):
    """Where the shards are scored: here in one pass, through a --state folder, or on Ray; a Slurm share of them."""
    if cluster is not None:
        executor = gs.OnRay(cluster, models, state, wait)
    elif state:
        executor = gs.Resumable(state, wait)
    else:
        executor = gs.Local()
    return executor if share is None else gs.Share(*share, executor)


def score_source(p: dict, models, potentials: str | None, targets: list, cluster, plan) -> dict:
    """What `select` scores against: the artifact (checked against the model), or the targets to fit first. The
    student scores without a model: none is loaded (nor torch)."""
    if potentials:
        refuse_fit_options(potentials)
        artifact = load_artifact(potentials)
        if plan.scoring(artifact) == "student":
            return {"potentials": artifact, "featurizer": None, "device": "cpu"}
        artifact, featurizer = load_checked(potentials, models, p["features"], p["vector_field"], artifact)
        return {"potentials": artifact, "featurizer": featurizer, "device": pick_device(models.device)}
    settings = fit_settings(p)
    embedder, device = semantic_model(settings, models)
    sampler = cluster.sample if cluster else None
    return {
        "targets": targets,
        "embedder": embedder,
        "settings": settings,
        "device": device,
        "sampler": sampler,
        "save_potentials": p["save_potentials"],
    }


def short_of(budget, held: int, written: int, what: str, quiet: bool, dropped: int = 0, below: int = 0) -> None:
    """Say so when the input held less than the budget (once the duplicate guard had `dropped` units, and the
    cascade left `below` out: then its share, not the input, was short)."""
    but = f" once the duplicate guard dropped {dropped:,}" if dropped else ""
    every = "eligible" if dropped else "usable"
    held_in = "the input held"
    if below:
        held_in = f"the {what} the cascade passed ({below:,} were below its threshold: raise --cascade-share) held"
    if budget.tokens is not None and held < budget.tokens:
        log(f"score: {held_in} fewer than {budget.tokens:,} tokens{but}: every {every} {what[:-1]} was kept", quiet)
    elif budget.k is not None and written < budget.k:
        log(f"score: {held_in} fewer than {budget.k:,} {every} {what}{but}: every one was kept", quiet)


def token_counter(tokenizer: str | None, model: str | None, needed: bool):
    """The counter of --tokens and --chunk-tokens; when only the summary needs one, the estimate if it fails."""
    if needed or tokenizer:
        return gs.token_counter(tokenizer, model)
    try:
        return gs.token_counter(None, model)
    except gs.UsageProblem:
        return gs.token_counter("estimate")


def load_checked(potentials: str, models: gs.ModelSettings, space: str | None = None, vector_field=None, pot=None):
    """The artifact (`pot`: already loaded) and a featurizer that embeds exactly as the fit did (a mismatch is a
    usage error); `vector_field`: the vectors space's field, when not the fit's."""
    pot = pot if pot is not None else load_artifact(potentials)
    if pot.model is None:
        model_unused(f"the {pot.features.get('space')} space of {potentials}")
    return pot, gs.featurizer_for(pot, models, space, name=potentials, vector_field=vector_field)


def load_artifact(path: str):
    """The artifact, with a warning when the file is too old to carry a checksum."""
    from gotd_stream.select.artifact import FORMAT_VERSION

    pot = gs.load(path)
    if not pot.verified:
        click.echo(
            f"warning: {path} is format version {pot.format_version}, without a checksum: damage to it cannot be "
            f"detected; fit again to write version {FORMAT_VERSION}",
            err=True,
        )
    return pot


@click.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, type=InputPath(exists=True, allow_dash=True, remote=True))
@budget_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file; .zst/.gz compress, .parquet writes Parquet [default: plain JSONL on stdout].",
)
@click.option("--no-score", is_flag=True, help="Write the original lines byte for byte, without gotd_score/gotd_fit.")
@click.option(
    "-p",
    "--potentials",
    type=InputPath(exists=True, dir_okay=False, remote=True),
    help="The artifact the inputs were scored with: refuses others; needed for quota candidates of several targets.",
)
@click.option(
    "--candidates",
    is_flag=True,
    help="Quota: write the merged candidates (for a further merge) instead of the selection.",
)
@manifest_option
@FORCE
@scorer_options
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def merge(
    inputs, k, tokens, output, no_score, potentials, candidates, manifest, force, quiet, scorer, cascade_share
) -> None:
    """The global selection of several `score` outputs, or `score --state` folders, made with the same artifact:
    -k records or --tokens tokens.

    Exact: give the outputs in the order of their shards (Slurm tasks: in task order) and the result is
    byte-identical to one `score` over all the shards with the same budget (ties go to the earlier input, as in
    `score`). State folders may come in any order: their shards are merged in the order of their paths.
    --tokens needs outputs of `score --tokens` (their gotd_tokens); a sample (--select sample) is merged as drawn.
    Quota selections of several targets merge from each shard's candidates (`score --candidates`), with -p.

    \b
      gotd-stream merge -k 50000 node0.jsonl.zst node1.jsonl.zst node2.jsonl.zst -o selected.jsonl.zst
      gotd-stream merge --tokens 50M state-*/ -o selected.jsonl.zst
      gotd-stream merge -p mix.gotd -k 50000 node0.jsonl.zst node1.jsonl.zst -o selected.jsonl.zst
    """
    from gotd_stream.io.digests import digests
    from gotd_stream.select.artifact import holds_targets  # numpy: imported by the command, not by --help
    from gotd_stream.select.score import prefix_file

    started = time.time()
    budget_from(k, tokens)
    paths = resolve_inputs(inputs, folders=False)
    folders = [path for path in paths if os.path.isdir(path)]
    if folders and len(folders) < len(paths):
        raise click.UsageError("give merge either the outputs of score or its --state folders, not both")
    manifest = manifest_for(output, manifest)
    with speaking(quiet), contextlib.ExitStack() as stack:
        read = stack.enter_context(digests()) if manifest is not None else {}  # the inputs' sha256, as they stream
        if folders:
            paths = merge_inputs(folders, k, tokens)
        several = bool(potentials and holds_targets(potentials))
        check_merge(several, tokens, candidates, no_score)
        outputs = {"-o": "-" if output is None else output, "--manifest": manifest}
        outputs["-o (its prefix file)"] = prefix_file(output, not candidates and not no_score)
        check_outputs(outputs, paths, {"-p": potentials})
        check_table(output, paths)
        if cascade_share is not None and scorer not in ("auto", "cascade"):
            raise click.UsageError("--cascade-share needs --scorer cascade (or auto)")
        artifact = load_artifact(potentials) if potentials else None
        merged = gs.merge(paths, k, tokens, artifact, scorer, cascade_share)
        if artifact is not None and not several:
            expect_fit(merged.fit_id, artifact, scorer, cascade_share, potentials, k, tokens)
        written = gs.write_selection(output, merged.keeper, no_score, candidates, inputs=paths)
        if manifest is not None:
            settings = {"read": read, "candidates": candidates, "no_score": no_score, "scorer": scorer}
            made = merge_manifest(started, output, paths, folders, merged, artifact, potentials, written, settings)
            write_manifests(made, manifest)
    guard = getattr(merged.keeper, "guard", None)
    dropped = dropped_note(merged.keeper, guard, candidates) if guard else ""
    if several:
        shares = merged.keeper.shares() if not candidates else {}
        log(
            f"merge: read {merged.read:,} records from {len(paths)} inputs, "
            f"{described_selection(written, shares, candidates)} (fit {merged.fit_id}, mix {merged.keeper.mix}"
            f"{dropped})",
            quiet,
        )
        return
    source = f"{len(paths)} shards in {len(folders)} state folders" if folders else f"{len(paths)} inputs"
    log(
        f"merge: read {merged.read:,} records from {source}, selected {written:,}"
        + (f" holding {merged.keeper.total:,} tokens" if tokens is not None else "")
        + f" (fit {merged.fit_id or 'none'}{dropped})",
        quiet,
    )


@click.command(context_settings=CONTEXT)
@inputs_argument
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The .npy file to write (- for stdout).",
)
@click.option(
    "-p",
    "--potentials",
    type=InputPath(exists=True, dir_okay=False, remote=True),
    help="Embed in this artifact's feature space (needed for lexical and hybrid, which are fitted).",
)
@click.option(
    "--features",
    type=click.Choice(gs.SPACES),
    help="The space [default: semantic, or the artifact's]; lexical and hybrid need -p.",
)
@FORCE
@common_options
def embed(inputs, output, potentials, features, quiet, **p) -> None:
    """Embed the records of INPUTS into a float32 .npy matrix, one row per usable record, in order.

    Without --potentials: sentence embeddings. With it: the artifact's space (semantic, lexical, hybrid or vectors).

    \b
      gotd-stream embed shards/part-00.jsonl.zst -o part-00.npy
      gotd-stream embed -p task.gotd shards/part-00.jsonl.zst -o part-00.npy
    """
    paths = resolve_inputs(inputs)
    if output.endswith((".zst", ".zstd", ".gz")):
        raise click.UsageError("embed writes an uncompressed .npy file")
    skips = gs.Skips(strict=p["strict"], budget=p["max_skipped"])
    models = models_of(p)
    with speaking(quiet):
        check_outputs({"-o": output}, paths, {"-p": potentials}, binary=("-o",))
        if potentials:
            _, featurizer = load_checked(potentials, models, features)
        elif features not in (None, "semantic"):
            raise click.UsageError(
                f"the {features} space is fitted on a sample: pass -p with an artifact from `fit --features {features}`"
            )
        else:
            featurizer = models.load()
        from gotd_stream.features.vectors import Vectors

        field = featurizer.field if isinstance(featurizer, Vectors) else p["text_field"]  # vectors: the fit's field
        records = gs.read_records(paths, field, skips)
        rows = gs.embed_to_npy(records, featurizer, skips, output, quiet, paths)
    log(
        f"embed: read {rows + skips.total:,} records, embedded {rows:,}, {skips.summary()}; "
        f"wrote {display_output(output)} ({rows:,} x {featurizer.dim})",
        quiet,
    )
    partial_success(p["max_skipped"], skips.total)


@click.command(context_settings=CONTEXT)
@click.argument("potentials", metavar="FILE", type=InputPath(exists=True, remote=True))
@click.option("--json", "as_json", is_flag=True, help="Print the header (or the manifest) as JSON.")
def info(potentials, as_json) -> None:
    """Describe a fitted artifact (model, epsilon, sizes, convergence, id), or the manifest of a selection: given
    the manifest, the selection beside it, or a --state folder.

    \b
      gotd-stream info task.gotd
      gotd-stream info selected.jsonl.zst
    """
    import json

    from gotd_stream import manifest as mf

    found = mf.locate(potentials)
    if found is not None or os.path.isdir(potentials):
        return info_manifest(potentials, found, as_json)
    with speaking():
        pot = load_artifact(potentials)
    if isinstance(pot, gs.Mixture):
        return info_several(potentials, pot, as_json)
    header = dict(
        pot.header(), format_version=pot.format_version, fit_id=pot.fit_id, target_shape=list(pot.target.shape)
    )
    if as_json:
        click.echo(json.dumps(header, indent=2, sort_keys=True))
        return
    fit_info = pot.fit

    def number(key: str, spec: str = ",") -> str:  # a field older files may lack
        return format(fit_info[key], spec) if key in fit_info else "?"

    described, about_model = describe_space(pot.features), describe_model(pot.model, pot.features)
    lines = [
        f"file:            {potentials}",
        f"fit id:          {pot.fit_id}",
        f"format version:  {pot.format_version}" + ("" if pot.verified else " (no checksum: integrity not verified)"),
        f"features:        {described}",
        f"model:           {about_model}",
        f"epsilon:         {pot.epsilon:g}",
        f"target:          {pot.target.shape[0]:,} texts (of {number('target_seen')} in "
        f"{fit_info.get('target_file', '?')})",
        f"sample:          {number('sample_size')} candidates by {fit_info.get('sampling', '?')} "
        f"(of {number('candidates_seen')} seen, seed {fit_info.get('seed', '?')})",
        f"sinkhorn:        {fit_info.get('iterations', '?')} iterations, marginal error "
        f"{number('marginal_error', '.2e')} (tol {fit_info.get('tol', '?')})",
        f"OT cost:         {pot.ot_cost:.6f}",
        f"mean f (calib.): {pot.mean_f:.6f}",
    ]
    click.echo("\n".join(lines))


def info_manifest(given: str, found: str | None, as_json: bool) -> None:
    """`info` of a selection's manifest, or of a --state folder's."""
    import json

    from gotd_stream import manifest as mf

    if found is None:
        raise click.UsageError(f"{given} is a folder without a manifest ({mf.IN_STATE}): info takes a --state folder")
    with speaking():
        manifest = mf.load(found)
    click.echo(json.dumps(manifest, indent=2) if as_json else "\n".join(describe_manifest(manifest, found)))


def describe_space(space: dict) -> str:
    """The feature space of an artifact, in words (`info`)."""
    return {
        "semantic": "semantic (sentence embeddings)",
        "lexical": f"lexical (hashed word 1-2-grams, {space.get('buckets')} buckets, TF-IDF projected to "
        f"{space.get('dim')} dims)",
        "hybrid": f"hybrid (semantic weight {space.get('weight')}, lexical {space.get('dim')} dims)",
        "vectors": f"vectors (precomputed, {space.get('dim')} dims, read from the field {space.get('field')!r})",
    }[space.get("space", "semantic")]


def describe_model(model: dict | None, space: dict | None = None) -> str:
    """The model of an artifact, in words (`info`)."""
    if not model:
        return f"none (the {(space or {}).get('space', 'lexical')} space needs no model)"
    return f"{model['name']} (fingerprint {model['fingerprint']}, {model['dim']}-d, max {model['max_tokens']} tokens)"


def info_several(potentials: str, mixture, as_json: bool) -> None:
    """`info` of an artifact of several targets: what they share, then one line per target."""
    import json

    header = mixture.header()
    header.update(format_version=mixture.format_version, fit_id=mixture.fit_id)
    for entry, part in zip(header["targets"], mixture.parts, strict=True):
        entry.update(fit_id=part.fit_id, target_shape=list(part.target.shape))
    if as_json:
        click.echo(json.dumps(header, indent=2, sort_keys=True))
        return
    fit_info = mixture.fit
    lines = [
        f"file:            {potentials}",
        f"fit id:          {mixture.fit_id}",
        f"format version:  {mixture.format_version} (several targets)",
        f"features:        {describe_space(mixture.features)}",
        f"model:           {describe_model(mixture.model, mixture.features)}",
        f"epsilon:         {mixture.epsilon:g}",
        f"sample:          {fit_info.get('sample_size', '?'):,} candidates by {fit_info.get('sampling', '?')} "
        f"(of {fit_info.get('candidates_seen', '?'):,} seen, seed {fit_info.get('seed', '?')})",
        f"targets:         {len(mixture.names)} (weights sum to 1; score --mix quota|sum)",
    ]
    for name, weight, part in zip(mixture.names, mixture.weights, mixture.parts, strict=True):
        fit = part.fit
        lines.append(
            f"  {name}: weight {weight:.6g}, {part.target.shape[0]:,} texts (of {fit.get('target_seen', '?'):,} in "
            f"{fit.get('target_file', '?')}), sinkhorn {fit.get('iterations', '?')} iterations, marginal error "
            f"{fit.get('marginal_error', 0):.2e}, OT cost {part.ot_cost:.6f}, mean f {part.mean_f:.6f}, "
            f"fit {part.fit_id}"
        )
    click.echo("\n".join(lines))


def check_table(output: str | None, paths: list[str]) -> None:
    """-o FILE.parquet: the Parquet and Arrow inputs must share their columns (named before any work, exit 2)."""
    from gotd_stream.io.parquet_out import is_parquet_output, record_schema

    if is_parquet_output(output):
        record_schema(paths)


def expect_fit(found: str, artifact, scorer: str, share, potentials: str, k, tokens) -> None:
    """merge -p: the inputs must be scored with that artifact by `scorer` under this budget (an empty input has no
    fit to compare); where another scorer of the same artifact made them, the error names it."""
    from gotd_stream.select.distill import resolve

    expected = expected_id(artifact, scorer, share, k, tokens)
    if not found or found == expected:
        return
    hint = ""
    if artifact.student is not None:
        other = next((s for s in ("student", "teacher") if expected_id(artifact, s) == found), None)
        hint = f": they were scored by its {other}, pass --scorer {other}" if other and other != scorer else ""
        if not hint and resolve(artifact, scorer) == "cascade":
            hint = (
                ": a cascade's lines carry its share, which the budget sets: merge with the budget they were scored "
                "with, or the --cascade-share they were scored with"
            )
    raise click.UsageError(f"the inputs were scored with fit {found}, not with {potentials} (fit {expected}){hint}")

"""The selection commands: fit, score, merge, embed, info. Each parses, calls the library's API, reports."""

from __future__ import annotations

import contextlib
import os

import click

import gotd_stream as gs
from gotd_stream.cli.options import (
    CONTEXT,
    FIT,
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
    inputs_argument,
    log,
    model_settings,
    model_unused,
    on_ray,
    partial_success,
    ray_options,
    ray_settings,
    refuse_fit_options,
    resolve_inputs,
    selection_options,
    shard_options,
    speaking,
    task_share,
    unit_for,
)
from gotd_stream.cli.several import checked_targets, described_selection, described_targets, target_reads


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
@fit_options
@ray_options
@common_options
def fit(
    inputs,
    target,
    output,
    ray_address,
    ray_actors,
    ray_gpus,
    sample_size,
    target_size,
    epsilon,
    max_iter,
    tol,
    seed,
    features,
    hybrid_weight,
    text_field,
    model,
    device,
    batch_tokens,
    batch_size,
    workers,
    max_tokens,
    strict,
    max_skipped,
    quiet,
) -> None:
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
    ray = ray_settings(ray_address, ray_actors, ray_gpus, paths)
    skips = gs.Skips(strict=strict, budget=max_skipped)
    models = model_settings(model, device, max_tokens, batch_size, batch_tokens, workers)
    with speaking(quiet):
        targets, normalised = checked_targets(target)
        check_outputs({"-o": output}, paths, target_reads(targets), binary=("-o",))
        settings = fit_settings(
            features, sample_size, target_size, epsilon, max_iter, tol, seed, hybrid_weight, text_field, strict
        )
        embedder, device = semantic_model(settings, models)
        with on_ray(ray) as cluster:
            sampler = cluster.sample if cluster else None
            if len(targets) > 1:
                fitted = gs.fit_mixture(
                    paths, targets, embedder, settings, skips=skips, device=device, quiet=quiet, sampler=sampler
                )
            else:
                fitted = gs.fit(
                    paths, targets[0].path, embedder, settings, skips=skips, device=device, quiet=quiet, sampler=sampler
                )
        fitted.potentials.save(output)
    log(
        f"fit: read {fitted.seen + skips.total:,} records, sampled {fitted.potentials.fit['sample_size']:,}, "
        f"{skips.summary()}; wrote {display_output(output)} (fit {fitted.potentials.fit_id}"
        f"{described_targets(targets, normalised)})",
        quiet,
    )
    partial_success(max_skipped, skips.total)


def fit_settings(space, sample_size, target_size, epsilon, max_iter, tol, seed, hybrid_weight, text_field, strict):
    """The fit's settings from the options; a hybrid weight given outside the hybrid space is a mistake."""
    settings = gs.FitSettings(
        space or FIT.space, sample_size, target_size, epsilon, max_iter, tol, seed, hybrid_weight, text_field, strict
    )
    gs.check_space(settings, weight_given=bool(given("hybrid_weight")))
    return settings


def semantic_model(settings: gs.FitSettings, models: gs.ModelSettings):
    """The sentence-embedding model the space needs (None for lexical), and the device of the OT."""
    if settings.space == "lexical":
        model_unused("the lexical space")
    return gs.semantic_model(settings.space, models)


@click.command(context_settings=CONTEXT)
@inputs_argument
@budget_options
@click.option(
    "-p",
    "--potentials",
    type=InputPath(exists=True, dir_okay=False),
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
    help="Output file; .zst/.gz compress [default: plain JSONL on stdout].",
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
    type=click.Choice(gs.MIXES),
    help="Several targets: quota (each target its weight's share of k, from its own ranking) or sum (the weighted "
    "sum of the scores) [default: quota].",
)
@click.option(
    "--candidates",
    is_flag=True,
    help="Quota: write every target's own top-k (for an exact `merge -p`) instead of the selection.",
)
@selection_options
@shard_options
@ray_options
@fit_options
@common_options
def score(
    inputs,
    k,
    tokens,
    potentials,
    target,
    save_potentials,
    output,
    no_score,
    state,
    wait,
    mix,
    candidates,
    tokenizer,
    unit,
    chunk_tokens,
    select,
    temperature,
    select_seed,
    shard_index,
    num_shards,
    ray_address,
    ray_actors,
    ray_gpus,
    sample_size,
    target_size,
    epsilon,
    max_iter,
    tol,
    seed,
    features,
    hybrid_weight,
    text_field,
    model,
    device,
    batch_tokens,
    batch_size,
    workers,
    max_tokens,
    strict,
    max_skipped,
    quiet,
) -> None:
    """Pass 2: score every record of INPUTS and write the best, best first: -k records, or --tokens tokens.

    The score is the calibrated OT gradient (lower is better); each selected line gets "gotd_score" and
    "gotd_fit" (the artifact id) appended ("gotd_tokens" too under --tokens, "gotd_select" under --select
    sample). With --target instead of --potentials it fits first: on files by a bottom-k sample (a first read),
    on stdin on the first --sample-size records (kept in memory and scored too: nothing is read twice).

    On a cluster: --ray scores the shards on a Ray actor pool; --shard-index I --num-shards N scores task I's
    share of INPUTS (a Slurm array), and `merge` joins the tasks' outputs or --state folders.

    \b
      zstdcat corpus.jsonl.zst | gotd-stream score --target task.jsonl --tokens 50M -o selected.jsonl.zst
      gotd-stream score -p task.gotd -k 50000 shards/part-0*.jsonl.zst -o node3.jsonl.zst
      gotd-stream score -p task.gotd --tokens 50M --ray auto --state state/ shards/*.parquet -o selected.jsonl.zst
      gotd-stream score -p mix.gotd --mix quota -k 50000 shards/*.jsonl.zst -o selected.jsonl.zst
    """
    if (potentials is None) == (not target):
        raise click.UsageError("give exactly one of --potentials (a fitted artifact) or --target (fit first)")
    if save_potentials and not target:
        raise click.UsageError("--save-potentials needs --target")
    budget = budget_from(k, tokens, select, temperature, select_seed)
    unit = unit_for(unit, budget)
    for name, needs, value in (("chunk_tokens", "--unit chunk", unit), ("temperature", "--select sample", select)):
        if given(name) and value != needs.split()[-1]:
            raise click.UsageError(f"{flag(name)} needs {needs}")
    if given("select_seed") and select != "sample":
        raise click.UsageError("--select-seed needs --select sample")
    paths = task_share(resolve_inputs(inputs), shard_index, num_shards)
    if state and not (potentials and gs.rereadable(paths)):
        raise click.UsageError("--state needs --potentials and input files (it records per-shard results)")
    ray = ray_settings(ray_address, ray_actors, ray_gpus, paths)
    if len(target) > 1 or (potentials and gs.holds_targets(potentials)):
        if ray is not None:
            raise click.UsageError("--ray scores one target: score several targets without it (or with --shard-index)")
        return score_several(paths, click.get_current_context().params)
    if mix or candidates:
        raise click.UsageError(f"{'--mix' if mix else '--candidates'} applies to several targets, and there is one")
    target = target[0].path if target else None
    counts = gs.Counts(skips=gs.Skips(strict=strict, budget=max_skipped))
    models = model_settings(model, device, max_tokens, batch_size, batch_tokens, workers)
    cluster = failed = None
    with speaking(quiet), contextlib.ExitStack() as stack:
        outputs = {"-o": "-" if output is None else output, "--save-potentials": save_potentials}
        check_outputs(outputs, paths, {"-p": potentials, "--target": target}, binary=("--save-potentials",))
        counter = token_counter(tokenizer, model, budget.tokens is not None or unit == "chunk")
        units = gs.Units(counter, chunk_tokens if unit == "chunk" else None, text_field)
        if potentials:
            refuse_fit_options(potentials)
            pot, featurizer = load_checked(potentials, models, features)
            device = gs.pick_device(models.device)
            cluster = stack.enter_context(on_ray(ray))
            if state:
                identity = {
                    "fit_id": pot.fit_id,
                    **budget.identity(),
                    "unit": unit if unit == "doc" else f"chunk:{chunk_tokens}",
                    "tokenizer": counter.name if budget.tokens or unit == "chunk" else None,
                    "text_field": text_field,
                }
                with gs.State(state, identity, wait=wait) as st:
                    log(st.message, quiet)
                    if cluster:
                        kept = cluster.score(
                            paths, text_field, st, featurizer, pot, models, budget, counts, device, quiet, units
                        )
                    else:
                        kept = gs.score_resumable(
                            paths, text_field, st, featurizer, pot, budget, counts, device, quiet, units
                        )
                    gs.require_usable(counts.scored, counts.skips, paths)
                    st.require_complete(written=False)  # every shard damaged: nothing to write
                    gs.write_selection(output, kept, pot.fit_id, no_score, budget)
                    failed = st
            elif cluster:
                kept = cluster.score(
                    paths, text_field, None, featurizer, pot, models, budget, counts, device, quiet, units
                )
                gs.require_usable(counts.scored, counts.skips, paths)
                gs.write_selection(output, kept, pot.fit_id, no_score, budget)
            else:
                records = gs.read_records(paths, text_field, counts.skips)
                kept = gs.score(records, featurizer, pot, budget, counts, device, quiet, units=units)
                gs.require_usable(counts.scored, counts.skips, paths)
                gs.write_selection(output, kept, pot.fit_id, no_score, budget)
        else:
            settings = fit_settings(
                features, sample_size, target_size, epsilon, max_iter, tol, seed, hybrid_weight, text_field, strict
            )
            embedder, device = semantic_model(settings, models)
            cluster = stack.enter_context(on_ray(ray))
            if gs.rereadable(paths):
                silent = gs.Skips(strict=strict, report=False)  # the scoring pass reports the bad records
                sampler = cluster.sample if cluster else None
                fitted = gs.fit(
                    paths, target, embedder, settings, skips=silent, device=device, quiet=quiet, sampler=sampler
                )
                records = gs.read_records(paths, text_field, counts.skips)
            else:  # a stream: fit on its first records, keep them, score them with the rest
                stream = gs.read_records(paths, text_field, counts.skips)
                fitted, records = gs.fit_on_prefix(
                    stream, target, embedder, settings, device=device, quiet=quiet, skips=counts.skips
                )
            pot = fitted.potentials
            if save_potentials:
                pot.save(save_potentials)
            if cluster:
                kept = cluster.score(
                    paths, text_field, None, fitted.featurizer, pot, models, budget, counts, device, quiet, units
                )
            else:
                kept = gs.score(records, fitted.featurizer, pot, budget, counts, device, quiet, units=units)
            gs.require_usable(counts.scored, counts.skips, paths)
            gs.write_selection(output, kept, pot.fit_id, no_score, budget)
        held = gs.selected_tokens(kept, text_field, counter)
    read = counts.scored + counts.skips.total
    reused = f", {counts.reused} shards from {state}" if state else ""
    reused += f", {gs.running_on(cluster)}" if cluster else ""
    left_out = len(failed.failures) if failed else 0
    reused += f", {left_out} damaged shard{'s' if left_out > 1 else ''} left out" if left_out else ""
    what = "pieces" if unit == "chunk" else "records"
    log(
        f"score: read {read:,} {what}, scored {counts.scored:,}, {counts.skips.summary()}, selected {len(kept):,} "
        f"{what} holding {held:,} tokens (counted with {counter.name})"
        f"{' -> ' + output if output and output != '-' else ''} (fit {pot.fit_id}{reused})",
        quiet,
    )
    if budget.tokens is not None and held < budget.tokens:
        log(f"score: the input held fewer than {budget.tokens:,} tokens: every usable {what[:-1]} was kept", quiet)
    elif budget.k is not None and len(kept) < budget.k:
        log(f"score: the input held fewer than {budget.k:,} usable {what}: every one was kept", quiet)
    if failed is not None:
        with speaking(quiet):
            failed.require_complete()  # exit 1: the selection is written, without the damaged shards
    partial_success(max_skipped, counts.skips.total)


def token_counter(tokenizer: str | None, model: str | None, needed: bool):
    """The counter of --tokens and --chunk-tokens; when only the summary needs one, the estimate if it fails."""
    if needed or tokenizer:
        return gs.token_counter(tokenizer, model)
    try:
        return gs.token_counter(None, model)
    except gs.UsageProblem:
        return gs.token_counter("estimate")


def load_checked(potentials: str, models: gs.ModelSettings, space: str | None = None):
    """The artifact and a featurizer that embeds exactly as the fit did (a mismatch is a usage error)."""
    pot = load_artifact(potentials)
    if pot.model is None:
        model_unused(f"the lexical space of {potentials}")
    return pot, gs.featurizer_for(pot, models, space, name=potentials)


def load_artifact(path: str):
    """The artifact, with a warning when the file is too old to carry a checksum."""
    pot = gs.load(path)
    if not pot.verified:
        click.echo(
            f"warning: {path} is format version {pot.format_version}, without a checksum: damage to it cannot be "
            f"detected; fit again to write version {gs.FORMAT_VERSION}",
            err=True,
        )
    return pot


@click.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, type=InputPath(exists=True, allow_dash=True))
@budget_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file; .zst/.gz compress [default: plain JSONL on stdout].",
)
@click.option("--no-score", is_flag=True, help="Write the original lines byte for byte, without gotd_score/gotd_fit.")
@click.option(
    "-p",
    "--potentials",
    type=InputPath(exists=True, dir_okay=False),
    help="The artifact the inputs were scored with: refuses others; needed for quota candidates of several targets.",
)
@click.option(
    "--candidates",
    is_flag=True,
    help="Quota: write the merged candidates (for a further merge) instead of the selection.",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def merge(inputs, k, tokens, output, no_score, potentials, candidates, quiet) -> None:
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
    budget_from(k, tokens)
    paths = resolve_inputs(inputs)
    folders = [path for path in paths if os.path.isdir(path)]
    if folders and len(folders) < len(paths):
        raise click.UsageError("give merge either the outputs of score or its --state folders, not both")
    if folders:
        with speaking(quiet):
            paths = gs.merge_inputs(folders, k, tokens)
    if potentials and gs.holds_targets(potentials):
        if tokens is not None:
            raise click.UsageError("several targets merge -k records: --tokens applies to one target")
        return merge_several(paths, k, potentials, output, no_score, candidates, quiet)
    if candidates:
        raise click.UsageError("--candidates needs -p with an artifact of several targets")
    with speaking(quiet):
        check_outputs({"-o": "-" if output is None else output}, paths, {"-p": potentials})
        merged = gs.merge(paths, k, tokens)
        if potentials:
            expect_fit(merged.fit_id, load_artifact(potentials).fit_id, potentials)
        gs.write_selection(output, merged.keeper, merged.fit_id, no_score, merged.budget)
    source = f"{len(paths)} shards in {len(folders)} state folders" if folders else f"{len(paths)} inputs"
    log(
        f"merge: read {merged.read:,} records from {source}, selected {len(merged.keeper):,}"
        + (f" holding {merged.keeper.total:,} tokens" if tokens is not None else "")
        + f" (fit {merged.fit_id or 'none'})",
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
    type=InputPath(exists=True, dir_okay=False),
    help="Embed in this artifact's feature space (needed for lexical and hybrid, which are fitted).",
)
@click.option(
    "--features",
    type=click.Choice(gs.SPACES),
    help="The space [default: semantic, or the artifact's]; lexical and hybrid need -p.",
)
@common_options
def embed(
    inputs,
    output,
    potentials,
    features,
    text_field,
    model,
    device,
    batch_tokens,
    batch_size,
    workers,
    max_tokens,
    strict,
    max_skipped,
    quiet,
) -> None:
    """Embed the records of INPUTS into a float32 .npy matrix, one row per usable record, in order.

    Without --potentials: sentence embeddings. With it: the artifact's space (semantic, lexical or hybrid).

    \b
      gotd-stream embed shards/part-00.jsonl.zst -o part-00.npy
      gotd-stream embed -p task.gotd shards/part-00.jsonl.zst -o part-00.npy
    """
    paths = resolve_inputs(inputs)
    if output.endswith((".zst", ".zstd", ".gz")):
        raise click.UsageError("embed writes an uncompressed .npy file")
    skips = gs.Skips(strict=strict, budget=max_skipped)
    models = model_settings(model, device, max_tokens, batch_size, batch_tokens, workers)
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
        rows = gs.embed_to_npy(gs.read_records(paths, text_field, skips), featurizer, skips, output, quiet, paths)
    log(
        f"embed: read {rows + skips.total:,} records, embedded {rows:,}, {skips.summary()}; "
        f"wrote {display_output(output)} ({rows:,} x {featurizer.dim})",
        quiet,
    )
    partial_success(max_skipped, skips.total)


@click.command(context_settings=CONTEXT)
@click.argument("potentials", type=InputPath(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
def info(potentials, as_json) -> None:
    """Describe a fitted artifact: model, epsilon, sizes, convergence, id.

    \b
      gotd-stream info task.gotd
    """
    import json

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

    described, about_model = describe_space(pot.features), describe_model(pot.model)
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


def describe_space(space: dict) -> str:
    """The feature space of an artifact, in words (`info`)."""
    return {
        "semantic": "semantic (sentence embeddings)",
        "lexical": f"lexical (hashed word 1-2-grams, {space.get('buckets')} buckets, TF-IDF projected to "
        f"{space.get('dim')} dims)",
        "hybrid": f"hybrid (semantic weight {space.get('weight')}, lexical {space.get('dim')} dims)",
    }[space.get("space", "semantic")]


def describe_model(model: dict | None) -> str:
    """The model of an artifact, in words (`info`)."""
    if not model:
        return "none (the lexical space needs no model)"
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
        f"model:           {describe_model(mixture.model)}",
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


def expect_fit(found: str, expected: str, potentials: str) -> None:
    """merge -p: the inputs must be scored with that artifact (an empty input has no fit to compare)."""
    if found and found != expected:
        raise click.UsageError(f"the inputs were scored with fit {found}, not with {potentials} (fit {expected})")


def score_several(paths: list[str], p: dict) -> None:
    """`score` with several targets: fit them first or load their artifact, score every record against each,
    keep k by --mix, and write the selection (or, with --candidates, what an exact merge needs)."""
    mix, output, quiet, state = p["mix"] or "quota", p["output"], p["quiet"], p["state"]
    k, text_field = p["k"], p["text_field"]
    if k is None or p["unit"] not in (None, "doc") or p["select"] != "top" or p["tokenizer"]:
        raise click.UsageError(
            "several targets keep -k whole records by their scores: --tokens, --tokenizer, --unit chunk and "
            "--select sample apply to one target"
        )
    if p["candidates"] and mix != "quota":
        raise click.UsageError("--candidates is for --mix quota; a sum selection merges as it is")
    if p["candidates"] and p["no_score"]:
        raise click.UsageError("--candidates writes the scores a merge needs: leave out --no-score")
    counts = gs.Counts(skips=gs.Skips(strict=p["strict"], budget=p["max_skipped"]))
    models = model_settings(p["model"], p["device"], p["max_tokens"], p["batch_size"], p["batch_tokens"], p["workers"])
    with speaking(quiet):
        targets, normalised = checked_targets(p["target"])
        outputs = {"-o": "-" if output is None else output, "--save-potentials": p["save_potentials"]}
        named = {"-p": p["potentials"], **target_reads(targets)}
        check_outputs(outputs, paths, named, binary=("--save-potentials",))
        if p["potentials"]:
            refuse_fit_options(p["potentials"])
            mixture, featurizer = load_checked(p["potentials"], models, p["features"])
            device = gs.pick_device(models.device)
            if state:
                identity = {"fit_id": mixture.fit_id, "k": k, "text_field": text_field, "mix": mix}
                with gs.State(state, identity, wait=p["wait"]) as st:
                    log(st.message, quiet)
                    kept = gs.score_mixture_resumable(
                        paths, text_field, st, featurizer, mixture, k, mix, counts, device, quiet
                    )
                    gs.require_usable(counts.scored, counts.skips, paths)
                    written, shares = gs.write_mixture(output, kept, mixture, p["candidates"], p["no_score"])
            else:
                records = gs.read_records(paths, text_field, counts.skips)
                kept = gs.score_mixture(records, featurizer, mixture, k, mix, counts, device, quiet)
                gs.require_usable(counts.scored, counts.skips, paths)
                written, shares = gs.write_mixture(output, kept, mixture, p["candidates"], p["no_score"])
        else:
            settings = fit_settings(
                p["features"],
                p["sample_size"],
                p["target_size"],
                p["epsilon"],
                p["max_iter"],
                p["tol"],
                p["seed"],
                p["hybrid_weight"],
                text_field,
                p["strict"],
            )
            embedder, device = semantic_model(settings, models)
            if gs.rereadable(paths):
                silent = gs.Skips(strict=p["strict"], report=False)  # the scoring pass reports the bad records
                fitted = gs.fit_mixture(paths, targets, embedder, settings, skips=silent, device=device, quiet=quiet)
                records = gs.read_records(paths, text_field, counts.skips)
            else:  # a stream: fit on its first records, keep them, score them with the rest
                stream = gs.read_records(paths, text_field, counts.skips)
                fitted, records = gs.fit_mixture_on_prefix(
                    stream, targets, embedder, settings, device=device, quiet=quiet, skips=counts.skips
                )
            mixture = fitted.potentials
            if p["save_potentials"]:
                mixture.save(p["save_potentials"])
            kept = gs.score_mixture(records, fitted.featurizer, mixture, k, mix, counts, device, quiet)
            gs.require_usable(counts.scored, counts.skips, paths)
            written, shares = gs.write_mixture(output, kept, mixture, p["candidates"], p["no_score"])
    read = counts.scored + counts.skips.total
    reused = f", {counts.reused} shards from {state}" if state else ""
    log(
        f"score: read {read:,} records, scored {counts.scored:,}, {counts.skips.summary()}, "
        f"{described_selection(written, shares, p['candidates'])}"
        f"{' -> ' + output if output and output != '-' else ''} (fit {mixture.fit_id}, mix {mix}{reused}"
        f"{described_targets(targets, normalised)})",
        quiet,
    )
    partial_success(p["max_skipped"], counts.skips.total)


def merge_several(paths: list[str], k: int, potentials: str, output, no_score: bool, candidates: bool, quiet) -> None:
    """`merge -p` with an artifact of several targets: quota candidates (or sum selections), merged exactly."""
    if candidates and no_score:
        raise click.UsageError("--candidates writes the scores a further merge needs: leave out --no-score")
    with speaking(quiet):
        check_outputs({"-o": "-" if output is None else output}, paths, {"-p": potentials})
        mixture = load_artifact(potentials)
        merged = gs.merge_mixture(paths, k, mixture)
        written, shares = gs.write_mixture(output, merged.kept, mixture, candidates, no_score)
    log(
        f"merge: read {merged.read:,} records from {len(paths)} inputs, "
        f"{described_selection(written, shares, candidates)} (fit {mixture.fit_id}, mix {merged.kept.mix})",
        quiet,
    )

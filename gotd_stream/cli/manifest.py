"""Manifests on the command line: --manifest, what score and merge record, `score --from-manifest`, `info` of one.

A re-run from a manifest replays the recorded options as a command line, in the recorded folder (inputs keep
their spelling: gotd_source writes them as given), in one pass here: --state, --ray and a Slurm share change
where a selection is made, never its bytes, so they are not replayed (a share's inputs are). The artifact and
the inputs are checked before any work, the bytes as read before the selection is written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import click

from gotd_stream import manifest as mf
from gotd_stream.cli.options import FIT_ONLY, log, speaking

REPLAY = "gotd_stream.replay"  # ctx.meta: the manifest being replayed, for the checks inside score

# score's options that say where it runs or what it writes, not what it selects: never replayed
NOT_REPLAYED = {
    "inputs",
    "output",
    "state",
    "wait",
    "ray_address",
    "ray_actors",
    "ray_gpus",
    "shard_index",
    "num_shards",
    "save_potentials",
    "quiet",
    "manifest",
    "from_manifest",
    "force",
}
REPLAY_FLAGS = {"from_manifest", "output", "force", "quiet", "manifest"}  # what --from-manifest takes beside it


def manifest_option(func: Callable) -> Callable:
    return click.option(
        "--manifest",
        type=click.Path(dir_okay=False),
        help="Write the run's manifest here [default: beside an -o file, as FILE.manifest.json; none for stdout].",
    )(func)


def replay_options(func: Callable) -> Callable:
    return click.option(
        "--from-manifest",
        type=click.Path(exists=True, dir_okay=False),
        help="Make the selection a manifest records again, to -o (checked: the same artifact and inputs).",
    )(func)


def manifest_for(output: str | None, given: str | None) -> str | None:
    """Where this run's manifest goes: --manifest, else beside an -o file (none for stdout)."""
    return given or mf.beside(output)


def write_manifests(manifest: dict, path: str | None, state: str | None = None, replayed: dict | None = None) -> None:
    """The manifest to `path` and into the --state folder; a replay's names the manifest it replayed."""
    if replayed is not None:
        manifest = dict(manifest, replayed_from=replayed["replayed_from"])
    for where in (path, os.path.join(state, mf.IN_STATE) if state else None):
        if where is not None:
            mf.write(manifest, where)


def score_manifest(started, output, options, sources, done, plan, written, held, counter) -> dict:
    """score's manifest: the selection `done` (select.pipeline.Selection) of `plan`, its inputs, how to replay it."""
    ctx = click.get_current_context()
    artifact, read = done.artifact, sources["read"]
    fitted = bool(sources["targets"])
    targets = mf.describe_inputs([target.path for target in sources["targets"]], read)
    for entry, target in zip(targets, sources["targets"], strict=True):
        entry.update(name=target.name, weight=target.weight)
    failed = getattr(done.failed, "failures", None) or {}
    return mf.build(
        "score",
        started,
        output,
        artifact=mf.describe_artifact(artifact, sources["artifact"]),
        inputs=mf.describe_inputs(sources["paths"], read),
        targets=targets,
        plan=mf.describe_plan(plan),
        space=artifact.features,
        model=artifact.model,
        counts=dict(
            mf.describe_counts(
                done.counts, written, held if counter is not None else None, guard_dropped(done.keeper, plan.candidates)
            ),
            tokens_counted_with=getattr(counter, "name", None),
        ),
        failed_shards={mf.mask(path): why for path, why in failed.items()},
        state=None if options["state"] is None else mf.mask(options["state"]),
        run=score_run(ctx, options, sources["paths"], fitted),
    )


def merge_manifest(started, output, paths, folders, merged, artifact, potentials, written, settings) -> dict:
    """merge's manifest: its inputs (a state folder's shard files), the merged budget, what was selected."""
    budget, rule = merged.budget, merged.budget.rule
    guard = getattr(merged.keeper, "guard", None)
    return mf.build(
        "merge",
        started,
        output,
        artifact=mf.describe_artifact(artifact, potentials) if artifact is not None else {"fit_id": merged.fit_id},
        inputs=mf.describe_inputs(paths, settings["read"]),
        folders=[mf.mask(folder) for folder in folders],
        plan={
            "budget": {"k": budget.k, "tokens": budget.tokens},
            "rule": {"select": rule.name, "temperature": rule.temperature, "seed": rule.seed},
            "mix": getattr(merged.keeper, "mix", None),
            "candidates": settings["candidates"],
            "no_score": settings["no_score"],
            "guard": guard.identity() if guard is not None else {"dedup": "off"},
        },
        counts={
            "read": merged.read,
            "selected": written,
            "selected_tokens": merged.keeper.total if budget.tokens is not None else None,
            "dropped_by_guard": guard_dropped(merged.keeper, settings["candidates"]),
        },
    )


def guard_dropped(keeper, candidates: bool) -> dict[str, int] | None:
    """What the duplicate guard dropped above the selection's last unit, by reason; None when it was off, or when
    the output is candidates (a shard's prefix: its counts are not a selection's)."""
    if getattr(keeper, "guard", None) is None or candidates:
        return None
    return dict(sorted(keeper.dropped().items()))


def score_run(ctx: click.Context, options: dict, paths: list[str], fitted: bool) -> dict:
    """What a replay needs: the options the user set (on the command line or by environment variable, and those
    an environment variable could change: given explicitly, they cannot), as given with credentials masked, less
    where it ran, and the inputs it read (a Slurm share's block); the fit options only when it fitted."""
    envvars = {param.name for param in ctx.command.params if getattr(param, "envvar", None)}
    recorded = {}
    for name, value in options.items():
        if name in NOT_REPLAYED or (name in FIT_ONLY and not fitted) or value is None or value == ():
            continue
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT and name not in envvars:
            continue
        if name == "target":  # NAME=FILE:WEIGHT as given (the weight before normalising)
            value = [t.path if t.name is None else f"{t.name}={t.path}:{t.weight!r}" for t in value]
        if isinstance(value, list):
            value = [mf.mask(one) for one in value]
        recorded[name] = mf.mask(value) if isinstance(value, str) else value
    return {"inputs": [mf.mask(path) for path in paths], "options": recorded}


def replay_argv(command: click.Command, run: dict) -> list[str]:
    """The recorded options as score's command line, each flag by its longest name (the inputs go after --)."""
    spelled = {param.name: param for param in command.params if isinstance(param, click.Option)}
    argv: list[str] = []
    for name, value in run["options"].items():
        option = spelled.get(name)
        if option is None or value is None or value is False or value == []:
            continue
        flag = max(option.opts, key=len)
        if option.is_flag:
            argv.append(flag)
            continue
        for one in value if isinstance(value, list) else [value]:
            argv += [flag, str(one)]
    return argv


def replay(ctx: click.Context, path: str, output: str | None, force: bool, quiet: bool, inputs: tuple) -> None:
    """score --from-manifest: the recorded selection made again, to -o; a changed artifact or input refused."""
    extra = [name for name in ctx.params if name not in REPLAY_FLAGS and given_here(ctx, name)]
    if inputs or extra:
        spelled = {param.name: "/".join(param.opts) for param in ctx.command.params}
        named = ", ".join(["INPUTS"] * bool(inputs) + [spelled[name] for name in extra])
        raise click.UsageError(f"--from-manifest replays the recorded settings: leave out {named}")
    if output is None:
        raise click.UsageError("--from-manifest needs -o: where to write the selection made again")
    with speaking(quiet):
        recorded = mf.load(path)
    run = recorded.get("run")
    if recorded.get("command") != "score" or not run:
        raise click.UsageError(f"{path} records a `{recorded.get('command')}`: --from-manifest replays a score")
    masked = [v for v in [*run["inputs"], *map(str, run["options"].values())] if mf.MASK in v]
    if masked:
        raise click.UsageError(f"{path} masks a credential in {masked[0]}: it cannot be replayed as recorded")
    new = output if output == "-" else os.path.abspath(output)
    if new != "-" and os.path.realpath(new) == recorded["output"]["realpath"] and not force:
        raise click.UsageError(
            f"-o {output} is the selection {path} records: write it to another file, or pass --force to replace it"
        )
    own = ctx.params.get("manifest")
    ctx.meta[REPLAY] = dict(recorded, replayed_from=os.path.abspath(path))
    args = (
        replay_argv(ctx.command, run)
        + ["-o", new]
        + ["-q"] * quiet
        + (["--manifest", os.path.abspath(own)] if own else [])
    )
    folder = recorded["cwd"] if any(not os.path.isabs(p) for p in run["inputs"] if p != "-") else os.getcwd()
    if not os.path.isdir(folder):
        raise click.UsageError(f"{path} was made in {folder}, which is gone: its relative inputs cannot be found")
    with contextlib.chdir(folder):  # the recorded folder: relative inputs keep their spelling
        with speaking(quiet):
            mf.check_inputs(recorded["inputs"] + recorded.get("targets", []))
            potentials = run["options"].get("potentials")
            if potentials:
                import gotd_stream as gs

                mf.check_artifact(recorded, gs.load(potentials).fit_id, potentials)
        sub = ctx.command.make_context(ctx.info_name, [*args, "--", *run["inputs"]], parent=ctx)
        with sub:
            ctx.command.invoke(sub)
    log(f"score: made again from {path}", quiet)


def given_here(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def check_replayed(fit_id: str, read: dict) -> dict | None:
    """Inside a replay (else nothing): the fit and the bytes read are the recorded ones, before anything is
    written. Returns the manifest replayed."""
    recorded = click.get_current_context().meta.get(REPLAY)
    if recorded is None:
        return None
    with speaking():
        mf.check_artifact(recorded, fit_id, "the fitted artifact")
        mf.check_read(recorded["inputs"] + recorded.get("targets", []), read)
    return recorded


def describe_manifest(manifest: dict, name: str) -> list[str]:
    """A manifest in words (`info`)."""
    artifact, counts, settings = manifest.get("artifact") or {}, manifest.get("counts") or {}, manifest.get("plan")
    inputs = manifest.get("inputs", [])
    lines = [
        f"manifest:        {name}",
        f"command:         gotd-stream {manifest.get('command')}, {manifest.get('started')}, "
        f"{manifest.get('wall_seconds', 0):.2f} s",
        f"command line:    {' '.join(manifest.get('argv', []))}",
        f"folder:          {manifest.get('cwd')}",
        f"output:          {(manifest.get('output') or {}).get('path') or '<stdout>'}",
        f"fit id:          {artifact.get('fit_id') or 'none'}"
        + (f" ({artifact['path']})" if artifact.get("path") else ""),
    ]
    header = artifact.get("header") or {}
    if header:
        space, model = header.get("features") or {}, header.get("model") or {}
        lines.append(f"space, model:    {space.get('space', 'semantic')}, {model.get('name', 'none')}")
    if settings:
        budget, rule, units = settings["budget"], settings["rule"], settings.get("units")
        kept = f"{budget['k']:,} records" if budget["k"] is not None else f"{budget['tokens']:,} tokens"
        how = "top scores" if rule["select"] == "top" else f"sample (t {rule['temperature']}, seed {rule['seed']})"
        unit = (
            ""
            if units is None
            else f"; {units['unit']}"
            + (f" of {units['chunk_tokens']} tokens" if units["chunk_tokens"] else "")
            + f", field {units['text_field']}"
        )
        mix = f", mix {settings['mix']}" if settings.get("mix") else ""
        lines.append(f"plan:            {kept} by {how}{unit}{mix}" + (", candidates" * bool(settings["candidates"])))
    total = sum(entry.get("size") or 0 for entry in inputs)
    lines.append(f"inputs:          {len(inputs):,}, {total:,} bytes")
    for entry in inputs[:20]:
        print_ = entry.get("sha256") or entry.get("content_key") or "?"
        kind = "sha256" if entry.get("sha256") else "content key"
        lines.append(f"  {entry['path']}: {entry.get('size') or 0:,} bytes, {kind} {print_}")
    if len(inputs) > 20:
        lines.append(f"  ... and {len(inputs) - 20:,} more (--json lists them)")
    if counts:
        skipped = ", ".join(f"{why}: {n:,}" for why, n in counts.get("skipped_by_reason", {}).items())
        tokens = counts.get("selected_tokens")
        lines.append(
            f"counts:          read {counts.get('read', 0):,}, skipped {counts.get('skipped', 0):,}"
            + (f" ({skipped})" if skipped else "")
            + (f", {dropped_words(counts['dropped_by_guard'])}" if counts.get("dropped_by_guard") is not None else "")
            + f", selected {counts.get('selected', 0):,}"
            + (f" holding {tokens:,} tokens" if tokens else "")
        )
    versions = manifest.get("versions", {})
    lines.append("versions:        " + ", ".join(f"{dist} {version}" for dist, version in versions.items()))
    env = manifest.get("environment", {})
    lines.append(f"python:          {env.get('python')} on {env.get('platform')}")
    if manifest.get("replayed_from"):
        lines.append(f"made again from: {manifest['replayed_from']}")
    return lines


def dropped_words(dropped: dict[str, int]) -> str:
    """What the duplicate guard dropped, in words: `dropped 3 as copies, 1 exclude test.txt` (or none)."""
    said = ", ".join(f"{n:,} {'as copies' if why == 'copy' else why}" for why, n in sorted(dropped.items()))
    return f"dropped {said or 'none'}"

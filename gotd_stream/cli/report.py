"""The report command: what a selection did, as index.html (plots embedded) and report.json, or the JSON alone."""

from __future__ import annotations

import os

import click

import gotd_stream as gs
from gotd_stream import manifest as mf
from gotd_stream.cli.manifest import dropped_words
from gotd_stream.cli.options import (
    CONTEXT,
    FORCE,
    InputPath,
    check_outputs,
    common_options,
    display_output,
    log,
    models_of,
    partial_success,
    speaking,
)
from gotd_stream.cli.select import load_checked
from gotd_stream.hf import pick_device
from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.remote import is_url
from gotd_stream.report.html import report_json


@click.command(context_settings=CONTEXT)
@click.argument("selected", type=InputPath(exists=True, dir_okay=False, allow_dash=True, remote=True))
@click.option(
    "-p",
    "--potentials",
    required=True,
    type=InputPath(exists=True, dir_okay=False, remote=True),
    envvar="GOTD_POTENTIALS",
    help="The artifact SELECTED was scored with (others are refused).",
)
@click.option(
    "--pool",
    type=InputPath(exists=True, remote=True),
    help="A sample of the pool SELECTED was drawn from, scored with the artifact: the 'before' of each comparison.",
)
@click.option("--group-field", help="Break the selection and the pool down by this field (source, language, ...).")
@click.option(
    "--reference",
    type=InputPath(exists=True, remote=True),
    help="A sample of the model's pre-training data: is the pool like it, as the method assumes? Needs --pool.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True),
    help="Folder for index.html and report.json (made if missing); with --json the JSON file [default: stdout].",
)
@click.option("--json", "as_json", is_flag=True, help="Write report.json's content alone (stdout or -o FILE).")
@click.option(
    "--examples",
    default=5,
    show_default=True,
    type=click.IntRange(0, 100),
    help="Records shown at each end of the selection and just below its cut.",
)
@click.option(
    "--max-points",
    default=2_000,
    show_default=True,
    type=click.IntRange(min=2),
    help="At most this many points a side in each exact OT distance (time grows with about its cube).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the samples the distances use.")
@FORCE
@common_options
def report(selected, potentials, pool, reference, output, as_json, quiet, **p) -> None:
    """What a selection did, at a glance, before training on it: index.html (plots embedded) and report.json.

    OT distances from the target to the selection, to a sample of the pool and to a random subset of it; the
    scores and lengths of pool and selection; the composition by --group-field; the pool against a sample
    of the pre-training data (--reference); the best and worst kept records and the first ones below the cut.

    \b
      gotd-stream report -p task.gotd selected.jsonl.zst --pool pool-sample.jsonl --group-field src -o report/
      gotd-stream report -p task.gotd selected.jsonl.zst --pool pool-sample.jsonl --json > report.json
    """
    check_report_options(pool, reference, output, as_json)
    skips = gs.Skips(strict=p["strict"], budget=p["max_skipped"])
    models = models_of(p)
    inputs = [path for path in (selected, pool, reference) if path]
    with speaking(quiet):
        if as_json:
            check_outputs({"-o": output or "-"}, inputs, {"-p": potentials})
        else:
            check_folder(output, inputs, potentials)
        artifact, featurizer = load_checked(potentials, models)
        from gotd_stream.features.vectors import Vectors

        field = featurizer.field if isinstance(featurizer, Vectors) else p["text_field"]  # vectors: the fit's field
        settings = gs.ReportSettings(field, p["group_field"], p["examples"], p["max_points"], p["seed"])
        names = {"potentials": potentials, "selected": "<stdin>" if selected == "-" else selected}
        if reference:
            names["reference"] = reference
        recorded, names["manifest"] = selection_manifest(selected)
        device = pick_device(models.device)
        made = gs.build_report(
            selected,
            artifact,
            featurizer,
            settings,
            pool=pool,
            reference=reference,
            skips=skips,
            device=device,
            names=names,
            manifest=recorded,
        )
        wrote = write_made(made, output, as_json)
    summarise(made, skips, wrote, quiet)
    partial_success(p["max_skipped"], skips.total)


def selection_manifest(selected: str) -> tuple[dict | None, str | None]:
    """The manifest `score` or `merge` wrote beside SELECTED (SELECTED.manifest.json), and its path; none: None.
    It holds what the duplicate guard dropped, which the selection's lines cannot."""
    path = None if selected == "-" or is_url(selected) else mf.beside(selected)
    if path is None or not os.path.isfile(path):
        return None, None
    return mf.load(path), path


def check_report_options(pool, reference, output, as_json) -> None:
    """The options that need others: --reference needs --pool; the page needs -o FOLDER, the JSON may go to stdout."""
    if reference and not pool:
        raise click.UsageError("--reference needs --pool: it checks the pool sample against it")
    if not as_json and not output:
        raise click.UsageError("give -o FOLDER for index.html and report.json, or --json for the JSON alone")
    if not as_json and output == "-":
        raise click.UsageError("-o -: the HTML report is a folder; pass --json to write the JSON to stdout")


def write_made(made: dict, output: str | None, as_json: bool) -> str:
    """The report as JSON (to -o or stdout) or as the folder's two files; what was written, in words."""
    if as_json:
        with atomic_output(None if output in (None, "-") else output) as sink:
            sink.write(report_json(made))
        return display_output(output or "-")
    page, data = gs.write_report(output, made)
    return f"{page} and {data}"


def summarise(made: dict, skips, wrote: str, quiet: bool) -> None:
    """report's summary line on stderr, and the reference's warning when there is one."""
    first = made["ot"]["targets"][-1]
    moved = (
        "" if first.get("to_pool") is None else f", random subset {first['to_random']:.4f}, pool {first['to_pool']:.4f}"
    )
    guard = made.get("guard")
    if guard is not None:
        said = "not known (no manifest)" if guard["dropped"] is None else dropped_words(guard["dropped"])
        moved += f"; dedup {guard['dedup']}: {said}"
    log(
        f"report: {made['selection']['records']:,} selected records"
        f"{', pool sample ' + format(made['pool']['records'], ',') if made['pool'] else ''}, {skips.summary()}; "
        f"OT distance to the {first['name']}: selection {first['to_selection']:.4f}{moved}; wrote {wrote}",
        quiet,
    )
    if made["reference"] and made["reference"]["warning"]:
        click.echo(f"warning: {made['reference']['warning']}", err=True)


def check_folder(folder: str, inputs: list[str], potentials: str) -> None:
    """-o FOLDER: a folder (made if missing, in an existing one) whose two files overwrite nothing the run reads;
    a URL: a prefix, whose two objects are checked as any output URL (--force to replace them)."""
    if is_url(folder):
        for name in ("index.html", "report.json"):
            check_outputs({"-o": f"{folder.rstrip('/')}/{name}"}, inputs, {"-p": potentials})
        return
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise click.UsageError(f"-o {folder}: not a folder; the report writes index.html and report.json into one")
    if os.path.isdir(folder):
        for name in ("index.html", "report.json"):
            check_outputs({"-o": os.path.join(folder, name)}, inputs, {"-p": potentials})
        return
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise click.UsageError(f"-o {folder}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.UsageError(f"-o {folder}: no permission to create a folder in {parent}")

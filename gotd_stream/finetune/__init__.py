"""Fine-tune a model on the selected documents: the warm-up (stage 1), then a classifier (stage 2).

    from gotd_stream import finetune
    results = finetune.run(finetune.Settings(data="selected.jsonl.zst", out="ckpt/", max_steps=200))

One idea per module, each importing only those listed above it (tests/test_layout.py checks for cycles):

    settings.py   Settings, and the errors whose messages name settings (UsageProblem)
    models.py     a transformers folder or a GGUF file, the packaged SmolLM2 default, the device
    data.py       texts tokenised, joined and packed into blocks; labelled records
    trainer.py    the loop (AdamW over a seeded Plan) and atomic, resumable checkpoints
    session.py    around the loop: the first checks, the run being resumed, finetune.json
    warmup.py     stage 1: causal or masked LM, (pseudo-)perplexity before and after
    classify.py   stage 2: a classification head, accuracy and macro-F1

The library leaves the terminal to its caller (only a progress bar, on a terminal and unless quiet): it logs to
logging.getLogger("gotd_stream"), returns the results it writes to OUT/finetune.json, and raises UsageProblem,
CheckpointError or Diverged, which the CLI words. torch and transformers are imported inside the functions.
"""

from gotd_stream.finetune.settings import Settings, SettingsMessage, UsageProblem
from gotd_stream.finetune.trainer import CheckpointError, Diverged

__all__ = ["CheckpointError", "Diverged", "Settings", "SettingsMessage", "UsageProblem", "run"]


def run(settings: Settings) -> dict:
    """Run the stage the settings ask for; returns the results written to OUT/finetune.json."""
    if settings.task == "classify":
        from gotd_stream.finetune.classify import run_classify

        return run_classify(settings)
    from gotd_stream.finetune.warmup import run_warmup

    return run_warmup(settings)

"""Fine-tuning on the selected documents: the warm-up stage, the classifier stage, the loop and checkpoints."""

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

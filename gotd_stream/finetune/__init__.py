"""Fine-tuning on the selected documents: the warm-up stage, the classifier stage, the loop and checkpoints."""

from gotd_stream.finetune.trainer import CheckpointError
from gotd_stream.finetune.warmup import Settings, UsageProblem, run

__all__ = ["CheckpointError", "Settings", "UsageProblem", "run"]

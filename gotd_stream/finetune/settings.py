"""The options of a fine-tuning run; the errors whose messages name them live in gotd_stream.errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gotd_stream.errors import SettingsMessage, UsageProblem, as_field, setting

__all__ = ["TRAJECTORY", "Settings", "SettingsMessage", "UsageProblem", "as_field", "setting"]

# Settings that shape the training trajectory: a resumed run must keep them.
TRAJECTORY = (
    "task",
    "lr",
    "batch_size",
    "block_size",
    "seed",
    "warmup_steps",
    "lr_schedule",
    "weight_decay",
    "mlm_probability",
    "text_field",
    "label_field",
)


@dataclass
class Settings:
    """Every option of `gotd-stream finetune`; written to finetune.json as given."""

    data: str
    out: str
    task: str = "warmup"
    model: str | None = None
    eval_data: str | None = None
    objective: str = "auto"
    label_field: str = "label"
    max_steps: int | None = None
    epochs: float | None = None
    lr: float = 5e-5
    batch_size: int = 8
    block_size: int = 128
    seed: int = 0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    mlm_probability: float = 0.15
    text_field: str = "text"
    device: str = "auto"
    save_every: int = 1000
    save_state: bool = True
    resume: bool = False
    strict: bool = False
    max_skipped: int | None = None
    log_every: int = 0
    quiet: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

"""The options of a fine-tuning run; the errors whose messages name them live in gotd_stream.errors."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gotd_stream.errors import SettingsMessage, UsageProblem, as_field, setting

__all__ = ["TRAJECTORY", "SCHEDULES", "Settings", "SettingsMessage", "Training", "UsageProblem", "as_field", "setting"]

SCHEDULES = ("constant", "linear", "cosine")

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


@dataclass(frozen=True)
class Training:
    """How a warm-up from Python trains (gotd_stream.finetune.warmup): the trajectory settings of `Settings`,
    without the files. Refuses values that cannot train on construction, naming the setting.

    One of `max_steps` and `epochs` (neither: one epoch over the blocks of the texts).
    """

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

    def __post_init__(self) -> None:
        def refuse(name: str, rule: str) -> None:
            raise UsageProblem(f"{setting(name)} {getattr(self, name)!r}: {rule}")

        if self.max_steps is not None and self.epochs is not None:
            raise UsageProblem(f"give {setting('max_steps')} or {setting('epochs')}, not both")
        for name, low in (("batch_size", 1), ("block_size", 2), ("warmup_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                refuse(name, f"must be a whole number, at least {low}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            refuse("max_steps", "must be a whole number, at least 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            refuse("seed", "must be a whole number")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            refuse("epochs", "must be a finite number above 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            refuse("lr", "must be a finite number above 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            refuse("weight_decay", "must be a finite number, at least 0")
        if not 0 < self.mlm_probability < 1:
            refuse("mlm_probability", "must lie between 0 and 1 (both excluded)")
        if self.lr_schedule not in SCHEDULES:
            refuse("lr_schedule", f"must be one of {', '.join(SCHEDULES)}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Settings(Training):
    """Every option of `gotd-stream finetune`: the trajectory of a Training, and the files, model and run
    around it; written to finetune.json as given. Checked when it runs (`training()`), not when built, so that a
    run that cannot train says so as the command's own refusal does."""

    data: str
    out: str
    task: str = "warmup"
    model: str | None = None
    eval_data: str | None = None
    objective: str = "auto"
    label_field: str = "label"
    text_field: str = "text"
    device: str = "auto"
    save_every: int = 1000
    save_state: bool = True
    resume: bool = False
    strict: bool = False
    max_skipped: int | None = None
    log_every: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:  # the checks run with the run (training())
        pass

    def training(self) -> Training:
        """The trajectory settings as a Training, which refuses values that cannot train."""
        names = [f.name for f in dataclasses.fields(Training)]
        return Training(**{name: getattr(self, name) for name in names})

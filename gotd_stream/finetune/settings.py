"""The options of a fine-tuning run, and the errors whose messages name them.

A message names a setting with `setting("block_size")`: `str(error)` reads `block_size`, the field of Settings,
and a front end words it its own way (`error.worded(spell)`: the CLI writes `--block-size`). So the library
speaks of settings, and only the command line speaks of flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

MARK = "\x00"  # around a setting's name inside a message; no path or JSON text holds one

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


def setting(name: str, value: bool | None = None) -> str:
    """A setting named in a message: `name`, or `name=False` for a switch turned off (--no-save-state)."""
    return f"{MARK}{name}{'' if value is None else f'={value}'}{MARK}"


def as_field(name: str, value: bool | None = None) -> str:
    """How str() names a setting: as the Settings field (`save_state=False` for a switch off)."""
    return name if value is None else f"{name}={value}"


class SettingsMessage(Exception):
    """An error whose message names settings with `setting()`; str() names them as Settings fields."""

    def worded(self, spell: Callable[[str, bool | None], str]) -> str:
        """The message with each setting as `spell(name, value)` words it (value: None, or False for a switch off)."""
        parts = str(self.args[0] if self.args else "").split(MARK)
        for i in range(1, len(parts), 2):
            name, _, value = parts[i].partition("=")
            parts[i] = spell(name, None if not value else value == "True")
        return "".join(parts)

    def __str__(self) -> str:
        return self.worded(as_field)


class UsageProblem(SettingsMessage):
    """Settings or inputs that cannot work together (the CLI exits 2); the message says what to change."""


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

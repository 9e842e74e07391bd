"""The training loop shared by both fine-tuning stages, and its checkpoints.

A run is a pure function of its settings and data: the batch of step s is a slice of a permutation drawn from
(seed, epoch), the model, optimizer, scheduler, scaler and RNG states are saved with the step, and the
checkpoint folder is swapped into place whole. So a run resumed from any checkpoint ends with the weights of an
uninterrupted run (bit for bit on the CPU), and a crash never leaves half a checkpoint under the final name.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gotd_stream.errors import RuntimeProblem
from gotd_stream.finetune.settings import setting
from gotd_stream.io.outputs import fsync_dir, umask

STATE_DIR = "training_state"  # inside a checkpoint: what --resume needs beyond the model itself
RESULTS = "finetune.json"
MAX_GRAD_NORM = 1.0
RECENT = 10  # the train loss reported is the mean of this many last steps
log = logging.getLogger(__name__)


class CheckpointError(RuntimeProblem):
    """A checkpoint that cannot be read or written; the message names the folder."""


class Diverged(RuntimeProblem, FloatingPointError):
    """The loss stopped being finite: the message says at which step, and which setting to lower."""


@dataclass
class Plan:
    """Which examples each step trains on: the whole schedule follows from the seed and the sizes."""

    examples: int
    batch_size: int
    steps: int
    seed: int
    _perm: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    @classmethod
    def make(cls, examples: int, batch_size: int, seed: int, max_steps: int | None, epochs: float) -> Plan:
        steps = max_steps if max_steps is not None else max(1, math.ceil(epochs * math.ceil(examples / batch_size)))
        return cls(examples, batch_size, steps, seed)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of a step."""
        return divmod(step, self.batches_per_epoch)

    def indices(self, step: int) -> np.ndarray:
        """The example indices of one step; each epoch is its own seeded permutation (no state to carry)."""
        epoch, batch = self.position(step)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.examples))
        return self._perm[1][batch * self.batch_size : (batch + 1) * self.batch_size]


def lr_factor(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each step: linear warm-up, then constant, linear or cosine decay.

    The constant schedule does not depend on the total, so a run extended with --resume stays exact.
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def precision_for(device: str) -> str:
    """bf16 autocast on a GPU that has it, fp16 with a gradient scaler on one that does not, fp32 elsewhere."""
    import torch

    if not device.startswith("cuda"):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@dataclass
class Progress:
    """What has been trained so far; part of the checkpoint, so totals survive a resume."""

    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    recent_losses: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        loss = sum(self.recent_losses) / len(self.recent_losses) if self.recent_losses else None
        return {
            "steps": self.step,
            "tokens": self.tokens,
            "final_loss": loss,
            "tokens_per_s": self.tokens / self.seconds if self.seconds > 0 else None,
            "seconds": round(self.seconds, 3),
        }


class Trainer:
    """AdamW over a Plan with a step function that returns (mean loss, tokens seen) for a batch of indices."""

    def __init__(self, model, plan: Plan, settings: dict, device: str):
        import torch

        self.model, self.plan, self.device = model, plan, device
        self.precision = precision_for(device)
        decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
        other = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": settings["weight_decay"]}, {"params": other, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=settings["lr"])
        factor = lr_factor(settings["lr_schedule"], settings["warmup_steps"], plan.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.generator = torch.Generator().manual_seed(settings["seed"])  # for the step functions (MLM masks)
        self.progress = Progress()

    # -- checkpoint state ------------------------------------------------------------------------------------

    def state(self) -> dict:
        import torch

        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generator": self.generator.get_state(),
        }

    def restore(self, state: dict, progress: dict) -> None:
        import torch

        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when the checkpoint was written without fp16 (CPU, bf16)
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.generator.set_state(state["generator"])
        self.progress = Progress(**progress)

    # -- the loop --------------------------------------------------------------------------------------------

    def run(
        self,
        step_fn: Callable[[Any, np.ndarray, Any], tuple[Any, int]],
        *,
        save: Callable[[], None] | None,
        save_every: int,
        quiet: bool,
        log_every: int,
    ) -> Progress:
        """Train from the current step to the plan's end; save every `save_every` steps (the caller saves last).

        A progress bar on stderr when it is a terminal and not `quiet`; a log record every `log_every` steps.
        """
        import torch

        from gotd_stream.progress import progress

        p = self.progress
        bar = progress(quiet, "finetune", total=self.plan.steps, unit=" steps", initial=p.step)
        self.model.train()
        with bar:
            while p.step < self.plan.steps:
                tick = time.perf_counter()
                with autocast(self.device, self.precision):
                    loss, tokens = step_fn(self.model, self.plan.indices(p.step), self.generator)
                if not torch.isfinite(loss):
                    raise Diverged(f"the loss is {loss.item()} at step {p.step + 1}: lower {setting('lr')}")
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                value = loss.item()  # also waits for the GPU, so the time below is the step's
                p.seconds += time.perf_counter() - tick
                p.step += 1
                p.tokens += tokens
                p.recent_losses = (p.recent_losses + [value])[-RECENT:]
                rate = p.tokens / p.seconds if p.seconds else 0.0
                bar.set_postfix(loss=f"{value:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
                bar.update(1)
                if log_every and p.step % log_every == 0:
                    log.info(
                        "finetune: step %d/%d loss %.4f %s tokens/s", p.step, self.plan.steps, value, f"{rate:,.0f}"
                    )
                if save is not None and save_every and p.step % save_every == 0 and p.step < self.plan.steps:
                    save()
        return p


# -- checkpoints on disk -------------------------------------------------------------------------------------


def holds_checkpoint(out: str) -> bool | None:
    """True when `out` holds one of our checkpoints, False when it is free (missing or empty), None when it
    holds something else, which we must not replace."""
    if os.path.exists(out) and not os.path.isdir(out):
        return None
    if not os.path.isdir(out) or not os.listdir(out):
        return False
    return True if os.path.isfile(os.path.join(out, RESULTS)) else None


def resumable(out: str) -> bool:
    return os.path.isdir(os.path.join(out, STATE_DIR))


def read_results(out: str) -> dict:
    try:
        with open(os.path.join(out, RESULTS), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{out}: cannot read {RESULTS} ({exc})") from None


def read_state(out: str) -> dict:
    """The optimizer, scheduler and RNG states of a checkpoint (torch.load with weights_only: no code runs).

    Loaded to the CPU: RNG states must stay there, and the optimizer moves its own state to its parameters.
    """
    import torch

    path = os.path.join(out, STATE_DIR, "state.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot read the training state ({exc})") from None


def write_checkpoint(out: str, model, tokenizer, results: dict, state: dict | None, extra: dict | None = None) -> None:
    """Write model, tokenizer, results and (unless None) the training state to a temporary folder beside `out`,
    then swap it into place, so that `out` always holds one whole checkpoint: the old one or the new one.

    `extra` maps file names to bytes written into the checkpoint too (classify's predictions).
    """
    import torch

    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=parent)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, data in (extra or {}).items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(data)
        if state is not None:
            os.mkdir(os.path.join(tmp, STATE_DIR))
            torch.save(state, os.path.join(tmp, STATE_DIR, "state.pt"))
        with open(os.path.join(tmp, RESULTS), "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, sort_keys=False)
            fh.write("\n")
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~umask())
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _swap_into_place(tmp: str, out: str) -> None:
    """Rename `tmp` to `out`; an existing `out` is exchanged atomically (Linux renameat2) and then removed."""
    if not os.path.exists(out):
        os.rename(tmp, out)
    elif _exchange(tmp, out):
        shutil.rmtree(tmp)  # now the previous checkpoint
    else:  # no atomic exchange here: a short window in which `out` is missing, the old one kept beside it
        old = tmp + ".old"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old)
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(out))


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported by this kernel or file system
        return False
    raise OSError(err, os.strerror(err), b)

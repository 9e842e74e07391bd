"""What both stages do around the training loop: the first checks, the run being resumed, finetune.json."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

from gotd_stream.finetune.models import ModelSource, load_config, load_tokenizer, resolve_model
from gotd_stream.finetune.settings import TRAJECTORY, Settings, UsageProblem, setting
from gotd_stream.finetune.trainer import (
    STATE_DIR,
    CheckpointError,
    holds_checkpoint,
    read_results,
    resumable,
    write_checkpoint,
)
from gotd_stream.hf import setup_offline
from gotd_stream.io.records import Skips
from gotd_stream.version import __version__


def utc_now() -> str:
    """The time stamps of finetune.json (started, finished)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parameters(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def check_resumable(previous: dict, settings: Settings, data_info: dict, plan_steps: int, objective: str) -> None:
    """A resumed run must be the run it continues: same trajectory settings, same data, same horizon."""
    before = previous.get("settings", {})
    current = settings.as_dict()
    changed = [f"{setting(k)} {before.get(k)!r} -> {current[k]!r}" for k in TRAJECTORY if before.get(k) != current[k]]
    if objective != previous.get("objective"):
        changed.append(f"{setting('objective')} {previous.get('objective')!r} -> {objective!r}")
    if changed:
        raise UsageProblem(
            f"{setting('resume')}: {settings.out} was trained with other settings ({'; '.join(changed)}): use the "
            f"same, or another {setting('out')}"
        )
    if previous.get("data", {}).get("sha256") != data_info["sha256"]:
        raise UsageProblem(
            f"{setting('resume')}: the texts of {data_info['path']} differ from those {settings.out} was trained on "
            f"(sha256 {data_info['sha256'][:12]}… vs {previous.get('data', {}).get('sha256', '?')[:12]}…)"
        )
    done = previous.get("metrics", {}).get("train", {}).get("steps", 0)
    planned = previous.get("plan", {}).get("steps")
    if settings.lr_schedule != "constant" and planned != plan_steps:
        raise UsageProblem(
            f"{setting('resume')}: {settings.out} follows a {settings.lr_schedule} schedule over {planned} steps; "
            f"another horizon ({plan_steps}) would change the steps already taken: keep "
            f"{setting('max_steps')}/{setting('epochs')}, or use {setting('lr_schedule')} constant"
        )
    if done > plan_steps:
        raise UsageProblem(
            f"{setting('resume')}: {settings.out} is already at step {done}, past the {plan_steps} asked for"
        )


def skips_for(settings: Settings) -> Skips:
    return Skips(strict=settings.strict, budget=settings.max_skipped)


class Session(NamedTuple):
    """A run that passed its first checks: the model source, where to load the weights from (the source, or the
    checkpoint being resumed), that checkpoint's finetune.json (or None), the tokenizer and the config."""

    src: ModelSource
    load_from: ModelSource
    previous: dict | None
    tokenizer: Any
    config: Any


def inside(path: str | None, folder: str) -> bool:
    """Whether `path` (a file or a folder, through any link) is `folder` or lies under it."""
    if not path or path == "-":
        return False
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def open_session(settings: Settings) -> Session:
    """Common first checks (inputs, options of the other stage, the checkpoint to resume), then the tokenizer."""
    if settings.data == "-" and settings.eval_data == "-":
        raise UsageProblem(f"{setting('data')} and {setting('eval_data')} cannot both be stdin")
    settings.training()  # refuses values that cannot train, naming the setting
    if settings.task == "warmup" and settings.label_field != "label":
        raise UsageProblem(f"{setting('label_field')} applies to {setting('task')} classify")
    if settings.task == "classify" and settings.objective != "auto":
        raise UsageProblem(f"{setting('objective')} applies to {setting('task')} warmup")
    setup_offline()
    held = holds_checkpoint(settings.out)
    if held is None:
        raise UsageProblem(
            f"{setting('out')} {settings.out} holds something other than a gotd-stream checkpoint: give another"
        )
    for name in ("data", "eval_data", "model"):
        value = getattr(settings, name)
        if held and inside(value, settings.out) and not (name == "model" and settings.resume):
            raise UsageProblem(
                f"{setting(name)} {value} lies inside {setting('out')} {settings.out}, which is replaced when the "
                f"checkpoint is written: copy it elsewhere first, or give another {setting('out')}"
            )
    previous = None
    if settings.resume and held:
        if not resumable(settings.out):
            raise UsageProblem(
                f"{setting('resume')}: {settings.out} holds a final checkpoint without {STATE_DIR}/ (written with "
                f"{setting('save_state', False)}): it cannot be continued"
            )
        previous = read_results(settings.out)
        if previous.get("task") != settings.task:
            raise UsageProblem(
                f"{setting('resume')}: {settings.out} holds a {previous.get('task')} run, not {settings.task}"
            )
    src = resolve_model(settings.model)
    load_from = ModelSource(settings.out, None, src.name) if previous else src
    return Session(src, load_from, previous, load_tokenizer(load_from), load_config(load_from))


def new_results(
    session: Session, settings: Settings, objective: str, model, plan, trainer, device: str, **fields
) -> dict:
    """The finetune.json of a run that has not finished yet; `fields` are the stage's own (data, metrics...)."""
    previous = session.previous
    described = dict(session.src.describe(), parameters=parameters(model), architecture=type(model).__name__)
    return {
        "task": settings.task,
        "objective": objective,
        "model": previous["model"] if previous else described,
        "settings": settings.as_dict(),
        "seed": settings.seed,
        "plan": {"steps": plan.steps, "batches_per_epoch": plan.batches_per_epoch, "examples": plan.examples},
        "device": device,
        "precision": trainer.precision,
        "gotd_stream": __version__,
        "resumed_from_step": trainer.progress.step,
        "finished": None,
        "status": "partial",
        **fields,
    }


def checkpointer(settings: Settings, model, tokenizer, trainer, plan, results: dict) -> Callable[..., None]:
    """save(final, extra): the results with the training progress, and the checkpoint, written atomically."""

    def save(final: bool = False, extra: dict | None = None) -> None:
        p = trainer.progress
        epoch, batch = plan.position(p.step)
        results["metrics"]["train"] = p.summary()
        results["progress"] = dataclasses.asdict(p)
        results["position"] = {"step": p.step, "epoch": epoch, "batch": batch}
        state = trainer.state() if (settings.save_state or not final) else None
        write_checkpoint(settings.out, model, tokenizer, results, state, extra)

    return save


def read_progress(previous: dict) -> dict:
    try:
        return dict(previous["progress"])
    except (KeyError, TypeError):
        raise CheckpointError("the checkpoint's finetune.json has no training progress: it cannot be resumed") from None

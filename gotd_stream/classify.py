"""Stage 2: fine-tune the warmed-up model as a classifier, and score it on held-out labelled records.

Labels come from the training file (strings or integers, kept as they are in JSON). A training or eval record
without the label field is skipped and counted like any bad record; an eval label that training never saw is
an error naming its file and line, since the classifier could never predict it. Accuracy and macro-F1 are
computed here, in a few lines, rather than by a metrics library.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import orjson

from gotd_stream.finetune import (
    ModelSource,
    Settings,
    UsageProblem,
    check_block_size,
    check_resumable,
    checkpointer,
    device_of,
    load_model,
    new_results,
    now,
    read_progress,
    skips_for,
    start,
)
from gotd_stream.records import Skips, read_records
from gotd_stream.streams import display_name

Label = str | int


@dataclass
class Examples:
    """Labelled records: texts, labels, and where each came from (for messages and the predictions file)."""

    texts: list[str]
    labels: list[Label]
    lines: list[int]
    info: dict


def label_of(raw: bytes, field: str) -> tuple[Label | None, str, str]:
    """(label, '', '') for a usable label, else (None, reason, detail) for the skip report."""
    obj = orjson.loads(raw)
    if field not in obj:
        return None, f"missing label field {field!r}", "keys seen: " + (", ".join(list(obj)[:8]) or "none")
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"label field {field!r} not a string or integer", f"got {type(value).__name__}"
    return value, "", ""


def read_examples(path: str, text_field: str, label_field: str, skips: Skips) -> Examples:
    """Every record with a text and a label; the sha256 covers the [text, label] pairs used, one JSON line each."""
    digest = hashlib.sha256()
    texts: list[str] = []
    labels: list[Label] = []
    lines: list[int] = []
    for record in read_records([path], text_field, skips, words=False):
        label, reason, detail = label_of(record.raw, label_field)
        if label is None:
            skips.add(record.name, record.lineno, reason, detail)
            continue
        digest.update(orjson.dumps([record.text, label]) + b"\n")
        texts.append(record.text)
        labels.append(label)
        lines.append(record.lineno)
    info = {
        "path": display_name(path),
        "sha256": digest.hexdigest(),
        "sha256_of": "the [text, label] pairs used, each as a JSON array followed by a newline",
        "records": len(texts),
        "skipped": skips.total,
        "skipped_by_reason": dict(sorted(skips.counts.items())),
    }
    return Examples(texts, labels, lines, info)


def label_order(labels: list[Label]) -> list[Label]:
    """Class ids by sorted label (integers before strings): independent of the order of the file."""
    return sorted(set(labels), key=lambda v: (isinstance(v, str), v))


def accuracy(truth: list, predicted: list) -> float:
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


def per_class_f1(truth: list, predicted: list) -> dict:
    """F1 = 2TP / (2TP + FP + FN) of every class that occurs in the truth or the predictions."""
    scores = {}
    for cls in label_order(list(truth) + list(predicted)):
        tp = sum(t == cls and p == cls for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != cls and p == cls for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == cls and p != cls for t, p in zip(truth, predicted, strict=True))
        scores[cls] = 2 * tp / (2 * tp + fp + fn)
    return scores


def macro_f1(truth: list, predicted: list) -> float:
    """Unweighted mean of the per-class F1 (as sklearn's f1_score(average='macro') with its default labels)."""
    scores = per_class_f1(truth, predicted)
    return sum(scores.values()) / len(scores)


def tokenize(tokenizer, texts: list[str], block_size: int) -> list[list[int]]:
    """Token ids with the model's special tokens, cut to --block-size."""
    out: list[list[int]] = []
    for start_ in range(0, len(texts), 512):
        out.extend(tokenizer(texts[start_ : start_ + 512], truncation=True, max_length=block_size)["input_ids"])
    return out


def collate(rows: list[list[int]], pad_id: int):
    """Right-padded inputs and their attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def predict(model, rows: list[list[int]], labels: list[int], pad_id: int, batch_size: int, device: str, precision):
    """(predicted class ids, mean cross-entropy) over the rows, in order."""
    import torch
    import torch.nn.functional as F

    from gotd_stream.trainer import autocast

    model.eval()
    predicted: list[int] = []
    total = 0.0
    with torch.no_grad(), autocast(device, precision):
        for start_ in range(0, len(rows), batch_size):
            ids, mask = collate(rows[start_ : start_ + batch_size], pad_id)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            target = torch.tensor(labels[start_ : start_ + batch_size], device=device)
            total += F.cross_entropy(logits, target, reduction="sum").item()
            predicted.extend(logits.argmax(dim=-1).tolist())
    model.train()
    return predicted, total / len(rows)


def pad_token(tokenizer, model) -> int:
    """Decoder tokenizers often lack a pad token: use EOS (the classifier reads the last non-pad token)."""
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise UsageProblem("the tokenizer has no pad, EOS or unknown token to pad batches with")
        tokenizer.pad_token = fallback
    model.config.pad_token_id = tokenizer.pad_token_id
    return int(tokenizer.pad_token_id)


def load_classifier(src: ModelSource, classes: list[Label], quiet: bool):
    """A sequence classifier on the model's body, with a fresh head for `classes`."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    id2label = {i: str(c) for i, c in enumerate(classes)}
    names = {"num_labels": len(classes), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if not src.gguf_file:
        return load_model(src, AutoModelForSequenceClassification, quiet, **names)
    # GGUF holds a causal LM: move its body under a new classification head
    lm = load_model(src, AutoModelForCausalLM, quiet)  # already a plain (savable) copy
    config = copy.deepcopy(lm.config)
    for key, value in names.items():
        setattr(config, key, value)
    model = AutoModelForSequenceClassification.from_config(config)
    model.base_model.load_state_dict(lm.base_model.state_dict())
    return model


def run_classify(settings: Settings) -> dict:
    """Stage 2: train a classifier on --data, report accuracy and macro-F1 on --eval-data, save it."""
    import torch

    from gotd_stream.trainer import Plan, Trainer, read_state

    started = now()
    begun = start(settings)
    src, load_from, previous, tokenizer, config = begun
    if config is not None:
        check_block_size(config, settings.block_size, src.path)

    skips = skips_for(settings)
    train = read_examples(settings.data, settings.text_field, settings.label_field, skips)
    if not train.texts:
        raise UsageProblem(f"--data {display_name(settings.data)} holds no usable labelled records ({skips.summary()})")
    classes = label_order(train.labels)
    if previous:
        classes = previous["metrics"]["labels"]
    index = {c: i for i, c in enumerate(classes)}
    if len(classes) < 2:
        raise UsageProblem(
            f"--data {display_name(settings.data)} has one label only ({classes[0]!r}): nothing to learn"
        )
    held = None
    if settings.eval_data:
        eval_skips = skips_for(settings)
        held = read_examples(settings.eval_data, settings.text_field, settings.label_field, eval_skips)
        for label, line in zip(held.labels, held.lines, strict=True):
            if label not in index:
                raise UsageProblem(
                    f"{display_name(settings.eval_data)}:{line}: label {label!r} does not occur in the training data "
                    f"{display_name(settings.data)} (labels: {', '.join(map(repr, classes))})"
                )
        if not held.texts:
            where = display_name(settings.eval_data)
            raise UsageProblem(f"--eval-data {where} holds no usable labelled records ({eval_skips.summary()})")

    plan = Plan.make(len(train.texts), settings.batch_size, settings.seed, settings.max_steps, settings.epochs or 1.0)
    if previous:
        check_resumable(previous, settings, train.info, plan.steps, "classification")

    dev, device_name = device_of(settings.device)
    torch.manual_seed(settings.seed)
    model = load_classifier(load_from, classes, settings.quiet)
    check_block_size(model.config, settings.block_size, src.path)
    pad_id = pad_token(tokenizer, model)
    rows = tokenize(tokenizer, train.texts, settings.block_size)
    targets = [index[c] for c in train.labels]
    tokens_in = sum(map(len, rows))
    model.to(dev)
    trainer = Trainer(model, plan, settings.as_dict(), dev)
    if previous:
        trainer.restore(read_state(settings.out), read_progress(previous))

    def step(model, indices, generator):
        batch = [rows[i] for i in indices]
        ids, mask = collate(batch, pad_id)
        labels = torch.tensor([targets[i] for i in indices], device=dev)
        loss = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=labels).loss
        return loss, int(mask.sum())

    results = new_results(
        begun,
        settings,
        "classification",
        model,
        plan,
        trainer,
        device_name,
        data=dict(train.info, tokens=tokens_in),
        eval_data=held.info if held else None,
        metrics={"labels": classes, "train": None},
        started=started,
    )
    save = checkpointer(settings, model, tokenizer, trainer, plan, results)

    trainer.run(step, save=save, save_every=settings.save_every, quiet=settings.quiet, log_every=settings.log_every)
    extra = None
    if held:
        eval_rows = tokenize(tokenizer, held.texts, settings.block_size)
        truth = [index[c] for c in held.labels]
        predicted, loss = predict(model, eval_rows, truth, pad_id, settings.batch_size, dev, trainer.precision)
        true_labels, predicted_labels = held.labels, [classes[i] for i in predicted]
        f1 = per_class_f1(true_labels, predicted_labels)
        results["eval_data"]["tokens"] = sum(map(len, eval_rows))
        results["metrics"].update(
            accuracy=accuracy(true_labels, predicted_labels),
            macro_f1=sum(f1.values()) / len(f1),
            per_label_f1=[{"label": c, "f1": v} for c, v in f1.items()],
            eval_loss=loss,
            eval_records=len(truth),
            chance=float(np.bincount(truth).max() / len(truth)),
        )
        lines = [
            orjson.dumps({"line": line, "label": t, "predicted": p})
            for line, t, p in zip(held.lines, true_labels, predicted_labels, strict=True)
        ]
        extra = {"predictions.jsonl": b"\n".join(lines) + b"\n"}
    results["finished"], results["status"] = now(), "complete"
    save(final=True, extra=extra)
    return results

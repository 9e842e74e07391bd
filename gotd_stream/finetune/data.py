"""The data of both stages: texts tokenised, joined and packed into blocks (warm-up); labelled texts (classify).

Reading goes through gotd_stream.io.records, so bad records are counted and skipped as everywhere else; each
input's sha256 covers what was used of it, so a resumed run can check it trains on the same data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import orjson

from gotd_stream.finetune.settings import UsageProblem
from gotd_stream.io.records import Skips, read_records
from gotd_stream.io.streams import display_name

TOKENIZE_BATCH = 512  # texts per tokenizer call

Label = str | int


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
        parts.extend(joinable(tokenizer, batch, sep_id))
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


def joinable(tokenizer, texts: list[str], sep_id: int) -> list[np.ndarray]:
    """Each text's token ids (no special tokens) followed by `sep_id`, as int32 (half the memory of int64)."""
    return [
        np.asarray([*ids, sep_id], dtype=np.int32) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
    ]


def join_texts(tokenizer, texts: list[str], sep_id: int) -> np.ndarray:
    """The texts tokenised and joined as read_tokens joins a file's records (in batches of TOKENIZE_BATCH)."""
    parts: list[np.ndarray] = []
    for first in range(0, len(texts), TOKENIZE_BATCH):
        parts.extend(joinable(tokenizer, texts[first : first + TOKENIZE_BATCH], sep_id))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


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


def tokenize(tokenizer, texts: list[str], block_size: int) -> list[list[int]]:
    """Token ids with the model's special tokens, cut to --block-size."""
    out: list[list[int]] = []
    for first in range(0, len(texts), TOKENIZE_BATCH):
        out.extend(
            tokenizer(texts[first : first + TOKENIZE_BATCH], truncation=True, max_length=block_size)["input_ids"]
        )
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

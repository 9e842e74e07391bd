"""Tokenising, the same code inline and in the worker processes, and how many workers to start.

Texts are first cut at a whitespace before `TIGHT_CHARS_PER_TOKEN` characters per token: a tokenizer that splits
words at whitespace first gives the cut text exactly the first tokens of the whole text, so when the cut text
still fills the model's window its tokens are the ones the model would see anyway. The rare text that does not
(long words, no spaces) is tokenised again from the usual 16-characters-per-token cut. This spares the tokenizer
the part of a long document the model truncates away. Tokenizers that do not split at whitespace first skip the
tight cut.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

TIGHT_CHARS_PER_TOKEN = 6  # MiniLM's tokens span 3.7 characters (median) to 5.4 (99th pct.) of the real pool
CHUNK_DOCS = 256  # texts per job sent to a tokenizer worker
MAX_WORKERS = 12


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(device: str) -> int:
    """Tokenizer processes by default: none on the CPU (the forward pass is the bottleneck and needs the cores),
    on a GPU host all cores but three (the reader, the packer and the forward thread), at most MAX_WORKERS."""
    if not device.startswith("cuda"):
        return 0
    return max(1, min(MAX_WORKERS, cpu_count() - 3))


def bag_workers() -> int:
    """Tokenizer processes by default for a static model, on any device: the tokenizer (and the lexical half of
    the hybrid space) is then the whole cost, so all cores but one (the reader and the scoring), and two on two
    cores (faster there than one: README, *Throughput*), at most MAX_WORKERS; none on one core, and none under a
    script that would run again in each worker (spawn_is_safe)."""
    cores = cpu_count()
    if cores < 2 or not spawn_is_safe():
        return 0
    return min(MAX_WORKERS, max(2, cores - 1))


def spawn_is_safe() -> bool:
    """Whether worker processes can start here without running the main script again: a spawned worker imports the
    main script, so one without an `if __name__ == "__main__":` guard would run everything twice (and fail).
    The command line, python -m, notebooks and guarded scripts are safe; `workers=N` is obeyed anyway."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None:  # an interactive session or a notebook: nothing to import again
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "__main__" in fh.read()
    except OSError:
        return False


@dataclass(frozen=True)
class TokenizerSpec:
    """All a worker needs to tokenise exactly as the model's own fast tokenizer does (picklable, small)."""

    json: str  # the tokenizers.Tokenizer, serialised
    max_tokens: int
    direction: str  # truncation side
    tight_chars: int  # first cut, at a whitespace; 0: no tight cut
    full_chars: int  # the usual cut (CHARS_PER_TOKEN per token)
    types: bool  # whether token type ids are needed and not all zero for one text
    special_tokens: bool = True  # [CLS]/[SEP] and the like; a StaticEmbedding tokenises without them


@dataclass
class Chunk:
    """Token ids of some texts, flat, with their lengths; and the side features of the same texts."""

    ids: np.ndarray  # int32, all texts' ids one after the other
    lengths: np.ndarray  # int32, tokens per text
    types: np.ndarray | None  # int8 like ids, when the model needs non-zero token type ids
    side: np.ndarray | None  # (texts, d) float32 rows of the side featurizer


class Tokenize:
    """Texts -> Chunk, exactly as the model's tokenizer with truncation to max_tokens and no padding."""

    def __init__(self, spec: TokenizerSpec, side: Any = None):
        from tokenizers import Tokenizer

        self.spec, self.side = spec, side
        self.tokenizer = Tokenizer.from_str(spec.json)
        self.tokenizer.enable_truncation(spec.max_tokens, direction=spec.direction)
        self.tokenizer.no_padding()
        # encode_batch_fast skips the character offsets we do not use; older tokenizers lack it
        self.encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self.words = None  # the exact fast path for the usual texts of a BERT-like tokenizer (static models)
        if not spec.special_tokens:
            from gotd_stream.features.wordpiece import WordPieceWords

            self.words = WordPieceWords.for_tokenizer(self.tokenizer)

    def tokens(self, texts: list[str]) -> list:
        spec = self.spec
        tight, full = spec.tight_chars, spec.full_chars
        cut: list[str] = []
        tight_cut: list[int] = []
        for i, text in enumerate(texts):
            if tight and len(text) > tight:
                at = max(text.rfind(" ", 0, tight + 1), text.rfind("\n", 0, tight + 1))
                if at > 0:
                    cut.append(text[:at])
                    tight_cut.append(i)
                    continue
            cut.append(text[:full])
        special = spec.special_tokens
        encodings = self.encode_batch(cut, add_special_tokens=special)
        # a tight cut that does not fill the model's window may have left tokens out: tokenise the usual cut
        redo = [i for i in tight_cut if len(encodings[i]) < spec.max_tokens]
        if redo:
            again = self.encode_batch([texts[i][:full] for i in redo], add_special_tokens=special)
            for i, encoding in zip(redo, again, strict=True):
                encodings[i] = encoding
        return encodings

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids: through the fast path where it applies, the tokenizer for the rest."""
        if self.words is None:
            return [e.ids for e in self.tokens(texts)]
        full, limit = self.spec.full_chars, self.spec.max_tokens
        ids = [self.words.ids(text[:full], limit) for text in texts]
        rest = [i for i, row in enumerate(ids) if row is None]
        if rest:
            for i, encoding in zip(rest, self.tokens([texts[i] for i in rest]), strict=True):
                ids[i] = encoding.ids
        return ids

    def __call__(self, texts: list[str]) -> Chunk:
        if self.words is not None:
            rows = self.ids(texts)
            lengths = np.fromiter(map(len, rows), np.int32, len(rows))
            ids = np.fromiter(chain.from_iterable(rows), np.int32, int(lengths.sum()))
            side = self.side.encode(texts) if self.side is not None else None
            return Chunk(ids, lengths, None, side)
        encodings = self.tokens(texts)
        lengths = np.fromiter(map(len, encodings), np.int32, len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int32, total)
        types = None
        if self.spec.types:
            types = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), np.int8, total)
        side = self.side.encode(texts) if self.side is not None else None
        return Chunk(ids, lengths, types, side)


_WORKER: Tokenize | None = None


def splits_at_whitespace(tokenizer_json: str) -> bool:
    """Whether the tokenizer's pre-tokenizer cuts words at whitespace before anything else looks at them, so that
    the tokens of a text cut at a whitespace are the first tokens of the whole text."""
    import json

    def splits(pre: dict | None) -> bool:
        if not pre:
            return False
        kind = pre.get("type")
        if kind in ("BertPreTokenizer", "Whitespace", "WhitespaceSplit"):
            return True
        if kind == "ByteLevel":
            return bool(pre.get("use_regex", True))
        if kind == "Metaspace":
            return pre.get("split", True) is not False
        if kind == "Sequence":
            return any(splits(p) for p in pre.get("pretokenizers", []))
        return False

    return splits(json.loads(tokenizer_json).get("pre_tokenizer"))


def init_worker(spec: TokenizerSpec, side: Any) -> None:
    """A worker process's start: its tokenizer and side featurizer, made once."""
    global _WORKER
    _WORKER = Tokenize(spec, side)


def warm_up() -> None:
    """A job that only makes the pool start a worker (its initializer runs first)."""


def tokenize_job(texts: list[str]) -> Chunk:
    """One job of a worker process: its texts tokenised (and their side features)."""
    assert _WORKER is not None
    return _WORKER(texts)


def concat_chunks(chunks: list[Chunk]) -> Chunk:
    """The chunks of one window as one, in order."""
    if len(chunks) == 1:
        return chunks[0]
    types = [c.types for c in chunks]
    side = [c.side for c in chunks]
    return Chunk(
        np.concatenate([c.ids for c in chunks]),
        np.concatenate([c.lengths for c in chunks]),
        np.concatenate(types) if types[0] is not None else None,
        np.concatenate(side) if side[0] is not None else None,
    )

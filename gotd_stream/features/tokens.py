"""Counting tokens: what a token budget and a chunk are measured in.

A warm-up reads tokens, not documents, so budgets (`score --tokens`) and chunks (`--unit chunk`) count them.
The default counter is the embedding model's own tokenizer (the packaged all-MiniLM-L6-v2's WordPiece unless
`--model` names another folder) on the whole text, never truncated, without special tokens. `estimate` is a
fast, model-free stand-in: each whitespace-separated word counts one token per 4 characters, rounded up (so a
short word is one token, as under real tokenizers). Any folder (or file) with a Hugging Face `tokenizer.json`
names another tokenizer, e.g. the one of the model that will be warmed up.

A piece of `--unit chunk` never counts more than its size in these tokens: select.units packs words by their
counts (which add up over whitespace-separated words for WordPiece and the estimate, nearly for byte-level BPE,
where runs of spaces and tabs are tokens too), then counts each piece whole and cuts again where it is over.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gotd_stream.errors import UsageProblem, setting

if TYPE_CHECKING:
    from gotd_stream.features.wordpiece import WordPieceWords

ESTIMATE = "estimate"
CHARS_PER_TOKEN = 4


class TokenizerError(UsageProblem):
    """The tokenizer named for counting cannot be loaded."""


class Estimate:
    """Per whitespace-separated word, ceil(characters / 4): about right for English, and free."""

    name = f"{ESTIMATE} (characters / {CHARS_PER_TOKEN} per word)"
    additive = True  # a text's count is the sum of its words' counts

    def count(self, texts: list[str]) -> np.ndarray:
        step = CHARS_PER_TOKEN - 1
        counts = (sum((len(w) + step) // CHARS_PER_TOKEN for w in t.split()) for t in texts)
        return np.fromiter(counts, dtype=np.int64, count=len(texts))


class Tokenizer:
    """A Hugging Face fast tokenizer, untruncated and unpadded, without special tokens."""

    def __init__(self, path: Path, name: str):
        from tokenizers import Tokenizer as HFTokenizer

        file = path if path.is_file() else path / "tokenizer.json"
        try:
            self._tok = HFTokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises plain Exceptions for missing or damaged files
            raise TokenizerError(
                f"{setting('tokenizer')} {path}: cannot load {file.name} ({str(exc).splitlines()[0][:200]}); "
                f"give a folder with a tokenizer.json, or {ESTIMATE}"
            ) from None
        self._tok.no_truncation()
        self._tok.no_padding()
        self.additive = _additive(self._tok)
        self.name = name
        self._path = path
        self._words: WordPieceWords | None | bool = False  # made on first use (False: not yet looked at)

    def __reduce__(self):
        """Pickled as its path (a few bytes, not the vocabulary): a Ray actor's arguments must stay small, or Ray
        keeps them in its object store, where a restarted actor may no longer find them."""
        return (Tokenizer, (self._path, self.name))

    def starts(self, text: str) -> list[int]:
        """The character offset at which each token of `text` starts: its count and where its words' tokens lie,
        from one encoding (select.units cuts pieces with it)."""
        return [start for start, _ in self._tok.encode(text, add_special_tokens=False).offsets]

    def word_counts(self, text: str) -> list[int] | None:
        """The token count of each whitespace-separated word of `text` (str.split's words), which add up to the
        text's own count; None when only the tokenizer itself can tell (select.units then encodes the text).

        For a BERT-like tokenizer and the usual texts (features.wordpiece: the known characters, no added token
        written out) a word's tokens do not depend on its neighbours, so each distinct word is counted once
        (a bounded cache): select.units cuts pieces from these counts, the same ones one encoding would give,
        at a fraction of the tokenizer's cost (its normaliser tracks every character's alignment)."""
        words = self._words
        if words is False:
            from gotd_stream.features.wordpiece import WordPieceWords

            words = self._words = WordPieceWords.for_tokenizer(self._tok)
        return None if words is None else words.word_counts(text)

    def count(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.int64)
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts))


# Pipelines whose count of a text is exactly the sum of the counts of its whitespace-separated words: a normaliser
# that works character by character, a pre-tokenizer that splits at whitespace first, and WordPiece, which
# tokenizes each pre-token alone (byte-level BPE is not: a word counts differently with the space before it)
_PER_WORD = {
    "model": {"WordPiece"},
    "normalizer": {None, "BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"},
    "pre_tokenizer": {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"},
}


def _additive(tok) -> bool:
    """Whether `tok` counts words independently (see _PER_WORD), from its own description."""
    import json

    try:
        spec = json.loads(tok.to_str())
    except Exception:  # a tokenizer that cannot describe itself: count pieces whole
        return False
    for part, kinds in _PER_WORD.items():
        described = spec.get(part)
        kind = described.get("type") if isinstance(described, dict) else None
        if kind not in kinds:
            return False
    return True


def token_counter(spec: str | None = None, model: str | None = None):
    """The counter `spec` names: None for the embedding model's tokenizer (`model`, a sentence-transformers
    folder, or the packaged default), `estimate`, or a folder or tokenizer.json file of any tokenizer."""
    if spec == ESTIMATE:
        return Estimate()
    if spec is None:
        from gotd_stream.features.semantic import resolve_model

        folder, display = resolve_model(model)
        return Tokenizer(Path(folder), f"the tokenizer of {display}")
    path = Path(spec)
    if not path.exists():
        raise TokenizerError(f"{setting('tokenizer')} {spec}: no such file or folder; give a tokenizer or {ESTIMATE}")
    return Tokenizer(path, f"the tokenizer in {spec}")

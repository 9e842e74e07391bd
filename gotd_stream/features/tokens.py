"""Counting tokens: what a token budget and a chunk are measured in.

A warm-up reads tokens, not documents, so budgets (`score --tokens`) and chunks (`--unit chunk`) count them.
The default counter is the embedding model's own tokenizer (the packaged all-MiniLM-L6-v2's WordPiece unless
`--model` names another folder) on the whole text, never truncated, without special tokens. `estimate` is a
fast, model-free stand-in: each whitespace-separated word counts one token per 4 characters, rounded up (so a
short word is one token, as under real tokenizers). Any folder (or file) with a Hugging Face `tokenizer.json`
names another tokenizer, e.g. the one of the model that will be warmed up.

Both counts add up over whitespace-separated words (WordPiece splits at whitespace first), which is what lets
`--unit chunk` cut pieces of an exact size; a byte-level BPE tokenizer can count a piece a token or two over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gotd_stream.errors import UsageProblem, setting

ESTIMATE = "estimate"
CHARS_PER_TOKEN = 4


class TokenizerError(UsageProblem):
    """The tokenizer named for counting cannot be loaded."""


class Estimate:
    """Per whitespace-separated word, ceil(characters / 4): about right for English, and free."""

    name = f"{ESTIMATE} (characters / {CHARS_PER_TOKEN} per word)"

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
        self.name = name
        self._path = path

    def __reduce__(self):
        """Pickled as its path (a few bytes, not the vocabulary): a Ray actor's arguments must stay small, or Ray
        keeps them in its object store, where a restarted actor may no longer find them."""
        return (Tokenizer, (self._path, self.name))

    def count(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.int64)
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts))


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

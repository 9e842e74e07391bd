"""Exact token ids of a lower-casing BERT WordPiece tokenizer, about five times faster, for the usual texts.

A static model's embedding is a mean of token rows, so its tokenizer is the whole cost of embedding on a CPU
(about 100 us for a 220-character text with the Rust tokenizer of all-MiniLM-L6-v2, mostly in its normaliser
and pre-tokeniser, which track every character's alignment). For such a tokenizer the ids of a text are the
WordPiece pieces of its words in order, and a word's pieces do not depend on its neighbours, so:

- a text made only of characters whose handling is known (printable ASCII, tab, newline, carriage return, and
  the punctuation and spaces checked against this very tokenizer when it is loaded: curly quotes, dashes, the
  ellipsis, the no-break space, ...) is lower-cased and cut into words here (runs of [a-z0-9]; every other
  character alone; whitespace between), exactly as the normaliser and pre-tokeniser would;
- a word's pieces come from the tokenizer's own WordPiece model, once per distinct word (a bounded cache);
- any other text (accents, other scripts, control characters, an added token such as "[UNK]" written out)
  returns None, and the caller tokenises it with the tokenizer itself.

`WordPieceWords.for_tokenizer` returns None for any other kind of tokenizer. The tests compare both paths on
texts built to hit every rule; the engine also checks a few probes at start-up.
"""

from __future__ import annotations

import json
import re
import unicodedata
from itertools import chain, islice

CACHE_WORDS = 1 << 18  # distinct words remembered; the cache starts again when full (memory stays bounded)
WORD = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")  # on known characters: a word, or one punctuation character
# Characters outside ASCII that texts often hold; each is used only if this tokenizer treats it as the ASCII rule
# for its kind does (punctuation alone, space between words), which for_tokenizer checks.
PUNCTUATION = "‘’‚‛“”„‟–—―‐‑‒…•·′″‹›«»¡¿§¶†‡※‰€£¥¢©®™°±×÷"
SPACES = "\u00a0\u2002\u2003\u2009\u200a\u202f\u205f\u3000"
EXPECTED = {
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
}


class WordPieceWords:
    """Token ids of the texts it knows how to cut (see the module docstring), None for the others."""

    def __init__(self, tokenizer, punctuation: str, spaces: str):
        known = re.escape("".join(sorted(punctuation + spaces)))
        self.known = re.compile(rf"[\x20-\x7e\t\n\r{known}]*")
        added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
        # the tokenizer finds its added tokens in the raw text before anything else: leave those texts to it
        self.added = re.compile("|".join(map(re.escape, added)), re.IGNORECASE) if added else None
        self.pieces = Pieces(tokenizer.model)
        self.counts = Counts(self.pieces)

    @classmethod
    def for_tokenizer(cls, tokenizer) -> WordPieceWords | None:
        """The fast path for a tokenizers.Tokenizer that lower-cases and cuts like BERT, else None."""
        spec = json.loads(tokenizer.to_str())
        normalizer, pre = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}
        if any(normalizer.get(k) != v for k, v in EXPECTED["normalizer"].items()):
            return None
        if normalizer.get("strip_accents") not in (None, True) or pre != EXPECTED["pre_tokenizer"]:
            return None
        if (spec.get("model") or {}).get("type") != "WordPiece":
            return None
        punctuation = "".join(c for c in PUNCTUATION if _alone(tokenizer, c))
        spaces = "".join(c for c in SPACES if _space(tokenizer, c))
        return cls(tokenizer, punctuation, spaces)

    def knows(self, text: str) -> bool:
        """Whether `text` is one this fast path cuts as the tokenizer does (else the tokenizer must do it)."""
        return self.known.fullmatch(text) is not None and (self.added is None or not self.added.search(text))

    def ids(self, text: str, max_tokens: int) -> list[int] | None:
        """The first `max_tokens` ids of `text` without special tokens, or None: the tokenizer must do it."""
        if not self.knows(text):
            return None
        pieces = map(self.pieces.__getitem__, WORD.findall(text.lower()))
        return list(islice(chain.from_iterable(pieces), max_tokens))

    def word_counts(self, text: str) -> list[int] | None:
        """The token count of each whitespace-separated word of `text` (str.split's), or None: the tokenizer must
        do it. A word's tokens do not depend on its neighbours here, so each distinct word is counted once."""
        if not self.knows(text):
            return None
        return list(map(self.counts.__getitem__, text.split()))


class Pieces(dict):
    """word -> its WordPiece ids, from the tokenizer's own model, computed on first sight; bounded."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def __missing__(self, word: str) -> list[int]:
        if len(self) >= CACHE_WORDS:
            self.clear()
        pieces = self[word] = [token.id for token in self.model.tokenize(word)]
        return pieces


class Counts(dict):
    """whitespace-separated word -> its token count (the sum of its WORD parts' pieces), on first sight; bounded."""

    def __init__(self, pieces: Pieces):
        super().__init__()
        self.pieces = pieces

    def __missing__(self, word: str) -> int:
        if len(self) >= CACHE_WORDS:
            self.clear()
        n = self[word] = sum(len(self.pieces[part]) for part in WORD.findall(word.lower()))
        return n


def _alone(tokenizer, char: str) -> bool:
    """Whether the tokenizer keeps `char` as it is and cuts it off as a word of its own, like ASCII punctuation."""
    if unicodedata.category(char)[0] not in "PS" or char.lower() != char:
        return False
    if tokenizer.normalizer.normalize_str(f"a{char}b") != f"a{char}b":
        return False
    return [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(f"a{char}b")] == ["a", char, "b"]


def _space(tokenizer, char: str) -> bool:
    """Whether the tokenizer reads `char` as a space between words."""
    return char.isspace() and tokenizer.normalizer.normalize_str(f"a{char}b") == "a b"

"""What counts as a word, and the rule that a text without one is no document in any space.

Below io/, features/ and select/, so that the reader that skips such texts, the lexical space that hashes the
words and the chunking that drops a piece without one all apply the same rule. No imports beyond `re`.
"""

from __future__ import annotations

import re

CHAR_BUDGET = 4096  # characters of a text the lexical space reads (the semantic one: 16 per token)
WORD = re.compile(r"\w+")  # a word of the lexical space; a text without one is no document in any space


def wordless(text: str) -> str | None:
    """Why `text` gives no features, or None when it has a word (a letter, digit or underscore: regex \\w).

    Only the first CHAR_BUDGET characters count, the part the lexical space reads. Without a word there, the
    lexical space has no n-gram and gives a zero vector, which scores near the top; the semantic model would
    embed the bare punctuation. So such a text is not a document in any space: it is skipped, as "no words".
    """
    if WORD.search(text, 0, CHAR_BUDGET):
        return None
    if not text.strip():
        return "the text is empty" if not text else "the text is only whitespace"
    where = f" in its first {CHAR_BUDGET:,} characters" if len(text) > CHAR_BUDGET else ""
    return "only punctuation or symbols" + where

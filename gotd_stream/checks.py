"""Checks of values read from a file's JSON header, which, damaged, can hold anything.

Below select/ and features/: the artifact checks its own fields with them, and each feature space its fields.
"""

from __future__ import annotations

import math


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite JSON number (not a boolean; an integer too large for a float is not finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_count(value) -> bool:
    return is_int(value) and value >= 0


def brief(value, limit: int = 60) -> str:
    """repr, cut short: a damaged header can hold anything."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Vectors as record fields: a field that holds a precomputed embedding, and the checks each value passes.

The vectors space (features.vectors) scores embeddings computed elsewhere (CLIP for images, a speech model for
audio). Read through a `VectorField`, a record's text is its vector as compact JSON (a list of numbers), so the
rest of the pipeline (windows, --state, merge, Ray) carries it as any text; a value that cannot be a row is a
skipped record with its reason, never a crash. numpy only inside the functions (the CLI imports io).
"""

from __future__ import annotations

import math
import re

MIN_NORM = 1e-6  # a vector shorter than this has no direction worth trusting: "zero norm"
FLOAT32_MAX = 3.4028234663852886e38  # rows are float32, as in every space: a larger value is not finite there

# The skip reasons of a bad vector (those that name the field are built by missing() and not_a_list())
WRONG_WIDTH = "vector of the wrong width"
NOT_FINITE = "vector not finite"
ZERO_NORM = "vector of zero norm"
_NUMBERS = re.compile(r"\[[-+0-9.eE,]+\]")  # orjson's JSON of a non-empty list of finite numbers, nothing else


class VectorField(str):
    """The name of a field that holds a vector, and the width its vectors must have (None: any width).

    A str naming the field, so that it goes wherever a text field goes (the settings, a Ray task, a --state
    header, a dotted path into nested objects); io.records reads through it the vector as the record's text
    (`vector_text`), where no words rule applies.
    """

    width: int | None

    def __new__(cls, name: str, width: int | None = None):
        field = super().__new__(cls, name)
        field.width = width
        return field

    def __reduce__(self):
        return (VectorField, (str(self), self.width))

    def __repr__(self) -> str:
        return str.__repr__(self)  # messages name the field as they would a text field


def missing(field: str) -> str:
    return f"missing vector field {str(field)!r}"


def not_a_list(field: str) -> str:
    return f"vector field {str(field)!r} not a list of numbers"


def vector_text(value, field: VectorField) -> str | tuple[str, str]:
    """The vector as compact JSON (each number exactly as read), or (reason, detail) why it cannot be a row:
    not a list of numbers, the wrong width, a value not finite in float32 (JSON null: a NaN as most writers put
    it), or a norm below MIN_NORM."""
    import numpy as np
    import orjson

    if not isinstance(value, list) or not value:
        got = "an empty list" if isinstance(value, list) else f"got {_kind(value)}"
        return not_a_list(field), got
    try:
        text = orjson.dumps(value).decode()  # finite floats and ints as they were: the round trip is exact
    except TypeError:  # an integer past 64 bits (or a value JSON cannot hold): the standard library's JSON
        import json

        try:
            text = json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError):
            return _not_numbers(value, field)
    if not _NUMBERS.fullmatch(text):
        return _not_numbers(value, field)
    if field.width is not None and len(value) != field.width:
        return WRONG_WIDTH, f"{len(value):,} numbers where the fit's vectors have {field.width:,}"
    try:
        x = np.asarray(value, np.float64)
    except OverflowError:  # an integer beyond any float
        return NOT_FINITE, "a number beyond float64"
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        i = int(np.flatnonzero(~np.isfinite(x32))[0])
        return NOT_FINITE, f"number {i + 1} ({value[i]!r}) is beyond float32"
    norm = math.sqrt(float(np.square(x32.astype(np.float64)).sum()))
    if norm < MIN_NORM:
        return ZERO_NORM, f"norm {norm:.3g} (below {MIN_NORM:g})"
    return text


def _not_numbers(value: list, field: VectorField) -> tuple[str, str]:
    """Why a list's JSON is not all finite numbers: the first item that is not one."""
    for i, item in enumerate(value):
        if item is None:
            return NOT_FINITE, f"number {i + 1} is null (a NaN, as JSON writers put it)"
        if isinstance(item, float) and not math.isfinite(item):
            return NOT_FINITE, f"number {i + 1} is {item!r}"
        if type(item) not in (int, float):
            return not_a_list(field), f"item {i + 1} is {_kind(item)}"
        if abs(item) > FLOAT32_MAX:
            return NOT_FINITE, f"number {i + 1} is beyond float32"
    return not_a_list(field), "a value JSON writes oddly"  # not met: orjson writes numbers as the pattern says


def _kind(value) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def vector_width(text: str) -> int:
    """The width of a vector as `vector_text` wrote it (numbers and commas only)."""
    return text.count(",") + 1

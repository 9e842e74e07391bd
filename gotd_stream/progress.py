"""The one progress bar: on stderr, only when stderr is a terminal and the caller is not quiet, throttled."""

from __future__ import annotations

import sys


def progress(quiet: bool, desc: str, total: int | None = None, unit: str = " docs", initial: int = 0):
    """A tqdm bar on stderr (stdout is for data), silent when stderr is not a terminal or when `quiet`."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        unit_scale=unit == " docs",
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        mininterval=1.0,
        dynamic_ncols=True,
    )

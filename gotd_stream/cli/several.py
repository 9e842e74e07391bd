"""Several targets on the command line: checking --target NAME=FILE:WEIGHT, and the words of the summaries."""

from __future__ import annotations

from gotd_stream.select.targets import check_targets


def checked_targets(targets) -> tuple[list, bool]:
    """The --target values ready to fit (names unique, weights normalised) and whether they were normalised."""
    return check_targets(list(targets))


def target_reads(targets: list) -> dict[str, str]:
    """The target files by the flag that names them, for the check that no output overwrites one."""
    if len(targets) == 1:
        return {"--target": targets[0].path}
    return {f"--target {t.name}=": t.path for t in targets}


def described_targets(targets: list, normalised: bool) -> str:
    """', targets a 0.7, b 0.3' for a summary line (nothing for one target), saying when weights were normalised."""
    if len(targets) <= 1:
        return ""
    listed = ", ".join(f"{t.name} {t.weight:.4g}" for t in targets)
    return f", targets {listed}" + (" (weights normalised to sum to 1)" if normalised else "")


def described_selection(written: int, shares: dict[str, int], candidates: bool) -> str:
    """'selected 1,000 (a 700, b 300)', or the candidates written for a merge."""
    if candidates:
        return f"wrote {written:,} candidates for `merge -p`"
    counted = f" ({', '.join(f'{name} {n:,}' for name, n in shares.items())})" if shares else ""
    return f"selected {written:,}{counted}"

"""The duplicate guard's settings, without numpy: the command line reads them for --help (select.dedup is the
guard itself)."""

MODES = ("near", "exact", "off")
# What `score` does by default. Off for now: the planted-duplicates benchmark (bench/web.py) finds every selected
# group kept two or more times without the guard. A plain selection (no --candidates) carries nothing a merge needs
# to stay exact under the guard; its lines carry the guard's tag (gotd_guard) and `merge` refuses them (exit 2,
# select.keep.GuardedSelection), so turning the guard on by default would make today's
# `score -o part; merge part*` pipelines fail, saying to score with --candidates or --state, never inexact.
DEFAULT_DEDUP = "off"
DEFAULT_THRESHOLD = 0.7  # the estimated containment of word 2-grams at which two texts are copies (select.dedup)
DEFAULT_MARGIN = 0.5  # spare eligible units a keeper holds, a share of the budget

__all__ = ["DEFAULT_DEDUP", "DEFAULT_MARGIN", "DEFAULT_THRESHOLD", "MODES"]

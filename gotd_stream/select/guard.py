"""The duplicate guard's settings, without numpy: the command line reads them for --help (select.dedup is the
guard itself)."""

MODES = ("near", "exact", "off")
# What `score` does by default: the near rule. On the planted-duplicates pool (bench/web.py, BENCHMARKS.md "Web-like
# pools") every selected group was kept two or more times without the guard and none with it, the warm-up not
# worse than the unguarded one's beyond the seed spread. A plain guarded selection written to a file merges exactly
# through the prefix file beside it (select.dedup.PREFIX_SUFFIX); one written to stdout only from --candidates or
# --state.
DEFAULT_DEDUP = "near"
DEFAULT_THRESHOLD = 0.6  # the estimated containment of word 2-grams at which two texts are copies (select.dedup)
DEFAULT_MARGIN = 0.5  # spare eligible units a keeper holds, a share of the budget

__all__ = ["DEFAULT_DEDUP", "DEFAULT_MARGIN", "DEFAULT_THRESHOLD", "MODES"]

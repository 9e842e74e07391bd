"""Slurm job arrays and other static splits: each task's share of the inputs, and the merge of their state folders.

A task with `index` I of `count` N takes a fixed, contiguous block of the inputs sorted by absolute path, so
`sbatch --array=0-(N-1)` runs one command line unchanged in every task, and the tasks' outputs, merged in task
order, or their state folders, merged in any order, equal one run over the sorted inputs byte for byte.
"""

from __future__ import annotations

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.select.executors import share, sorted_inputs  # the share is the Share executor's own rule

__all__ = ["FoldersDisagree", "check_budget", "merge_inputs", "share", "sorted_inputs"]


class FoldersDisagree(UsageProblem):
    """State folders that do not merge: other artifacts or text fields, too small a k, a shard in two of them."""


def check_budget(directory: str, identity: dict, k: int | None, tokens: int | None) -> None:
    """A folder merges under a budget of its own kind (records or tokens), no larger than the one it kept."""
    unit, wanted, name = ("tokens", tokens, "tokens") if tokens is not None else ("records", k, "k")
    other, other_name = ("records", "k") if tokens is not None else ("tokens", "tokens")
    held, kept_other = identity.get(name), identity.get(other_name)
    if not isinstance(held, int) and isinstance(kept_other, int):
        kind, asked = ("record", "token") if other == "records" else ("token", "record")
        raise FoldersDisagree(
            f"{directory} holds a {kind} budget ({setting(other_name)} {kept_other:,}) and this merge asks for a "
            f"{asked} budget ({setting(name)} {wanted:,}): each shard kept its best under its own budget, so merge "
            f"it with {setting(other_name)} {kept_other:,} (or less) instead, or score again with {setting(name)} "
            f"{wanted:,}"
        )
    if not isinstance(held, int) or held < wanted:
        kept_what = f"the best {held:,} {unit}" if isinstance(held, int) else f"no budget in {unit}"
        raise FoldersDisagree(
            f"{directory} kept {kept_what} of each shard, fewer than {setting(name)} {wanted:,}: merge with "
            f"{held if isinstance(held, int) else 'the budget it was scored with'} at most, or score again with "
            "the larger budget"
        )


def merge_inputs(folders: list[str], k: int | None = None, tokens: int | None = None) -> list[str]:
    """The kept-lines files of every shard in the state `folders`, ordered by shard path, for `select.merge`.

    Every folder must hold a finished run (all the shards of its last `score --state` run), with the same
    artifact and text field as the others and a budget of at least `k` records (or `tokens` tokens); a shard may
    be in one folder only.
    """
    from gotd_stream.errors import RuntimeProblem
    from gotd_stream.select.state import read_folder

    kept: dict[str, tuple[str, object]] = {}
    first = None
    for directory in folders:
        folder = read_folder(directory)
        if folder.unfinished:
            raise RuntimeProblem(
                f"{directory}: its last run did not finish: {len(folder.unfinished)} of "
                f"{len(folder.unfinished) + len(folder.kept)} shards are unscored (the first: "
                f"{folder.unfinished[0]}); run that task again, then merge"
            )
        check_budget(directory, folder.identity, k, tokens)
        if first is None:
            first = (directory, folder.identity)
        for name in ("fit_id", "text_field"):
            if folder.identity.get(name) != first[1].get(name):
                raise FoldersDisagree(
                    f"{first[0]} and {directory} were scored with different {name.replace('_', ' ')}s "
                    f"({first[1].get(name)!r}, {folder.identity.get(name)!r}): their results do not merge"
                )
        for path, lines in folder.kept.items():
            if path in kept:
                raise FoldersDisagree(
                    f"shard {path} is in both {kept[path][0]} and {directory}: give each shard's folder once"
                )
            kept[path] = (directory, lines)
    return [str(kept[path][1]) for path in sorted(kept)]

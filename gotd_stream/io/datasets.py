"""Dataset folders as shards: Hugging Face `save_to_disk` folders, folders of Parquet files, and Arrow IPC files.

A folder given as an input stands for its data files, in their order, and each file is one shard: exactly as if
the files had been given one by one. So a record's identity (its file's content and its row number: the fit's
bottom-k sample keys, `--state`'s shard keys, a Slurm task's share, Ray's tasks) is the same whichever way the
shards were named, and a folder resumed with `--state` equals one pass over it.

A folder written by `datasets.Dataset.save_to_disk(DIR)` holds:

    DIR/data-00000-of-00002.arrow    Arrow IPC *stream* files (a schema message, then record batches; no footer),
    DIR/data-00001-of-00002.arrow    one per shard (`num_shards`), each a `pyarrow.ipc.new_stream` of the rows
    DIR/state.json                   {"_data_files": [{"filename": "data-00000-of-00002.arrow"}, ...],
                                      "_fingerprint": ..., "_split": ..., ...}: the files, in the dataset's order
    DIR/dataset_info.json            features, description, sizes (not needed to read the rows)

`datasets.DatasetDict.save_to_disk(DIR)` writes `DIR/dataset_dict.json` ({"splits": ["train", "test"]}) and one
such folder per split (DIR/train, DIR/test): it is refused, with the split folders to give instead (they are
different data sets: mixing a test split into a corpus should be a choice, written out).

Any other folder stands for its Parquet files (`*.parquet`, not those whose name starts with `.` or `_`, such as
Spark's `_SUCCESS`), sorted by name (`part-00000...`, `train-00000-of-00004...`); sub-folders are not entered.

An Arrow file is recognised by its first bytes, wherever it is (an IPC stream begins with the continuation marker
0xFFFFFFFF, an IPC file with `ARROW1`); its rows are records exactly as a Parquet file's are (io.parquet), read a
record batch at a time from a memory map, so memory stays flat whatever the file's size. A stream must end with
the end-of-stream marker its writer writes on closing: one cut short is damaged (exit 1), never a shorter shard.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator

from gotd_stream.errors import UsageProblem
from gotd_stream.io.streams import STDIN, CorruptInput, display_name

STREAM_MAGIC = b"\xff\xff\xff\xff"  # the IPC continuation marker that opens every message of a stream
FILE_MAGIC = b"ARROW1"
END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # what a stream writer writes when it is closed
DATA_FILES = "_data_files"


class NotADataset(UsageProblem):
    """A folder given as an input that is no data set we read (no save_to_disk files, no Parquet files)."""


class DatasetDict(UsageProblem):
    """A save_to_disk folder of several splits: the message names the split folders to give instead."""


def is_arrow(path: str) -> bool:
    """A regular file that starts as an Arrow IPC stream or file does (its name does not matter)."""
    if path == STDIN:
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(FILE_MAGIC) or (
        head.startswith(STREAM_MAGIC) and len(head) == 8 and 0 < int.from_bytes(head[4:], "little") < 1 << 30
    )


def _open(source):
    """A reader of record batches (an IPC stream or an IPC file) over a memory-mapped source."""
    import pyarrow as pa

    head = source.read(len(FILE_MAGIC))
    source.seek(0)
    if head == FILE_MAGIC:
        reader = pa.ipc.open_file(source)
        return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    size = source.size()
    source.seek(max(0, size - len(END_OF_STREAM)))
    tail = source.read(len(END_OF_STREAM))
    source.seek(0)
    if tail != END_OF_STREAM:  # a stream cut at a message's end would read as a shorter one: refuse it
        raise CorruptInput("it does not end with the end-of-stream marker: truncated")
    reader = pa.ipc.open_stream(source)
    return reader.schema, iter(reader)


def arrow_rows(path: str, text_field: str) -> Iterator[tuple[int, bytes | None, str, str]]:
    """The rows of an Arrow IPC file as io.parquet.parquet_rows gives a Parquet file's (the same JSON bytes)."""
    import pyarrow as pa

    from gotd_stream.io.parquet import batch_rows

    name = display_name(path)
    try:
        with pa.memory_map(path) as source:
            schema, batches = _open(source)
            yield from batch_rows(name, schema.names, batches, text_field)
    except (pa.ArrowException, OSError, CorruptInput, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise CorruptInput(f"{name}: corrupt or truncated Arrow file ({exc})") from None


def arrow_schema(path: str):
    """The Arrow schema of a Parquet or Arrow file (its footer or its first message), or None for another file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gotd_stream.io.parquet import is_parquet

    try:
        if is_parquet(path):
            return pq.read_schema(path)
        if is_arrow(path):
            with pa.memory_map(path) as source:
                return _open(source)[0]
    except (pa.ArrowException, CorruptInput, UnicodeDecodeError) as exc:  # the last: a schema's names damaged
        raise CorruptInput(f"{display_name(path)}: corrupt or truncated file ({exc})") from None
    return None


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """The inputs with every folder replaced by its data files, in order (see the module's docstring); files and
    stdin as they are. A folder that holds no data set is a NotADataset, one of several splits a DatasetDict."""
    out: list[str] = []
    for path in paths:
        out.extend(dataset_files(path) if path != STDIN and os.path.isdir(path) else [path])
    return out


def dataset_files(folder: str) -> list[str]:
    """The data files of a folder: save_to_disk's Arrow files in state.json's order, else its Parquet files by
    name."""
    names = set(os.listdir(folder))
    if "dataset_dict.json" in names:
        splits = _splits(folder, names)
        given = " ".join(os.path.join(folder, split) for split in splits)
        raise DatasetDict(
            f"{folder} is a DatasetDict (save_to_disk of the splits {', '.join(splits) or 'none'}): give the "
            f"split's folder instead ({given or os.path.join(folder, 'SPLIT')}), or several of them"
        )
    if "state.json" in names:
        return _saved_files(folder)
    found = sorted(
        n
        for n in names
        if n.lower().endswith(".parquet") and not n.startswith((".", "_")) and os.path.isfile(os.path.join(folder, n))
    )
    if not found:
        shown = ", ".join(sorted(names)[:8]) or "nothing"
        raise NotADataset(
            f"{folder} is a folder without Parquet files or a save_to_disk data set (state.json); it holds "
            f"{shown}: give its files instead"
        )
    return [os.path.join(folder, n) for n in found]


def _splits(folder: str, names: set[str]) -> list[str]:
    """The splits dataset_dict.json lists (else the sub-folders that look like save_to_disk folders)."""
    try:
        with open(os.path.join(folder, "dataset_dict.json"), "rb") as fh:
            splits = json.load(fh).get("splits")
        if isinstance(splits, list) and all(isinstance(s, str) for s in splits):
            return splits
    except (OSError, ValueError, AttributeError):
        pass
    return sorted(n for n in names if os.path.isfile(os.path.join(folder, n, "state.json")))


def _saved_files(folder: str) -> list[str]:
    """state.json's `_data_files`, each a file of the folder, in order."""
    where = os.path.join(folder, "state.json")
    try:
        with open(where, "rb") as fh:
            files = json.load(fh).get(DATA_FILES)
    except (ValueError, AttributeError):
        files = None
    if not isinstance(files, list) or not files:
        raise NotADataset(f"{where}: no {DATA_FILES} list: not a folder written by datasets' save_to_disk")
    out = []
    for i, entry in enumerate(files):
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (".", ".."):
            raise NotADataset(f"{where}: {DATA_FILES}[{i}] is not a file name of the folder ({entry!r})")
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise NotADataset(f"{where} lists {name}, which is not in {folder}: the folder is incomplete")
        out.append(path)
    return out

"""Reading plain, zstd and gzip inputs by magic bytes; atomic, deterministic outputs."""

from __future__ import annotations

import gzip
import io

import pytest
import zstandard

from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.streams import CHUNK, CorruptInput, read_lines

LINES = [b'{"text": "a"}', b'{"text": "b"}', b'{"text": "c"}']


def lines_of(path) -> list[bytes]:
    return [line for _, line in read_lines(str(path))]


@pytest.mark.parametrize("name", ["data.jsonl", "data.bin", "data.txt.gz"])  # names are not trusted
def test_zstd_multi_frame_detected_by_magic(tmp_path, name):
    cctx = zstandard.ZstdCompressor()
    (tmp_path / name).write_bytes(cctx.compress(b"\n".join(LINES[:2]) + b"\n") + cctx.compress(LINES[2] + b"\n"))
    assert lines_of(tmp_path / name) == LINES


def test_gzip_multi_member(tmp_path):
    (tmp_path / "x.jsonl").write_bytes(gzip.compress(LINES[0] + b"\n") + gzip.compress(b"\n".join(LINES[1:])))
    assert lines_of(tmp_path / "x.jsonl") == LINES


def test_plain_crlf_and_no_final_newline(tmp_path):
    (tmp_path / "x.jsonl").write_bytes(b'{"text": "a"}\r\n{"text": "b"}')
    assert lines_of(tmp_path / "x.jsonl") == [b'{"text": "a"}\r', b'{"text": "b"}']


def test_line_longer_than_many_chunks(tmp_path):
    long = b'{"text": "' + b"x" * (3 * CHUNK + 17) + b'"}'
    data = zstandard.ZstdCompressor().compress(LINES[0] + b"\n" + long + b"\n" + LINES[1])
    (tmp_path / "x.zst").write_bytes(data)
    got = list(read_lines(str(tmp_path / "x.zst")))
    assert got == [(1, LINES[0]), (2, long), (3, LINES[1])]


def test_truncated_zstd_names_the_file(tmp_path):
    data = zstandard.ZstdCompressor().compress(b"\n".join(LINES * 1000))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInput, match=r"cut\.jsonl\.zst: truncated or damaged zstd"):
        lines_of(path)


def test_truncated_and_corrupt_gzip(tmp_path):
    data = gzip.compress(b"\n".join(LINES * 1000))
    (tmp_path / "cut.gz").write_bytes(data[:-20])
    with pytest.raises(CorruptInput, match=r"cut\.gz: truncated or damaged gzip"):
        lines_of(tmp_path / "cut.gz")
    damaged = bytearray(data)
    damaged[-6] ^= 0xFF  # inside the CRC32 of the member
    (tmp_path / "bad.gz").write_bytes(bytes(damaged))
    with pytest.raises(CorruptInput, match=r"bad\.gz: corrupt gzip"):
        lines_of(tmp_path / "bad.gz")


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.zst", "out.jsonl.gz"])
def test_atomic_output_roundtrip_and_deterministic(tmp_path, name):
    path = tmp_path / name
    written = []
    for _ in range(2):
        with atomic_output(str(path)) as sink:
            sink.write(b"\n".join(LINES) + b"\n")
        written.append(path.read_bytes())
    assert written[0] == written[1]
    assert lines_of(path) == LINES
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_atomic_output_failure_leaves_previous_file(tmp_path):
    path = tmp_path / "out.jsonl.zst"
    with atomic_output(str(path)) as sink:
        sink.write(b"old\n")
    before = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_output(str(path)) as sink:
        sink.write(b"half")
        raise RuntimeError("disk on fire")
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_npy_writer_streams_rows(tmp_path):
    import numpy as np

    from gotd_stream.io.outputs import NpyWriter

    rows = np.arange(15, dtype=np.float32).reshape(5, 3)
    buf = io.BytesIO()
    writer = NpyWriter(buf, 3)
    writer.write(rows[:2])
    writer.write(rows[2:])
    writer.close()
    buf.seek(0)
    assert np.array_equal(np.load(buf), rows)

"""Inputs and outputs behind URLs, against a real S3 API: moto's server on 127.0.0.1, one for the module.

A URL is read as a stream and gives the bytes (and so the selection, the fit's sample and --state's keys) that the
same files give on a disk; an output URL appears whole or not at all, and an existing one only with --force. The
failures are staged by a small HTTP proxy in front of the server: one that cuts object bodies short, one that
refuses every PUT. The lexical space needs no model, so every run here is quick.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import threading
from pathlib import Path

import pytest
import zstandard

from tests.conftest import make_docs, run, write_jsonl

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

LEXICAL = ["--features", "lexical", "--sample-size", "60"]
BUCKET = "corpus"


class Proxy:
    """An HTTP proxy to the S3 server, one request per upstream connection: `cut` sends only the first `cut` bytes
    of an object's body (then closes the connection), `refuse_put` answers 403 to every PUT."""

    def __init__(self, upstream: tuple[str, int], cut: int | None = None, refuse_put: bool = False):
        self.upstream, self.cut, self.refuse_put = upstream, cut, refuse_put
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cuts = self.refused = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    @staticmethod
    def _request(conn: socket.socket, buffered: bytes) -> tuple[bytes, bytes, bytes] | None:
        """(head, body, what was read past it) of the next request on `conn`, or None when it closed."""
        data = buffered
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return None
            data += more
        head, rest = data.split(b"\r\n\r\n", 1)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if headers.get(b"expect", b"").lower() == b"100-continue":  # botocore's PUT waits for the go-ahead
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:"))
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while b"0\r\n\r\n" not in rest:
                rest += conn.recv(65536)
            end = rest.index(b"0\r\n\r\n") + 5
            return head, rest[:end], rest[end:]
        length = int(headers.get(b"content-length", b"0"))
        while len(rest) < length:
            more = conn.recv(65536)
            if not more:
                return None
            rest += more
        return head, rest[:length], rest[length:]

    def _client(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while (request := self._request(conn, buffered)) is not None:
                head, body, buffered = request
                method, target = head.split(b" ")[:2]
                if self.refuse_put and method == b"PUT":
                    self.refused += 1
                    error = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n")
                    conn.sendall(b"Content-Length: %d\r\n\r\n" % len(error) + error)
                    continue
                lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
                with socket.create_connection(self.upstream) as up:
                    up.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body)
                    response = b""
                    while more := up.recv(65536):
                        response += more
                object_get = method == b"GET" and b"?" not in target and target.count(b"/") >= 2
                if self.cut is not None and object_get:
                    self.cuts += 1
                    answer, _, payload = response.partition(b"\r\n\r\n")
                    conn.sendall(answer + b"\r\n\r\n" + payload[: self.cut])
                    return  # closed mid-body
                conn.sendall(response)
                if b"connection: close" in response.split(b"\r\n\r\n")[0].lower():
                    return


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server, the AWS_* variables a user would set (dummy keys, AWS_ENDPOINT_URL), a bucket, and a
    small corpus both on the disk and in the bucket: a plain shard, a zstd one, a gzip one."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_CONFIG_FILE", str(tmp_path_factory.mktemp("aws") / "none"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path_factory.mktemp("aws") / "none"))
        fs = fresh_fs()
        fs.mkdir(BUCKET)
        local = tmp_path_factory.mktemp("local")
        docs = make_docs(150, seed=5)
        plain = write_jsonl(local / "part-0.jsonl", docs[0::3])
        packed = local / "part-1.jsonl.zst"
        packed.write_bytes(zstandard.ZstdCompressor().compress(write_jsonl(local / "x", docs[1::3]).read_bytes()))
        import gzip

        zipped = local / "part-2.jsonl.gz"
        zipped.write_bytes(gzip.compress(write_jsonl(local / "y", docs[2::3]).read_bytes(), mtime=0))
        shards = [plain, packed, zipped]
        for shard in shards:
            fs.pipe(f"{BUCKET}/cc/{shard.name}", shard.read_bytes())
        target = write_jsonl(local / "target.jsonl", make_docs(12, seed=6, topics=("cooking",)))
        yield {
            "server": server,
            "upstream": (host, port),
            "fs": fs,
            "dir": local,
            "shards": shards,
            "urls": [f"s3://{BUCKET}/cc/{shard.name}" for shard in shards],
            "target": target,
        }
        fresh_fs()
    server.stop()


def fresh_fs():
    """A new S3 filesystem (fsspec caches one per process): it reads the endpoint from the environment again."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem()


@pytest.fixture(scope="module")
def artifact(s3):
    path = s3["dir"] / "task.gotd"
    run(["fit", *LEXICAL, "--target", s3["target"], *s3["shards"], "-o", path, "-q"])
    return path


def score(artifact, *args, code=0, k=20):
    fresh_fs()
    return run(["score", "-p", artifact, "-k", k, *args], code=code)


def via(s3, proxy: Proxy):
    """The environment of a run whose S3 endpoint is `proxy`."""
    fresh_fs()
    return {"AWS_ENDPOINT_URL": proxy.url}


def test_score_reads_urls_and_a_glob_as_the_files_on_disk(s3, artifact):
    local = score(artifact, *s3["shards"]).stdout_bytes
    assert local.count(b"\n") == 20
    assert score(artifact, *s3["urls"]).stdout_bytes == local
    globbed = score(artifact, f"s3://{BUCKET}/cc/part-*.jsonl*")
    assert globbed.stdout_bytes == local


def test_fit_on_urls_draws_the_sample_of_the_same_bytes_on_disk(s3, artifact, tmp_path):
    remote = tmp_path / "remote.gotd"
    fresh_fs()
    run(["fit", *LEXICAL, "--target", s3["target"], f"s3://{BUCKET}/cc/*", "-o", remote, "-q"])
    assert remote.read_bytes() == artifact.read_bytes()  # the same sample keys: the same fit, byte for byte


def test_output_url_is_written_whole_and_replaced_only_with_force(s3, artifact):
    fs, url = s3["fs"], f"s3://{BUCKET}/out/sel.jsonl.zst"
    plain = score(artifact, *s3["shards"]).stdout_bytes
    score(artifact, *s3["urls"], "-o", url)
    fs.invalidate_cache()
    assert zstandard.ZstdDecompressor().stream_reader(fs.cat(url)).read() == plain
    left = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{BUCKET}/out"))
    assert left == ["sel.jsonl.zst", "sel.jsonl.zst.manifest.json"]  # the selection, its manifest, no temporary key
    refused = score(artifact, *s3["urls"], "-k", 5, "-o", url, code=2)
    assert f"-o {url} already exists" in refused.stderr and "--force" in refused.stderr
    assert zstandard.ZstdDecompressor().stream_reader(fs.cat(url)).read() == plain  # untouched
    score(artifact, *s3["urls"], "-o", url, "--force", k=5)
    fs.invalidate_cache()
    assert zstandard.ZstdDecompressor().stream_reader(fs.cat(url)).read() == b"".join(plain.splitlines(True)[:5])
    same = score(artifact, s3["urls"][0], "-o", s3["urls"][0], "--force", code=2)
    assert "which this run reads" in same.stderr


def test_fit_writes_its_artifact_to_a_url_and_score_reads_it_there(s3, artifact):
    url = f"s3://{BUCKET}/art/task.gotd"
    fresh_fs()
    run(["fit", *LEXICAL, "--target", s3["target"], *s3["urls"], "-o", url, "-q"])
    assert s3["fs"].cat(url) == artifact.read_bytes()
    assert score(url, *s3["urls"]).stdout_bytes == score(artifact, *s3["shards"]).stdout_bytes


def test_merge_of_url_outputs_equals_one_pass(s3, artifact):
    nodes = [f"s3://{BUCKET}/nodes/node{i}.jsonl.zst" for i in range(3)]
    for url, node in zip(s3["urls"], nodes, strict=True):
        score(artifact, url, "-o", node, "--force")
    fresh_fs()
    merged = run(["merge", "-k", 20, *nodes])
    assert merged.stdout_bytes == score(artifact, *s3["shards"]).stdout_bytes


def test_state_is_local_and_knows_remote_shards_by_content(s3, artifact, tmp_path):
    refused = score(artifact, *s3["urls"], "--state", f"s3://{BUCKET}/state", code=2)
    assert "--state" in refused.stderr and "must be local" in refused.stderr
    state = tmp_path / "state"
    first = score(artifact, *s3["urls"], "--state", state)
    assert first.stdout_bytes == score(artifact, *s3["shards"]).stdout_bytes
    again = score(artifact, *s3["shards"], "--state", state)  # the same bytes on the disk: taken from the state
    assert "3 shards from" in again.stderr and again.stdout_bytes == first.stdout_bytes


def test_missing_bucket_key_or_match_is_exit_2_naming_it(s3, artifact):
    no_bucket = score(artifact, "s3://no-such-bucket/cc/part-0.jsonl", code=2)
    assert "s3://no-such-bucket/cc/part-0.jsonl" in no_bucket.stderr and "bucket no-such-bucket" in no_bucket.stderr
    no_key = score(artifact, f"s3://{BUCKET}/cc/missing.jsonl", code=2)
    assert f"s3://{BUCKET}/cc/missing.jsonl: no such object" in no_key.stderr
    no_match = score(artifact, f"s3://{BUCKET}/cc/*.parquet", code=2)
    assert f"s3://{BUCKET}/cc/*.parquet: no object matches the pattern" in no_match.stderr
    out = score(artifact, s3["shards"][0], "-o", "s3://no-such-bucket/sel.jsonl", code=2)
    assert "bucket no-such-bucket does not exist" in out.stderr


def test_a_body_cut_short_is_exit_1_naming_the_url_and_writes_nothing(s3, artifact, tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", make_docs(3000, seed=8))
    url = f"s3://{BUCKET}/big/big.jsonl"
    s3["fs"].pipe(url, big.read_bytes())
    proxy = Proxy(s3["upstream"], cut=50_000)
    out = tmp_path / "sel.jsonl"
    try:
        failed = run(["score", "-p", artifact, "-k", 5, url, "-o", out], code=1, env=via(s3, proxy))
    finally:
        proxy.close()
        fresh_fs()
    assert proxy.cuts >= 1 and url in failed.stderr
    assert not out.exists() and list(tmp_path.glob(".sel.jsonl*")) == []


def test_a_refused_write_is_exit_1_and_leaves_no_object(s3, artifact):
    url = f"s3://{BUCKET}/refused/sel.jsonl"
    proxy = Proxy(s3["upstream"], refuse_put=True)
    try:
        failed = run(["score", "-p", artifact, "-k", 5, *s3["urls"], "-o", url], code=1, env=via(s3, proxy))
    finally:
        proxy.close()
        fresh_fs()
    assert proxy.refused >= 1 and url in failed.stderr and "refused" in failed.stderr
    assert not s3["fs"].exists(url) and s3["fs"].find(f"{BUCKET}/refused") == []


def test_a_protocol_without_its_package_names_the_package(s3, artifact):
    from fsspec.registry import known_implementations

    missing = next(
        (proto, spec["class"].split(".")[0])
        for proto, spec in [("gs", known_implementations["gs"]), *known_implementations.items()]
        if not spec["class"].startswith("fsspec.") and importlib.util.find_spec(spec["class"].split(".")[0]) is None
    )
    proto, package = missing
    failed = score(artifact, f"{proto}://bucket/part-0.jsonl", code=2)
    assert f"install {package.replace('_', '-')}" in failed.stderr
    unknown = score(artifact, "nosuchproto://bucket/x.jsonl", code=2)
    assert "nosuchproto://" in unknown.stderr


def test_a_url_is_refused_where_a_local_path_is_needed(s3, artifact):
    refused = score(artifact, *s3["shards"], "--model", f"s3://{BUCKET}/model", code=2)
    assert "is a URL" in refused.stderr


def test_remote_tests_leave_the_bucket_clean_of_temporary_keys(s3):
    assert [key for key in s3["fs"].find(BUCKET) if ".tmp" in key or "gotd-upload" in key] == []


def test_reading_a_url_needs_no_local_copy(s3, monkeypatch):
    """The reader streams: it never downloads the object (get_file) or asks for it whole (cat_file)."""
    import s3fs

    from gotd_stream.io.streams import read_lines

    def whole(*args, **kwargs):
        raise AssertionError("the whole object was fetched")

    for name in ("get_file", "cat_file", "_get_file", "_cat_file"):
        monkeypatch.setattr(s3fs.S3FileSystem, name, whole)
    fresh_fs()
    lines = [line for _, line in read_lines(s3["urls"][1])]
    assert (
        b"".join(line + b"\n" for line in lines)
        == zstandard.ZstdDecompressor().stream_reader(Path(s3["shards"][1]).read_bytes()).read()
    )


def test_parquet_and_embed_through_urls(s3, artifact, tmp_path):
    """A Parquet shard is read from a URL by seeking (range requests); embed's .npy goes up whole."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [orjson.loads(line) for line in Path(s3["shards"][0]).read_bytes().splitlines()]
    local = tmp_path / "part.parquet"
    pq.write_table(pa.Table.from_pylist(rows), local)
    url = f"s3://{BUCKET}/pq/part.parquet"
    s3["fs"].pipe(url, local.read_bytes())
    assert score(artifact, url).stdout_bytes == score(artifact, local).stdout_bytes
    npy, out = tmp_path / "local.npy", f"s3://{BUCKET}/pq/part.npy"
    fresh_fs()
    run(["embed", "-p", artifact, local, "-o", npy, "-q"])
    fresh_fs()
    run(["embed", "-p", artifact, url, "-o", out, "-q"])
    assert s3["fs"].cat(out) == npy.read_bytes()


def test_report_reads_a_selection_url_and_writes_its_folder_as_objects(s3, artifact, tmp_path):
    selected = f"s3://{BUCKET}/rep/sel.jsonl"
    score(artifact, *s3["urls"], "-o", selected)
    fresh_fs()
    run(["report", "-p", artifact, selected, "-o", f"s3://{BUCKET}/rep/out", "-q"])
    fresh_fs()
    assert b"<html" in s3["fs"].cat(f"{BUCKET}/rep/out/index.html").lower()
    assert s3["fs"].exists(f"{BUCKET}/rep/out/report.json")
    again = run(["report", "-p", artifact, selected, "-o", f"s3://{BUCKET}/rep/out"], code=2)
    assert "already exists" in again.stderr

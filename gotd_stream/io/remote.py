"""Inputs and outputs behind URLs (s3://, gs://, hf://, http(s)://, any fsspec protocol), through fsspec.

An input URL is read as a stream, a block at a time (never copied whole to the disk), and checked as it is read:
a body that ends before the object's size is a network failure (exit 1), never a shorter shard. A glob of
remote keys (`s3://bucket/cc/*.zst`) expands to its objects, sorted; one that matches nothing is an error naming
the pattern. An output URL is written to a local temporary file first and uploaded only once the data is
complete: to an object store (S3, GCS, Azure), whose uploads appear whole or not at all (a multipart upload
included), in one upload to the final key; to any other filesystem, to a temporary name beside the final one,
then moved onto it. An existing object is refused before any work unless `force` (`--force`): the check is made
once, before the run, so two runs racing to one new name both write, and the later upload wins, whole.

Credentials and endpoints come from where fsspec's filesystems look (AWS_* variables, ~/.aws, AWS_ENDPOINT_URL
for an S3-compatible store, gcloud's defaults, fsspec's own config): never from a flag. fsspec is imported only
by the functions that touch a URL.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from gotd_stream.errors import RuntimeProblem, UsageProblem, setting

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})  # one upload is atomic there
BUCKETED = frozenset({"s3", "s3a", "gs", "gcs"})  # the first part of the path is a bucket that must exist
GLOB = re.compile(r"[*?\[]")
BLOCK = 8 << 20  # bytes fetched per request (a range GET); the readers take 1 MiB at a time
EXTRA = "pip install 'gotd-stream[remote]'"


class RemoteProblem(UsageProblem):
    """A URL that cannot be used as given (exit 2): no package for its protocol, no such bucket or object, a glob
    that matches nothing, access denied; the message names the URL and what to do."""


class RemoteFailure(RuntimeProblem):
    """A read or write that failed on the way (exit 1): the network after fsspec's retries, a body cut short, a
    write the server refused; the message names the URL. Nothing is left under an output's final name."""


def is_url(path: object) -> bool:
    """A URL (scheme://...), read and written through fsspec; anything else is a local path."""
    return isinstance(path, str) and _SCHEME.match(path) is not None


def protocol(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "file"


def _package_for(proto: str) -> tuple[str, str]:
    """(the package that serves `proto`, fsspec's own hint) from fsspec's registry; ("", "") for no protocol."""
    from fsspec.registry import known_implementations

    known = known_implementations.get(proto)
    if known is None:
        return "", ""
    module = known["class"].split(".")[0]
    return ("" if module == "fsspec" else module.replace("_", "-")), known.get("err", "")


def filesystem(url: str):
    """(the fsspec filesystem of `url`, the path within it); RemoteProblem naming the package to install."""
    try:
        import fsspec.core
    except ImportError:
        raise RemoteProblem(f"{url}: URLs are read through fsspec, which is not installed: {EXTRA}") from None
    proto = protocol(url)
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        package, hint = _package_for(proto)
        install = f"install {package} (pip install {package})" if package else (hint or str(exc))
        raise RemoteProblem(f"{url}: {proto}:// needs a package that is not installed: {install}") from None
    except ValueError as exc:
        if "protocol not known" in str(exc).lower():
            raise RemoteProblem(f"{url}: no fsspec filesystem knows the protocol {proto}://") from None
        raise RemoteProblem(f"{url}: {exc}") from None


@dataclass(frozen=True)
class RemoteStat:
    """What the readers and --state take from os.stat, for an object: a regular file of this size, modified then."""

    st_size: int
    st_mtime_ns: int
    st_mode: int = stat.S_IFREG | 0o444
    st_dev: int = 0
    st_ino: int = 0


def _mtime_ns(info: dict) -> int:
    """The modification time an object store reports (S3 LastModified, GCS updated, ...), in ns; 0 when none."""
    for key in ("LastModified", "last_modified", "updated", "mtime", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, int | float):
            return int(value * 1e9)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    return 0


def _missing(url: str, fs, path: str) -> RemoteProblem:
    """The message for an object that is not there: its bucket missing, or the key."""
    proto = protocol(url)
    if proto in BUCKETED:
        bucket = path.split("/", 1)[0]
        try:
            there = fs.exists(bucket)
        except Exception:  # noqa: BLE001 - the message for the object is still right
            there = True
        if not there:
            return RemoteProblem(f"{url}: the bucket {bucket} does not exist (or these credentials cannot see it)")
    return RemoteProblem(f"{url}: no such object")


def _failure(url: str, exc: BaseException, doing: str = "reading") -> Exception:
    """An exception from fsspec worded: ours pass through, a missing object or denied access is a usage problem."""
    if isinstance(exc, RemoteProblem | RemoteFailure):
        return exc
    if isinstance(exc, PermissionError):
        return RemoteProblem(f"{url}: access denied ({exc}); check the credentials (AWS_* variables, ~/.aws, ...)")
    detail = str(exc) or type(exc).__name__
    return RemoteFailure(f"{url}: {doing} failed after retries ({type(exc).__name__}: {detail})")


def remote_stat(url: str) -> RemoteStat:
    """The object's size and modification time; RemoteProblem when it is missing or a prefix (a folder)."""
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise _missing(url, fs, path) from None
    except Exception as exc:  # noqa: BLE001 - botocore, aiohttp and friends: worded with the URL
        raise _failure(url, exc) from None
    if info.get("type") == "directory":
        raise RemoteProblem(f"{url} is a folder (a prefix): name its objects, or a glob such as {url.rstrip('/')}/*")
    size = info.get("size")
    if size is None:  # http servers that do not say: the stream is still read, and its end trusted
        size = -1
    return RemoteStat(int(size), _mtime_ns(info))


def expand(url: str) -> list[str]:
    """The objects a URL names: itself once checked to exist, or a glob's matches sorted (an empty match is an
    error naming the pattern, as a local glob that matches nothing is a missing file). http(s) URLs are never
    globs."""
    fs, path = filesystem(url)
    if not GLOB.search(path) or protocol(url) in ("http", "https"):  # a query string's ? is no glob
        remote_stat(url)
        return [url]
    try:
        found = fs.glob(path, detail=True)
    except FileNotFoundError:
        raise _missing(url, fs, path.split("*")[0].split("?")[0].split("[")[0]) from None
    except Exception as exc:  # noqa: BLE001
        raise _failure(url, exc, "listing") from None
    keys = sorted(name for name, info in found.items() if info.get("type") != "directory")
    if not keys:
        problem = _missing(url, fs, path)
        if "bucket" in str(problem):
            raise problem
        raise RemoteProblem(f"{url}: no object matches the pattern")
    proto = protocol(url)
    return [f"{proto}://{key.split('://', 1)[-1]}" for key in keys]


class RemoteReader:
    """A remote object read as a binary stream, with every failure worded with its URL (RemoteFailure), and a body
    that ends before the object's size refused: a cut connection must never look like a shorter shard."""

    def __init__(self, url: str):
        self.url = url
        fs, path = filesystem(url)
        self.size = remote_stat(url).st_size
        try:
            self._fh = fs.open(path, "rb", block_size=BLOCK, cache_type="readahead")
        except FileNotFoundError:
            raise _missing(url, fs, path) from None
        except Exception as exc:  # noqa: BLE001
            raise _failure(url, exc) from None
        self._at = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._fh.read(n)
        except Exception as exc:  # noqa: BLE001
            raise _failure(self.url, exc) from None
        self._at += len(data)
        if self.size >= 0 and (not data and n != 0) and self._at < self.size:
            raise RemoteFailure(f"{self.url}: the connection ended after {self._at:,} of {self.size:,} bytes")
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            self._at = self._fh.seek(offset, whence)
        except Exception as exc:  # noqa: BLE001
            raise _failure(self.url, exc) from None
        return self._at

    def tell(self) -> int:
        return self._at

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._fh.close()

    def __enter__(self) -> RemoteReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def same_object(a: str, b: str) -> bool:
    """Two URLs that name one object (the protocol's aliases and a doubled slash aside)."""
    try:
        fa, pa = filesystem(a)
        fb, pb = filesystem(b)
    except RemoteProblem:
        return a == b
    return type(fa) is type(fb) and pa.strip("/") == pb.strip("/")


def check_remote_output(label: str, url: str, force: bool) -> None:
    """Before any work: the output's filesystem is installed, its bucket exists, and nothing is there unless
    `force`. RemoteProblem naming `label` (the flag and the URL) otherwise."""
    fs, path = filesystem(url)
    if url.endswith("/") or not path.strip("/"):
        raise RemoteProblem(f"{label}: names a folder (a prefix); give the object's full name")
    proto = protocol(url)
    try:
        if proto in BUCKETED and not fs.exists(path.split("/", 1)[0]):
            raise RemoteProblem(f"{label}: the bucket {path.split('/', 1)[0]} does not exist; create it first")
        fs.invalidate_cache(path)
        exists = fs.exists(path)
    except Exception as exc:  # noqa: BLE001
        raise _failure(url, exc, "looking up the output") from None
    if exists and not force:
        raise RemoteProblem(f"{label} already exists: pass {setting('force')} to replace it, or name another object")


@contextlib.contextmanager
def upload(url: str) -> Iterator[BinaryIO]:
    """A local temporary file that becomes the object `url` once the caller is done, atomically (see the module
    docstring); on any failure (or Ctrl-C) nothing is left under the final name, and the temporary file goes."""
    fs, path = filesystem(url)
    fd, local = tempfile.mkstemp(prefix=".gotd-upload.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        _put(url, fs, path, local)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local)


def _put(url: str, fs, path: str, local: str) -> None:
    try:
        if protocol(url) in OBJECT_STORES:
            fs.put_file(local, path)
        else:
            parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
            tmp = f"{parent}/.{name[:200]}.{os.getpid()}.tmp" if parent else f".{name[:200]}.{os.getpid()}.tmp"
            try:
                fs.put_file(local, tmp)
                fs.mv(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm(tmp)
                raise
    except PermissionError as exc:
        raise RemoteFailure(f"{url}: the server refused the write ({exc}); nothing was written") from None
    except Exception as exc:  # noqa: BLE001
        raise RemoteFailure(f"{url}: the upload failed ({type(exc).__name__}: {exc}); nothing was written") from None


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path for a small file a library must open by name (an artifact: safetensors maps it): the path
    itself, or a URL's object downloaded to a temporary file, removed afterwards."""
    if not is_url(path):
        yield path
        return
    with RemoteReader(path) as src:
        fd, local = tempfile.mkstemp(prefix=".gotd-download.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                while block := src.read(BLOCK):
                    fh.write(block)
            yield local
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)

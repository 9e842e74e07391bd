"""The lexical space: how a text is written (its register), where sentence embeddings see what it is about.

Lower-cased word unigrams and bigrams, hashed with crc32 (stable on every machine and process, unlike
Python's `hash()`) into `buckets` columns; sublinear TF times IDF estimated on the fit sample; a linear projection
to `dim` dimensions fitted on the fit sample by randomized SVD; L2-normalised. Everything fitted is a plain array
stored in the artifact. No model, no GPU.
"""

from __future__ import annotations

import functools
import logging
import re
import zlib

import numpy as np

from gotd_stream.checks import brief, is_int
from gotd_stream.features.base import LEXICAL_BUCKETS, LEXICAL_DIM, Fields, unit_rows
from gotd_stream.text import CHAR_BUDGET, WORD
from gotd_stream.threads import one_thread

log = logging.getLogger(__name__)
# Why a text with words can still have a zero lexical row: its n-grams hash to columns no fit text used.
NO_KNOWN_WORDS = ("no known words", "none of its words or word pairs occurs in the fit sample")
_BIGRAM_MIX = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit constant: bigram hash = h(a) * K xor h(b)
# How hashed_tf reads a text, as the artifact records it: an artifact with another recipe cannot be scored here.
LEXICAL_RECIPE = {"ngrams": [1, 2], "hash": "crc32", "words": WORD.pattern, "lowercase": True, "tf": "1+log"}


def hashed_tf(texts: list[str], buckets: int, char_budget: int | None = None):
    """Sparse (len(texts), buckets) matrix of sublinear term frequencies 1 + log(count) of unigrams and bigrams."""
    from scipy import sparse

    doc, h = word_hashes(texts, char_budget)
    inside = doc[1:] == doc[:-1]  # word pairs that do not straddle two documents
    with np.errstate(over="ignore"):
        bigrams = (h[:-1] * _BIGRAM_MIX) ^ h[1:]
    rows = np.concatenate([doc, doc[1:][inside]])
    cols = np.concatenate([h, bigrams[inside]]) % np.uint64(buckets)
    tf = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols.astype(np.int64))), shape=(len(texts), buckets))
    tf.sum_duplicates()
    tf.data = 1.0 + np.log(tf.data)
    return tf


def word_hashes(texts: list[str], char_budget: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each word's text index and crc32 (uint64), in order: the words of WORD in each text's first char_budget
    characters, lower-cased, UTF-8 encoded.

    Texts of ASCII (most of a corpus) and of the Basic Multilingual Plane are cut and hashed in numpy, a group
    at once (_ascii_hashes, _bmp_hashes); the few others (emoji, other planes) one by one as re and zlib do it.
    Every way gives the words and hashes of that one (tests/test_features.py)."""
    ascii_ids, ascii_parts, bmp_ids, bmp_parts, other_doc, other_hashes = [], [], [], [], [], []
    for i, text in enumerate(texts):
        part = text[:char_budget] if char_budget else text
        if part.isascii():
            ascii_ids.append(i)
            ascii_parts.append(part)
            continue
        lowered = part.lower()
        if not _ASTRAL.search(lowered):
            bmp_ids.append(i)
            bmp_parts.append(lowered)
            continue
        words = WORD.findall(lowered)
        other_doc.append(np.full(len(words), i, dtype=np.int64))
        other_hashes.append(np.fromiter(map(zlib.crc32, map(str.encode, words)), np.uint64, len(words)))
    docs, hashes = other_doc, other_hashes
    for ids, (doc, h) in ((ascii_ids, _ascii_hashes(ascii_parts)), (bmp_ids, _bmp_hashes(bmp_parts))):
        docs.append(np.asarray(ids, dtype=np.int64)[doc] if len(doc) else doc)
        hashes.append(h)
    doc, h = np.concatenate(docs), np.concatenate(hashes)
    if bool(ascii_ids) + bool(bmp_ids) + bool(other_doc) > 1:  # by text, each one's words in order (stable)
        order = np.argsort(doc, kind="stable")
        doc, h = doc[order], h[order]
    return doc, h


def _crc_table() -> np.ndarray:
    """The CRC-32 (IEEE, zlib.crc32's) table of every byte."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1).astype(np.uint32)
    return table


_CRC = _crc_table()
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A") : ord("Z") + 1] += 32  # str.lower on ASCII
_WORDCHAR = np.zeros(256, dtype=bool)  # \w on ASCII: letters, digits, the underscore
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORDCHAR[_c] = True
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.cache
def _bmp_word_chars() -> np.ndarray:
    """\\w of re on every code point of the Basic Multilingual Plane: str.isalnum, or the underscore."""
    return np.array([chr(c).isalnum() or c == 0x5F for c in range(0x10000)], dtype=bool)


def _runs(word: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each run of True in `word`."""
    padded = np.zeros(len(word) + 2, dtype=bool)
    padded[1:-1] = word
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


def _text_of(parts: list[str], starts: np.ndarray) -> np.ndarray:
    """Which of `parts`, joined by one space, each position in `starts` lies in."""
    offsets = np.cumsum([0] + [len(p) + 1 for p in parts[:-1]])
    return (np.searchsorted(offsets, starts, side="right") - 1).astype(np.int64)


def _ascii_hashes(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(index into parts, crc32) of each \\w+ word of lower-cased ASCII texts, in order, without a Python object
    per word: the texts joined by a space (no word spans two), the words' bounds from a mask (_crc_words)."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    data = _LOWER[np.frombuffer(" ".join(parts).encode("ascii"), dtype=np.uint8)]
    starts, ends = _runs(_WORDCHAR[data])
    return _text_of(parts, starts), _crc_words(data, starts, ends - starts)


def _bmp_hashes(lowered: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """_ascii_hashes for lower-cased texts of the Basic Multilingual Plane: the words found on the code points,
    hashed on the UTF-8 bytes (1 to 3 a code point; a lone surrogate, never in a word, 3 as surrogatepass)."""
    if not lowered:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    joined = " ".join(lowered)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    starts, ends = _runs(_bmp_word_chars()[codes])
    byte_at = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(1 + (codes >= 0x80) + (codes >= 0x800), out=byte_at[1:])
    data = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    return _text_of(lowered, starts), _crc_words(data, byte_at[starts], byte_at[ends] - byte_at[starts])


def _crc_words(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """zlib.crc32 of each word data[start:start + length], all words advanced one byte at a time, sorted longest
    first so that each step is a prefix of them."""
    small = np.int16 if len(lengths) and lengths.max() < 1 << 15 else np.int64  # int16: numpy's radix sort
    order = np.argsort(-lengths.astype(small), kind="stable")  # any order by length would do: scattered back
    at, size = starts[order], lengths[order]
    crc = np.full(len(order), 0xFFFFFFFF, dtype=np.uint32)
    longest = int(size[0]) if len(size) else 0
    alive = np.searchsorted(-size, -np.arange(longest), side="left")  # words longer than k, for each k
    for k, live in enumerate(alive.tolist()):
        c = crc[:live]
        crc[:live] = _CRC[(c ^ data[at[:live] + k]) & 0xFF] ^ (c >> 8)
    hashes = np.empty(len(order), dtype=np.uint64)
    hashes[order] = crc ^ np.uint32(0xFFFFFFFF)
    return hashes


def _l2_rows(matrix):
    from scipy import sparse

    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix


class Lexical:
    """The fitted lexical space: IDF weights and a projection, both plain arrays.

    The projection has a row for each bucket the fit sample used (`rows`, sorted): a bucket it never saw has an
    all-zero row, so the artifact grows with the sample's vocabulary, not with the bucket count; it is stored in
    float16 and used in float32. (`rows` None: one float32 row per bucket, as files before format version 4
    hold it.)
    """

    window = 4096  # texts per encode() call when the pipeline scores in this space alone
    zero_row = NO_KNOWN_WORDS  # what a zero row means here; the scoring skips such a record

    def __init__(
        self, idf: np.ndarray, projection: np.ndarray, char_budget: int = CHAR_BUDGET, rows: np.ndarray | None = None
    ):
        self.idf = np.asarray(idf, np.float32)
        self.projection = np.asarray(projection, np.float32)
        self.buckets, self.dim = len(self.idf), self.projection.shape[1]
        self.char_budget = char_budget
        self.rows = None if rows is None else np.asarray(rows, np.int32)
        self.lookup = None  # bucket -> row of the projection, -1 for a bucket without one
        if self.rows is not None:
            self.lookup = np.full(self.buckets, -1, np.int64)
            self.lookup[self.rows] = np.arange(len(self.rows))

    @classmethod
    def fit(
        cls,
        texts: list[str],
        buckets: int = LEXICAL_BUCKETS,
        dim: int = LEXICAL_DIM,
        seed: int = 0,
        char_budget: int = CHAR_BUDGET,
    ) -> Lexical:
        """IDF from document frequencies in `texts`, projection = top right singular vectors of their TF-IDF.

        The linear algebra runs on one thread: LAPACK's sums depend on the thread count, the projection must not.
        """
        import time

        started = time.perf_counter()
        tf = hashed_tf(texts, buckets, char_budget)
        df = np.bincount(tf.indices, minlength=buckets)
        idf = (np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0).astype(np.float32)
        rows = np.flatnonzero(df).astype(np.int32)  # the buckets the sample uses: the others project to zero
        tfidf = _l2_rows(tf @ _diag(idf)).tocsc()[:, rows].tocsr()
        k = min(dim, min(tfidf.shape))
        log.info(
            f"fit: lexical space: {len(texts):,} texts use {len(rows):,} of {buckets:,} hashed columns; "
            f"projecting to {dim} dimensions (randomized SVD)"
        )
        with one_thread():
            projection = randomized_right_singular_vectors(tfidf, k, seed) if k else np.zeros((len(rows), 0))
        if projection.shape[1] < dim:  # fewer texts than dimensions: pad, the extra columns stay zero
            projection = np.pad(projection, ((0, 0), (0, dim - projection.shape[1])))
        # the artifact stores it in float16 (half the bytes); the fit featurizes with exactly what is stored
        projection = projection.astype(np.float16).astype(np.float32)
        log.info(f"fit: lexical space fitted in {time.perf_counter() - started:.1f} s")
        return cls(idf, projection, char_budget, rows)

    def encode(self, texts: list[str]) -> np.ndarray:
        tfidf = _l2_rows(hashed_tf(texts, self.buckets, self.char_budget) @ _diag(self.idf))
        if self.lookup is not None:
            tfidf = self._projected_columns(tfidf.tocsr())
        return unit_rows(np.asarray(tfidf @ self.projection, dtype=np.float32))

    def _projected_columns(self, tfidf):
        """The TF-IDF rows (already unit length over every bucket) on the buckets the projection has rows for, in
        the same order: the projection sums the same terms in the same order as over all buckets."""
        from scipy import sparse

        columns = self.lookup[tfidf.indices]
        keep = columns >= 0
        row_of = np.repeat(np.arange(tfidf.shape[0]), np.diff(tfidf.indptr))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=tfidf.shape[0]))])
        return sparse.csr_matrix((tfidf.data[keep], columns[keep], indptr), shape=(tfidf.shape[0], len(self.rows)))

    def stream(self, items):
        """(key, texts) windows -> (key, rows): the next window is read and featurized in a thread while the
        caller scores this one (the c-transform's matmuls and numpy's loops let go of the GIL)."""
        from gotd_stream.features.engine.pipeline import prefetch

        return prefetch(((key, self.encode(texts)) for key, texts in items), "gotd-lexical")

    def arrays(self) -> dict[str, np.ndarray]:
        """IDF (float32) and projection: float16 rows of the used buckets (format 4 on), else float32 for all."""
        if self.rows is None:
            return {"lexical_idf": self.idf, "lexical_projection": self.projection}
        return {
            "lexical_idf": self.idf,
            "lexical_projection": self.projection.astype(np.float16),
            "lexical_rows": self.rows,
        }

    def describe(self) -> dict:
        """What the artifact records to rebuild the space exactly."""
        return {
            "space": "lexical",
            "buckets": self.buckets,
            "dim": self.dim,
            **LEXICAL_RECIPE,
            "char_budget": self.char_budget,
        }

    def model_settings(self) -> None:
        return None  # no model


def _diag(values: np.ndarray):
    from scipy import sparse

    return sparse.diags(values)


def randomized_right_singular_vectors(matrix, k: int, seed: int, oversample: int = 10, power: int = 2) -> np.ndarray:
    """(columns, k) top right singular vectors of a sparse matrix (Halko, Martinsson & Tropp 2011), seeded.

    The range is found on the side of the rows (the sample: Y = A G, power iterations Y = A A^T Y, QR of Y), and
    the right vectors come from the small Gram matrix of B = A^T Q: A ~ Q Q^T A, B^T B = W S^2 W^T, V = B W / S.
    So the costly steps grow with the sample and the columns it uses, each once.
    """
    rng = np.random.default_rng(seed)
    width = min(k + oversample, min(matrix.shape))
    q, _ = np.linalg.qr(np.asarray(matrix @ rng.standard_normal((matrix.shape[1], width))))
    for _ in range(power):  # power iterations sharpen the spectrum so the top vectors come out right
        q, _ = np.linalg.qr(np.asarray(matrix @ np.asarray(matrix.T @ q)))
    b = np.asarray(matrix.T @ q)  # (Q^T A)^T: its left singular vectors are A's top right singular vectors
    s2, w = np.linalg.eigh(b.T @ b)
    top = np.argsort(s2, kind="stable")[::-1][:k]
    s2, w = s2[top], w[:, top]
    # a direction the sample does not span (duplicate texts) has no singular vector: its column stays zero
    scale = np.where(s2 > s2.max(initial=0.0) * 1e-12, 1.0 / np.sqrt(np.maximum(s2, 1e-300)), 0.0)
    return ((b @ w) * scale).astype(np.float32)


def validate_fields(features: dict, model, tensors: dict[str, np.ndarray]) -> Fields | str:
    """The lexical space's fields in an artifact: no model, this code's recipe, arrays that fit it; a string says
    what is wrong."""
    if model is not None:
        return "the lexical space needs no model, but the header names one"
    return validate_lexical(features, tensors) or Fields(features["dim"], lexical_arrays(tensors))


def lexical_arrays(tensors: dict[str, np.ndarray]) -> frozenset[str]:
    """The names of the lexical space's arrays: its IDF and projection, and from format version 4 its rows."""
    return frozenset({"lexical_idf", "lexical_projection"} | ({"lexical_rows"} & set(tensors)))


def validate_lexical(features: dict, tensors: dict[str, np.ndarray]) -> str | None:
    """The lexical recipe must be this code's, and its arrays must fit it."""
    for key in ("buckets", "dim", "char_budget"):
        if not (is_int(features.get(key)) and features[key] >= 1):
            return f"lexical {key} {brief(features.get(key))} is not a positive integer"
    for key, value in LEXICAL_RECIPE.items():
        if features.get(key) != value:
            return f"lexical {key} {brief(features.get(key))} differs from this gotd-stream's {value!r}"
    buckets, dim = features["buckets"], features["dim"]
    problem = float_array(tensors, "lexical_idf", (buckets,))
    if problem:
        return problem
    rows = tensors.get("lexical_rows")
    if rows is not None:  # format version 4: a projection row for each bucket the fit sample used, in order
        if rows.dtype != np.int32 or rows.ndim != 1:
            return f"lexical_rows is {rows.dtype}{list(rows.shape)}, expected int32[rows]"
        if len(rows) and (rows[0] < 0 or rows[-1] >= buckets or (np.diff(rows) <= 0).any()):
            return f"lexical_rows are not increasing buckets in [0, {buckets})"
        return float_array(tensors, "lexical_projection", (len(rows), dim), np.float16)
    return float_array(tensors, "lexical_projection", (buckets, dim))


def float_array(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dtype=np.float32) -> str | None:
    """What is wrong with a float array of the lexical space: missing, another dtype or shape, non-finite."""
    array = tensors.get(name)
    if array is None:
        return f"arrays missing: {name}"
    if array.dtype != dtype or array.shape != shape:
        return f"{name} is {array.dtype}{list(array.shape)}, expected {np.dtype(dtype).name}{list(shape)}"
    if not np.isfinite(array).all():
        return f"{name} holds non-finite values"
    return None

"""The lexical space: how a text is written (its register), where sentence embeddings see what it is about.

Lower-cased word unigrams and bigrams, hashed with crc32 (stable on every machine and process, unlike
Python's `hash()`) into `buckets` columns; sublinear TF times IDF estimated on the fit sample; a linear projection
to `dim` dimensions fitted on the fit sample by randomized SVD; L2-normalised. Everything fitted is a plain array
stored in the artifact. No model, no GPU.
"""

from __future__ import annotations

import zlib

import numpy as np

from gotd_stream.features.base import CHAR_BUDGET, LEXICAL_BUCKETS, LEXICAL_DIM, WORD, unit_rows

# Why a text with words can still have a zero lexical row: its n-grams hash to columns no fit text used.
NO_KNOWN_WORDS = ("no known words", "none of its words or word pairs occurs in the fit sample")
_BIGRAM_MIX = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit constant: bigram hash = h(a) * K xor h(b)
# How hashed_tf reads a text, as the artifact records it: an artifact with another recipe cannot be scored here.
LEXICAL_RECIPE = {"ngrams": [1, 2], "hash": "crc32", "words": WORD.pattern, "lowercase": True, "tf": "1+log"}


def hashed_tf(texts: list[str], buckets: int, char_budget: int | None = None):
    """Sparse (len(texts), buckets) matrix of sublinear term frequencies 1 + log(count) of unigrams and bigrams."""
    from scipy import sparse

    lengths = np.zeros(len(texts), dtype=np.int64)
    hashes: list[int] = []
    for i, text in enumerate(texts):
        words = WORD.findall((text[:char_budget] if char_budget else text).lower())
        lengths[i] = len(words)
        hashes.extend(map(zlib.crc32, map(str.encode, words)))
    h = np.array(hashes, dtype=np.uint64)
    doc = np.repeat(np.arange(len(texts)), lengths)
    inside = doc[1:] == doc[:-1]  # word pairs that do not straddle two documents
    with np.errstate(over="ignore"):
        bigrams = (h[:-1] * _BIGRAM_MIX) ^ h[1:]
    rows = np.concatenate([doc, doc[1:][inside]])
    cols = np.concatenate([h, bigrams[inside]]) % np.uint64(buckets)
    tf = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols.astype(np.int64))), shape=(len(texts), buckets))
    tf.sum_duplicates()
    tf.data = 1.0 + np.log(tf.data)
    return tf


def _l2_rows(matrix):
    from scipy import sparse

    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix


class Lexical:
    """The fitted lexical space: IDF weights and a projection, both plain arrays."""

    window = 4096  # texts per encode() call when the pipeline scores in this space alone
    zero_row = NO_KNOWN_WORDS  # what a zero row means here; the scoring skips such a record

    def __init__(self, idf: np.ndarray, projection: np.ndarray, char_budget: int = CHAR_BUDGET):
        self.idf = np.asarray(idf, np.float32)
        self.projection = np.asarray(projection, np.float32)
        self.buckets, self.dim = self.projection.shape
        self.char_budget = char_budget

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
        from gotd_stream.select.ot import one_thread

        tf = hashed_tf(texts, buckets, char_budget)
        df = np.bincount(tf.indices, minlength=buckets)
        idf = (np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0).astype(np.float32)
        tfidf = _l2_rows(tf @ _diag(idf))
        with one_thread():
            projection = randomized_right_singular_vectors(tfidf, min(dim, min(tfidf.shape)), seed)
        if projection.shape[1] < dim:  # fewer texts than dimensions: pad, the extra columns stay zero
            projection = np.pad(projection, ((0, 0), (0, dim - projection.shape[1])))
        return cls(idf, projection, char_budget)

    def encode(self, texts: list[str]) -> np.ndarray:
        tfidf = _l2_rows(hashed_tf(texts, self.buckets, self.char_budget) @ _diag(self.idf))
        return unit_rows(np.asarray(tfidf @ self.projection, dtype=np.float32))

    def stream(self, items):
        """(key, texts) windows -> (key, rows): the next window is read and featurized in a thread while the
        caller scores this one (the c-transform's matmuls and numpy's loops let go of the GIL)."""
        from gotd_stream.features.engine import prefetch

        return prefetch(((key, self.encode(texts)) for key, texts in items), "gotd-lexical")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"lexical_idf": self.idf, "lexical_projection": self.projection}

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
    """(columns, k) top right singular vectors of a sparse matrix (Halko, Martinsson & Tropp 2011), seeded."""
    rng = np.random.default_rng(seed)
    width = min(k + oversample, min(matrix.shape))
    q, _ = np.linalg.qr(matrix.T @ rng.standard_normal((matrix.shape[0], width)).astype(np.float32))
    for _ in range(power):  # power iterations sharpen the spectrum so the top vectors come out right
        q, _ = np.linalg.qr(matrix @ q)
        q, _ = np.linalg.qr(matrix.T @ q)
    # A ~ (A Q) Q^T, and with A Q = U S W^T the right singular vectors of A are Q W
    _, _, wt = np.linalg.svd(np.asarray(matrix @ q), full_matrices=False)
    return (q @ wt.T[:, :k]).astype(np.float32)

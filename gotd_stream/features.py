"""Feature spaces for the OT problem: semantic (sentence embeddings), lexical (hashed n-gram TF-IDF), hybrid.

Sentence embeddings see what a text is about; word n-grams see how it is written (its register). A target
defined by its topic wants the first, one defined by its register the second; the hybrid concatenates both.

lexical: lower-cased word unigrams and bigrams, hashed with crc32 (stable on every machine and process, unlike
Python's `hash()`) into `buckets` columns; sublinear TF times IDF estimated on the fit sample; a linear projection
to `dim` dimensions fitted on the fit sample by randomized SVD; L2-normalised. Everything fitted is a plain array
stored in the artifact. No model, no GPU.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

SPACES = ("semantic", "lexical", "hybrid")
CHAR_BUDGET = 4096  # characters of a text the lexical space reads (the semantic one: 16 per token)
WORD = re.compile(r"\w+")
# Why a text with words can still have a zero lexical row: its n-grams hash to columns no fit text used.
NO_KNOWN_WORDS = ("no known words", "none of its words or word pairs occurs in the fit sample")
_BIGRAM_MIX = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit constant: bigram hash = h(a) * K xor h(b)


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
    zero_row = NO_KNOWN_WORDS  # what a zero row means here; the pipeline skips such a record

    def __init__(self, idf: np.ndarray, projection: np.ndarray, char_budget: int = CHAR_BUDGET, device: str = "cpu"):
        self.device = device  # where the OT runs; the featurizing itself is always on the CPU
        self.idf = np.asarray(idf, np.float32)
        self.projection = np.asarray(projection, np.float32)
        self.buckets, self.dim = self.projection.shape
        self.char_budget = char_budget

    @classmethod
    def fit(
        cls, texts: list[str], buckets: int = 1 << 15, dim: int = 256, seed: int = 0, char_budget: int = CHAR_BUDGET
    ) -> Lexical:
        """IDF from document frequencies in `texts`, projection = top right singular vectors of their TF-IDF.

        The linear algebra runs on one thread: LAPACK's sums depend on the thread count, the projection must not.
        """
        from gotd_stream.ot import one_thread

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
        return _unit(np.asarray(tfidf @ self.projection, dtype=np.float32))

    def stream(self, items):
        """(key, texts) windows -> (key, rows): the next window is read and featurized in a thread while the
        caller scores this one (the c-transform's matmuls and numpy's loops let go of the GIL)."""
        from gotd_stream.engine import prefetch

        return prefetch(((key, self.encode(texts)) for key, texts in items), "gotd-lexical")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"lexical_idf": self.idf, "lexical_projection": self.projection}


def _diag(values: np.ndarray):
    from scipy import sparse

    return sparse.diags(values)


def _unit(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # a non-finite row stays non-finite; the pipeline skips it
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


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


class Hybrid:
    """Both spaces side by side: [sqrt(w) * semantic, sqrt(1 - w) * lexical], unit length like each part.

    The lexical part rides along with the semantic model's tokenizer (in its worker processes, or beside it in
    a thread), so it is computed while the model runs instead of after it.
    """

    def __init__(self, semantic, lexical: Lexical, weight: float = 0.5):
        self.semantic, self.lexical, self.weight = semantic, lexical, weight
        self.dim = semantic.dim + lexical.dim
        self.device, self.window = semantic.device, semantic.window

    def combine(self, semantic: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        """The joined rows. A text none of whose words the fit sample had (a zero lexical part) keeps its
        semantic part alone, at unit length: it still has features here, unlike in the lexical space."""
        a = np.sqrt(self.weight) * semantic
        b = np.sqrt(1.0 - self.weight) * lexical
        return _unit(np.concatenate([a, b], axis=1).astype(np.float32))

    def stream(self, items):
        """(key, texts) windows -> (key, hybrid rows), both parts computed at once."""
        for key, semantic, lexical in self.semantic.stream(items, side=self.lexical):
            yield key, self.combine(semantic, lexical)

    def encode(self, texts: list[str]) -> np.ndarray:
        items = ((None, texts[i : i + self.window]) for i in range(0, len(texts), self.window))
        parts = [emb for _, emb in self.stream(items)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def build(
    space: str, sample: list[str], embedder, *, seed: int, weight: float, buckets: int, dim: int, device: str = "cpu"
):
    """The featurizer for `space`, fitting the lexical part on the fit sample."""
    if space == "semantic":
        return embedder
    lexical = Lexical.fit(sample, buckets=buckets, dim=dim, seed=seed)
    lexical.device = device
    return lexical if space == "lexical" else Hybrid(embedder, lexical, weight)


def describe(space: str, featurizer) -> dict:
    """What the artifact records to rebuild the space exactly."""
    header: dict = {"space": space}
    lexical = featurizer if space == "lexical" else getattr(featurizer, "lexical", None)
    if lexical is not None:
        header.update(
            buckets=lexical.buckets,
            dim=lexical.dim,
            ngrams=[1, 2],
            hash="crc32",
            words=WORD.pattern,
            lowercase=True,
            tf="1+log",
            char_budget=lexical.char_budget,
        )
    if space == "hybrid":
        header["weight"] = featurizer.weight
    return header


def restore(header: dict, arrays: dict, embedder, device: str = "cpu"):
    """The featurizer an artifact was fitted in (embedder: the loaded model, or None for lexical)."""
    space = header.get("space", "semantic")
    if space == "semantic":
        return embedder
    lexical = Lexical(
        arrays["lexical_idf"], arrays["lexical_projection"], header.get("char_budget", CHAR_BUDGET), device
    )
    return lexical if space == "lexical" else Hybrid(embedder, lexical, header["weight"])

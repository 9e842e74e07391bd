"""Two students measured at token parity beside the tool's own (gotd_stream.select.distill), not in the tool.

The tool's student is a ridge regression of the teacher's calibrated score on hashed word 1-2-grams, trained on
the fit sample (and the target). Two ways it could come closer to the teacher without a transformer at `score`:

- **both feature families** (the issue's "hashed n-grams, static embeddings, both"): the same regression on the
  n-gram rows beside the static model's row of the text (MiniLM distilled into one vector per token, unit length,
  times STATIC_WEIGHT). The static row gives words the sample never showed a weight through their neighbours;
  at `score` it costs the static model's tokenizer and a mean of rows per text.
- **tail rows**: a second student, trained on the fit sample plus the records a first student ranks best among a
  larger reservoir of the corpus, scored by the teacher. Selection is decided in the low tail, where the sample
  holds a few hundred rows; these put thousands there. The teacher embeds TAIL_ROWS more texts at fit time; `score`
  is the tool's student, unchanged in cost.

bench/parity.py's gotd-both and gotd-tail select with them (BENCHMARKS.md, *Two more students*).
"""

from __future__ import annotations

import numpy as np

from gotd_stream.select.distill import (
    TAIL_SHARE,
    Student,
    StudentSettings,
    features,
    spearman,
    train,
    weighted_ridge,
)

STATIC_WEIGHT = 1.0  # the static row's scale beside the unit n-gram row
TAIL_RESERVOIR = 50_000  # records of the corpus the first student ranks
TAIL_ROWS = 5_000  # ... of which its best this many are scored by the teacher and added as training rows


class BothStudent:
    """A linear model of the teacher's score on [n-gram row, STATIC_WEIGHT x static row]."""

    def __init__(self, static, buckets: int, used: np.ndarray, weights: np.ndarray, dense: np.ndarray, bias: float):
        self.static, self.buckets, self.bias = static, buckets, bias
        self.ngram = np.zeros(buckets)
        self.ngram[used] = weights
        self.dense = dense
        self.info: dict = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts))
        for start in range(0, len(texts), 4096):
            part = texts[start : start + 4096]
            tf, norms = features(part, self.buckets)
            rows = unit(self.static.encode(part))
            out[start : start + len(part)] = (
                (tf @ self.ngram) / np.maximum(norms, 1e-300) + STATIC_WEIGHT * rows @ self.dense + self.bias
            )
        return out


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def train_both(
    static,
    texts: list[str],
    scores: np.ndarray,
    target_texts: list[str],
    target_scores: np.ndarray,
    settings: StudentSettings = StudentSettings(),
) -> BothStudent:
    """The tool's weighted ridge regression (distill.train's weights, damping and bias column) with the static
    block beside the n-gram block."""
    from scipy import sparse

    scores = np.asarray(scores, np.float64)
    cut = np.quantile(scores, TAIL_SHARE)
    weight = np.concatenate([1.0 + settings.tail * (scores <= cut), np.full(len(target_texts), 1.0 + settings.tail)])
    rows_text = list(texts) + list(target_texts)
    y = np.concatenate([scores, np.asarray(target_scores, np.float64)])
    tf, norms = features(rows_text, settings.buckets)
    x = sparse.diags(1.0 / np.maximum(norms, 1e-300)) @ tf
    used = np.unique(x.indices).astype(np.int32)
    x = x.tocsc()[:, used].tocsr()
    dense = STATIC_WEIGHT * unit(static.encode(rows_text))
    solved, bias = weighted_ridge(sparse.hstack([x, sparse.csr_matrix(dense)]), y, weight, settings)
    k = len(used)
    student = BothStudent(static, settings.buckets, used, solved[:k], solved[k:], bias)
    student.info = {"training_rows": len(rows_text), "spearman": round(spearman(student(list(texts)), scores), 4)}
    return student


def train_tail(
    first: Student,
    teacher,
    texts: list[str],
    scores: np.ndarray,
    target_texts: list[str],
    target_scores: np.ndarray,
    reservoir: list[str],
    rows: int = TAIL_ROWS,
    settings: StudentSettings = StudentSettings(),
) -> tuple[Student, list[str]]:
    """A student trained on the sample, the target and the `rows` reservoir texts `first` ranks best (lowest), the
    latter scored by `teacher` (a function of texts); and those texts."""
    ranked = np.argsort(first(reservoir), kind="stable")[:rows]
    extra = [reservoir[i] for i in ranked]
    student = train(
        list(texts) + extra,
        np.concatenate([np.asarray(scores, np.float64), teacher(extra)]),
        settings,
        target_texts,
        target_scores,
    )
    student.info["tail_rows"] = len(extra)
    return student, extra

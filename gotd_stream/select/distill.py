"""The distilled scorer (the student): a linear model of the teacher's calibrated gradient on hashed n-grams.

The teacher is the fit's own space (by default MiniLM-hybrid) and the c-transform; its cost is the embedder. The
student predicts the teacher's score of a text from the lexical space's hashed word 1-2-grams
(features.lexical.hashed_tf: sublinear TF, rows of unit L2 length):

    student(x) = bias + sum_b w_b tf_b(x) / |tf(x)|

fitted by ridge regression (LSQR with damping) on the fit sample's texts and their teacher scores, weighted so
that the low tail (the records a selection keeps) counts more, and optionally on the target's texts too. It
needs no model and no torch: tens of thousands of documents a second per core.

A record's student score depends on its text alone (a CSR row product, summed in the row's order), so it is the
same bits in any window, shard or run: selections by the student, and the cascade's per-record rule (a record
goes on to the teacher only if its student score is at or below the Q-quantile of the sample's student scores),
keep `merge`, `--state` and Ray exact.

Scores of different scorers are not comparable: each scorer writes its own id in gotd_fit (`scoring_id`), so a
merge of student-scored and teacher-scored lines is refused like a merge of two fits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gotd_stream.checks import brief, is_int, is_real
from gotd_stream.errors import BadSetting, UsageProblem, setting
from gotd_stream.text import CHAR_BUDGET

if TYPE_CHECKING:  # numpy and the lexical space load with the first student (the CLI reads SCORERS for --help)
    import numpy as np

log = logging.getLogger(__name__)

# Whether `fit` trains a student when not told. None: when the teacher embeds with a transformer (the semantic and
# hybrid spaces on any model but a static one), where it pays; a cheap teacher needs no student.
DEFAULT_DISTILL = None
# Fewest fit-sample documents a default fit trains a student on: fewer teach it too little to trust its ranking
# (an explicit --distill trains one on any sample).
STUDENT_MIN_SAMPLE = 1000
# auto: the cascade if the artifact holds a student (it matched the teacher's warm-up in 8 of 8 parity cells, the
# student alone in 7: BENCHMARKS.md), else the teacher
SCORERS = ("auto", "student", "teacher", "cascade")
DEFAULT_CASCADE_SHARE = 0.05  # the least share Q the cascade sends the teacher when not told (cascade_share)
# ... raised, when the budget keeps more of the corpus, to this many times the share it keeps: the teacher then sees
# several times what it keeps (at Q = 0.05 and 1% kept, 5 times, the cascade kept 95-100% of the teacher's top 1%)
CASCADE_MARGIN = 5
# a token budget's share of the corpus is read from the sample's mean characters at this many characters a token:
# more than English text has (about 4), so that the share is not underestimated
CHARS_PER_TOKEN = 5
STUDENT_WINDOW = 4096  # texts the student scores at a time (any size gives the same bits)
STUDENT_ARRAYS = ("rows", "weights", "sample")
TAIL_SHARE = 0.1  # the sample's lowest teacher scores, which the tail weight favours
BIAS_SCALE = 10.0  # the constant column: its weight is bias / scale, damped 100 times less than the others


@dataclass(frozen=True)
class StudentSettings:
    """How a student is trained; the defaults were chosen by bench/distill.py (recall of the teacher's top-k)."""

    buckets: int = 1 << 18
    ridge: float = 0.3  # the L2 penalty on the weights
    tail: float = 1.0  # extra weight of the rows in the sample's lowest TAIL_SHARE teacher scores (0: plain LSQ)
    with_target: bool = True  # the target's texts (and their teacher scores) as training rows too
    iterations: int = 400  # LSQR iterations at most

    def __post_init__(self):
        from gotd_stream.errors import positive, whole

        whole("student_buckets", self.buckets, 2)
        whole("student_iterations", self.iterations, 1)
        positive("student_ridge", self.ridge)
        if not (is_real(self.tail) and self.tail >= 0):
            raise BadSetting(f"{setting('student_tail')} must be a finite number of at least 0, not {self.tail!r}")


def features(texts: list[str], buckets: int, char_budget: int = CHAR_BUDGET):
    """CSR rows of sublinear hashed n-gram TF, float64, and each row's L2 norm (0 for a text without a word)."""
    import numpy as np

    from gotd_stream.features.lexical import hashed_tf

    tf = hashed_tf(texts, buckets, char_budget).astype(np.float64)
    squares = tf.copy()
    squares.data **= 2
    norms = np.sqrt(squares @ np.ones(buckets))
    return tf, norms


@dataclass
class Student:
    """One target's student: weights on the buckets the training rows used (`rows`, increasing), the bias, and the
    sorted student scores of the fit sample (the cascade's quantiles)."""

    rows: np.ndarray  # int32, increasing buckets
    weights: np.ndarray  # float32, one per row
    bias: float
    sample: np.ndarray  # float64, the fit sample's student scores, sorted
    info: dict = field(default_factory=dict)  # buckets, char_budget, the recipe, training settings and fit quality

    @property
    def buckets(self) -> int:
        return int(self.info["buckets"])

    @property
    def char_budget(self) -> int:
        return int(self.info["char_budget"])

    def dense(self) -> np.ndarray:
        """The weights over every bucket (float64), zero where the training rows had none."""
        import numpy as np

        if getattr(self, "_dense", None) is None:
            dense = np.zeros(self.buckets)
            dense[self.rows] = self.weights
            self._dense = dense
        return self._dense

    def of(self, tf, norms: np.ndarray) -> np.ndarray:
        """Student scores of feature rows (features()): one CSR row product each, then the scaling and the bias."""
        import numpy as np

        return (tf @ self.dense()) / np.maximum(norms, 1e-300) + self.bias

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.of(*features(texts, self.buckets, self.char_budget))

    def threshold(self, share: float) -> float:
        """The cascade's threshold: the `share`-quantile of the sample's student scores (the ceil(share n)-th)."""
        return float(self.sample[max(0, math.ceil(share * len(self.sample)) - 1)])

    def header(self) -> dict:
        return dict(self.info, bias=self.bias)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        import numpy as np

        return {
            prefix + "rows": np.ascontiguousarray(self.rows, np.int32),
            prefix + "weights": np.ascontiguousarray(self.weights, np.float32),
            prefix + "sample": np.ascontiguousarray(self.sample, np.float64),
        }

    def digest(self) -> str:
        """A hash of everything the student's scores depend on."""
        h = hashlib.sha256(json.dumps(self.header(), sort_keys=True).encode())
        for array in self.arrays("").values():
            h.update(array.tobytes())
        return h.hexdigest()


def train(
    texts: list[str],
    scores: np.ndarray,
    settings: StudentSettings,
    target_texts: list[str] = (),
    target_scores: np.ndarray | None = None,
    char_budget: int = CHAR_BUDGET,
) -> Student:
    """A student of the teacher's `scores` of the fit sample's `texts` (and of the target's, `with_target`).

    Weighted ridge regression, solved by LSQR on one thread: rows of the sample's low tail (its lowest TAIL_SHARE
    scores) weigh 1 + tail, the target's rows as much; a constant column of a large value stands for the bias,
    which the damping then barely penalises.
    """
    import numpy as np
    from scipy import sparse

    from gotd_stream.features.lexical import LEXICAL_RECIPE

    scores = np.asarray(scores, np.float64)
    cut = np.quantile(scores, TAIL_SHARE) if len(scores) else 0.0
    weight = 1.0 + settings.tail * (scores <= cut)
    rows_text, y = list(texts), scores
    if settings.with_target and len(target_texts):
        rows_text += list(target_texts)
        y = np.concatenate([scores, np.asarray(target_scores, np.float64)])
        weight = np.concatenate([weight, np.full(len(target_texts), 1.0 + settings.tail)])
    tf, norms = features(rows_text, settings.buckets, char_budget)
    x = sparse.diags(1.0 / np.maximum(norms, 1e-300)) @ tf
    used = np.unique(x.indices).astype(np.int32)
    x = x.tocsc()[:, used].tocsr()
    coefficients, bias = weighted_ridge(x, y, weight, settings)
    weights = coefficients.astype(np.float32)
    info = {
        "buckets": settings.buckets,
        "char_budget": char_budget,
        **LEXICAL_RECIPE,
        "ridge": settings.ridge,
        "tail": settings.tail,
        "with_target": settings.with_target,
        "training_rows": len(rows_text),
        "sample_chars": round(sum(map(len, texts)) / max(len(texts), 1), 1),  # for cascade_share's token budgets
    }
    student = Student(used, weights, bias, np.zeros(0), info)
    own = student(list(texts))
    student.sample = np.sort(own)
    if len(own) > 2:
        student.info["spearman"] = round(spearman(own, scores), 4)
    return student


def weighted_ridge(x, y: np.ndarray, weight: np.ndarray, settings: StudentSettings) -> tuple[np.ndarray, float]:
    """The coefficients of the columns of `x` (sparse rows) and the bias minimising the weighted squared error plus
    settings.ridge times the squared coefficients: LSQR on one thread, with a constant column of BIAS_SCALE
    standing for the bias, which the damping then barely penalises."""
    import numpy as np
    from scipy import sparse
    from scipy.sparse.linalg import lsqr

    from gotd_stream.threads import one_thread

    design = sparse.hstack([x, np.full((x.shape[0], 1), BIAS_SCALE)]).tocsr()
    root = np.sqrt(weight)
    with one_thread():
        solved = lsqr(
            sparse.diags(root) @ design,
            root * y,
            damp=math.sqrt(settings.ridge),
            atol=1e-10,
            btol=1e-10,
            iter_lim=settings.iterations,
        )[0]
    return solved[:-1], float(solved[-1] * BIAS_SCALE)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by position: enough for continuous scores)."""
    import numpy as np

    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


# --- in the artifact -----------------------------------------------------------------------------------------------

INFO_FIELDS = {"ridge", "tail", "training_rows", "spearman", "with_target", "sample_chars"}


def validate(header, arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a student's header and its arrays (None: nothing)."""
    import numpy as np

    from gotd_stream.features.lexical import LEXICAL_RECIPE

    if not isinstance(header, dict):
        return "student is not an object"
    known = {"buckets", "char_budget", "bias", *LEXICAL_RECIPE, *INFO_FIELDS}
    unknown = set(header) - known
    if unknown:
        return f"student has unknown fields: {', '.join(sorted(map(brief, unknown)))}"
    for key in ("buckets", "char_budget"):
        if not (is_int(header.get(key)) and header[key] >= 1):
            return f"student {key} {brief(header.get(key))} is not a positive integer"
    for key, value in LEXICAL_RECIPE.items():
        if header.get(key) != value:
            return f"student {key} {brief(header.get(key))} differs from this gotd-stream's {value!r}"
    if "sample_chars" in header and not (is_real(header["sample_chars"]) and header["sample_chars"] > 0):
        return f"student sample_chars {brief(header['sample_chars'])} is not a positive number"
    if not is_real(header.get("bias")):
        return f"student bias {brief(header.get('bias'))} is not a finite number"
    missing = [name for name in STUDENT_ARRAYS if name not in arrays]
    if missing or set(arrays) - set(STUDENT_ARRAYS):
        extra = sorted(set(arrays) - set(STUDENT_ARRAYS))
        return f"student arrays {'missing: ' + ', '.join(missing) if missing else 'unexpected: ' + ', '.join(extra)}"
    rows, weights, sample = arrays["rows"], arrays["weights"], arrays["sample"]
    if rows.dtype != np.int32 or rows.ndim != 1:
        return f"student rows is {rows.dtype}{list(rows.shape)}, expected int32[rows]"
    if len(rows) and (rows[0] < 0 or rows[-1] >= header["buckets"] or (np.diff(rows) <= 0).any()):
        return f"student rows are not increasing buckets in [0, {header['buckets']})"
    if weights.dtype != np.float32 or weights.shape != rows.shape:
        return f"student weights is {weights.dtype}{list(weights.shape)}, expected float32[{len(rows)}]"
    if sample.dtype != np.float64 or sample.ndim != 1 or len(sample) < 1:
        return f"student sample is {sample.dtype}{list(sample.shape)}, expected float64[n >= 1]"
    if not (np.isfinite(weights).all() and np.isfinite(sample).all()):
        return "student holds non-finite values"
    if (np.diff(sample) < 0).any():
        return "student sample scores are not sorted"
    return None


def restore(header: dict, arrays: dict[str, np.ndarray]) -> Student:
    """A student from its validated header and arrays."""
    info = {key: value for key, value in header.items() if key != "bias"}
    return Student(arrays["rows"], arrays["weights"], float(header["bias"]), arrays["sample"], info)


# --- which scorer, and the id its lines carry ----------------------------------------------------------------------


class NoStudent(UsageProblem):
    """A scorer that needs the student, with an artifact fitted without one."""


def students_of(artifact) -> list[Student] | None:
    """Each target's student, in the order of the targets (None: the artifact holds none)."""
    parts = getattr(artifact, "parts", None) or [artifact]
    students = [getattr(part, "student", None) for part in parts]
    return None if any(s is None for s in students) else students


def resolve(artifact, scorer: str) -> str:
    """The scorer a run uses: `auto` is the cascade when the artifact holds a student, else the teacher."""
    has = students_of(artifact) is not None
    if scorer == "auto":
        return "cascade" if has else "teacher"
    if scorer in ("student", "cascade") and not has:
        raise NoStudent(
            f"{setting('scorer')} {scorer} needs a distilled scorer in the artifact, and it holds none: fit it with "
            f"{setting('distill')}, or score with {setting('scorer')} teacher"
        )
    return scorer


def wants_student(distill: bool | None, space: str, embedder, sample_size: int) -> bool:
    """Whether a fit trains a student: `distill` if given, else (None) when its space embeds with a transformer
    and its sample has at least STUDENT_MIN_SAMPLE documents to learn from."""
    if distill is not None:
        return distill
    costly = space in ("semantic", "hybrid") and embedder is not None and not getattr(embedder, "static", False)
    if costly and sample_size < STUDENT_MIN_SAMPLE:
        log.info("no distilled scorer: the fit sample has %d documents, under %d", sample_size, STUDENT_MIN_SAMPLE)
    return costly and sample_size >= STUDENT_MIN_SAMPLE


def cascade_share(artifact, k: int | None, tokens: int | None, told: float | None = None) -> float:
    """The cascade's Q: `told` (--cascade-share) if given, else DEFAULT_CASCADE_SHARE or CASCADE_MARGIN times the
    share of the corpus the budget keeps where that is more (at most 1). The corpus is what the fit's bottom-k sample
    was drawn from (candidates_seen); a token budget's share counts the sample's mean length at CHARS_PER_TOKEN.
    Only the artifact and the budget decide it, so every shard, --state and merge use the same Q. A fit on a
    stream's prefix has not seen the corpus: DEFAULT_CASCADE_SHARE (the summary warns when the margin is thin)."""
    if told is not None:
        check_share(told)
        return told
    fit = getattr(artifact, "fit", None) or {}
    seen, students = fit.get("candidates_seen"), students_of(artifact) or []
    if fit.get("sampling") != "bottom-k" or not is_real(seen) or seen < 1 or (k is None and tokens is None):
        return DEFAULT_CASCADE_SHARE
    if k is not None:
        kept = k / seen
    else:
        chars = [s.info.get("sample_chars") for s in students]
        if not chars or not all(is_real(c) and c > 0 for c in chars):
            return DEFAULT_CASCADE_SHARE  # a student from before sample_chars was stored
        kept = tokens / (seen * max(min(chars) / CHARS_PER_TOKEN, 1.0))
    return min(1.0, max(DEFAULT_CASCADE_SHARE, math.ceil(CASCADE_MARGIN * kept * 1e4) / 1e4))


def thin_cascade(artifact, read: int, passed: int, kept: int) -> bool:
    """Whether a cascade over `read` records sent the teacher (`passed`) fewer than twice the `kept` ones, on at
    least the corpus the fit sampled: a run over less of it is a shard, whose -k is the merged selection's (it keeps
    a larger share than the merge, which draws on every shard's records)."""
    seen = (getattr(artifact, "fit", None) or {}).get("candidates_seen")
    shard = is_real(seen) and read < seen
    return passed < 2 * kept and not shard


def check_share(share) -> None:
    """The cascade's share: a number in (0, 1]."""
    if not is_real(share) or not 0 < share <= 1:
        raise BadSetting(f"{setting('cascade_share')} must be a number in (0, 1], not {share!r}")


def scoring_id(artifact, scorer: str, share: float | None = None) -> str:
    """The id a line scored by `scorer` carries in gotd_fit: the fit id for the teacher; for the student and the
    cascade (its share too) a hash of it with the students, so that only lines of one scorer merge."""
    kind = resolve(artifact, scorer)
    if kind == "teacher":
        return artifact.fit_id
    parts = [artifact.fit_id, kind, [s.digest() for s in students_of(artifact)]]
    if kind == "cascade":
        parts.append(repr(float(share if share is not None else DEFAULT_CASCADE_SHARE)))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def student_matrix(students: list[Student], texts: list[str]) -> np.ndarray:
    """Every target's student score of each text: an (n, targets) float64 matrix (the features made once)."""
    import numpy as np

    if not texts:
        return np.zeros((0, len(students)))
    first = students[0]
    tf, norms = features(texts, first.buckets, first.char_budget)
    columns = []
    for student in students:
        if (student.buckets, student.char_budget) != (first.buckets, first.char_budget):
            columns.append(student(texts))
        else:
            columns.append(student.of(tf, norms))
    return np.stack(columns, axis=1)


def passing(students: list[Student], share: float, texts: list[str]) -> np.ndarray:
    """Which texts the cascade sends on to the teacher: a student score at or below its target's threshold (any
    target, with several)."""
    import numpy as np

    scores = student_matrix(students, texts)
    thresholds = np.array([s.threshold(share) for s in students])
    return (scores <= thresholds[None, :]).any(axis=1)

"""The OT part of GOT-D: fit dual potentials once, then score any document by a soft c-transform.

Between candidates x_i (weights a_i) and targets y_j (weights b_j), with cost c = squared Euclidean distance,
entropic OT has dual potentials (f, g) with plan P_ij = a_i b_j exp((f_i + g_j - c_ij) / eps). f_i is the
gradient of the OT distance with respect to the candidate mass a_i (the paper's Eq. 3), so moving mass from the
fit sample onto x changes the distance at the rate f(x) - mean(f): the calibrated gradient. For a document
never seen in the fit, f(x) is the soft c-transform of g:

    f(x) = -eps * log sum_j b_j exp((g_j - c(x, y_j)) / eps)

which for the fitted candidates reproduces f exactly. Lower (more negative) scores pull the data
distribution towards the target fastest. (For a candidate inside the sample, the paper's "f_i minus the mean
of the *others*" is N/(N-1) times our score: the same ranking.)
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import numpy as np

from gotd_stream.errors import RuntimeProblem, setting
from gotd_stream.threads import one_thread


class NotConverged(RuntimeProblem):
    """Sinkhorn stopped before the marginals matched, or produced non-finite values."""


@dataclass
class Fit:
    f: np.ndarray  # candidate potential over the fit sample (float64)
    g: np.ndarray  # target potential (float64)
    iterations: int
    marginal_error: float  # L1 distance between the plan's target marginal and b: mass misplaced
    ot_cost: float  # <P, C>, the transport cost of the entropic plan


def _torch_device(device: str):
    import torch

    return torch.device(device)


def sq_distances(x, y):
    """Squared Euclidean distances between rows (torch tensors)."""
    return (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)


def fit_potentials(
    x: np.ndarray, y: np.ndarray, epsilon: float, max_iter: int = 10000, tol: float = 1e-5, device: str = "cpu"
) -> Fit:
    """Sinkhorn between uniform measures on x and y, in float64, until the target marginal is within `tol` (L1).

    The iterations are the usual ones (each potential the soft c-transform of the other), run as matrix-vector
    products with the kernel exp(-c/eps) when its range fits a float64 (cost range / eps <= EXP_RANGE: eps
    down to about 0.01 for unit rows), which costs a small fraction of the log-domain form's exponentials; else
    in the log domain (POT's sinkhorn_log). Both stop at the same marginal error and end on an update of f, so
    f is exactly the c-transform of g. On the CPU it runs on one thread (`one_thread`), so the potentials do
    not depend on the thread count.
    """
    dev = _torch_device(device)
    with one_thread() if dev.type == "cpu" else contextlib.nullcontext():
        return _sinkhorn(x, y, epsilon, max_iter, tol, dev)


EXP_RANGE = 400.0  # exp(-400) is far above float64's smallest normal, and scalings up to exp(400 + log n) fit too


def _sinkhorn(x: np.ndarray, y: np.ndarray, epsilon: float, max_iter: int, tol: float, dev) -> Fit:
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64, device=dev)
    yt = torch.as_tensor(y, dtype=torch.float64, device=dev)
    cost = sq_distances(xt, yt)
    span = float(cost.max() - cost.min())
    fit = _scaling_sinkhorn(cost, epsilon, max_iter, tol) if span / epsilon <= EXP_RANGE else None
    if fit is None:  # a range too wide for the kernel, or scalings that left float64: epsilon-scaling
        fit = _epsilon_scaling(cost, epsilon, span, max_iter, tol)
    f, g, error, iterations, ot_cost = fit
    if not (np.isfinite(f).all() and np.isfinite(g).all() and math.isfinite(error)):
        raise NotConverged(f"Sinkhorn produced non-finite potentials at epsilon={epsilon}: raise {setting('epsilon')}")
    if error > tol:
        raise NotConverged(
            f"Sinkhorn did not converge: after {iterations} iterations the marginal error is {error:.3g} "
            f"(tolerance {tol:g}); raise {setting('max_iter')} (now {max_iter}) or {setting('epsilon')} "
            f"(now {epsilon:g})"
        )
    return Fit(f, g, iterations, error, ot_cost)


def _epsilon_scaling(cost, epsilon: float, span: float, max_iter: int, tol: float):
    """Sinkhorn at epsilon * 2^k, k = K .. 0, each stage started from the potentials of the one before: a small
    epsilon converges in far fewer iterations than from a cold start. Stages whose kernel fits a float64 run by
    the scalings, the others in the log domain; the iterations of all stages count against max_iter."""
    stages = max(0, math.ceil(math.log2(max(1.0, span / (EXP_RANGE * epsilon)))))
    warm, total = None, 0
    for k in range(stages, -1, -1):
        eps = epsilon * 2.0**k
        fit = _scaling_sinkhorn(cost, eps, max_iter - total, tol, warm) if span / eps <= EXP_RANGE else None
        if fit is None:
            fit = _log_sinkhorn(cost, eps, max_iter - total, tol, warm)
        warm, total = (fit[0], fit[1]), total + fit[3]
        if total >= max_iter:
            break
    return (*fit[:3], total, fit[4])


def _scaling_sinkhorn(cost, epsilon: float, max_iter: int, tol: float, warm=None):
    """(f, g, marginal error, iterations, <P, C>) by Sinkhorn's scalings U = exp(f/eps), V = exp(g/eps):

        V = 1 / (K^T (a U)),   U = 1 / (K (b V)),   K = exp(-(C - min C) / eps)

    (the shift by min C is taken back in f), from the potentials `warm` (f, g) if given. None when a scaling
    leaves float64's range."""
    import torch

    n, m = cost.shape
    low = float(cost.min())
    kernel = torch.exp((cost - low) / -epsilon)
    a, b = 1.0 / n, 1.0 / m
    iterations, stop = 0, tol / math.sqrt(m)
    if warm is None:
        w = kernel.T @ torch.full((n,), a, dtype=cost.dtype, device=cost.device)  # K^T (a U) for U = 1
    else:
        w = torch.exp(torch.as_tensor(warm[1], device=cost.device) / -epsilon)  # 1 / V
    u = torch.ones(n, dtype=cost.dtype, device=cost.device)
    v, excess = 1.0 / w, w - b
    while iterations < max_iter:
        v = 1.0 / w  # b * V * w is the plan's target marginal
        u = 1.0 / (kernel @ (v * b))
        iterations += 1
        w = kernel.T @ u * a
        excess = w * v * b - b  # the plan's target marginal minus b
        # the L2 norm within tol / sqrt(m) bounds the L1 error by tol (POT's criterion, as before)
        norm = float(excess.norm())
        if not math.isfinite(norm) or norm <= stop:
            break
    error = float(excess.abs().sum())
    if not (torch.isfinite(u).all() and torch.isfinite(v).all() and math.isfinite(error)):
        return None
    f = epsilon * torch.log(u) + low
    g = epsilon * torch.log(v)
    plan = kernel * (u * a)[:, None] * (v * b)[None, :]
    return f.cpu().numpy(), g.cpu().numpy(), error, iterations, float((plan * cost).sum())


def _log_sinkhorn(cost, epsilon: float, max_iter: int, tol: float, warm=None):
    """(f, g, marginal error, iterations, <P, C>) by POT's log-domain Sinkhorn (any epsilon), from the potentials
    `warm` (f, g) if given."""
    import ot
    import torch

    n, m = cost.shape
    a = torch.full((n,), 1.0 / n, dtype=cost.dtype, device=cost.device)
    b = torch.full((m,), 1.0 / m, dtype=cost.dtype, device=cost.device)
    start = None
    if warm is not None:  # POT's log scalings: log u = f / eps + log a
        f0, g0 = (torch.as_tensor(p, device=cost.device) / epsilon for p in warm)
        start = (f0 + torch.log(a), g0 + torch.log(b))
    with warnings.catch_warnings():
        # Non-convergence is judged from the marginals, and reported as an error, not a warning.
        warnings.simplefilter("ignore")
        # POT stops on the L2 norm of the marginal violation; tol / sqrt(m) bounds its L1 norm by tol.
        plan, log = ot.sinkhorn(
            a,
            b,
            cost,
            epsilon,
            method="sinkhorn_log",
            numItermax=max_iter,
            stopThr=tol / math.sqrt(m),
            log=True,
            warmstart=start,
        )
    f = epsilon * (log["log_u"] - torch.log(a))
    g = epsilon * (log["log_v"] - torch.log(b))
    error = float((plan.sum(0) - b).abs().sum())
    return f.cpu().numpy(), g.cpu().numpy(), error, int(log["niter"]) + 1, float((plan * cost).sum())


SLICE_CELLS = 1 << 22  # scores computed at a time (rows x targets): bounds the memory, never changes a bit
DOT_BITS = 26  # a row on its grid: integers of norm below 2^26, so every dot product of two rows is exact


def on_grid(a: np.ndarray, squares: np.ndarray | None = None) -> np.ndarray:
    """Rows of `a` rounded to the grid 2^(e - DOT_BITS), where 2^e bounds the row's L2 norm: float64 rows whose
    entries are integers q times the row's power-of-two grid, with |q| below 2^26 + sqrt(d)/2.

    By Cauchy-Schwarz, sum_i |q_i q'_i| <= |q| |q'| < 2^53 for two such rows, so every product and every partial
    sum of their dot product is an integer below 2^53 times the product of their grids, which float64 holds
    exactly: a matmul of rows on grids is exact whatever order BLAS adds in. Each row has its own grid, so it is
    rounded the same way whatever rows come with it. The rounding moves an entry by at most half the grid: for a
    unit row, 2^-27 (7.5e-9), the same order as float32's own rounding of the entries of a 512-dimension row.
    `squares`: the rows' squared norms, when the caller has them already.
    """
    a = np.asarray(a, np.float64)
    _, e = np.frexp(np.sqrt((a * a).sum(1) if squares is None else squares))  # the row's norm is below 2^e
    up = np.ldexp(1.0, DOT_BITS - e)[:, None]  # scaling by powers of two is exact
    return np.round(a * up) / up


class CTransform:
    """Scores batches of embeddings against a fitted target: f(x) = -eps * LSE_j(log b_j + (g_j - c(x, y_j)) / eps).

    A row's score is the same bits whatever the thread count, the batch it comes in or its place in it. A BLAS
    matmul adds in an order that depends on threads and shapes, so the dot products x . y_j are made exact
    instead: the rows of x and of 2 y / eps are rounded to power-of-two grids (`on_grid`) on which every product
    and partial sum of their float64 matmul is exact. The rest is numpy on the CPU: element by element, or summed
    along each row in one thread, in an order set by the row's length alone. The rounding moves a unit row by at
    most 2^-27 per entry, so the scores match the plain float64 formula to about 1e-8 (1e-6 at worst); one
    float64 matmul, where an earlier version split each row in two slices for three matmuls' work and 1e-13.
    """

    def __init__(self, target: np.ndarray, g: np.ndarray, epsilon: float, device: str = "cpu"):
        # on the CPU the matmul is numpy's (exact on the grids, so the same bits as torch's), and scoring needs
        # no torch at all: its import is most of a score's start-up
        self.device = None if str(device) == "cpu" else _torch_device(device)
        y = np.asarray(target, np.float64)
        m = len(y)
        # Expanding |x - y|^2 leaves f = |x|^2 - eps * LSE_j(w_j + x . (2 y_j / eps))
        self.w = np.asarray(g, np.float64) / epsilon - math.log(m) - (y * y).sum(1) / epsilon
        self.y_grid = on_grid(2.0 * y / epsilon).T.copy()
        if self.device is not None:
            import torch

            self.y_grid = torch.as_tensor(self.y_grid).to(self.device)
        self.epsilon = epsilon

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        rows = max(1, SLICE_CELLS // len(self.w))
        parts = [self._rows(x[i : i + rows]) for i in range(0, len(x), rows)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float64)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, np.float64)
        squares = (x64 * x64).sum(1)
        grid = on_grid(x64, squares)
        if self.device is None:
            z = grid @ self.y_grid  # x . 2 y_j / eps
        else:
            import torch

            z = (torch.as_tensor(grid).to(self.device) @ self.y_grid).cpu().numpy()
        z += self.w
        top = z.max(1)
        z -= top[:, None]
        np.exp(z, out=z)
        lse = top + np.log(z.sum(1))
        return squares - self.epsilon * lse


class CalibratedGradient:
    """The score GOT-D ranks by: the calibrated gradient of the OT distance w.r.t. a document's mass,

        score(x) = f(x) - mean_i f(x_i)

    with f the soft c-transform of the target potential (CTransform) and the mean over the fit sample. Lower
    (more negative) pulls the data toward the target faster.
    """

    def __init__(self, target: np.ndarray, g: np.ndarray, epsilon: float, mean_f: float, device: str = "cpu"):
        self.c_transform = CTransform(target, g, epsilon, device)
        self.epsilon, self.mean_f = epsilon, mean_f

    def __call__(self, x: np.ndarray) -> np.ndarray:
        scores = self.c_transform(x) - self.mean_f
        if not np.isfinite(scores).all():
            raise NotConverged(f"non-finite scores at epsilon={self.epsilon:g}: fit with a larger {setting('epsilon')}")
        return scores

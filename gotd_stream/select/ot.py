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

import math
import warnings
from dataclasses import dataclass

import numpy as np

from gotd_stream.errors import RuntimeProblem, setting


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
    """Log-domain Sinkhorn (POT, torch backend) between uniform measures on x and y, in float64."""
    import ot
    import torch

    dev = _torch_device(device)
    xt = torch.as_tensor(x, dtype=torch.float64, device=dev)
    yt = torch.as_tensor(y, dtype=torch.float64, device=dev)
    n, m = len(xt), len(yt)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=dev)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64, device=dev)
    cost = sq_distances(xt, yt)
    with warnings.catch_warnings():
        # Non-convergence is judged below from the marginals, and reported as an error, not a warning.
        warnings.simplefilter("ignore")
        # POT stops on the L2 norm of the marginal violation; tol / sqrt(m) bounds its L1 norm by tol.
        plan, log = ot.sinkhorn(
            a, b, cost, epsilon, method="sinkhorn_log", numItermax=max_iter, stopThr=tol / math.sqrt(m), log=True
        )
    f = epsilon * (log["log_u"] - torch.log(a))
    g = epsilon * (log["log_v"] - torch.log(b))
    error = float((plan.sum(0) - b).abs().sum())
    iterations = int(log["niter"]) + 1
    ot_cost = float((plan * cost).sum())
    if not (torch.isfinite(f).all() and torch.isfinite(g).all() and math.isfinite(error)):
        raise NotConverged(f"Sinkhorn produced non-finite potentials at epsilon={epsilon}: raise {setting('epsilon')}")
    if error > tol:
        raise NotConverged(
            f"Sinkhorn did not converge: after {iterations} iterations the marginal error is {error:.3g} "
            f"(tolerance {tol:g}); raise {setting('max_iter')} (now {max_iter}) or {setting('epsilon')} "
            f"(now {epsilon:g})"
        )
    return Fit(f.cpu().numpy(), g.cpu().numpy(), iterations, error, ot_cost)


class CTransform:
    """Scores batches of embeddings against a fitted target: f(x) = -eps * LSE_j(log b_j + (g_j - c(x, y_j)) / eps)."""

    def __init__(self, target: np.ndarray, g: np.ndarray, epsilon: float, device: str = "cpu"):
        import torch

        self.device = _torch_device(device)
        # float64 on the CPU (exact against POT); float32 on a GPU, where the matmul speed matters.
        self.dtype = torch.float64 if self.device.type == "cpu" else torch.float32
        y = torch.as_tensor(target, dtype=torch.float64)
        g64 = torch.as_tensor(g, dtype=torch.float64)
        m = len(y)
        # Expanding |x - y|^2 leaves one matmul per batch: f = |x|^2 - eps * LSE_j(w_j + x . (2 y_j / eps)).
        w = g64 / epsilon - math.log(m) - (y * y).sum(1) / epsilon
        self.w = w.to(self.device, self.dtype)
        self.y2 = (2.0 * y / epsilon).T.contiguous().to(self.device, self.dtype)
        self.epsilon = epsilon

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        xt = torch.as_tensor(x).to(self.device, self.dtype)
        lse = torch.logsumexp(xt @ self.y2 + self.w, dim=1)
        f = (xt * xt).sum(1) - self.epsilon * lse
        return f.double().cpu().numpy()


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

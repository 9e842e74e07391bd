"""The OT math against POT itself, the bounded heap against a full sort, the reservoir against uniformity."""

from __future__ import annotations

import numpy as np
import pytest

from gotd_stream.select.ot import CalibratedGradient, CTransform, NotConverged, fit_potentials
from gotd_stream.select.sample import reservoir
from gotd_stream.select.topk import TopK
from tests.conftest import pot_gradients


def unit_rows(rng, n, d, shift=0.0):
    x = rng.normal(size=(n, d)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_scores_match_pot_calibrated_gradient(eps):
    rng = np.random.default_rng(0)
    x, y = unit_rows(rng, 200, 12), unit_rows(rng, 40, 12, shift=0.4)
    fit = fit_potentials(x, y, eps, tol=1e-9)
    f_pot, grad_pot = pot_gradients(x, y, eps)
    scores = CalibratedGradient(y, fit.g, eps, float(fit.f.mean()))(x)  # the score the tool ranks by
    n = len(x)
    # Our score moves mass from the whole sample onto x; for a sample point the paper's "others" exclude it:
    # the same quantity scaled by n/(n-1), so the ranking is identical and the values agree after scaling.
    np.testing.assert_allclose(scores * n / (n - 1), grad_pot, atol=1e-5)
    np.testing.assert_allclose(scores, f_pot - f_pot.mean(), atol=1e-5)
    k = 25
    assert list(np.argsort(scores, kind="stable")[:k]) == list(np.argsort(grad_pot, kind="stable")[:k])


def test_c_transform_reproduces_fitted_potential():
    rng = np.random.default_rng(1)
    x, y = unit_rows(rng, 150, 8), unit_rows(rng, 30, 8)
    fit = fit_potentials(x, y, 0.05, tol=1e-8)
    np.testing.assert_allclose(CTransform(y, fit.g, 0.05)(x), fit.f, atol=1e-6)
    assert fit.marginal_error <= 1e-8
    assert fit.iterations > 1 and fit.ot_cost > 0


def test_c_transform_batches_are_independent():
    rng = np.random.default_rng(2)
    x, y = unit_rows(rng, 100, 8), unit_rows(rng, 20, 8)
    fit = fit_potentials(x, y, 0.05)
    scorer = CTransform(y, fit.g, 0.05)
    np.testing.assert_array_equal(np.concatenate([scorer(x[:37]), scorer(x[37:])]), scorer(x))


def test_not_converged_is_an_error():
    rng = np.random.default_rng(3)
    x, y = unit_rows(rng, 100, 8), unit_rows(rng, 20, 8, shift=1.0)
    with pytest.raises(NotConverged, match="raise max_iter"):
        fit_potentials(x, y, 0.001, max_iter=3, tol=1e-9)


@pytest.mark.parametrize("k", [1, 7, 50, 500])
def test_topk_equals_stable_sort_with_ties(k):
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 20, size=300).astype(np.float64)  # many ties
    top = TopK(k)
    for start in range(0, 300, 64):
        chunk = scores[start : start + 64]
        top.offer(chunk, list(range(start, start + len(chunk))))
    expected = list(np.argsort(scores, kind="stable")[:k])
    assert [item for _, item in top.best_first()] == expected
    assert len(top) == min(k, 300)


def test_reservoir_is_seeded_ordered_and_uniform():
    sample, seen = reservoir(range(1000), 10, seed=5)
    assert seen == 1000 and len(sample) == 10 and sample == sorted(sample)
    assert reservoir(range(1000), 10, seed=5) == (sample, 1000)
    assert reservoir(range(3), 10) == ([0, 1, 2], 3)
    hits = np.zeros(100)
    for seed in range(2000):
        for item in reservoir(range(100), 10, seed=seed)[0]:
            hits[item] += 1
    # each item is kept with probability 0.1: 200 expected per item; a biased sampler is far outside this
    assert hits.min() > 140 and hits.max() < 260
    assert hits[:50].sum() == pytest.approx(hits[50:].sum(), rel=0.05)


def test_the_scaling_log_domain_and_epsilon_scaling_sinkhorn_agree(monkeypatch):
    """The fit runs Sinkhorn by its scalings when the kernel fits a float64, else with epsilon-scaling in the log
    domain (issue 13): the same scores every way, all converged, and all exact against POT."""
    from gotd_stream.select import ot

    rng = np.random.default_rng(5)
    x, y = unit_rows(rng, 300, 16), unit_rows(rng, 60, 16, shift=0.5)
    fits = {"scalings": fit_potentials(x, y, 0.05, tol=1e-9)}
    with monkeypatch.context() as patch:
        patch.setattr(ot, "EXP_RANGE", 20.0)  # stages at 0.05 * 2^k: the large ones by scalings, the rest in logs
        fits["epsilon-scaling"] = fit_potentials(x, y, 0.05, tol=1e-9)
        patch.setattr(ot, "_scaling_sinkhorn", lambda *args: None)  # every stage in the log domain
        fits["log domain"] = fit_potentials(x, y, 0.05, tol=1e-9)
    _, grad_pot = pot_gradients(x, y, 0.05)
    n = len(x)
    for name, fit in fits.items():
        assert fit.marginal_error <= 1e-9, name
        scores = CalibratedGradient(y, fit.g, 0.05, float(fit.f.mean()))(x)
        np.testing.assert_allclose(scores * n / (n - 1), grad_pot, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(CTransform(y, fit.g, 0.05)(x), fit.f, atol=1e-6, err_msg=name)

import numpy as np
import pytest

from sqloss_nc.nc import nc_metrics
from sqloss_nc.theory import effective_weight_decay, predicted_w_norm_sq


def ridge_stationary_point(h, y, c, lam):
    """The exact minimizer over W (C x p) of 1/(N C) sum_n ||W h_n - e_{y_n}||^2 + lam/2 ||W||^2,
    i.e. the classifier at a critical point of the project's objective for fixed features."""
    n = len(y)
    yo = np.eye(c)[y]
    a = 2.0 / (n * c) * h.T @ h + lam * np.eye(h.shape[1])
    return np.linalg.solve(a, 2.0 / (n * c) * h.T @ yo).T


@pytest.mark.parametrize("c", [2, 3, 5])
@pytest.mark.parametrize("lam", [1e-2, 1e-1])
def test_eq34_in_project_units_at_a_symmetric_quasi_interpolating_critical_point(c, lam):
    """Collapsed features mu_c = a*ETF_c + g: with ||g|| large the minimizer quasi-interpolates
    symmetrically (Assumption 1) up to O(1/||g||^2), so Eq. 34 (our normalization) must hold,
    and Eq. 35's <w_c, mu_G> = 1/C too."""
    p, per_class = 12, 7
    rng = np.random.default_rng(c)
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    etf = np.sqrt(c / (c - 1)) * (np.eye(c) - 1.0 / c)  # rows: simplex ETF in R^C
    means = 0.3 * etf @ q[:c] + 1e3 * q[c]  # common component g orthogonal to the ETF span
    y = np.repeat(np.arange(c), per_class)
    h = means[y]
    w = ridge_stationary_point(h, y, c, lam)
    f = h @ w.T
    eps = 1 - np.mean(f[np.arange(len(y)), y])
    off = f[y != 0, 0]
    assert np.allclose(off, eps / (c - 1), rtol=1e-4)  # Assumption 1 holds (to O(1/||g||^2))
    measured = np.mean(np.sum(w**2, axis=1))
    assert measured == pytest.approx(predicted_w_norm_sq(eps, lam, c), rel=1e-4)
    m = nc_metrics(h, y, classifier_weights=w, logits=f)
    assert m["w_dot_muG"] == pytest.approx(1.0 / c, rel=1e-4)
    assert m["eps_gap"] == pytest.approx(eps, rel=1e-9)
    assert m["nc3_centered"] == pytest.approx(0.0, abs=1e-6)


def test_general_stationarity_identity_matches_effective_lambda():
    """lam' ||w_c||^2 = sum_n (y_n^c - f_n^c) f_n^c at any critical point (Eq. 34, first line),
    with lam' = lam N C / 2 — checked at a ridge solution on random (not collapsed) features."""
    rng = np.random.default_rng(0)
    c, n, lam = 3, 60, 0.05
    h = rng.normal(size=(n, 8))
    y = rng.integers(0, c, n)
    w = ridge_stationary_point(h, y, c, lam)
    f = h @ w.T
    yo = np.eye(c)[y]
    lhs = effective_weight_decay(lam, n, c) * np.sum(w**2, axis=1)
    rhs = np.sum((yo - f) * f, axis=0)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-8)


def test_no_prediction_without_weight_decay():
    assert np.isnan(predicted_w_norm_sq(0.1, 0.0, 2))


def _identity_row(h, y, c, lam, w, epoch=7, config_extra=None):
    """theory_checks' rows for one NC epoch whose head is `w` on features `h` (plain square loss)."""
    import pandas as pd

    from sqloss_nc.theory import theory_checks

    f = h @ w.T
    yo = np.eye(c)[y]
    loss = np.mean((f - yo) ** 2)  # SPEC: mean over N·C
    eps = 1 - np.mean(f[np.arange(len(y)), y])
    metrics = pd.DataFrame({"epoch": [0, epoch], "rho": [1.0, 1.0], "margin_mean": [0.5, 0.5], "margin_sq_mean": [0.3, 0.3], "train_loss": [0.5, loss]})
    nc = pd.DataFrame({"epoch": [epoch], "eps_gap": [eps], "w_norm_sq_mean": [np.mean(np.sum(w**2, axis=1))], "w_norm_sq_eq34": [predicted_w_norm_sq(eps, lam, c)]})
    config = {"data": {"classes": list(range(c))}, "optim": {"weight_decay": lam}, "model": {"bias": False, **(config_extra or {})}, "loss": {"kind": "square"}}
    out = theory_checks(metrics, config, nc)
    return out.set_index("check")


@pytest.mark.parametrize("c", [2, 4])
def test_theory_csv_splits_eq34_into_the_exact_identity_and_assumption_1(c):
    """At a ridge-stationary head on random (uncollapsed) features the identity row is exact
    (float64 closed form) while Eq. 34, which adds Assumption 1, is off; a head moved off the
    stationary point (scaled 1.3x) fails the identity."""
    rng = np.random.default_rng(c)
    lam, n = 0.05, 80
    h = rng.normal(size=(n, 10))
    y = rng.integers(0, c, n)
    w = ridge_stationary_point(h, y, c, lam)
    rows = _identity_row(h, y, c, lam, w)
    assert rows.loc["w_norm_sq_identity", "rel_error"] < 1e-10
    assert rows.loc["w_norm_sq_eq34", "rel_error"] > 0.05  # far from collapse: Assumption 1 fails
    moved = _identity_row(h, y, c, lam, 1.3 * w)
    assert moved.loc["w_norm_sq_identity", "rel_error"] > 0.2
    # Not written where the identity does not apply: a head with a (decayed) bias.
    assert "w_norm_sq_identity" not in _identity_row(h, y, c, lam, w, config_extra={"bias": True}).index

"""Margins and their statistics (SPEC §5), one run at a time and batched over a stack's K runs:
closed forms, and each row of a batched call equal bit for bit to the run's own call (a stack's
metrics.csv must be the run's own)."""

import numpy as np

from sqloss_nc.engine import measures


def test_margins_closed_form_multiclass_and_scalar():
    f = np.array([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0]])
    assert measures.margins(f, np.array([0, 2])).tolist() == [1.0, -4.0]  # 2−1; −1−3
    # A scalar head: label 1 ↦ +f, label 0 ↦ −f.
    assert measures.margins(np.array([[0.5], [0.25]]), np.array([1, 0])).tolist() == [0.5, -0.25]


def test_margin_stats_closed_form():
    s = measures.margin_stats(np.array([1.0, 3.0]), 2.0)
    assert (s["margin_mean"], s["margin_sq_mean"], s["margin_std"], s["margin_min"]) == (1.0, 1.25, 0.5, 0.5)
    assert (s["margin_p50"], s["raw_margin_mean"], s["raw_margin_std"], s["raw_margin_min"]) == (1.0, 2.0, 1.0, 1.0)
    assert np.isnan(measures.margin_stats(np.array([1.0, 3.0]), 0.0)["margin_mean"])  # ρ = 0: m̄ undefined


def test_batched_rows_equal_each_runs_own_call_bit_for_bit():
    rng = np.random.default_rng(0)
    for classes in (1, 2, 10):
        for n in (1, 7, 1000):
            f = (rng.normal(size=(5, n, classes)) * rng.uniform(0.01, 100, size=(5, 1, 1))).astype(np.float32)
            y = rng.integers(0, max(classes, 2), size=(5, n))
            rho = np.array([0.5, 2.0, 0.0, 1e-3, 3.3])
            m = measures.margins(f, y)
            stats = measures.margin_stats(m, rho)
            for k in range(5):
                own = measures.margins(f[k], y[k])
                np.testing.assert_array_equal(m[k], own)
                for key, value in measures.margin_stats(own, rho[k]).items():
                    assert value == stats[key][k] or (np.isnan(value) and np.isnan(stats[key][k])), (classes, n, k, key)

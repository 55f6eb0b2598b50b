"""Pure measurements on arrays (SPEC §5): margins and their statistics, ρ.

No Keras state here: every function takes numpy arrays and computes in float64, so the numbers
can be checked against closed forms and reused on any model's outputs. Losses and accuracy are
in `losses.py`, neural-collapse measures in `nc.py`.

Conventions:
- Multiclass functional margin m_n = f_{y_n}(x_n) − max_{c≠y_n} f_c(x_n) (for C = 2 this is
  y·(f_0 − f_1) with y = ±1); scalar binary output: m_n = y_n f(x_n) with y_n ∈ {−1, +1}.
- Normalized margin m̄_n = m_n / ρ, the margin of the normalized network f_V.
- ρ: `rho_product` = Π_k ||W_k||_F, `rho_last` = ||W_L||_F; `rho` is the product for
  positively homogeneous nets and the last norm for scale-invariant hidden layers (BatchNorm,
  Lagrange), whose own norms do not change the function.
"""

from __future__ import annotations

import math

import numpy as np


def margins(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Functional margins m_n = f_{y_n} − max_{c≠y_n} f_c (float64); (N, 1) outputs are read as
    a scalar binary output with label 1 ↦ +1, label 0 ↦ −1. Leading axes are runs: (K, N, C)
    outputs with (K, N) labels give (K, N) margins, row k those of run k."""
    f = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels)
    if f.shape[-1] == 1:
        return f[..., 0] * np.where(labels == 1, 1.0, -1.0)
    at = labels[..., None]
    true = np.take_along_axis(f, at, axis=-1)[..., 0]
    others = f.copy()
    np.put_along_axis(others, at, -np.inf, axis=-1)
    return true - others.max(axis=-1)


def margin_stats(m: np.ndarray, rho) -> dict:
    """SPEC §5's per-epoch margin columns: statistics of m̄ = m/ρ and of the raw m.

    `m` (N,) with a scalar ρ gives floats; (K, N) with ρ (K,) gives (K,) arrays, row k equal
    bit for bit to `margin_stats(m[k], rho[k])` (every reduction runs along the last axis, row
    by row, as numpy reduces a 1-D array): a stack measures its K runs in one call.

    Example: `margin_stats(np.array([1.0, 3.0]), 2.0)["margin_mean"]` == 1.0.
    """
    m = np.asarray(m, dtype=np.float64)
    r = np.asarray(rho, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        mbar = np.where(r > 0, m / np.where(r > 0, r, 1.0), np.nan)
    out = lambda x: x if m.ndim > 1 else float(x)  # noqa: E731
    p05, p50, p95 = np.percentile(mbar, [5, 50, 95], axis=-1)
    return {
        "margin_mean": out(np.mean(mbar, axis=-1)),
        "margin_sq_mean": out(np.mean(np.square(mbar), axis=-1)),
        # sigma = sqrt(M - mu^2) as the paper writes it; computed as the population std so that
        # rounding can never make it imaginary.
        "margin_std": out(np.std(mbar, axis=-1)),
        "margin_min": out(np.min(mbar, axis=-1)),
        "margin_p05": out(p05),
        "margin_p50": out(p50),
        "margin_p95": out(p95),
        "raw_margin_mean": out(np.mean(m, axis=-1)),
        "raw_margin_std": out(np.std(m, axis=-1)),
        "raw_margin_min": out(np.min(m, axis=-1)),
    }


def frobenius(w: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(w, dtype=np.float64)))))


def rho_values(norms: dict[str, float], mode: str, bn_moving_vars: list[np.ndarray] = ()) -> dict[str, float]:
    """ρ columns from the per-layer Frobenius norms (depth order, classifier last).

    Args:
        norms: layer name -> ||W_k||_F, the classifier last.
        mode: `product` (homogeneous nets) or `last` (scale-invariant hidden layers).
        bn_moving_vars: the BatchNorm moving variances; when given, `rho_bn` =
            Π_k ||W_k||_F / Π_j ||sqrt(moving_var_j)||_2 (the authors' BN-aware ρ), else NaN.
    """
    values = list(norms.values())
    rho_product = float(math.prod(values))
    rho_last = float(values[-1])
    rho_bn = float("nan")
    if len(bn_moving_vars):
        denom = math.prod(float(np.linalg.norm(np.sqrt(np.asarray(v, dtype=np.float64)))) for v in bn_moving_vars)
        rho_bn = rho_product / denom
    return {
        "rho": rho_last if mode == "last" else rho_product,
        "rho_product": rho_product,
        "rho_last": rho_last,
        "rho_bn": rho_bn,
    }

"""Weight spectra, SGD update norms and class-mean/weight alignment (SPEC §10, issue 14).

Pure float64 numpy; no TensorFlow/Keras import.

Conventions
-----------
* **Which matrix.** A weight tensor's last axis is its output: a Dense kernel (in, out) is read as
  the matrix W = kernel.T (out x in), a Conv2D kernel (kh, kw, in, out) as
  kernel.reshape(kh*kw*in, out).T (out x kh*kw*in, the columns in (kh, kw, in) row-major order,
  i.e. the matrix that acts on one flattened input patch). :func:`weight_matrix` does this for any
  kernel of rank >= 2. The functions take whatever tensor the caller passes: for the tracked
  quantities that is the effective kernel (for weight normalization g * V/||V||, as in
  ``norm_<layer>``). For BatchNorm nets it is the conv/dense kernel itself, not the affine map
  diag(gamma / sqrt(var + eps)) W that BN applies after it: that row scaling changes singular
  values and ranks, and BN's statistics are not weights.
* **Rank.** ``rank`` = the number of singular values of W / ||W||_F above ``tol``
  (``track.rank_tol``, default 1e-3): s_i / sqrt(sum_j s_j^2) > tol. ``stable_rank`` =
  ||W||_F^2 / ||W||_2^2 = sum_i s_i^2 / s_1^2 (1 <= stable_rank <= rank of W). A zero matrix has
  rank 0 and stable rank NaN.
* **spectra.csv** is one long table, one row per (epoch, layer, singular value):
  :data:`SPECTRA_COLUMNS` = ``epoch, layer, index, singular_value, rank, stable_rank``, with
  ``index`` = 0, 1, ... in descending order of ``singular_value`` (raw, not normalized; divide by
  the layer's ``norm_<layer>`` of metrics.csv, or by the root sum of squares of the rows, for
  W/||W||_F) and the per-layer ``rank`` and ``stable_rank`` repeated on each of the layer's rows,
  so that e.g. ``df.pivot_table(index="epoch", columns="layer", values="rank")`` and
  ``df.pivot(index=["epoch", "layer"], columns="index", values="singular_value")`` both work.
* **Update norm.** ``update_norm`` = ||W_e - W_{e-1}||_F / ||W_{e-1}||_F on the raw tensors
  (float64), NaN where ||W_{e-1}||_F = 0.
* **Alignment** (Rangamani et al. 2023) of hidden representation l: the mean cosine of the
  principal angles between span(M_l), M_l = [mu_c - mu_G] the centred class means (mu_G = mean
  of the class means, as in :mod:`sqloss_nc.nc`), and the span of the top C right singular
  vectors of W_{l+1}. span(M_l) is taken with its numerical rank r <= C - 1 (directions above
  :func:`sqloss_nc.nc.rounding_floor`), the weight subspace has q = min(C, out, p_l) dimensions,
  and the mean runs over the min(r, q) principal angles, so 1 means span(M_l) lies inside the
  weights' top subspace (or contains it) and ~sqrt(q/p_l) is typical of a random subspace.
  Defined only where W_{l+1} is a matrix acting on exactly the flattened representation: the next
  layer is Dense (possibly after a Flatten, whose row-major (H, W, ch) order equals the flattening
  of the activations), with ``in`` = p_l. It is **NaN** when the next kernel is a convolution
  (rank > 2: its out x kh*kw*in matrix acts on patches, not on the flattened feature map; the
  whole conv as a matrix on the map is (H'W'out) x (HWin) and is not what the definition means),
  when ``in`` != p_l (e.g. a global pooling in between), and when M_l or W_{l+1} is zero. The
  span of the top C singular vectors is not unique when s_C = s_{C+1}; numpy's SVD then picks one.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> rows = spectra_rows(3, {"dense": rng.normal(size=(8, 4))})
>>> [r["index"] for r in rows], rows[0]["rank"]
([0, 1, 2, 3], 4)
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from .nc import rounding_floor

__all__ = [
    "SPECTRA_COLUMNS",
    "DEFAULT_RANK_TOL",
    "Spectrum",
    "weight_matrix",
    "spectrum",
    "spectra_rows",
    "update_norm",
    "update_norms",
    "principal_cosines",
    "alignment",
]

#: Columns of spectra.csv (one row per epoch, layer and singular value).
SPECTRA_COLUMNS = ("epoch", "layer", "index", "singular_value", "rank", "stable_rank")

#: Default of ``track.rank_tol``: the threshold on the singular values of W/||W||_F.
DEFAULT_RANK_TOL = 1e-3

_EPS32 = float(np.finfo(np.float32).eps)


class Spectrum(NamedTuple):
    """Singular values (float64, descending) with the numerical rank and the stable rank."""

    singular_values: np.ndarray
    rank: int
    stable_rank: float


def weight_matrix(kernel) -> np.ndarray:
    """The (out, fan_in) float64 matrix of a weight tensor whose last axis is the output.

    Args:
        kernel: a Dense kernel (in, out) or a conv kernel (kh, kw, in, out) (any rank >= 2).

    Returns:
        (out, prod(other axes)) float64 array: ``kernel.T`` for Dense, out x (kh*kw*in) for conv.

    Example:
        >>> weight_matrix(np.zeros((3, 3, 16, 32))).shape
        (32, 144)
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim < 2:
        raise ValueError(f"a weight tensor needs rank >= 2 (got shape {k.shape}); biases and BN parameters have no spectrum")
    return k.reshape(-1, k.shape[-1]).T


def spectrum(kernel, tol: float = DEFAULT_RANK_TOL) -> Spectrum:
    """Singular values, numerical rank of W/||W||_F and stable rank of one weight tensor.

    Args:
        kernel: weight tensor (see :func:`weight_matrix`).
        tol: rank threshold on the singular values of W/||W||_F (``track.rank_tol``).

    Returns:
        :class:`Spectrum` (min(out, fan_in) singular values).

    Example:
        >>> spectrum(np.diag([3.0, 4.0, 0.0])).rank, spectrum(np.diag([3.0, 4.0, 0.0])).stable_rank
        (2, 1.5625)
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    s = np.linalg.svd(weight_matrix(kernel), compute_uv=False)
    fro = float(np.sqrt(np.sum(s * s)))
    if fro == 0.0:
        return Spectrum(s, 0, float("nan"))
    return Spectrum(s, int(np.count_nonzero(s / fro > tol)), float(fro * fro / (s[0] * s[0])))


def spectra_rows(epoch: int, kernels: Mapping[str, object], tol: float = DEFAULT_RANK_TOL) -> list[dict]:
    """The spectra.csv rows of one epoch: one per layer and singular value (:data:`SPECTRA_COLUMNS`).

    Args:
        epoch: the epoch written in every row.
        kernels: layer name -> weight tensor, in the order the rows should have.
        tol: rank threshold (``track.rank_tol``).

    Returns:
        list of dicts with keys :data:`SPECTRA_COLUMNS`; ``index`` counts from 0 in descending
        order of ``singular_value``; ``rank`` and ``stable_rank`` repeat on the layer's rows.

    Example:
        >>> spectra_rows(0, {"conv1": np.ones((3, 3, 1, 2))})[0]["rank"]
        1
    """
    rows = []
    for name, kernel in kernels.items():
        sp = spectrum(kernel, tol)
        rows += [
            {"epoch": int(epoch), "layer": name, "index": i, "singular_value": float(v), "rank": sp.rank, "stable_rank": sp.stable_rank}
            for i, v in enumerate(sp.singular_values)
        ]
    return rows


def update_norm(prev, cur) -> float:
    """Relative size of one update, ||W_e - W_{e-1}||_F / ||W_{e-1}||_F, in float64.

    Args:
        prev: the weight tensor at epoch e-1.
        cur: the same tensor at epoch e (same shape).

    Returns:
        float; NaN when ``prev`` is zero (the relative change is undefined).

    Example:
        >>> update_norm(np.array([3.0, 4.0]), np.array([3.0, 4.5]))
        0.1
    """
    a, b = np.asarray(prev, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    den = float(np.linalg.norm(a))
    return float(np.linalg.norm(b - a)) / den if den > 0 else float("nan")


def update_norms(prev: Mapping[str, object], cur: Mapping[str, object]) -> dict[str, float]:
    """``update_norm_<layer>`` for every layer of ``cur`` (metrics.csv columns; NaN if new).

    Args:
        prev: layer name -> tensor at epoch e-1 (copies: Keras variables change in place).
        cur: layer name -> tensor at epoch e.

    Returns:
        dict ``{"update_norm_<layer>": float}`` in the order of ``cur``.

    Example:
        >>> update_norms({"d": np.ones(4)}, {"d": 2 * np.ones(4)})
        {'update_norm_d': 1.0}
    """
    return {f"update_norm_{k}": update_norm(prev[k], v) if k in prev else float("nan") for k, v in cur.items()}


def _orthonormal_basis(a: np.ndarray, rank_floor: float) -> np.ndarray:
    """Columns: an orthonormal basis of the column space of ``a`` above the singular-value floor."""
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    return u[:, s > rank_floor]


def _cosines(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """Principal cosines of two orthonormal bases (Bjorck & Golub): the singular values of qa^T qb."""
    # Rounding can put a singular value of the product of orthonormal bases a hair above 1.
    return np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)


def principal_cosines(a, b) -> np.ndarray:
    """Cosines of the principal angles between the column spaces of ``a`` and ``b``, descending.

    Both matrices are taken at full numerical rank (numpy's ``matrix_rank`` tolerance,
    max(shape) * eps * s_max); there are min(rank a, rank b) angles.

    Args:
        a: (p, k1) matrix.
        b: (p, k2) matrix.

    Returns:
        1-D float64 array of cos(theta_i) in [0, 1].

    Example:
        >>> principal_cosines(np.array([[1.0], [0.0]]), np.array([[1.0], [1.0]]))
        array([0.70710678])
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    eps = np.finfo(np.float64).eps
    qa, qb = (_orthonormal_basis(m, max(m.shape) * eps * np.linalg.norm(m, 2)) for m in (a, b))
    return _cosines(qa, qb)


def alignment(class_means, next_kernel, input_eps: float = _EPS32) -> float:
    """Mean cosine of the principal angles between span(M_l) and the top-C right singular
    subspace of the next layer's weight (Rangamani et al. 2023; see the module docstring).

    Args:
        class_means: (C, p_l) class means of representation l (rows; e.g.
            ``NCAccumulator.means``), flattened per class if given as (C, H, W, ch).
        next_kernel: the next layer's kernel; must be a Dense kernel (p_l, out).
        input_eps: unit roundoff of the features the means came from (float32 by default), for
            the numerical rank of M_l (:func:`sqloss_nc.nc.rounding_floor`, scale max_c ||mu_c||).

    Returns:
        float in [0, 1]; NaN where undefined: a conv next kernel, in != p_l, a zero M_l or W.

    Example:
        >>> means = np.array([[1.0, 0, 0], [-1.0, 0, 0]])          # span(M) = e1
        >>> round(alignment(means, np.array([[1.0], [0.0], [0.0]])), 12)   # W = e1^T: aligned
        1.0
    """
    return _alignment(class_means, next_kernel, input_eps, centred=True)


def alignment_uncentred(class_means, next_kernel, input_eps: float = _EPS32) -> float:
    """Alignment as Intermediate_Neural_Collapse (Rangamani et al. 2023) computes it: the sum of
    the cosines of the principal angles between the span of the *uncentred* class means (C
    directions) and the span of the top C right singular vectors of the next layer's weight,
    divided by C (SPEC §12). It differs from :func:`alignment` (centred means, rank <= C - 1,
    mean over the resolved angles) by the global-mean direction and the normalization; a span
    with fewer than C resolved directions contributes fewer cosines to the sum.

    Args:
        class_means: (C, p_l) class means of representation l (flattened per class).
        next_kernel: the next layer's Dense kernel (p_l, out).
        input_eps: unit roundoff of the features the means came from (rank decision).

    Returns:
        float in [0, 1]; NaN where :func:`alignment` is undefined.

    Example:
        >>> means = np.array([[1.0, 0, 0], [0.0, 1.0, 0]])
        >>> round(alignment_uncentred(means, np.eye(3)[:, :2]), 12)
        1.0
    """
    return _alignment(class_means, next_kernel, input_eps, centred=False)


def _alignment(class_means, next_kernel, input_eps: float, centred: bool) -> float:
    """The principal cosines of both alignment definitions: span(M) at its numerical rank
    against the top min(C, out) right singular vectors of W_{l+1}; their mean (centred, SPEC
    §10) or their sum / C (uncentred, Intermediate_Neural_Collapse)."""
    means = np.asarray(class_means, dtype=np.float64)
    means = means.reshape(means.shape[0], -1)
    C, p = means.shape
    k = np.asarray(next_kernel)
    if k.ndim != 2 or k.shape[0] != p:
        return float("nan")
    w = weight_matrix(k)  # (out, p)
    m = (means - means.mean(axis=0)).T if centred else means.T  # (p, C)
    s_m = np.linalg.svd(m, compute_uv=False)
    scale = float(np.max(np.linalg.norm(means, axis=1)))
    basis_m = _orthonormal_basis(m, rounding_floor(C, p, s_m[0], input_eps, sample_scale=scale))
    _, s_w, vt = np.linalg.svd(w, full_matrices=False)
    if basis_m.shape[1] == 0 or s_w[0] == 0:
        return float("nan")
    q = min(C, len(s_w))
    top = vt[:q][s_w[:q] > 0].T  # (p, q) top right singular vectors (null directions dropped)
    cos = _cosines(basis_m, top)
    return float(np.mean(cos)) if centred else float(np.sum(cos) / C)

"""The MSE decomposition of Han, Papyan & Donoho (2022) at the features (SPEC §9, issue 13).

Pure float64 numpy; no TensorFlow/Keras import.

The head's part of the training objective is split into a within-class ("NC1") term and a
class-mean ("NC2/3") term of the least-squares classifier W_LS, plus the distance of the trained
classifier W from W_LS (the "central path"):

    J(W) = mse_nc1 + mse_nc23 + mse_perp                          (exact; float64 rounding)

Units (SPEC §9)
---------------
Plain square loss: J(W) = 1/(N C) sum_n ||W h_n - e_{y_n}||^2 + lambda/2 ||W||_F^2, lambda the
weight decay on W, h_n the inference-mode features. J = (2/C) L_H with
L_H = 1/(2N) sum_n ||W h_n - e_{y_n}||^2 + lambda_H/2 ||W||_F^2 and lambda_H = lambda C / 2. With
p_c = n_c / N, class means mu_c, Sigma_W = (1/N) sum_n (h_n - mu_{y_n})(h_n - mu_{y_n})^T,
Sigma_T = (1/N) sum_n h_n h_n^T (uncentred) and A = Sigma_T + lambda_H I:

    W_LS     = [(1/N) sum_n e_{y_n} h_n^T] A^{-1}
    mse_nc1  = (2/C) [1/2 tr(W_LS Sigma_W W_LS^T) + lambda_H/2 ||W_LS||_F^2]
    mse_nc23 = (2/C) 1/2 sum_c p_c ||W_LS mu_c - e_c||^2
    mse_perp = (2/C) 1/2 tr((W - W_LS) A (W - W_LS)^T)
    ls_distance = ||W - W_LS||_F / ||W||_F

Derivation, for the general loss below (the plain one is k = M = 1)
-------------------------------------------------------------------
Rescaled square loss (Hui & Belkin, SPEC §9): l(f, y) = (1/C) [k (f_y - M)^2 + sum_{c != y} f_c^2].
Write it per output row c with sample weights and targets

    omega_{n c} = k if y_n = c else 1,        t_{n c} = M if y_n = c else 0,

so J(W) = (2/C) sum_c L_c(w_c) with one weighted ridge problem per row w_c (rows decouple):

    L_c(w) = 1/(2N) sum_n omega_{nc} (w.h_n - t_{nc})^2 + lambda_H/2 ||w||^2.

(1) Split by the sample's class c'. Inside class c' the weight omega_{c'c} and the target
    t_{c'c} are constant, and sum_{n in c'} (h_n - mu_{c'}) = 0 kills the cross term:
    sum_{n in c'} (w.h_n - t)^2 = sum_{n in c'} (w.(h_n - mu_{c'}))^2 + n_{c'} (w.mu_{c'} - t)^2.
    Hence L_c(w) = T1_c(w) + T2_c(w), exactly, for *any* w:

        T1_c(w) = 1/2 w^T G_c w + lambda_H/2 ||w||^2,   G_c = sum_{c'} p_{c'} omega_{c'c} Sigma_{W,c'}
                                                          = Sigma_W + (k - 1) p_c Sigma_{W,c},
        T2_c(w) = 1/2 sum_{c'} p_{c'} omega_{c'c} (w.mu_{c'} - t_{c'c})^2,

    with Sigma_{W,c} = (1/n_c) sum_{n in c} (h_n - mu_c)(h_n - mu_c)^T (so Sigma_W = sum_c p_c Sigma_{W,c}).
(2) L_c is quadratic with Hessian A_c = (1/N) sum_n omega_{nc} h_n h_n^T + lambda_H I
    = Sigma_T + (k - 1) p_c (Sigma_{W,c} + mu_c mu_c^T) + lambda_H I and linear coefficient
    b_c = (1/N) sum_n omega_{nc} t_{nc} h_n = k M p_c mu_c, so its minimizer is
    w_LS,c = A_c^{-1} b_c, and the exact expansion around it reads
    L_c(w) = L_c(w_LS,c) + 1/2 (w - w_LS,c)^T A_c (w - w_LS,c).
(3) Apply (1) to w_LS,c and sum over rows, times 2/C:

        mse_nc1  = (2/C) sum_c T1_c(w_LS,c),   mse_nc23 = (2/C) sum_c T2_c(w_LS,c),
        mse_perp = (2/C) sum_c 1/2 (w_c - w_LS,c)^T A_c (w_c - w_LS,c),

    and J(W) = (2/C) sum_c [T1_c(w_c) + T2_c(w_c)] = mse_nc1 + mse_nc23 + mse_perp.
    With k = 1 every omega is 1: G_c = Sigma_W, A_c = A for all rows, b_c = M p_c mu_c, i.e.
    W_LS = M [(1/N) sum_n e_{y_n} h_n^T] A^{-1}, and with M = 1 the SPEC formulas above.
    Since (w - w_LS)^T A_c (w - w_LS) is L_c's quadratic part, mse_perp is T1 + T2 evaluated
    at the difference with zero targets; the code uses that.

Classifier with a bias: append a constant 1 to h (h~ = [h; 1], w~ = [w; b]); mu~_c = [mu_c; 1],
the within-class covariances get a zero row and column (the constant does not vary), and the
penalty becomes lambda_H/2 w~^T D w~ with D = diag(1, ..., 1, d), d = 1 if the bias is decayed
and 0 if not. Everything above holds with these substitutions (A_c stays positive definite for
lambda_H > 0 even with d = 0: its Schur complement on the bias coordinate is
1 - m^T (S + lambda_H I)^{-1} m > 0 where S >= m m^T is the weighted second moment of h and m its
weighted mean). ``ls_distance`` then measures the augmented [W b]. With lambda = 0 the minimizer
need not be unique (features of rank < p); W_LS is then the minimum-norm one (``lstsq``), for
which the identity still holds.

Statistics and memory
---------------------
The statistics come from a :class:`sqloss_nc.nc.NCAccumulator` with ``full=True`` (streamed in
batches, float64, per-class Chan merges): class counts and means and the pooled within-class
scatter N Sigma_W, from which Sigma_T = Sigma_W + sum_c p_c mu_c mu_c^T is formed as a sum of
positive semidefinite terms (no "sum h h^T - N mu mu^T" cancellation near collapse). That is one
p x p float64 matrix: 8 p^2 bytes, 2 MiB at p = 512 and 32 MiB at p = 2048 (plus transient
copies of the same size while solving: Sigma_T, A and the solver's), and O(N p^2) work per pass. The rescaled loss with k != 1
needs every class's own Sigma_{W,c} (``class_scatter=True``): C p^2 float64, e.g. 80 MiB at
C = 10, p = 1024, or 800 MiB at C = 100, p = 1024, and one p x p solve per class.
:func:`decomposition_accumulator` makes the right accumulator for a loss. One accumulator can
serve both :mod:`sqloss_nc.nc` and this module.

``mse_total`` is J(W) computed from the statistics (as the sum of the nonnegative T1 + T2 of
each row, without cancellation). It is the head's loss on float64 features, so it matches the
run's ``train_loss + lambda/2 ||W_L||_F^2`` up to the network's float32 rounding (and only for
the square losses, whose ``train_loss`` this is).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> h = rng.normal(size=(200, 6)); y = np.arange(200) % 3; W = rng.normal(size=(3, 6))
>>> d = mse_decomposition_arrays(h, y, W, weight_decay=5e-4)
>>> abs(d["mse_nc1"] + d["mse_nc23"] + d["mse_perp"] - d["mse_total"]) < 1e-12
True
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.linalg

from . import threads
from .nc import NCAccumulator

__all__ = [
    "DECOMPOSITION_KEYS",
    "decomposition_accumulator",
    "least_squares_classifier",
    "mse_decomposition",
    "mse_decomposition_arrays",
]

#: Keys of :func:`mse_decomposition` (nc.csv columns).
DECOMPOSITION_KEYS = ("mse_nc1", "mse_nc23", "mse_perp", "mse_total", "ls_distance")


def decomposition_accumulator(num_classes: int, k: float = 1.0, feature_dim: Optional[int] = None) -> NCAccumulator:
    """The streaming statistics the decomposition needs, for a loss with true-class weight k.

    Args:
        num_classes: C.
        k: the rescaled loss' true-class weight (``loss.k``; 1 for the plain square loss). k != 1
            keeps the per-class scatter matrices (C p^2 float64).
        feature_dim: p, or None to infer from the first batch.

    Returns:
        an :class:`~sqloss_nc.nc.NCAccumulator` with ``full=True`` (it also gives every NC measure).

    Example:
        >>> acc = decomposition_accumulator(10)
        >>> for h, y in batches:              # doctest: +SKIP
        ...     acc.update(h, y)
    """
    return NCAccumulator(num_classes, feature_dim=feature_dim, full=True, class_scatter=float(k) != 1.0)


class _Head:
    """The per-row quadratic problems L_c of the module docstring, from accumulated statistics,
    in the (possibly bias-augmented) feature space."""

    def __init__(self, stats: NCAccumulator, weight_decay: float, k: float, M: float, bias: bool, decay_bias: bool):
        if not isinstance(stats, NCAccumulator) or not stats.full:
            raise ValueError("the MSE decomposition needs an NCAccumulator(full=True) (see decomposition_accumulator)")
        n = stats.num_samples
        if n == 0:
            raise ValueError("the MSE decomposition needs at least one sample")
        if not k > 0:
            raise ValueError(f"k must be > 0, got {k}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if k != 1.0 and stats.class_scatter is None:
            raise ValueError("k != 1 needs the per-class scatter: NCAccumulator(class_scatter=True)")
        C, p = stats.num_classes, stats.feature_dim
        self.C, self.k, self.M = C, float(k), float(M)
        self.prior = stats.counts / n  # p_c
        self.lam_h = float(weight_decay) * C / 2.0
        extra = 1 if bias else 0
        self.means = np.zeros((C, p + extra))  # mu~_c
        self.means[:, :p] = stats.means
        if bias:
            self.means[:, p] = 1.0
        # p x p float64 arrays are the cost here (32 MiB each at p = 2048, per run and NC epoch):
        # built in place, without temporaries of the same size.
        self.sigma_w = np.zeros((p + extra, p + extra))
        np.add(stats.scatter, stats.scatter.T, out=self.sigma_w[:p, :p])
        self.sigma_w[:p, :p] *= 0.5 / n
        # p_c Sigma_{W,c} = S_c / N with S_c class c's scatter (k != 1 only). Kept as the
        # accumulator's (C, p, p) array, not copied: it is the largest object here. The bias
        # coordinate has no within-class spread, so only the first p coordinates enter.
        self.n, self.p = n, p
        self.class_scatter = stats.class_scatter if self.k != 1.0 else None
        self.decay = np.ones(p + extra)  # the diagonal D of the penalty
        if bias and not decay_bias:
            self.decay[p] = 0.0
        self.omega = np.ones((C, C)) + (self.k - 1.0) * np.eye(C)  # omega[c', c]
        self.targets = self.M * np.eye(C)  # t[c', c]

    def terms(self, w: np.ndarray, targets: Optional[np.ndarray] = None) -> tuple[float, float]:
        """(sum_c T1_c(w_c), sum_c T2_c(w_c)) for rows w (C, p~); ``targets`` defaults to M I."""
        t = self.targets if targets is None else targets
        # Quadratic forms as matrix products (BLAS), not three-operand einsums (C p^2 Python-free
        # loops without BLAS: ~10 ms each at p = 2048).
        t1 = 0.5 * float(np.sum((w @ self.sigma_w) * w)) + 0.5 * self.lam_h * float(np.sum(w * w * self.decay))
        if self.class_scatter is not None:
            v = w[:, : self.p]
            t1 += 0.5 * (self.k - 1.0) * sum(float(v[c] @ self.class_scatter[c] @ v[c]) for c in range(self.C)) / self.n
        f = self.means @ w.T  # f[c', c] = w_c . mu~_{c'}
        t2 = 0.5 * float(np.sum(self.prior[:, None] * self.omega * (f - t) ** 2))
        return float(t1), t2

    def least_squares(self) -> np.ndarray:
        """W_LS (C, p~): the minimizer of every row's L_c (minimum-norm when lambda_H = 0)."""
        # base = Sigma_T + lambda_H D, Sigma_T = Sigma_W + sum_c p_c mu~_c mu~_c^T (one p x p array).
        base = (self.means.T * self.prior) @ self.means
        base += self.sigma_w
        base[np.diag_indices_from(base)] += self.lam_h * self.decay
        rhs = self.k * self.M * self.prior[:, None] * self.means  # rows b_c
        if self.class_scatter is None:
            return _solve(base, rhs.T, self.lam_h > 0).T
        rows = []
        for c in range(self.C):
            # A_c = base + (k - 1) p_c (Sigma_{W,c} + mu~_c mu~_c^T), with p_c Sigma_{W,c} = S_c / N.
            a_c = np.outer(self.means[c], (self.k - 1.0) * self.prior[c] * self.means[c])
            a_c += base
            a_c[: self.p, : self.p] += (self.k - 1.0) / self.n * self.class_scatter[c]
            rows.append(_solve(a_c, rhs[c], self.lam_h > 0))
        return np.stack(rows)


def _solve(a: np.ndarray, b: np.ndarray, definite: bool) -> np.ndarray:
    """A^{-1} b for the symmetric positive (semi)definite A (symmetric up to rounding: its
    products are formed once, not symmetrized; 32 MiB temporaries at p = 2048 add up).

    definite (lambda_H > 0): a Cholesky solve, LU if rounding made it fail (A = Sigma_T +
    lambda_H D is positive definite; Cholesky is half an LU's work: 0.09-0.12 s against 0.15-0.19 s
    at p = 2049 on 2 cores, agreeing to 1e-14). Otherwise A may be singular (rank-deficient
    features); b lies in its range, and the minimum-norm solution is a minimizer, for which the
    expansion of step (2) still holds. It is ``np.linalg.lstsq(A, b, rcond=None)``'s: the singular
    values of a symmetric A are its |eigenvalues| (``eigh`` reads A's lower triangle), and those
    <= eps max(M, N) s_max count as zero, lstsq's rule. The symmetric eigensolver is 2x faster
    than lstsq's SVD at p = 2048 (0.70 s against 1.41 s on 2 cores) and agrees with it to
    ~1e-14 relative. (A Householder tridiagonalization that skips the eigenvectors' back-
    transformation was tried and measured 1.3x slower on a quiet machine: its reduction is half
    memory-bound BLAS2 and its C columns pass the p reflectors in Python.)

    With N < p the spectrum of Sigma_T runs down through the cut-off (N = 600, p = 2048: 479 of
    600 nonzero eigenvalues kept), so at lambda = 0 the split of J into mse_nc1 / mse_nc23 /
    mse_perp is ill-conditioned: the least-squares fit of the data themselves interpolates
    (mse_nc1, mse_nc23 ~ 1e-11), while the cut-off solution leaves them ~1e-2.
    """
    with threads.large(a.shape[0]):  # a wide p x p problem takes all of the process's BLAS threads
        if definite:
            try:
                return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True, check_finite=False), b, check_finite=False)
            except np.linalg.LinAlgError:
                return np.linalg.solve(a, b)
        values, vectors = np.linalg.eigh(a)
        s = np.abs(values)
        keep = s > np.finfo(np.float64).eps * max(a.shape) * (s.max() if s.size else 0.0)
        v = vectors[:, keep]
        return v @ ((v.T @ b) / (values[keep] if b.ndim == 1 else values[keep, None]))


def _augmented(classifier_weights, bias, C: int, p: int) -> np.ndarray:
    w = np.asarray(classifier_weights, dtype=np.float64)
    if w.shape != (C, p):
        hint = " (a Keras Dense kernel is (p, C): pass kernel.T)" if w.shape == (p, C) else ""
        raise ValueError(f"classifier_weights must be (C, p) = ({C}, {p}); got {w.shape}{hint}")
    if bias is None:
        return w
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.shape != (C,):
        raise ValueError(f"bias must have C = {C} entries; got shape {np.shape(bias)}")
    return np.concatenate([w, b[:, None]], axis=1)


def least_squares_classifier(
    stats: NCAccumulator, weight_decay: float, *, k: float = 1.0, M: float = 1.0, bias: bool = False, decay_bias: bool = True
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The regularized least-squares classifier W_LS of the head's loss (module docstring).

    Args:
        stats: a complete pass of :func:`decomposition_accumulator` (``NCAccumulator(full=True)``,
            ``class_scatter=True`` when k != 1) over the training features.
        weight_decay: lambda, the weight decay on the classifier (the objective's lambda/2 ||W||^2).
        k: true-class weight of the rescaled square loss (1: plain).
        M: target value of the true class (1: plain).
        bias: fit a bias too (a constant 1 appended to h).
        decay_bias: whether the bias is in the penalty (only with ``bias``).

    Returns:
        (W_LS (C, p), b_LS (C,) or None).

    Example:
        >>> w_ls, b_ls = least_squares_classifier(acc, 5e-4, bias=True)   # doctest: +SKIP
    """
    head = _Head(stats, weight_decay, k, M, bias, decay_bias)
    w_ls = head.least_squares()
    p = stats.feature_dim
    return (w_ls[:, :p], w_ls[:, p]) if bias else (w_ls, None)


def mse_decomposition(
    stats: NCAccumulator,
    classifier_weights,
    weight_decay: float,
    *,
    bias=None,
    decay_bias: bool = True,
    k: float = 1.0,
    M: float = 1.0,
) -> dict:
    """``mse_nc1``, ``mse_nc23``, ``mse_perp``, ``mse_total`` = J(W) and ``ls_distance``.

    Args:
        stats: a complete pass of :func:`decomposition_accumulator` over the training features
            (``NCAccumulator(full=True)``; ``class_scatter=True`` when k != 1).
        classifier_weights: (C, p) classifier rows w_c (a Keras Dense kernel ``.T``).
        weight_decay: lambda on the classifier (the objective's lambda/2 ||W||_F^2 term).
        bias: the classifier's (C,) bias, or None for a bias-free head.
        decay_bias: whether the bias is decayed (its lambda/2 ||b||^2 is in J and in W_LS's ridge).
        k: true-class weight of the rescaled square loss (``loss.k``; 1 = plain square loss).
        M: true-class target (``loss.M``; 1 = plain).

    Returns:
        dict with keys :data:`DECOMPOSITION_KEYS` (Python floats); mse_nc1 + mse_nc23 + mse_perp
        equals mse_total to float64 rounding.

    Example:
        >>> acc = decomposition_accumulator(10)
        >>> for h, y in batches:                                     # doctest: +SKIP
        ...     acc.update(h, y)
        >>> mse_decomposition(acc, dense.kernel.numpy().T, 5e-4)    # doctest: +SKIP
    """
    head = _Head(stats, weight_decay, k, M, bias is not None, decay_bias)
    w = _augmented(classifier_weights, bias, stats.num_classes, stats.feature_dim)
    w_ls = head.least_squares()
    nc1, nc23 = head.terms(w_ls)
    diff = w - w_ls
    perp = sum(head.terms(diff, targets=np.zeros_like(head.targets)))  # L_c's quadratic part at W - W_LS
    total = sum(head.terms(w))
    scale = 2.0 / head.C
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = float(np.linalg.norm(diff) / np.linalg.norm(w))
    return {
        "mse_nc1": scale * nc1,
        "mse_nc23": scale * nc23,
        "mse_perp": scale * perp,
        "mse_total": scale * total,
        "ls_distance": distance,
    }


def mse_decomposition_arrays(
    features,
    labels,
    classifier_weights,
    weight_decay: float,
    *,
    num_classes: Optional[int] = None,
    batch_size: Optional[int] = None,
    **loss,
) -> dict:
    """:func:`mse_decomposition` for in-memory arrays, streamed through the accumulator.

    Args:
        features: (N, p) features h.
        labels: (N,) integer labels.
        classifier_weights: (C, p) classifier rows.
        weight_decay: lambda on the classifier.
        num_classes: C (default: the classifier's rows).
        batch_size: rows per streamed batch (default all at once).
        **loss: ``bias``, ``decay_bias``, ``k``, ``M``, as in :func:`mse_decomposition`.

    Returns:
        dict with keys :data:`DECOMPOSITION_KEYS`.

    Example:
        >>> mse_decomposition_arrays(h, y, W, 5e-4, k=2.0, M=3.0)["ls_distance"]   # doctest: +SKIP
    """
    features, labels = np.asarray(features), np.asarray(labels)
    C = int(num_classes if num_classes is not None else np.shape(classifier_weights)[0])
    acc = decomposition_accumulator(C, k=loss.get("k", 1.0))
    bs = int(batch_size) if batch_size else max(len(labels), 1)
    for i in range(0, len(labels), bs):
        acc.update(features[i : i + bs], labels[i : i + bs])
    return mse_decomposition(acc, classifier_weights, weight_decay, **loss)

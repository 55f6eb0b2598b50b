"""Neural-collapse measures on the last-layer features h (SPEC §5, paper §6 and appendix K).

Pure numpy; no TensorFlow/Keras import, so the measures can be tested and reused offline.

Conventions
-----------
* Everything is accumulated and computed in float64, whatever the input dtype (float32 batches
  are converted per batch, which is exact).
* Streaming: :class:`NCAccumulator` sees the data once, in batches, and keeps per-class counts
  (C), per-class means (C x p), per-class scalar within-class sums of squares (C) and, when
  ``full=True``, the pooled within-class scatter matrix S_W = sum_c S_c (p x p). Memory is
  O(p^2 + C p), independent of N. Statistics are combined with Chan, Golub & LeVeque's parallel
  formula (per class: S = S_a + S_b + n_a n_b / (n_a + n_b) * d d^T, d = mean_b - mean_a), never
  with the ``sum h h^T - n mu mu^T`` shortcut, which cancels catastrophically once the features
  collapse onto their class means. Keeping only the pooled sum of the per-class scatter matrices
  is exact because the Chan correction of each class is simply added to it.
* mu_G = (1/C) sum_c mu_c, the mean of the class means (not the sample mean; the two differ on
  unbalanced data). Sigma_W = S_W / N, Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T.
* ``nc1`` = Tr(Sigma_W Sigma_B^+) / C with Sigma_B^+ built from exactly the top C-1 eigenpairs of
  Sigma_B (min(C-1, p) if p < C-1), never a tolerance-based pinv. The eigenpairs are taken from a
  thin SVD of the C x p matrix M = [mu_c - mu_G]: Sigma_B = M^T M / C, so its eigenvectors are the
  right singular vectors of M and its eigenvalues s_i^2 / C. This costs O(C^2 p) instead of
  O(p^3), is symmetric by construction, and resolves small eigenvalues with relative (not
  absolute, as an eigh of Sigma_B would) accuracy. Then Tr(Sigma_W Sigma_B^+) =
  sum_i v_i^T Sigma_W v_i / lambda_i, with no p x p product formed.
* Rank guard: ``nc1`` is NaN, with one RuntimeWarning per :meth:`NCAccumulator.finalize`, when
  Sigma_B is numerically rank-deficient, i.e. fewer than min(C-1, p) singular values of M exceed
  the rounding floor of :func:`rounding_floor`. Coinciding or collinear class means (or classes
  whose features are all dead) leave singular values at rounding level, not exactly 0, and
  dividing by their squares gave nc1 ~ 1e27-1e30. The floor is relative (scale-invariant: the
  features times 1e-6 give the same decision): the features' rounding unit u times the size of
  the *centred* means (SPEC §12: a common offset does not raise it), plus float64 accumulation
  error relative to the samples' size. Its derivation is in :func:`rounding_floor`.
* Only those C-1 quadratic forms of Sigma_W enter ``nc1``, so when the second pass (the one
  ``nc4`` needs anyway) also sees the labels, it accumulates
  v_i^T Sigma_W v_i = (1/N) sum_n ((h_n - mu_{y_n}) . v_i)^2 directly, against the final class
  means: O(N p C) work and O(C p) memory instead of the O(N p^2) and O(p^2) of the scatter
  matrix. ``compute_nc_metrics`` and the run's `Tracker` do this; the scatter matrix
  (``full=True``) remains for one-pass use.
* Nearest-class-mean (NCC) classification, for ``nc4`` and the layer-wise NCC accuracy of SPEC
  §10, is Euclidean against the class means of pass 1 (:func:`nearest_class_mean`); ties go to
  the lowest class index. :class:`NCCAccuracy` counts agreement with the labels on any set of
  samples (train, or test against the *train* means: :meth:`NCAccumulator.ncc`).
* ``class_scatter=True`` also keeps every class's own scatter S_c (C x p x p, Chan-merged per
  class), which the MSE decomposition of the rescaled square loss needs
  (:mod:`sqloss_nc.decomposition`).
* Standard deviations use ddof=1. NC2's angle statistics run over the ordered pairs c != c'
  (the off-diagonal of the cosine matrix, as SPEC §5 and Papyan et al.); with C = 2 there is one
  angle and its std is NaN. CDNV averages over the unordered pairs c < c' (symmetric anyway).
* The classifier is passed as a (C, p) array of rows w_c (the paper's W_L, C x p). A Keras Dense
  kernel is (p, C): pass ``kernel.T``.
* ``nc4`` compares the nearest class mean with the network's argmax. The class means are only
  known after the whole pass, so an exact one-pass NC4 with memory independent of N does not
  exist; this module runs a second streaming pass (:meth:`NCAccumulator.nc4_pass`, or
  :func:`compute_nc_metrics`, which does both passes from a re-iterable source). Without that
  pass ``nc4`` is NaN.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> h = rng.normal(size=(100, 8)); y = np.arange(100) % 4
>>> m = nc_metrics(h, y, classifier_weights=rng.normal(size=(4, 8)), batch_size=32)
>>> sorted(m) == sorted(NC_KEYS)
True
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Iterator, Optional, Union

import numpy as np

from . import threads

__all__ = [
    "NC_KEYS",
    "FEATURE_COLLAPSE_KEYS",
    "NCAccumulator",
    "NCCAccuracy",
    "WithinClassCovariance",
    "nearest_class_mean",
    "rounding_floor",
    "ROUNDING_FACTOR",
    "compute_nc_metrics",
    "nc_metrics",
    "feature_collapse",
    "class_mean_gram",
]

#: Keys of the dict returned by :meth:`NCAccumulator.finalize`, in a stable order.
NC_KEYS = (
    "nc1",
    "nc2_equinorm_means",
    "nc2_equinorm_weights",
    "nc2_equiangular_means",
    "nc2_equiangular_weights",
    "nc2_maxangle_means",
    "nc2_maxangle_weights",
    "nc3",
    "nc3_centered",
    "nc4",
    "eps_gap",
    "cos_w_mu",
    "w_dot_muG",
    "w_norm_sq_mean",
    "trace_ratio",
    "cdnv",
)

#: Keys returned by :func:`feature_collapse` (the cheap measures for intermediate layers).
FEATURE_COLLAPSE_KEYS = ("trace_ratio", "cdnv")

_DEFAULT_BATCH = 8192


def _as_features(features) -> np.ndarray:
    h = np.asarray(features, dtype=np.float64)
    if h.ndim == 1:
        raise ValueError("features must be (batch, p); got a 1-D array")
    if h.ndim > 2:
        # Intermediate conv activations (b, H, W, ch): the measures act on the flattened vector.
        h = h.reshape(h.shape[0], -1)
    return h


def _as_labels(labels, num_classes: int, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim > 1:
        y = y.reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries for {n} feature rows")
    if n == 0:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got [{y.min()}, {y.max()}]")
    return y


def _as_logits(logits, num_classes: int, n: int) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.shape != (n, num_classes):
        raise ValueError(f"logits must be ({n}, {num_classes}); got {z.shape}")
    return z


def _std_over_mean(x: np.ndarray) -> float:
    if x.shape[0] < 2:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.std(x, ddof=1) / np.mean(x))


def _pair_cosines(rows: np.ndarray) -> np.ndarray:
    """Cosines of all ordered pairs c != c' of the rows, i.e. the off-diagonal entries of the
    cosine matrix (SPEC §5; the convention of Papyan et al.'s code). Each unordered pair appears
    twice: means are unchanged, the ddof=1 std is that of the off-diagonal entries. NaN where a
    row is zero."""
    norms = np.linalg.norm(rows, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = rows / norms[:, None]
    off = ~np.eye(rows.shape[0], dtype=bool)
    return (unit @ unit.T)[off]


def _nc2(rows: np.ndarray, num_classes: int) -> tuple[float, float, float]:
    """(equinorm, equiangular, maxangle) of a set of C vectors."""
    equinorm = _std_over_mean(np.linalg.norm(rows, axis=1))
    cos = _pair_cosines(rows)
    # C = 2: a single angle, whose spread is undefined (SPEC: written as NaN).
    equiangular = float(np.std(cos, ddof=1)) if num_classes > 2 else float("nan")
    maxangle = float(np.mean(np.abs(cos + 1.0 / (num_classes - 1))))
    return equinorm, equiangular, maxangle


def _nc3(w: np.ndarray, m: np.ndarray) -> float:
    # ||W^T/||W|| - M/||M||||_F^2 with both in p x C equals the same expression on the C x p rows.
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = w / np.linalg.norm(w) - m / np.linalg.norm(m)
    return float(np.sum(diff * diff))


_EPS64 = float(np.finfo(np.float64).eps)

#: Safety factor of :func:`rounding_floor` over its first-order error bound.
ROUNDING_FACTOR = 64.0


def _rounding_unit(dtype) -> float:
    """Unit roundoff of an input dtype: its eps for floats, float64's for integers (exact)."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else _EPS64


def rounding_floor(num_classes: int, feature_dim: int, s_max: float, input_eps: float = _EPS64, sample_scale: float = 0.0) -> float:
    """Singular values of M = [mu_c - mu_G] (C x p) at or below this value are rounding noise.

    SPEC §12: a direction counts as resolved when its singular value exceeds what rounding of the
    *centred* class means can produce; a common offset of the features must not raise the part
    of the floor that comes from the features' own precision. Three terms:

    * the features' precision, relative to the centred means: M known to the input's unit
      roundoff u, ||dM||_2 <= ||dM||_F <= 2 sqrt(C) u ||M||_2 (centring at most doubles a
      row's error), and by Weyl's inequality every singular value moves by at most that much;
    * our float64 accumulation, relative to the summed vectors (``sample_scale``, offset
      included): each class mean is a float64 sum of vectors of that size, off by ~eps64 times
      it, which a common offset of 1e4 over unit spreads makes visible (2e-12) and which a
      floor relative to M alone would let through;
    * the SVD's own backward error, max(C, p) eps64 s_max (numpy's ``matrix_rank`` convention).

    The first two are scaled by :data:`ROUNDING_FACTOR` (64) to cover rounding upstream of the
    features (a network's float32 dot products err by more than one u) and many batches.

    Why not relative to the samples (the floor of the previous release): with float32
    features, u times a sample norm of 10 times 64 is 1.5e-4, so class means spread by 1e-4
    around a common offset of norm 10 (early epochs of a BatchNorm/ReLU net) were declared
    rank-deficient although float32 resolves them to ~1e-7 (issue 18: nc1 NaN where the float64
    value is 9.2664). Two classes whose features coincide up to float32 rounding still fall
    below this floor: their means differ by ~u ||h|| / sqrt(n), far below 128 sqrt(C) u ||M||.

    Args:
        num_classes: C.
        feature_dim: p.
        s_max: the largest singular value of M (the centred means' size).
        input_eps: unit roundoff u of the features' dtype (float32: 1.19e-7).
        sample_scale: the largest norm of the vectors summed into the means, e.g. the largest
            RMS norm of a class's samples (what :class:`NCAccumulator` uses), or max_c ||mu_c||
            when only the means are known.

    Returns:
        float: the absolute threshold; a singular value s is significant iff s > floor.

    Example:
        >>> rounding_floor(10, 512, s_max=1.0, input_eps=np.finfo(np.float32).eps, sample_scale=3.0) < 1e-4
        True
    """
    C, p = int(num_classes), int(feature_dim)
    precision = 2.0 * np.sqrt(C) * (input_eps * s_max + _EPS64 * sample_scale)
    return float(ROUNDING_FACTOR * precision + max(C, p) * _EPS64 * s_max)


def nearest_class_mean(features, class_means, present=None) -> np.ndarray:
    """Index of the nearest class mean (Euclidean) for every row; ties go to the lowest index.

    Args:
        features: (b, p) features (or (b, ...), flattened per sample).
        class_means: (C, p) class means mu_c.
        present: optional (C,) bool mask; classes outside it are never chosen (e.g. classes
            without samples, whose mean is undefined).

    Returns:
        (b,) int64 class indices.

    Example:
        >>> nearest_class_mean(np.array([[0.9, 0.0], [0.0, -2.0]]), np.array([[1.0, 0.0], [0.0, -1.0]]))
        array([0, 1])
    """
    h = _as_features(features)
    means = np.asarray(class_means, dtype=np.float64)
    if present is None:
        present = np.ones(means.shape[0], dtype=bool)
    if h.shape[1] != means.shape[1]:
        raise ValueError(f"feature dim {h.shape[1]} != class-mean dim {means.shape[1]}")
    mu_g = means[present].mean(axis=0)
    # argmin_c ||h - mu_c||^2 = argmin_c (||mu_c||^2 - 2 h.mu_c); centring both on mu_G first
    # keeps the expansion's cancellation small (differences between classes are O(||M||)).
    mc = means - mu_g
    score = np.einsum("ij,ij->i", mc, mc)[None, :] - 2.0 * ((h - mu_g) @ mc.T)
    score[:, ~present] = np.inf
    return np.argmin(score, axis=1)


class NCCAccuracy:
    """Streaming nearest-class-mean (NCC) accuracy against fixed class means (SPEC §10).

    The fraction of samples whose nearest class mean equals their label. For the layer-wise
    measure the means are the *train-set* class means of that layer
    (:meth:`NCAccumulator.ncc` gives a counter bound to them), fed the train batches in a second
    pass, or the test batches for the test-set value.

    Args:
        class_means: (C, p) class means (copied).
        present: optional (C,) bool mask of classes that have a mean (default all).

    Example:
        >>> ncc = NCCAccuracy(np.array([[1.0, 0.0], [0.0, 1.0]]))
        >>> ncc.update(np.array([[2.0, 0.1], [0.3, 0.2], [0.0, 5.0]]), np.array([0, 1, 1]))
        >>> ncc.accuracy
        0.6666666666666666
    """

    def __init__(self, class_means, present=None):
        self.class_means = np.array(class_means, dtype=np.float64)
        if self.class_means.ndim != 2:
            raise ValueError(f"class_means must be (C, p); got shape {self.class_means.shape}")
        self.present = None if present is None else np.asarray(present, dtype=bool).copy()
        self.correct = 0
        self.seen = 0

    def update(self, features, labels) -> None:
        """Count one batch.

        Args:
            features: (b, p) features of the layer (or (b, ...), flattened per sample).
            labels: (b,) integer labels in [0, C).
        """
        h = _as_features(features)
        y = _as_labels(labels, self.class_means.shape[0], h.shape[0])
        if h.shape[0] == 0:
            return
        self.correct += int(np.count_nonzero(nearest_class_mean(h, self.class_means, self.present) == y))
        self.seen += h.shape[0]

    def add(self, correct: int, seen: int) -> None:
        """Count samples classified elsewhere against these means (e.g. on a device, for many
        runs at once: `backend.jax.stacked_collapse`): ``correct`` of ``seen`` were nearest to
        their label's mean (ties to the lowest index, as :func:`nearest_class_mean`).

        Example:
            >>> ncc = NCCAccuracy(np.eye(2)); ncc.add(3, 4); ncc.accuracy
            0.75
        """
        self.correct += int(correct)
        self.seen += int(seen)

    @property
    def accuracy(self) -> float:
        """correct / seen; NaN before any sample."""
        return self.correct / self.seen if self.seen else float("nan")


class WithinClassCovariance:
    """Streaming within-class covariance about fixed class means, for ``sigma_w_fro`` (SPEC §12).

    Sigma_W = (1/N) sum_n (h_n - mu_{y_n})(h_n - mu_{y_n})^T, float64, p x p memory, with the class
    means given (the train means: for the train split after pass 1, so no cancellation is left;
    for the test split, test samples about the *train* means, as in the stored results of
    tding1/Neural-Collapse). :attr:`frobenius` is ||Sigma_W||_F.

    Args:
        class_means: (C, p) class means (copied).

    Example:
        >>> cov = WithinClassCovariance(np.zeros((2, 2)))
        >>> cov.update(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([0, 1]))
        >>> cov.frobenius
        1.0
    """

    def __init__(self, class_means):
        self.class_means = np.array(class_means, dtype=np.float64)
        if self.class_means.ndim != 2:
            raise ValueError(f"class_means must be (C, p); got shape {self.class_means.shape}")
        p = self.class_means.shape[1]
        self.scatter = np.zeros((p, p))
        self.seen = 0

    def update(self, features, labels) -> None:
        """Add one batch: (b, p) features (flattened per sample) and (b,) labels in [0, C)."""
        h = _as_features(features)
        y = _as_labels(labels, self.class_means.shape[0], h.shape[0])
        if h.shape[0] == 0:
            return
        centred = h - self.class_means[y]
        self.scatter += centred.T @ centred
        self.seen += h.shape[0]

    def add(self, scatter, seen: int) -> None:
        """Add a scatter sum_n (h_n - mu_{y_n})(h_n - mu_{y_n})^T of ``seen`` samples about these
        class means computed elsewhere (e.g. on a device: `backend.jax.stacked_collapse`).

        Example:
            >>> cov = WithinClassCovariance(np.zeros((2, 2))); cov.add(np.diag([2.0, 0.0]), 2); cov.frobenius
            1.0
        """
        self.scatter += np.asarray(scatter, dtype=np.float64)
        self.seen += int(seen)

    @property
    def frobenius(self) -> float:
        """||Sigma_W||_F; NaN before any sample."""
        return float(np.linalg.norm(self.scatter / self.seen)) if self.seen else float("nan")


class NCAccumulator:
    """Streaming, mergeable statistics for the neural-collapse measures of SPEC §5.

    One pass of :meth:`update` over the data gives everything except ``nc4``; ``nc4`` needs a
    second pass with :meth:`nc4_pass` (or :meth:`nc4_update` per batch), because it compares
    each sample with class means that are only known at the end of the first pass.

    Args:
        num_classes: C (>= 2). Labels must lie in [0, C).
        feature_dim: p; inferred from the first batch when None. Features with more than two
            dimensions are flattened per sample.
        full: keep the p x p pooled within-class scatter matrix, which gives ``nc1`` after one
            pass. With ``full=False`` memory is O(C p) and ``nc1`` comes from a second pass with
            labels (:meth:`nc4_pass` on ``(features, labels, logits)``), else it is NaN;
            ``trace_ratio``, ``cdnv`` and every mean/weight measure are exact either way.
        class_scatter: also keep each class's within-class scatter S_c (``class_scatter``,
            C x p x p float64, i.e. C times the memory of the pooled one; implies ``full``).
            Needed only by the rescaled-loss MSE decomposition.
        input_eps: unit roundoff of the features for the ``nc1`` rank guard
            (:func:`rounding_floor`); None: the largest eps of the batches' dtypes (float32
            features give 1.19e-7). Give float32's eps if float32 features were cast to float64
            before they got here.

    Example:
        >>> acc = NCAccumulator(num_classes=10)
        >>> # pass 1; then the optional pass 2 for nc4; then the measures
        >>> for h, y, f in batches:            # doctest: +SKIP
        ...     acc.update(h, y, logits=f)
        >>> acc.nc4_pass(batches)               # doctest: +SKIP
        >>> metrics = acc.finalize(classifier_weights=dense.kernel.numpy().T)  # doctest: +SKIP
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: Optional[int] = None,
        full: bool = True,
        class_scatter: bool = False,
        input_eps: Optional[float] = None,
    ):
        num_classes = int(num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.keep_class_scatter = bool(class_scatter)
        self.full = bool(full) or self.keep_class_scatter
        self._fixed_eps = input_eps is not None
        # Rounding unit of the inputs seen so far (the rank guard's u); float64 until a batch says otherwise.
        self.input_eps = float(input_eps) if input_eps is not None else _EPS64
        self.feature_dim: Optional[int] = None
        self.counts = np.zeros(num_classes, dtype=np.int64)
        self.means: Optional[np.ndarray] = None  # (C, p)
        self.ss = np.zeros(num_classes, dtype=np.float64)  # per-class sum ||h - mu_c||^2
        self.scatter: Optional[np.ndarray] = None  # (p, p) pooled within-class scatter, if full
        self.class_scatter: Optional[np.ndarray] = None  # (C, p, p) per-class scatter, if class_scatter
        self.logit_true_sum = 0.0  # sum_n f_{y_n}(x_n)
        self.num_logits = 0
        self._reset_nc4()
        if feature_dim is not None:
            self._allocate(int(feature_dim))

    # ----------------------------------------------------------------- bookkeeping
    def _allocate(self, p: int) -> None:
        self.feature_dim = p
        self.means = np.zeros((self.num_classes, p), dtype=np.float64)
        if self.full:
            self.scatter = np.zeros((p, p), dtype=np.float64)
        if self.keep_class_scatter:
            self.class_scatter = np.zeros((self.num_classes, p, p), dtype=np.float64)

    def _reset_nc4(self) -> None:
        self._nc4_mismatch = 0
        self._nc4_seen = 0
        self._nc4_complete = False
        # Second-pass nc1: the top C-1 directions of Sigma_B (from the final means) and the sum
        # of squared projections of h_n - mu_{y_n} on them.
        self._directions: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._proj_sq: Optional[np.ndarray] = None
        self._proj_seen = 0

    @property
    def num_samples(self) -> int:
        """N, the number of samples seen by :meth:`update` (and :meth:`merge`)."""
        return int(self.counts.sum())

    def _combine(self, counts_b, means_b, ss_b, scatter_b, idx, class_scatter_b=None) -> None:
        """Chan merge of statistics for the classes ``idx`` (all arrays indexed like ``idx``;
        ``scatter_b`` is pooled over them, ``class_scatter_b`` is per class)."""
        n_a = self.counts[idx].astype(np.float64)
        n_b = counts_b.astype(np.float64)
        n = n_a + n_b
        delta = means_b - self.means[idx]
        weight = n_a * n_b / n
        self.means[idx] += delta * (n_b / n)[:, None]
        self.ss[idx] += ss_b + weight * np.einsum("ij,ij->i", delta, delta)
        if self.full:
            self.scatter += scatter_b + (delta * weight[:, None]).T @ delta
        if self.keep_class_scatter:
            self.class_scatter[idx] += class_scatter_b + weight[:, None, None] * np.einsum("ci,cj->cij", delta, delta)
        self.counts[idx] += counts_b
        # Any nc4 pass was made against the old means.
        self._reset_nc4()

    # ----------------------------------------------------------------- pass 1
    def update(self, features, labels, logits=None) -> None:
        """Add one batch.

        Args:
            features: (b, p) float32/float64 features h (or (b, ...) which is flattened).
            labels: (b,) integer class labels in [0, C). A batch may hold any subset of classes.
            logits: optional (b, C) network outputs f(x); needed for ``eps_gap`` (and in the
                second pass for ``nc4``). Give them for every batch or for none.
        """
        raw = np.asarray(features)
        if raw.ndim < 2:
            raise ValueError(f"features must be (batch, p); got shape {raw.shape}")
        b = raw.shape[0]
        raw = raw.reshape(b, -1)  # intermediate conv activations are measured flattened
        y = _as_labels(labels, self.num_classes, b)
        if logits is not None:
            z = _as_logits(logits, self.num_classes, b)
        if b == 0:
            return
        if self.feature_dim is None:
            self._allocate(raw.shape[1])
        elif raw.shape[1] != self.feature_dim:
            raise ValueError(f"feature dim {raw.shape[1]} != {self.feature_dim}")
        if not self._fixed_eps:
            self.input_eps = max(self.input_eps, _rounding_unit(raw.dtype))

        # Group rows by class (stable sort) so per-class sums are contiguous reductions:
        # O(b p) instead of a one-hot (b x C) @ (b x p) product. Sorting before the float64 cast
        # and centring in place keep the transient memory to about one float64 copy of the batch.
        order = np.argsort(y, kind="stable")
        ys = y[order]
        hs = raw[order].astype(np.float64, copy=False)
        starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
        ends = np.r_[starts[1:], b]
        cls = ys[starts]
        cnt = ends - starts
        # One contiguous (pairwise-summed) reduction per class: np.add.reduceat along axis 0 is
        # several times slower on wide rows (it was most of an NC measurement's time).
        means_b = np.stack([hs[s:e].sum(axis=0) for s, e in zip(starts, ends)]) / cnt[:, None]
        # Centre on the batch class means before any product: this is what keeps precision
        # when h is ~ mu_c + tiny noise.
        for s, e, mu in zip(starts, ends, means_b):
            hs[s:e] -= mu
        ss_b = np.add.reduceat(np.einsum("ij,ij->i", hs, hs), starts)
        class_scatter_b = None
        with threads.large(self.feature_dim if self.full else 0):  # the O(b p^2) products
            if self.keep_class_scatter:
                class_scatter_b = np.stack([hs[s:e].T @ hs[s:e] for s, e in zip(starts, ends)])
                scatter_b = class_scatter_b.sum(axis=0)
            else:
                scatter_b = hs.T @ hs if self.full else None
        del hs
        self._combine(cnt, means_b, ss_b, scatter_b, cls, class_scatter_b)

        if logits is not None:
            self.logit_true_sum += float(z[np.arange(b), y].sum())
            self.num_logits += b

    def add_statistics(self, counts, means, ss, scatter=None, class_scatter=None, logit_true_sum: float = 0.0, num_logits: int = 0, input_eps: Optional[float] = None) -> None:
        """Fold in pass-1 statistics of a group of samples computed elsewhere, with the same Chan
        merge as :meth:`update` and :meth:`merge` (for a source that is not numpy batches: a
        device accumulating many runs at once, `backend.jax.stacked_collapse`).

        Args:
            counts: (C,) samples per class of the group (classes with 0 are skipped).
            means: (C, p) the group's class means (rows of empty classes are ignored).
            ss: (C,) the group's within-class sums of squares sum ||h - mean_c||^2, about its own means.
            scatter: (p, p) the group's pooled within-class scatter about its own class means
                (needed when this accumulator is ``full``).
            class_scatter: (C, p, p) the group's per-class scatters (when ``class_scatter``).
            logit_true_sum: sum_n f_{y_n}(x_n) over the group, when it had logits.
            num_logits: how many of its samples had logits (0 or all of them).
            input_eps: unit roundoff of the features the group was computed from (float32
                features: float32's eps), for the ``nc1`` rank guard.

        Example:
            >>> a = NCAccumulator(2, full=False)
            >>> a.add_statistics([2, 1], [[0.0, 1.0], [3.0, 0.0]], [2.0, 0.0])
            >>> a.num_samples, a.means[0].tolist(), a.ss.tolist()
            (3, [0.0, 1.0], [2.0, 0.0])
        """
        counts = np.asarray(counts).astype(np.int64)
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or counts.shape != (self.num_classes,) or means.shape[0] != self.num_classes:
            raise ValueError(f"statistics must be (C,) counts and (C, p) means with C = {self.num_classes}")
        if self.full and scatter is None:
            raise ValueError("a full accumulator needs the group's pooled scatter")
        if self.keep_class_scatter and class_scatter is None:
            raise ValueError("a class_scatter accumulator needs the group's per-class scatters")
        if self.feature_dim is None:
            self._allocate(means.shape[1])
        elif means.shape[1] != self.feature_dim:
            raise ValueError(f"feature dim {means.shape[1]} != {self.feature_dim}")
        if input_eps is not None and not self._fixed_eps:
            self.input_eps = max(self.input_eps, float(input_eps))
        idx = np.flatnonzero(counts)
        if len(idx):
            # The pooled scatter is already summed over the classes; _combine adds each class's
            # Chan term to it, exactly as for a numpy batch.
            class_b = np.asarray(class_scatter, dtype=np.float64)[idx] if self.keep_class_scatter else None
            pooled = np.asarray(scatter, dtype=np.float64) if self.full else None
            self._combine(counts[idx], means[idx], np.asarray(ss, dtype=np.float64)[idx], pooled, idx, class_b)
        self.logit_true_sum += float(logit_true_sum)
        self.num_logits += int(num_logits)

    def merge(self, other: "NCAccumulator") -> "NCAccumulator":
        """Fold another accumulator's pass-1 statistics into this one (Chan); returns self.

        Any nc4 pass on either side is discarded, since the class means change.

        Args:
            other: an accumulator with the same ``num_classes``, ``full``, ``class_scatter``
                and feature dim.
        """
        same = (other.num_classes, other.full, other.keep_class_scatter) == (self.num_classes, self.full, self.keep_class_scatter)
        if not same:
            raise ValueError("cannot merge accumulators with different num_classes, full or class_scatter flags")
        if other.feature_dim is None:
            return self
        if self.feature_dim is None:
            self._allocate(other.feature_dim)
        elif other.feature_dim != self.feature_dim:
            raise ValueError(f"feature dim {other.feature_dim} != {self.feature_dim}")
        idx = np.flatnonzero(other.counts)
        # other.scatter is already pooled over classes; the per-class Chan terms are added in
        # _combine, so pass it once alongside the per-class arrays.
        class_b = other.class_scatter[idx] if self.keep_class_scatter else None
        self._combine(other.counts[idx], other.means[idx], other.ss[idx], other.scatter if self.full else None, idx, class_b)
        if not self._fixed_eps:
            self.input_eps = max(self.input_eps, other.input_eps)
        self.logit_true_sum += other.logit_true_sum
        self.num_logits += other.num_logits
        return self

    # ----------------------------------------------------------------- pass 2 (nc4)
    def nc4_update(self, features, logits, labels=None) -> None:
        """Second-pass batch: ``nc4`` (nearest class mean against the argmax of ``logits``) and,
        given ``labels``, the projections that give ``nc1`` without the scatter matrix.

        Must follow the complete pass 1 (the class means are read from this accumulator).
        Prefer :meth:`nc4_pass`, which also checks that the pass covered all N samples.

        Args:
            features: (b, p) features, the same samples as in pass 1 (any order/batching).
            logits: (b, C) network outputs for those samples, or None (no ``nc4``).
            labels: (b,) their labels, or None (no second-pass ``nc1``).
        """
        if self.feature_dim is None:
            raise RuntimeError("nc4_update before any update(): class means are unknown")
        h = _as_features(features)
        b = h.shape[0]
        z = None if logits is None else _as_logits(logits, self.num_classes, b)
        y = None if labels is None else _as_labels(labels, self.num_classes, b)
        if b == 0:
            return
        if h.shape[1] != self.feature_dim:
            raise ValueError(f"feature dim {h.shape[1]} != {self.feature_dim}")
        present = self.counts > 0
        if z is not None:
            # Ties resolve to the lowest index on both sides, like np.argmax/np.argmin.
            nearest = nearest_class_mean(h, self.means, present)
            pred = np.argmax(z, axis=1)
            self._nc4_mismatch += int(np.count_nonzero(nearest != pred))
            self._nc4_seen += b
            self._nc4_complete = self._nc4_seen == self.num_samples
        if y is not None and present.all():
            _, v, _ = self._sigma_b_directions()
            centred = h - self.means[y]  # against the final class means: no cancellation left
            proj = centred @ v.T
            if self._proj_sq is None:
                self._proj_sq = np.zeros(len(v))
            self._proj_sq += np.einsum("ij,ij->j", proj, proj)
            self._proj_seen += b

    def sigma_b_directions(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(lambda, V, rank) of the complete pass 1: the top k = min(C-1, p) eigenvalues of
        Sigma_B, their directions V (k, p) (the rows the second pass projects h - mu_y on for
        ``nc1``) and how many are above :func:`rounding_floor`. For a second pass made
        elsewhere (:meth:`add_second_pass`).

        Example:
            >>> lam, v, rank = acc.sigma_b_directions()   # doctest: +SKIP
        """
        if self.feature_dim is None:
            raise RuntimeError("sigma_b_directions() before any update(): class means are unknown")
        return self._sigma_b_directions()

    def add_second_pass(self, seen: int, nc4_mismatch: Optional[int] = None, proj_sq=None) -> None:
        """Results of a second pass made elsewhere against this (complete) pass 1's class means,
        as :meth:`nc4_update` would count them over ``seen`` samples: how many samples' nearest
        class mean differs from the argmax of their logits (``nc4``), and, when every class has
        samples, the sums over samples of ((h_n - mu_{y_n}) . v_i)^2 for the rows v_i of
        :meth:`sigma_b_directions` (``nc1``).

        Args:
            seen: samples of the pass (the split's N for a complete pass).
            nc4_mismatch: the nc4 count, or None (no logits).
            proj_sq: (k,) the projected sums of squares, or None (no labels).

        Example:
            >>> acc.add_second_pass(acc.num_samples, nc4_mismatch=3, proj_sq=q)   # doctest: +SKIP
        """
        if self.feature_dim is None:
            raise RuntimeError("add_second_pass before any update(): class means are unknown")
        if nc4_mismatch is not None:
            self._nc4_mismatch += int(nc4_mismatch)
            self._nc4_seen += int(seen)
            self._nc4_complete = self._nc4_seen == self.num_samples
        if proj_sq is not None and (self.counts > 0).all():
            proj_sq = np.asarray(proj_sq, dtype=np.float64)
            self._proj_sq = proj_sq.copy() if self._proj_sq is None else self._proj_sq + proj_sq
            self._proj_seen += int(seen)

    def _sigma_b_directions(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(lambda, V, rank): the top k = min(C-1, p) eigenpairs of Sigma_B, from a thin SVD of
        M, and how many of the k singular values of M exceed :func:`rounding_floor`."""
        if self._directions is None:
            m = self.means - self.means.mean(axis=0)
            _, s, vt = np.linalg.svd(m, full_matrices=False)
            k = min(self.num_classes - 1, self.feature_dim)
            # The largest RMS norm of a class's samples bounds the vectors summed into the means.
            rms = np.sqrt(np.max(np.einsum("ij,ij->i", self.means, self.means) + self.ss / self.counts))
            floor = rounding_floor(self.num_classes, self.feature_dim, s[0], self.input_eps, sample_scale=rms)
            self._directions = (s[:k] ** 2 / self.num_classes, vt[:k], int(np.count_nonzero(s[:k] > floor)))
        return self._directions

    def nc4_pass(self, batches: Iterable) -> None:
        """Run the complete second pass over ``batches``: ``nc4``, and ``nc1`` from projections
        when the batches carry labels.

        Args:
            batches: iterable of ``(features, labels, logits)`` tuples or ``(features, logits)``
                pairs, covering the same N samples as pass 1.

        Raises:
            ValueError: if the pass does not see exactly N samples.
        """
        self._reset_nc4()
        for item in batches:
            if len(item) == 3:
                features, labels, logits = item
            elif len(item) == 2:
                (features, logits), labels = item, None
            else:
                raise ValueError("nc4_pass batches must be (features, labels, logits) tuples")
            self.nc4_update(features, logits, labels)
        seen = max(self._nc4_seen, self._proj_seen)
        if seen != self.num_samples:
            self._reset_nc4()
            raise ValueError(f"nc4 pass saw {seen} samples, pass 1 saw {self.num_samples}")

    def ncc(self) -> NCCAccuracy:
        """A nearest-class-mean accuracy counter bound to this (complete) pass 1's class means.

        Feed it the train batches again for the train NCC accuracy, or the test batches for the
        test one (SPEC §10: test samples are classified by the train means). The means are
        copied, so later updates of this accumulator do not change it.

        Returns:
            :class:`NCCAccuracy`; classes without samples are never predicted.

        Example:
            >>> counter = acc.ncc()                 # doctest: +SKIP
            >>> for h, y in test_batches:           # doctest: +SKIP
            ...     counter.update(h, y)
            >>> counter.accuracy                    # doctest: +SKIP
        """
        if self.feature_dim is None:
            raise RuntimeError("ncc() before any update(): class means are unknown")
        return NCCAccuracy(self.means, present=self.counts > 0)

    # ----------------------------------------------------------------- results
    def sigma_w_fro(self) -> float:
        """||Sigma_W||_F from the pooled within-class scatter (``full=True``), NaN otherwise
        (then :class:`WithinClassCovariance` in a second pass gives it)."""
        if not self.full or self.num_samples == 0:
            return float("nan")
        return float(np.linalg.norm(self.scatter / self.num_samples))

    def finalize(self, classifier_weights=None) -> dict:
        """Compute all measures; keys are :data:`NC_KEYS`, values Python floats (NaN if n/a).

        Args:
            classifier_weights: optional (C, p) classifier rows w_c (Keras Dense kernel ``.T``).
                Without it the weight measures (``nc2_*_weights``, ``nc3``, ``nc3_centered``,
                ``cos_w_mu``, ``w_dot_muG``, ``w_norm_sq_mean``) are NaN.

        Returns:
            dict: ``nc1`` (NaN when ``full=False`` and no labelled second pass, and NaN with a
            RuntimeWarning when Sigma_B is numerically rank-deficient), ``nc2_*``, ``nc3``, ``nc3_centered``,
            ``nc4`` (NaN unless a complete :meth:`nc4_pass` followed pass 1), ``eps_gap`` (NaN
            unless every batch had logits), ``cos_w_mu``, ``w_dot_muG``, ``w_norm_sq_mean``,
            ``trace_ratio``, ``cdnv``.
        """
        C = self.num_classes
        N = self.num_samples
        if N == 0:
            raise ValueError("finalize() on an empty accumulator")
        nan = float("nan")
        out = dict.fromkeys(NC_KEYS, nan)
        p = self.feature_dim

        w = None
        if classifier_weights is not None:
            w = np.asarray(classifier_weights, dtype=np.float64)
            if w.shape != (C, p):
                hint = " (a Keras Dense kernel is (p, C): pass kernel.T)" if w.shape == (p, C) else ""
                raise ValueError(f"classifier_weights must be (C, p) = ({C}, {p}); got {w.shape}{hint}")
            out["nc2_equinorm_weights"], out["nc2_equiangular_weights"], out["nc2_maxangle_weights"] = _nc2(w, C)
            out["w_norm_sq_mean"] = float(np.mean(np.einsum("ij,ij->i", w, w)))

        if self.num_logits == N:
            out["eps_gap"] = 1.0 - self.logit_true_sum / N

        if np.any(self.counts == 0):
            missing = np.flatnonzero(self.counts == 0).tolist()
            warnings.warn(f"classes {missing} have no samples: class-mean measures are NaN", RuntimeWarning, stacklevel=2)
            return out

        mu_g = self.means.mean(axis=0)
        m = self.means - mu_g  # rows mu_c - mu_G, (C, p)
        trace_w = self.ss.sum() / N
        trace_b = float(np.sum(m * m)) / C
        with np.errstate(invalid="ignore", divide="ignore"):
            out["trace_ratio"] = float(trace_w / trace_b)

        quad = None  # v_i^T Sigma_W v_i for the top C-1 directions v_i of Sigma_B
        if self._proj_sq is not None and self._proj_seen == N:
            lam, _, rank = self._sigma_b_directions()
            quad = self._proj_sq / N
        elif self.full:
            sigma_w = self.scatter / N
            sigma_w = 0.5 * (sigma_w + sigma_w.T)
            lam, v, rank = self._sigma_b_directions()
            quad = np.einsum("ij,ij->i", v @ sigma_w, v)
        if quad is not None:
            if rank == len(lam):
                out["nc1"] = float(np.sum(quad / lam) / C)
            else:
                # Fewer than C-1 directions above rounding (coinciding or collinear means, dead
                # classes): Sigma_B^+ on C-1 eigenpairs would divide by rounding noise.
                warnings.warn(
                    f"nc1 is NaN: Sigma_B is numerically rank-deficient ({rank} of {len(lam)} "
                    "class-mean directions above rounding; coinciding or collinear class means)",
                    RuntimeWarning,
                    stacklevel=2,
                )

        out["nc2_equinorm_means"], out["nc2_equiangular_means"], out["nc2_maxangle_means"] = _nc2(m, C)

        sigma2 = self.ss / self.counts
        cd = []
        for c in range(C - 1):
            d = self.means[c + 1 :] - self.means[c]
            with np.errstate(invalid="ignore", divide="ignore"):
                cd.append((sigma2[c] + sigma2[c + 1 :]) / (2.0 * np.einsum("ij,ij->i", d, d)))
        out["cdnv"] = float(np.mean(np.concatenate(cd)))

        if self._nc4_complete:
            out["nc4"] = self._nc4_mismatch / N

        if w is not None:
            out["nc3"] = _nc3(w, m)
            out["nc3_centered"] = _nc3(w - w.mean(axis=0), m)
            with np.errstate(invalid="ignore", divide="ignore"):
                cos = np.einsum("ij,ij->i", w, m) / (np.linalg.norm(w, axis=1) * np.linalg.norm(m, axis=1))
            out["cos_w_mu"] = float(np.mean(cos))
            out["w_dot_muG"] = float(np.mean(w @ mu_g))
        return out


# --------------------------------------------------------------------- functional API
BatchSource = Union[Callable[[], Iterable], Iterable]


def _batches(source: BatchSource) -> Iterator:
    return iter(source() if callable(source) else source)


def _split(item):
    if len(item) == 3:
        return item
    if len(item) == 2:
        return item[0], item[1], None
    raise ValueError("batches must be (features, labels) or (features, labels, logits) tuples")


def compute_nc_metrics(
    batches_factory: BatchSource,
    classifier_weights,
    num_classes: int,
    *,
    nc4: bool = True,
    full: Optional[bool] = None,
    feature_dim: Optional[int] = None,
) -> dict:
    """All measures from a re-iterable batch source, in one or two streaming passes.

    Pass 1 accumulates the statistics. With ``nc4`` (the default), pass 2 iterates the source
    again: it counts samples whose nearest class mean differs from the network's argmax (when
    the batches carry logits) and accumulates the projections that give ``nc1`` (exact; memory
    O(C p)). Without a second pass ``nc1`` comes from the p x p scatter matrix of pass 1.

    Args:
        batches_factory: a callable returning a fresh iterator of ``(features, labels, logits)``
            (or ``(features, labels)``) batches, or a re-iterable such as a list. A one-shot
            iterator works only when no second pass is needed.
        classifier_weights: (C, p) classifier rows, or None.
        num_classes: C.
        nc4: run the second pass (needs a re-iterable source).
        full: keep the scatter matrix (see :class:`NCAccumulator`); None: only when there is
            no second pass to give ``nc1`` (``nc4=False`` or a one-shot iterator).
        feature_dim: p, or None to infer.

    Returns:
        dict with keys :data:`NC_KEYS`.

    Example:
        >>> def batches():
        ...     for i in range(0, len(h), 256):
        ...         yield h[i:i+256], y[i:i+256], f[i:i+256]
        >>> compute_nc_metrics(batches, dense_kernel.T, 10)   # doctest: +SKIP
    """
    reiterable = callable(batches_factory) or isinstance(batches_factory, (list, tuple))
    if full is None:
        full = not (nc4 and reiterable)
    acc = NCAccumulator(num_classes, feature_dim=feature_dim, full=full)
    first = _batches(batches_factory)
    for item in first:
        features, labels, logits = _split(item)
        acc.update(features, labels, logits)
    if nc4 and acc.num_samples > 0 and (reiterable or acc.num_logits == acc.num_samples):
        second = _batches(batches_factory)
        if second is first:
            raise TypeError(
                "nc4 needs two passes: pass a callable returning a fresh iterator (or a list), not a one-shot iterator; or set nc4=False"
            )
        acc.nc4_pass(second)
    return acc.finalize(classifier_weights)


def _array_batches(features, labels, logits, batch_size):
    n = len(labels)
    bs = int(batch_size) if batch_size else min(max(n, 1), _DEFAULT_BATCH)

    def factory():
        for i in range(0, n, bs):
            yield (features[i : i + bs], labels[i : i + bs], None if logits is None else logits[i : i + bs])

    return factory


def nc_metrics(
    features, labels, classifier_weights=None, logits=None, batch_size: Optional[int] = None, num_classes: Optional[int] = None
) -> dict:
    """All measures for in-memory arrays, through the streaming code.

    Args:
        features: (N, p) features.
        labels: (N,) integer labels.
        classifier_weights: optional (C, p) classifier rows.
        logits: optional (N, C) network outputs (enables ``eps_gap`` and ``nc4``).
        batch_size: rows per streamed batch (default min(N, 8192)).
        num_classes: C; defaults to the classifier's rows, else the logits' columns, else
            max(label) + 1 (pass it explicitly if the last class may be absent).

    Returns:
        dict with keys :data:`NC_KEYS`.

    Example:
        >>> nc_metrics(h, y, classifier_weights=w, logits=h @ w.T)["nc1"]   # doctest: +SKIP
    """
    labels = np.asarray(labels)
    if num_classes is None:
        if classifier_weights is not None:
            num_classes = np.shape(classifier_weights)[0]
        elif logits is not None:
            num_classes = np.shape(logits)[1]
        else:
            num_classes = int(labels.max()) + 1
    features = np.asarray(features)
    if logits is not None:
        logits = np.asarray(logits)
    return compute_nc_metrics(_array_batches(features, labels, logits, batch_size), classifier_weights, num_classes)


def feature_collapse(features, labels, num_classes: Optional[int] = None, batch_size: Optional[int] = None) -> dict:
    """The cheap collapse measures ``trace_ratio`` = Tr(Sigma_W)/Tr(Sigma_B) and ``cdnv``.

    Uses the light accumulator (``full=False``, O(C p) memory), so it suits wide intermediate
    layers; features with more than two dimensions are flattened per sample.

    Args:
        features: (N, ...) features.
        labels: (N,) integer labels.
        num_classes: C (default max(label) + 1).
        batch_size: rows per streamed batch (default min(N, 8192)).

    Returns:
        dict with keys ``trace_ratio`` and ``cdnv``.

    Example:
        >>> feature_collapse(h, y)   # doctest: +SKIP
        {'trace_ratio': ..., 'cdnv': ...}
    """
    labels = np.asarray(labels)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    acc = NCAccumulator(num_classes, full=False)
    for h, y, _ in _array_batches(np.asarray(features), labels, None, batch_size)():
        acc.update(h, y)
    out = acc.finalize()
    return {k: out[k] for k in FEATURE_COLLAPSE_KEYS}


def class_mean_gram(class_means) -> np.ndarray:
    """The C x C Gram matrix of the normalized centred class means,
    G_cc' = <(mu_c - mu_G)/||mu_c - mu_G||, (mu_c' - mu_G)/||mu_c' - mu_G||>, mu_G = the mean of the
    class means (float64). At neural collapse it is the simplex ETF's: 1 on the diagonal and
    -1/(C-1) off it. A class mean equal to mu_G has no direction: its row and column are NaN.

    Args:
        class_means: (C, p) class means.

    Example:
        >>> np.round(class_mean_gram(np.eye(3)), 3)[0].tolist()
        [1.0, -0.5, -0.5]
    """
    m = np.asarray(class_means, dtype=np.float64)
    centred = m - m.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = centred / np.where(norms > 0, norms, np.nan)[:, None]
    return unit @ unit.T

"""The fused two-pass collapse measurement over many layers at once (SPEC §5, §9, §10, §12).

One call measures every probed representation of a network on a split, streaming, in float64:

* **pass 1** over the training split: per layer, class counts and class means (Chan-merged),
  within-class sums of squares (trace ratio, CDNV), and for the feature layer the logits
  (``eps_gap``) and, with the decomposition, the p x p second moment;
* **pass 2** over the training split, against the final class means: every layer's NCC accuracy,
  and for the feature layer NC4, the C−1 projected quadratic forms that give NC1 (no p x p matrix
  unless the decomposition keeps one) and, without the decomposition's scatter, Σ_W for
  ``sigma_w_fro``;
* the **test** split, against the *train* means: NCC accuracy per layer and ``sigma_w_fro_test``
  (one pass); with ``nc_test`` also the test split's own NC metrics (``test_*``: a pass for its
  means and one for NC1/NC4).

Memory is O(C·p) per layer plus O(p²) for the feature layer (``sigma_w_fro``, the decomposition),
plus the replay: a split's pass-1 batches are kept while they fit in ``REPLAY_BUDGET_BYTES``
(256 MiB: the quick start's 3 MB, a width-1 convnet's 130 MB at 2,000 images), so its second pass
reads them instead of calling the source (the network) again; a larger split streams twice and
never holds N × p. A batch source is a callable returning a fresh iterator of ``(reps, labels, scores)``:
``reps`` one array per layer in ``layers`` order (anything with ``__array__``; conv maps are
flattened per sample unless pooled first with :func:`pool_representation`), ``labels`` (b,) ints,
``scores`` (b, C) class scores (the network's outputs; None: ``nc4`` and ``eps_gap`` are NaN).

A non-finite representation (a diverged network) makes every collapse value of that split NaN
instead of raising in an SVD.

The passes' state is a :class:`CollapsePasses`; :func:`measure_collapse` fills it from numpy
batches, and a source that computes the same statistics elsewhere (K stacked runs on a device:
`backend.jax.StackedCollapse`) fills it with the accumulators' ``add_*`` methods; both end in
:meth:`CollapsePasses.result`.

Example:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> h = rng.normal(size=(90, 5)) + np.repeat(np.eye(3, 5) * 5, 30, axis=0)
>>> y = np.repeat(np.arange(3), 30)
>>> batches = lambda: ((
...     [h[i:i + 32]], y[i:i + 32], h[i:i + 32, :3]) for i in range(0, 90, 32))
>>> r = measure_collapse(batches, 3, ["features"], features="features", decomposition=False)
>>> sorted({row["measure"] for row in r.layers})
['cdnv', 'ncc_accuracy', 'trace_ratio']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from . import threads
from .decomposition import DECOMPOSITION_KEYS, decomposition_accumulator, mse_decomposition
from .nc import FEATURE_COLLAPSE_KEYS, NC_KEYS, NCAccumulator, WithinClassCovariance, class_mean_gram
from .spectra import alignment, alignment_uncentred

BatchSource = Callable[[], Iterable]

#: nc.csv keys this driver adds after the NC keys (the train split's; ``test_`` ones with nc_test).
SIGMA_W_KEYS = ("sigma_w_fro", "sigma_w_fro_test")
#: The per-layer alignment measures of nc_layers.csv (train split, hidden layers).
ALIGNMENT_KEYS = ("alignment", "alignment_uncentred")

POOLINGS = ("flatten", "avg")

#: Bytes of one split's pass-1 batches kept for its second pass (`Replay`).
REPLAY_BUDGET_BYTES = 256 * 2**20


class Replay:
    """A batch source whose first pass is kept, while it fits in ``budget`` bytes, and replayed
    by later calls instead of calling ``source`` again (a network's inference pass: the largest
    cost of a measurement epoch on small splits). Past the budget the kept batches are dropped
    and every call streams from ``source``: memory stays bounded, and the values are the same
    either way (the same arrays, or the same deterministic inference pass).

    Args:
        source: a batch source (a callable returning a fresh iterator of ``(reps, labels, scores)``).
        budget: bytes of numpy arrays to keep (0: never keep; None: ``REPLAY_BUDGET_BYTES``).

    Example:
        >>> calls = []
        >>> def source():
        ...     calls.append(1)
        ...     yield [np.ones((2, 3))], np.array([0, 1]), None
        >>> r = Replay(source)
        >>> [len(list(r())) for _ in range(3)], len(calls)
        ([1, 1, 1], 1)
    """

    def __init__(self, source: "BatchSource", budget: Optional[int] = None):
        self.source, self.budget = source, int(REPLAY_BUDGET_BYTES if budget is None else budget)
        self.kept: Optional[list] = None  # the complete first pass, once one was kept

    def __call__(self):
        return iter(self.kept) if self.kept is not None else self._first()

    def _first(self):
        kept, size = [], 0
        for reps, labels, scores in self.source():
            item = ([np.asarray(r) for r in reps], np.asarray(labels), None if scores is None else np.asarray(scores))
            if kept is not None:
                size += sum(a.nbytes for a in item[0]) + item[1].nbytes + (0 if item[2] is None else item[2].nbytes)
                if size <= self.budget:
                    kept.append(item)
                else:
                    kept = None
            yield item
        if kept is not None:
            self.kept = kept


def pool_representation(x, pool: str = "flatten") -> np.ndarray:
    """A representation as the (b, p) matrix the measures read (SPEC §12).

    Args:
        x: (b, ...) activations; (b, H, W, ch) for a conv map (channels last).
        pool: ``flatten`` (p = H·W·ch, the definition of SPEC §10) or ``avg`` (global average over
            the spatial axes: p = ch). Rank-2 inputs are returned as they are either way.

    Example:
        >>> pool_representation(np.ones((2, 4, 4, 3)), "avg").shape
        (2, 3)
    """
    a = np.asarray(x)
    if pool not in POOLINGS:
        raise ValueError(f"pool must be one of {POOLINGS}, got {pool!r}")
    if a.ndim <= 2:
        return a
    if pool == "avg":
        return a.mean(axis=tuple(range(1, a.ndim - 1)), dtype=np.float64)
    return a.reshape(a.shape[0], -1)


@dataclass
class CollapseResult:
    """What :func:`measure_collapse` measured.

    Attributes:
        nc: the nc.csv values without ``epoch`` (NC keys, ``test_*`` with nc_test, the
            decomposition, ``sigma_w_fro``, ``sigma_w_fro_test``); None without a feature layer.
        layers: nc_layers.csv rows without ``epoch``: ``split, layer, measure, value``.
        gram: class_gram.csv rows without ``epoch``: ``split, i, j, value``.
        class_means: the train class means per layer (None for a diverged split).
        scores: {"train": (N, C), "test": (N_test, C)} the class scores seen, concatenated.
    """

    nc: Optional[dict]
    layers: list = field(default_factory=list)
    gram: list = field(default_factory=list)
    class_means: Optional[dict] = None
    scores: dict = field(default_factory=dict)


def _rows(split: str, layer: str, values: Mapping[str, float]) -> list[dict]:
    return [{"split": split, "layer": layer, "measure": k, "value": v} for k, v in values.items()]


def _gram_rows(split: str, means) -> list[dict]:
    g = class_mean_gram(means)
    return [{"split": split, "i": i, "j": j, "value": float(g[i, j])} for i in range(len(g)) for j in range(len(g))]


def _concat(scores: list) -> Optional[np.ndarray]:
    return np.concatenate(scores) if scores and scores[0] is not None else None


class _Split:
    """Pass-1 statistics of one split for every layer (the loop shared by train and test)."""

    def __init__(self, num_classes: int, layers: Sequence[str], feat: Optional[int], decompose: bool, loss_k: float):
        self.accs = [NCAccumulator(num_classes, full=False) for _ in layers]
        if decompose:
            self.accs[feat] = decomposition_accumulator(num_classes, k=loss_k)
        self.feat = feat
        self.finite = True
        self.scores: list = []

    def pass1(self, source: BatchSource, also: Callable | None = None) -> None:
        for reps, labels, scores in source():
            reps = [np.asarray(r) for r in reps]
            y = np.asarray(labels)
            self.scores.append(None if scores is None else np.asarray(scores))
            # A diverged network has no collapse to measure (and an SVD of NaNs would raise).
            self.finite = self.finite and all(bool(np.isfinite(r).all()) for r in reps)
            if self.finite:
                for j, (acc, rep) in enumerate(zip(self.accs, reps)):
                    acc.update(rep, y, self.scores[-1] if j == self.feat else None)
                if also is not None:
                    also(reps, y)


class CollapsePasses:
    """The state of the collapse passes over one network's splits, per layer: the train split's
    pass-1 accumulators (:class:`~sqloss_nc.engine.nc.NCAccumulator`), its second pass (NCC
    counters against the final train means, NC4 and NC1's projections in the feature layer's
    accumulator, Σ_W about the train means) and the test split's (NCC against the train means,
    Σ_W about them, with ``nc_test`` its own accumulators). :meth:`result` turns them into a
    :class:`CollapseResult`.

    Two ways to fill it, one way out: :func:`measure_collapse` streams numpy batches through the
    accumulators' ``update``; a source that computes the same statistics elsewhere (a device
    measuring K stacked runs at once, `backend.jax.stacked_collapse`) adds them with the
    accumulators' ``add_statistics`` / ``add_second_pass`` and the counters' ``add``, between
    :meth:`begin_second` and :meth:`begin_test`, which bind the second passes to the train means.
    Either way :meth:`result` is the same code, so a run's rows do not depend on who fed it.

    Attributes:
        train: the train split's pass-1 state: ``accs`` (one
            :class:`~sqloss_nc.engine.nc.NCAccumulator` per layer, the feature layer's holding
            NC4 and NC1's second pass too) and ``finite`` (False: every value NaN).
        counters, cov: the train second pass's NCC counters and Σ_W (:meth:`begin_second`).
        test, test_counters, test_cov: the test split's (:meth:`begin_test`).

    Args:
        num_classes: C.
        layers: the representations, in ``reps`` order.
        features: the layer whose NC metrics make the nc.csv row, or None.
        decompose: the feature layer keeps the MSE decomposition's scatter (``full``).
        loss_k: the decomposition's true-class weight (k != 1 keeps per-class scatters).
        nc_test: the test split gets its own accumulators (``test_*`` columns).

    Example (statistics from elsewhere; ``s`` holds one split's arrays):

    ```python
    passes = CollapsePasses(3, ["features"], features="features")
    passes.train.accs[0].add_statistics(s["counts"], s["means"], s["ss"])
    counters, cov = passes.begin_second()
    ...
    result = passes.result(has_test=False)
    ```
    """

    def __init__(self, num_classes: int, layers: Sequence[str], features: Optional[str] = None, decompose: bool = False, loss_k: float = 1.0, nc_test: bool = False):
        self.num_classes, self.layers = int(num_classes), list(layers)
        self.feat = self.layers.index(features) if features is not None else None
        self.decompose, self.loss_k, self.nc_test = bool(decompose) and self.feat is not None, loss_k, nc_test
        self.train = _Split(self.num_classes, self.layers, self.feat, self.decompose, loss_k)
        self.counters: Optional[list] = None
        self.cov: Optional[WithinClassCovariance] = None
        self.test: Optional[_Split] = None
        self.test_counters: Optional[list] = None
        self.test_cov: Optional[WithinClassCovariance] = None

    def begin_second(self) -> tuple[list, Optional[WithinClassCovariance]]:
        """After the train split's pass 1: the second pass's NCC counters (one per layer) and,
        without the decomposition's scatter, the Σ_W accumulator of the feature layer, both about
        the final train means."""
        self.counters = [a.ncc() for a in self.train.accs]
        feat = self.feat
        if feat is not None and not self.train.accs[feat].full:
            self.cov = WithinClassCovariance(self.train.accs[feat].means)
        return self.counters, self.cov

    def begin_test(self) -> "_Split":
        """The test split's counters (NCC against the train means), Σ_W about the train means of
        the feature layer, and its own pass-1 accumulators (used with ``nc_test``)."""
        self.test_counters = [a.ncc() for a in self.train.accs]
        self.test_cov = WithinClassCovariance(self.train.accs[self.feat].means) if self.feat is not None else None
        self.test = _Split(self.num_classes, self.layers, self.feat, False, self.loss_k)
        return self.test

    def result(
        self,
        has_test: bool,
        classifier_weights=None,
        classifier_bias=None,
        weight_decay: float = 0.0,
        decay_bias: bool = False,
        loss_M: float = 1.0,
        next_kernels: Optional[Mapping[str, object]] = None,
    ) -> CollapseResult:
        """The measures of the completed passes (:func:`measure_collapse` documents the
        arguments; ``has_test``: a test split was measured). ``scores`` are left empty."""
        layers, feat, C = self.layers, self.feat, self.num_classes
        tr, nan = self.train, float("nan")
        w = None if classifier_weights is None else np.asarray(classifier_weights, dtype=np.float64)
        result = CollapseResult(nc=None)
        if not tr.finite:
            if feat is not None:
                result.nc = dict.fromkeys((*NC_KEYS, *DECOMPOSITION_KEYS, *SIGMA_W_KEYS), nan)
            result.layers = [r for n in layers for r in _rows("train", n, dict.fromkeys((*FEATURE_COLLAPSE_KEYS, "ncc_accuracy"), nan))]
            result.layers += [r for n in (next_kernels or {}) for r in _rows("train", n, dict.fromkeys(ALIGNMENT_KEYS, nan))]
            if has_test:
                result.layers += [r for n in layers for r in _rows("test", n, {"ncc_accuracy": nan})]
            return result

        counters, cov = self.counters, self.cov
        result.class_means = {n: a.means.copy() for n, a in zip(layers, tr.accs)}
        nc = None
        if feat is not None:
            nc = tr.accs[feat].finalize(classifier_weights=w)
            nc.update(dict.fromkeys(DECOMPOSITION_KEYS, nan))
            if self.decompose and w is not None:
                bias = None if classifier_bias is None else np.asarray(classifier_bias, dtype=np.float64)
                nc.update(mse_decomposition(tr.accs[feat], w, weight_decay, bias=bias, decay_bias=decay_bias, k=self.loss_k, M=loss_M))
            nc["sigma_w_fro"] = cov.frobenius if cov is not None else tr.accs[feat].sigma_w_fro()
            nc["sigma_w_fro_test"] = nan
            result.gram += _gram_rows("train", tr.accs[feat].means)
        for j, name in enumerate(layers):
            res = nc if j == feat else tr.accs[j].finalize()
            result.layers += _rows("train", name, {k: res[k] for k in FEATURE_COLLAPSE_KEYS})
            result.layers += _rows("train", name, {"ncc_accuracy": counters[j].accuracy})
            if next_kernels is not None and name in next_kernels:
                kernel = next_kernels[name]
                values = dict.fromkeys(ALIGNMENT_KEYS, nan)
                if kernel is not None:
                    kernel = np.asarray(kernel)
                    values = {"alignment": alignment(tr.accs[j].means, kernel), "alignment_uncentred": alignment_uncentred(tr.accs[j].means, kernel)}
                result.layers += _rows("train", name, values)

        if has_test:
            te = self.test
            if nc is not None:
                nc["sigma_w_fro_test"] = self.test_cov.frobenius
            per_layer = [{} for _ in layers]  # the test split's own measures (nc_test)
            if self.nc_test and feat is not None:
                if te.finite:
                    nc_te = te.accs[feat].finalize(classifier_weights=w)
                    per_layer = [{k: (nc_te if j == feat else te.accs[j].finalize())[k] for k in FEATURE_COLLAPSE_KEYS} for j in range(len(layers))]
                    result.gram += _gram_rows("test", te.accs[feat].means)
                else:
                    nc_te = dict.fromkeys(NC_KEYS, nan)
                    per_layer = [dict.fromkeys(FEATURE_COLLAPSE_KEYS, nan) for _ in layers]
                nc.update({f"test_{k}": v for k, v in nc_te.items()})
            for name, values, counter in zip(layers, per_layer, self.test_counters):
                ncc = counter.accuracy if te.finite else nan
                result.layers += _rows("test", name, {**values, "ncc_accuracy": ncc})
        result.nc = nc
        return result


def measure_collapse(
    train: BatchSource,
    num_classes: int,
    layers: Sequence[str],
    *,
    test: Optional[BatchSource] = None,
    features: Optional[str] = None,
    classifier_weights=None,
    classifier_bias=None,
    weight_decay: float = 0.0,
    decay_bias: bool = False,
    loss_k: float = 1.0,
    loss_M: float = 1.0,
    decomposition: bool = True,
    next_kernels: Optional[Mapping[str, object]] = None,
    nc_test: bool = False,
) -> CollapseResult:
    """Measure the collapse of every layer in ``layers`` (module docstring: passes, memory).

    Args:
        train: the training split's batch source (called twice: two passes).
        num_classes: C.
        layers: names of the representations, in the order of ``reps`` in every batch.
        test: the test split's batch source, or None.
        features: the layer whose NC metrics make the nc.csv row (None: no row).
        classifier_weights: (C, p) rows w_c of the head acting on ``features`` (a Dense kernel's
            transpose), or None (weight measures NaN, no decomposition).
        classifier_bias: (C,) bias of that head, or None.
        weight_decay: λ on the classifier, for the decomposition.
        decay_bias: whether the bias is in the decomposition's penalty.
        loss_k, loss_M: the decomposition's loss (rescaled square loss; 1, 1 = plain).
        decomposition: add the MSE decomposition (needs ``classifier_weights``).
        next_kernels: layer -> the kernel of the next weight layer (or None) for the alignment
            rows of that layer; layers not in it get no alignment rows.
        nc_test: measure the test split's own NC metrics too (``test_*``).

    Returns:
        :class:`CollapseResult`.
    """
    # One BLAS thread for the many small products, the wide p x p algebra excepted (`threads`).
    with threads.measuring():
        layers = list(layers)
        # A split read twice replays its first pass when it fits (`Replay`): the train split
        # always, the test split with nc_test (otherwise it is read once).
        train = Replay(train)
        test = Replay(test) if test is not None and nc_test else test
        decompose = bool(decomposition) and classifier_weights is not None and features is not None
        passes = CollapsePasses(num_classes, layers, features, decompose, loss_k, nc_test)
        feat = passes.feat
        finish = dict(
            has_test=test is not None,
            classifier_weights=classifier_weights,
            classifier_bias=classifier_bias,
            weight_decay=weight_decay,
            decay_bias=decay_bias,
            loss_M=loss_M,
            next_kernels=next_kernels,
        )

        tr = passes.train
        tr.pass1(train)
        if not tr.finite:
            result = passes.result(**finish)
            result.scores["train"] = _concat(tr.scores)
            if test is not None:
                result.scores["test"] = _concat([None if s is None else np.asarray(s) for _, _, s in test()])
            return result

        # Pass 2: NCC of every layer against the final train means; NC4, NC1's projections and
        # (without the decomposition's scatter) Σ_W of the feature layer.
        counters, cov = passes.begin_second()

        def second():
            for reps, labels, scores in train():
                y = np.asarray(labels)
                for counter, rep in zip(counters, reps):
                    counter.update(rep, y)
                if feat is not None:
                    if cov is not None:
                        cov.update(reps[feat], y)
                    yield reps[feat], y, scores

        if feat is not None:
            tr.accs[feat].nc4_pass(second())
        else:
            for _ in second():
                pass

        te = None
        if test is not None:
            te = passes.begin_test()
            test_counters, test_cov = passes.test_counters, passes.test_cov

            def against_train(reps, y):
                for counter, rep in zip(test_counters, reps):
                    counter.update(rep, y)
                if test_cov is not None:
                    test_cov.update(reps[feat], y)

            if nc_test:
                te.pass1(test, also=against_train)
            else:
                # Only the train means are needed: one pass, no per-layer test statistics.
                for reps, labels, scores in test():
                    te.scores.append(None if scores is None else np.asarray(scores))
                    against_train([np.asarray(r) for r in reps], np.asarray(labels))
            if nc_test and feat is not None and te.finite:
                te.accs[feat].nc4_pass((reps[feat], labels, scores) for reps, labels, scores in test())
        result = passes.result(**finish)
        result.scores["train"] = _concat(tr.scores)
        if te is not None:
            result.scores["test"] = _concat(te.scores)
        return result

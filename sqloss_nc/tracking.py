"""What a run measures each epoch: small probes over one fused inference pass (issue 18).

The training-time tracker (`callbacks.Tracker`, the Keras glue) computes, once per epoch, an
:class:`EpochView`: the network's outputs on the train and test splits (float64 copies), the
weights it computes with, and on collapse epochs the engine's layer-wise
:class:`~sqloss_nc.engine.collapse.CollapseResult` (whose fused passes also give the outputs, so
no extra forward pass is made). Each probe reads what it declares (``layers``: the
representations it needs; ``when``: every epoch, NC epochs or margin epochs) and returns rows for
the files it declares (``files``, names from :mod:`sqloss_nc.schema`), in the spirit of
big_vision's evaluators. The probes are pure numpy and import no framework.

=================  ==================  ========  =======================================
probe              files               when      reads
=================  ==================  ========  =======================================
MetricsProbe       metrics.csv         every     outputs, weights (norms, ρ, penalty)
UpdateNormProbe    metrics.csv         every     weights of this and the previous epoch
MarginsProbe       margins.csv         margins   train outputs, ρ
CollapseProbe      nc.csv, nc_layers,  nc        every probed layer (the engine's passes)
                   class_gram.csv
SpectraProbe       spectra.csv         nc        weights
=================  ==================  ========  =======================================

Example (a probe on its own, on numbers from anywhere):

>>> import numpy as np
>>> view = EpochView(epoch=3, labels=np.array([0, 1]), train_outputs=np.array([[0.9, 0.1], [0.2, 0.7]]),
...                  weights=Weights(kernels={"classifier": np.ones((1, 1))}, rho_mode="product"))
>>> MarginsProbe().rows(view)["margins.csv"][0]   # epoch, index, label, margin, margin / ρ
(3, 0, 0, 0.8, 0.8)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from . import schema
from .engine import measures
from .engine.collapse import CollapseResult
from .engine.spectra import DEFAULT_RANK_TOL, SPECTRA_COLUMNS, spectra_rows, update_norms

EVERY, NC, MARGINS = "every", "nc", "margins"


@dataclass
class Weights:
    """The weights a network computes with, as float64-ready numpy copies.

    Attributes:
        kernels: weight layer -> its effective kernel (the tensor of ``norm_<layer>``), depth
            order, classifier last.
        rho_mode: ``product`` or ``last`` (`normalization.rho_mode`).
        bn_moving_vars: BatchNorm moving variances (for ``rho_bn``).
        decayed_sq: Σ||θ||² over the decayed variables (for the objective's penalty).
    """

    kernels: Mapping[str, np.ndarray]
    rho_mode: str
    bn_moving_vars: Sequence[np.ndarray] = ()
    decayed_sq: float = 0.0

    def norms(self) -> dict[str, float]:
        return {k: measures.frobenius(v) for k, v in self.kernels.items()}

    def rho(self) -> dict[str, float]:
        return measures.rho_values(self.norms(), self.rho_mode, list(self.bn_moving_vars))


@dataclass
class EpochView:
    """What the tracker's passes give the probes at one epoch.

    Attributes:
        epoch: the epoch (0 = initialization).
        labels: (N,) train labels.
        train_outputs: (N, out) network outputs on the training set, inference mode.
        weights: :class:`Weights`.
        test_labels, test_outputs: the same on the test set.
        collapse: the engine's result on collapse epochs (None otherwise).
    """

    epoch: int
    labels: np.ndarray
    train_outputs: np.ndarray
    weights: Weights
    test_labels: Optional[np.ndarray] = None
    test_outputs: Optional[np.ndarray] = None
    collapse: Optional[CollapseResult] = None
    _cache: dict = field(default_factory=dict, repr=False)

    def norms(self) -> dict[str, float]:
        if "norms" not in self._cache:
            self._cache["norms"] = self.weights.norms()
        return self._cache["norms"]

    def rho(self) -> dict[str, float]:
        if "rho" not in self._cache:
            self._cache["rho"] = measures.rho_values(self.norms(), self.weights.rho_mode, list(self.weights.bn_moving_vars))
        return self._cache["rho"]

    def margins(self) -> np.ndarray:
        if "margins" not in self._cache:
            self._cache["margins"] = measures.margins(self.train_outputs, self.labels)
        return self._cache["margins"]

    def margin_stats(self) -> dict[str, float]:
        """`measures.margin_stats` of the train margins and ρ (a stack fills it for its K runs
        with one batched call: the same numbers)."""
        if "margin_stats" not in self._cache:
            self._cache["margin_stats"] = measures.margin_stats(self.margins(), self.rho()["rho"])
        return self._cache["margin_stats"]


class Probe:
    """One measure family: the representations it reads, when, and the files it writes.

    Attributes:
        files: the run files (:mod:`sqloss_nc.schema` names) its rows go to.
        when: ``every`` epoch, ``nc`` epochs (`track.nc_epochs`) or ``margins`` epochs.
        layers: the representations it reads beyond the outputs (non-empty: the epoch's pass
            runs the engine's layer-wise protocol).
    """

    files: tuple = ()
    when: str = EVERY
    layers: tuple = ()

    def rows(self, view: EpochView) -> dict[str, list[dict]]:
        """Rows per file (without the columns the run logger adds: lr, grad_norm_sq, elapsed_s)."""
        raise NotImplementedError


class MetricsProbe(Probe):
    """`metrics.csv`: losses and accuracies (train, test), the objective, ρ, norms, margin stats.

    Args:
        loss: (outputs, labels) -> the training loss in float64 (`losses.np_loss`).
        accuracy: (outputs, labels) -> accuracy (`losses.np_accuracy`).
        weight_decay: λ of the objective L + λ/2·Σ||θ||².
    """

    files = (schema.METRICS_CSV,)

    def __init__(self, loss: Callable, accuracy: Callable, weight_decay: float):
        self.loss, self.accuracy, self.weight_decay = loss, accuracy, float(weight_decay)

    def rows(self, view):
        rho = view.rho()
        train_loss = self.loss(view.train_outputs, view.labels)
        row = {
            "train_loss": train_loss,
            "train_objective": train_loss + 0.5 * self.weight_decay * view.weights.decayed_sq,
            "train_acc": self.accuracy(view.train_outputs, view.labels),
            "test_loss": self.loss(view.test_outputs, view.test_labels),
            "test_acc": self.accuracy(view.test_outputs, view.test_labels),
            **rho,
            **{f"norm_{k}": v for k, v in view.norms().items()},
            **view.margin_stats(),
        }
        return {schema.METRICS_CSV: [row]}


class UpdateNormProbe(Probe):
    """`metrics.csv`'s ``update_norm_<layer>`` = ||W_e − W_{e−1}||_F/||W_{e−1}||_F (SPEC §10).

    Stateful: it keeps the previous epoch's kernels; a resumed run primes it with the
    checkpoint's (:meth:`prime`), so its values are those of an uninterrupted run.
    """

    files = (schema.METRICS_CSV,)

    def __init__(self):
        self.previous: Optional[dict] = None

    def prime(self, kernels: Mapping[str, np.ndarray]) -> None:
        self.previous = {k: np.array(v, copy=True) for k, v in kernels.items()}

    def rows(self, view):
        current = view.weights.kernels
        row = update_norms(self.previous, current) if self.previous is not None else {}
        self.prime(current)
        return {schema.METRICS_CSV: [row]}


class MarginsProbe(Probe):
    """`margins.csv`: every training sample's margin m and m/ρ at the margin epochs."""

    files = (schema.MARGINS_CSV,)
    when = MARGINS

    def rows(self, view):
        # Tuples in `schema.MARGINS` order, not dicts: one row per sample (50,000 on CIFAR).
        m, rho = view.margins(), view.rho()["rho"]
        n = len(m)
        block = zip([view.epoch] * n, range(n), np.asarray(view.labels).tolist(), m.tolist(), (m / rho).tolist())
        return {schema.MARGINS_CSV: list(block)}


class CollapseProbe(Probe):
    """`nc.csv`, `nc_layers.csv`, `class_gram.csv` from the engine's layer-wise result.

    The engine's call itself is made by the tracker (it owns the compiled passes); this probe
    declares the layers and turns the result into rows, with the run's loss-specific columns
    (`eps_gap` relative to the target M, `w_norm_sq_eq34`), given as ``adjust(nc_row)``.

    Args:
        layers: the probed representations, in network order (features and outputs last).
        adjust: callable editing an nc.csv row (train keys, or the ``test_``-stripped ones) in place.
        nc_test: whether the test split's own NC metrics are written (``test_*`` columns).
    """

    files = (schema.NC_CSV, schema.NC_LAYERS_CSV, schema.CLASS_GRAM_CSV)
    when = NC

    def __init__(self, layers: Sequence[str], adjust: Callable[[dict], None] = lambda row: None, nc_test: bool = False):
        self.layers, self.adjust, self.nc_test = tuple(layers), adjust, nc_test

    def rows(self, view):
        r = view.collapse
        nc = dict(r.nc)
        self.adjust(nc)
        if self.nc_test:
            test = {k[len("test_") :]: v for k, v in nc.items() if k.startswith("test_")}
            if test:
                self.adjust(test)
                nc.update({f"test_{k}": v for k, v in test.items()})
        e = view.epoch
        return {
            schema.NC_CSV: [{"epoch": e, **nc}],
            schema.NC_LAYERS_CSV: [{"epoch": e, **row} for row in r.layers],
            schema.CLASS_GRAM_CSV: [{"epoch": e, **row} for row in r.gram],
        }


class SpectraProbe(Probe):
    """`spectra.csv`: singular values, rank and stable rank of every weight tensor (SPEC §10);
    one NaN row for a non-finite tensor (a diverged network has no spectrum)."""

    files = (schema.SPECTRA_CSV,)
    when = NC

    def __init__(self, rank_tol: float = DEFAULT_RANK_TOL):
        self.rank_tol = float(rank_tol)

    def rows(self, view):
        kernels = view.weights.kernels
        finite = {k: v for k, v in kernels.items() if np.isfinite(v).all()}
        rows = spectra_rows(view.epoch, finite, self.rank_tol)
        nan = float("nan")
        rows += [dict(zip(SPECTRA_COLUMNS, (view.epoch, k, 0, nan, nan, nan))) for k in kernels if k not in finite]
        return {schema.SPECTRA_CSV: rows}


def active(probes: Sequence[Probe], nc: bool, margins: bool) -> list[Probe]:
    """The probes that run at an epoch with these flags."""
    return [p for p in probes if p.when == EVERY or (p.when == NC and nc) or (p.when == MARGINS and margins)]


def collect(probes: Sequence[Probe], view: EpochView) -> dict[str, list[dict]]:
    """Every probe's rows, merged per file; probes writing one row to the same file (metrics.csv)
    are merged into that row."""
    out: dict[str, list[dict]] = {}
    for probe in probes:
        for name, rows in probe.rows(view).items():
            if name == schema.METRICS_CSV and name in out:
                out[name][0].update(rows[0])
            else:
                out.setdefault(name, []).extend(rows)
    return out

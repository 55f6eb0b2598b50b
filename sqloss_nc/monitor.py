"""`CollapseMonitor`: neural collapse tracked inside anyone's `model.fit` (a Keras callback).

The monitor is the measurement engine's client exactly as a run's tracker is: at the chosen
epochs it streams the user's data through one compiled inference model that returns every
measured representation and the classifier's outputs (the model side of `sqnc measure`:
`measure._plan` resolves the layers, `measure._Feeder` pools and scores the batches), hands the
batches to `engine.measure_collapse` (float64, two streaming passes, O(C·p) memory per layer
plus the features' p x p second moment of the MSE decomposition; nothing N x p is held), turns
the result into rows with the run's probes (`tracking.CollapseProbe`, `tracking.SpectraProbe`)
and appends them to a run directory with the run schema (`schema`, `rundir.CSVAppender`). So
its numbers are those of `sqnc measure` on the model saved at that epoch (tested to 1e-6).

Conventions (as `sqnc measure` for a Keras model it did not train, SPEC §12):

- features: the input of the last `Dense` layer unless `feature_layer=`; the classifier: that
  layer unless `classifier_layer=` (one output per class; one output = a scalar binary head, whose
  class scores are (−f, f)); `layers=` adds layer-wise measures (trace ratio, CDNV, NCC
  accuracy, alignment) of other layers' outputs; a conv map is measured flattened or pooled
  (`pool`);
- the MSE decomposition is that of the plain one-hot square loss without weight decay, `eps_gap`
  is 1 − mean f_y (target 1) and Eq. 34's `w_norm_sq_eq34` is NaN: the monitor does not know the
  training loss;
- epoch e = the state after e epochs of `fit` (Keras' 0-based epoch index + 1); epoch 0 is the
  state at `on_train_begin`, before the first step, measured the first time the monitor is used.

Where the values go:

- `logs` at the measured epochs (so `History`, `CSVLogger`, the `TensorBoard` callback, the
  progress bar and `EarlyStopping` see them), under the nc.csv names: by default `nc1`,
  `nc2_equinorm_means`, `nc2_equiangular_means`, `nc3`, `nc4`, and with `validation=` the same
  of the validation split's own collapse as `val_nc1`, ... (nc.csv's `test_*`); `log="all"` gives
  every nc.csv column. Epochs that do not measure get NaN under the same names (so `History`'s
  lists stay one entry per epoch) and cost nothing else: no inference, no weight copies. Put the
  monitor before `CSVLogger`/`TensorBoard` in `callbacks=[...]` (Keras calls them in order; its
  own `History` and progress bar come last). Epoch 0 is not in `History` (it has no epoch 0):
  `monitor.results[0]` and nc.csv hold it.
- `monitor.results`: {epoch: nc.csv row without `epoch`} for every measured epoch.
- with `out=`: a run directory read like a run by `sqnc analyze`, `figures` and `tensorboard`:
  `nc.csv`, `nc_layers.csv`, `class_gram.csv`, `spectra.csv` (one block per measured epoch,
  appended and flushed as measured), `monitor.json` (what is measured, how, on what data) and
  `status.json` (`running` with the last measured epoch, `done` at `on_train_end`; an interrupted
  `fit` leaves `running`, which `sqnc analyze` counts with `--include-partial`).

Data (`data`, `validation`): `(x, y)` arrays, a `tf.data.Dataset` or a `keras.utils.PyDataset`
yielding `(x, y)` (or `(x, y, sample_weight)`: the weights are ignored) batches; labels as
integers 0..C−1 or one-hot (C columns; ±1 or 0/1 for a scalar head). Give the un-augmented data:
each measurement reads it twice (three or four times with validation) and the passes must see the
same samples.

Example:

```python
from sqloss_nc import CollapseMonitor
monitor = CollapseMonitor((x_train, y_train), every=2, out="runs/mine", validation=(x_test, y_test))
history = model.fit(x_train, y_train, epochs=10, callbacks=[monitor])
history.history["nc1"], monitor.results[0]["nc1"]
```
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np

from . import backend, schema, tracking
from .config import epoch_schedule
from .engine.spectra import DEFAULT_RANK_TOL
from .measure import POOLS, MeasureError, _check_input, _Feeder, _Model, _plan, _set_shapes, _versions, plan_collapse
from .normalization import effective_kernel, weight_layers
from .rundir import CSVAppender, RunDir, atomic_write_text

MONITOR_JSON = schema.MONITOR_JSON
#: The nc.csv values `logs` gets by default (`val_` + the same for the validation split).
DEFAULT_LOG = ("nc1", "nc2_equinorm_means", "nc2_equiangular_means", "nc3", "nc4")
#: What the monitor writes in `out` (an earlier monitor's files are replaced only with overwrite).
FILES = (schema.NC_CSV, schema.NC_LAYERS_CSV, schema.CLASS_GRAM_CSV, schema.SPECTRA_CSV, MONITOR_JSON, schema.STATUS_JSON)
# measure.py's option names -> the monitor's argument names, in the messages of `_plan` & co.
_OPTIONS = {"--layers": "layers", "--feature-layer": "feature_layer", "--classifier-layer": "classifier_layer", "MODEL": "model"}


def _bad(text: str) -> ValueError:
    return ValueError(f"CollapseMonitor: {text}")


def _translated(err: MeasureError) -> ValueError:
    """`sqnc measure`'s one-line message with the monitor's argument names."""
    text = str(err)
    for option, name in _OPTIONS.items():
        if text.startswith(option + ":"):
            return _bad(name + text[len(option) :])
    return _bad(text)


def measured_epochs(every, epochs: int) -> list[int]:
    """The epochs a monitor measures in a `fit` of `epochs` epochs.

    Args:
        every: an int k (0, k, 2k, ... and the last epoch), `"log"` (epoch 0, about 20
            log-spaced epochs and the last, as `track.nc_epochs: log`), `"all"`, or a list of
            epochs (taken as given, clipped to 0..epochs).
        epochs: the `fit`'s `epochs`.

    Example: `measured_epochs(2, 5) == [0, 2, 4, 5]`.
    """
    if isinstance(every, (int, np.integer)) and not isinstance(every, bool):
        return sorted(set(range(0, epochs + 1, int(every))) | {epochs})
    return epoch_schedule(list(every) if not isinstance(every, str) else every, epochs)


def _check_every(every) -> None:
    if isinstance(every, bool) or (isinstance(every, (int, np.integer)) and every <= 0):
        raise _bad(f"every: must be a positive number of epochs, 'log', 'all' or a list of epochs; got {every!r}")
    if isinstance(every, str) and every not in ("log", "all"):
        raise _bad(f"every: {every!r} is not 'log' or 'all' (or a number of epochs, or a list of epochs)")
    if not isinstance(every, (str, int, np.integer)):
        try:
            bad = [e for e in every if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 0]
        except TypeError:
            raise _bad(f"every: must be a positive number of epochs, 'log', 'all' or a list of epochs; got {type(every).__name__}") from None
        if bad:
            raise _bad(f"every: epochs must be integers >= 0, got {bad[0]!r}")


def log_keys(log, validation: bool) -> list[str]:
    """The `logs` names a monitor writes: nc.csv's train columns as they are, the validation
    split's own (`test_*` in nc.csv) as `val_*`, Keras' convention.

    Args:
        log: nc.csv column names, or `"all"`.
        validation: whether the monitor has a validation split.

    Example: `log_keys(["nc1"], True) == ["nc1", "val_nc1"]`.
    """
    train = [c for c in schema.nc_columns(False) if c != "epoch"]
    keys = train if log == "all" else list(log)
    unknown = [k for k in keys if k not in train]
    if unknown:
        raise _bad(f"log: {unknown[0]!r} is not an nc.csv column; known: {', '.join(train[:8])}, ... (or 'all')")
    test = set(schema.nc_columns(True)) - set(train)
    return keys + ([f"val_{k}" for k in keys if f"test_{k}" in test] if validation else [])


class _FitData:
    """A `fit` data source as fresh iterators of numpy (x, labels) batches.

    Args:
        data: `(x, y)` arrays, a `tf.data.Dataset` or a `keras.utils.PyDataset` of (x, y) batches.
        batch_size: the batch size for arrays (and for an unbatched dataset).
        name: the argument's name, for messages.
    """

    def __init__(self, data, batch_size: int, name: str):
        self.name, self.batch_size = name, batch_size
        self.num_classes, self.scalar = None, False
        if isinstance(data, keras.utils.PyDataset):
            self.kind = "PyDataset"
        elif hasattr(data, "element_spec") and hasattr(data, "batch"):
            self.kind = "tf.data.Dataset"
        elif isinstance(data, (tuple, list)):
            self.kind = "arrays"
            if len(data) < 2 or data[1] is None:
                raise _bad(f"{name}: give (x, y) with the labels y; got {len(data)} array(s) without labels")
            x, y = data[0], data[1]
            if not hasattr(x, "shape") or not hasattr(y, "shape"):
                raise _bad(f"{name}: x and y must be arrays, got {type(x).__name__} and {type(y).__name__}")
            if len(x) != len(y):
                raise _bad(f"{name}: x has {len(x)} samples but y has {len(y)}")
            if len(x) == 0:
                raise _bad(f"{name}: no samples")
        else:
            raise _bad(f"{name}: give (x, y) arrays, a tf.data.Dataset or a keras.utils.PyDataset yielding (x, y); got {type(data).__name__}")
        self.data = data

    def batch_if_unbatched(self, input_rank: int) -> None:
        """Batch a dataset whose elements are single samples (x one rank short of the model's input)."""
        if self.kind != "tf.data.Dataset":
            return
        spec = self.data.element_spec
        x_spec = spec[0] if isinstance(spec, (tuple, list)) else spec
        if getattr(x_spec, "shape", None) is not None and x_spec.shape.rank == input_rank - 1:
            self.data = self.data.batch(self.batch_size)

    def raw(self) -> Iterator[tuple]:
        """(x, y) batches as the source gives them (y None: no labels)."""
        if self.kind == "arrays":
            x, y = self.data[0], self.data[1]
            for i in range(0, len(x), self.batch_size):
                yield x[i : i + self.batch_size], y[i : i + self.batch_size]
            return
        items = (self.data[i] for i in range(len(self.data))) if self.kind == "PyDataset" else iter(self.data)
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) < 2 or item[1] is None:
                raise _bad(f"{self.name}: the {self.kind} yields x without labels; it must yield (x, y) batches")
            yield item[0], item[1]

    def first(self):
        try:
            return next(iter(self.raw()))
        except StopIteration:
            raise _bad(f"{self.name}: the {self.kind} yields no batches") from None

    def labels(self, y) -> np.ndarray:
        """Integer labels 0..C−1 of a batch (one-hot: argmax; a scalar head's ±1: 0/1)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        C = self.num_classes
        if y.ndim == 2:
            if y.shape[1] != C and not (self.scalar and y.shape[1] == 2):
                raise _bad(f"{self.name}: one-hot labels with {y.shape[1]} columns but the classifier has {C} classes")
            y = np.argmax(y, axis=1)
        elif y.ndim != 1:
            raise _bad(f"{self.name}: labels must be (N,) integers or (N, C) one-hot, got shape {tuple(y.shape)}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise _bad(f"{self.name}: labels must be integer class indices (or one-hot), got non-integer values")
            y = y.astype(np.int64)
        if self.scalar and y.size and y.min() == -1 and set(np.unique(y).tolist()) <= {-1, 1}:
            y = (y > 0).astype(np.int64)  # a scalar head's ±1 targets
        if y.size and (y.min() < 0 or y.max() >= C):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise _bad(f"{self.name}: label {bad} but the classifier has {C} classes (labels 0..{C - 1})")
        return y.astype(np.int64)


class _FitFeeder(_Feeder):
    """`sqnc measure`'s feeder (pooling, class scores) over a `fit` data source."""

    def __init__(self, run, plan, source: _FitData, dtype):
        super().__init__(run, plan, None, None, source.batch_size)
        self.source, self.dtype = source, dtype

    def __call__(self):
        return self._iterate()

    def _inputs(self):
        for x, y in self.source.raw():
            yield np.asarray(x, dtype=self.dtype), self.source.labels(y)


class CollapseMonitor(keras.callbacks.Callback):
    """Measure neural collapse at chosen epochs of `model.fit` (module docstring: conventions,
    where the values go).

    Arguments that need no model are checked here; those that need the model (layers, classes
    against the head, the data's labels and input shape, `out`) at `on_train_begin`, before any
    epoch runs. Each mistake raises one `ValueError` naming the argument.

    Args:
        data: the training data to measure on: `(x, y)` arrays, a `tf.data.Dataset` or a
            `keras.utils.PyDataset` yielding `(x, y)` batches; integer or one-hot labels.
        every: an int k (epochs 0, k, 2k, ... and the last), `"log"`, `"all"`, or a list of epochs.
        out: a folder for the run directory (None: nothing written; `results` and `logs` only).
        validation: the validation data, as `data` (its own NC metrics, `val_*` in logs,
            `test_*` in nc.csv; NCC accuracy by the train class means).
        layers: other layers whose outputs are measured layer-wise (by name).
        feature_layer: the layer whose output is the feature vector h (default: the
            classifier's input).
        classifier_layer: the Dense head on h (default: the last Dense layer).
        pool: a conv map (b, H, W, c) is measured `flatten`ed or `avg`-pooled.
        batch_size: the inference batch size for arrays (datasets keep their batches); 1000, as
            `compute.inference_batch` (memory and speed only).
        log: the nc.csv columns put in `logs` (default `DEFAULT_LOG`), or `"all"`.
        rank_tol: spectra.csv's rank threshold.
        overwrite: replace an earlier monitor's files in `out`.

    Attributes:
        results: {epoch: nc.csv row without `epoch`} of every measured epoch.
        epochs: the epochs this `fit` measures (set at `on_train_begin`).

    Example:

    ```python
    monitor = CollapseMonitor((x, y), every=5, out="runs/mine", layers=["dense_1"])
    model.fit(x, y, epochs=20, callbacks=[monitor])
    monitor.results[20]["nc1"]
    ```
    """

    def __init__(
        self,
        data,
        every=1,
        out: str | Path | None = None,
        validation=None,
        layers: Sequence[str] | None = None,
        feature_layer: str | None = None,
        classifier_layer: str | None = None,
        pool: str = "flatten",
        batch_size: int = 1000,
        log: Sequence[str] | str = DEFAULT_LOG,
        rank_tol: float = DEFAULT_RANK_TOL,
        overwrite: bool = False,
    ):
        super().__init__()
        _check_every(every)
        if pool not in POOLS:
            raise _bad(f"pool: {pool!r} is not one of {', '.join(POOLS)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise _bad(f"batch_size: must be a positive integer, got {batch_size!r}")
        if isinstance(layers, str):
            layers = [layers]
        self.train_data = _FitData(data, int(batch_size), "data")
        self.validation = None if validation is None else _FitData(validation, int(batch_size), "validation")
        self.every, self.out, self.pool, self.batch_size = every, None if out is None else Path(out), pool, int(batch_size)
        self.layer_names = None if layers is None else list(layers)
        self.feature_layer, self.classifier_layer = feature_layer, classifier_layer
        self.log = log_keys(log, self.validation is not None)
        self.rank_tol, self.overwrite = float(rank_tol), bool(overwrite)
        self.results: dict[int, dict] = {}
        self.epochs: list[int] = []
        self._plan = None
        self._last = 0  # the last epoch fit completed
        self._files: dict[str, CSVAppender] = {}
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ set-up (on_train_begin)

    def _resolve(self, network):
        """`sqnc measure`'s plan of this model (layers, head, next kernels at the current weights);
        `num_classes` None: the head decides, the labels are checked against it."""
        return _plan(_Model(network, "keras", type(network).__name__, None), self.layer_names, self.feature_layer, self.classifier_layer, self.pool, None)

    def _setup(self, network) -> None:
        """Resolve layers, classes and data against the model; compile the probe; open `out`."""
        try:
            plan = self._resolve(network)
        except MeasureError as err:
            raise _translated(err) from None
        # A Keras model's plan always has a Dense head (or `_plan` said why not); one output: binary.
        C = 2 if plan.scalar_head else int(plan.classifier.kernel.shape[-1])
        input_rank = len(network.inputs[0].shape)
        shapes = {}
        for source in filter(None, (self.train_data, self.validation)):
            source.num_classes, source.scalar = C, plan.scalar_head
            source.batch_if_unbatched(input_rank)
            x, y = source.first()
            source.labels(y)
            try:
                _check_input(network, tuple(np.shape(x))[1:])
            except MeasureError as err:
                raise _bad(f"{source.name}: {str(err).split(': ', 1)[-1]}") from None
            shapes[source.name] = tuple(np.shape(x))[1:]
            if source.kind == "arrays":
                source.labels(source.data[1])  # every label, not only the first batch's
        probe = keras.Model(network.inputs, plan.tensors)
        try:
            _set_shapes(plan, probe, shapes["data"], self.pool)
        except MeasureError as err:
            raise _translated(err) from None
        self._check_out()
        self._plan, self._C, self._network = plan, C, network
        self._objective = {"decomposition": not plan.scalar_head, "weight_decay": 0.0, "decay_bias": False, "loss_k": 1.0, "loss_M": 1.0,
                           "source": "plain square loss, no weight decay (the monitor does not know the training loss)"}  # fmt: skip
        run = backend.compile_inference(probe)
        dtype = network.inputs[0].dtype
        self._train = _FitFeeder(run, plan, self.train_data, dtype)
        self._test = None if self.validation is None else _FitFeeder(run, plan, self.validation, dtype)
        nan = float("nan")
        self._probes = [
            tracking.CollapseProbe(plan.names, lambda row: row.update(w_norm_sq_eq34=nan), nc_test=self.validation is not None),
            tracking.SpectraProbe(self.rank_tol),
        ]
        if self.out is not None:
            self._open_out(fresh=True)

    def _check_out(self) -> None:
        out = self.out
        if out is None:
            return
        if out.exists() and not out.is_dir():
            raise _bad(f"out: {out} exists and is not a folder")
        if (out / schema.METRICS_CSV).exists() or (out / schema.MEASURE_JSON).exists():
            raise _bad(f"out: {out} holds a run of sqnc run or a measurement of sqnc measure; give another folder")
        held = [name for name in FILES if (out / name).exists()]
        if held and not self.overwrite:
            raise _bad(f"out: {out} already holds a monitor's files ({held[0]}); give another folder or overwrite=True")

    def _open_out(self, fresh: bool) -> None:
        """The appenders of the four CSVs (fresh: an earlier monitor's files removed first)."""
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES if fresh else ():
            (out / name).unlink(missing_ok=True)
        columns = {
            schema.NC_CSV: schema.nc_columns(self.validation is not None),
            schema.NC_LAYERS_CSV: schema.NC_LAYERS,
            schema.CLASS_GRAM_CSV: schema.CLASS_GRAM,
            schema.SPECTRA_CSV: schema.SPECTRA,
        }
        self._files = {name: CSVAppender(out / name, cols) for name, cols in columns.items()}
        self._rundir = RunDir(out)

    def _describe(self, sizes: dict) -> dict:
        """monitor.json: what is measured, how, on what data (the fields of measure.json)."""
        plan, net = self._plan, self._network
        return {
            "model": {"source": f"CollapseMonitor:{net.name}", "path": None, "kind": "keras", "sha256": None, "class": type(net).__name__},
            "features": plan.features,
            "classifier": plan.classifier.name,
            "scalar_head": plan.scalar_head,
            "layers": [{"name": n, "shape": plan.shapes[n], "pool": plan.pools[n], "dim": plan.dims[n]} for n in plan.names],
            "objective": self._objective,
            "data": {"source": "fit", "train": self.train_data.kind, "validation": getattr(self.validation, "kind", None), "num_classes": self._C},
            "class_names": [str(c) for c in range(self._C)],
            "splits": sizes,
            "batch_size": self.batch_size,
            "rank_tol": self.rank_tol,
            "every": self.every,
            "epochs": self.epochs,
            "log": self.log,
            "versions": _versions("keras"),
        }

    # ------------------------------------------------------------------ measuring

    def measure(self, epoch: int) -> dict:
        """Measure the model now as `epoch`: the nc.csv row (without `epoch`), also written to
        `out` and kept in `results`."""
        net, plan = self._network, self._plan
        # The alignment's next-layer kernels are read at this epoch's weights (`_plan` copies them).
        plan.next_kernels = self._resolve(net).next_kernels
        result = plan_collapse(self._train, self._test, plan, self._objective, self._C)
        kernels = {layer.name: np.asarray(effective_kernel(layer)) for layer in weight_layers(net)}
        view = tracking.EpochView(epoch, None, None, tracking.Weights(kernels=kernels, rho_mode="product"), collapse=result)
        rows = tracking.collect(self._probes, view)
        row = {k: v for k, v in rows[schema.NC_CSV][0].items() if k != "epoch"}
        self.results[epoch] = row
        if self._files:
            for name, file_rows in rows.items():
                self._files[name].write_many(file_rows)
            if not (self.out / MONITOR_JSON).exists():
                sizes = {"train": len(result.scores["train"])}
                if self._test is not None:
                    sizes["test"] = len(result.scores["test"])
                atomic_write_text(self.out / MONITOR_JSON, json.dumps(self._describe(sizes), indent=2, default=str) + "\n")
            self._rundir.write_status("running", epoch, wall_time_s=round(time.perf_counter() - self._t0, 3))
        return row

    def _logs(self, row: dict | None) -> dict:
        """The `logs` entries of one epoch (NaN where it did not measure)."""
        nan = float("nan")
        if row is None:
            return dict.fromkeys(self.log, nan)
        return {k: float(row.get(f"test_{k[4:]}" if k.startswith("val_") else k, nan)) for k in self.log}

    # ------------------------------------------------------------------ Keras hooks

    def on_train_begin(self, logs=None):
        first = self._plan is None
        if first:
            self._setup(self.model)
        elif self.out is not None and not self._files:
            self._open_out(fresh=False)  # a later fit with this monitor: append
        self.epochs = measured_epochs(self.every, int((self.params or {}).get("epochs") or 0))
        if first and 0 in self.epochs:
            self.measure(0)

    def on_epoch_end(self, epoch, logs=None):
        e = self._last = epoch + 1
        if e not in self.epochs:  # nothing else on an epoch that does not measure
            if logs is not None:
                logs.update(self._logs(None))
            return
        _ = self.model  # on JAX: the training state written back into the variables (fit does too)
        row = self.measure(e)
        if logs is not None:
            logs.update(self._logs(row))

    def on_train_end(self, logs=None):
        if self._files:
            self._rundir.write_status("done", self._last, wall_time_s=round(time.perf_counter() - self._t0, 3))
            for f in self._files.values():
                f.close()
            self._files = {}


__all__ = ["CollapseMonitor", "DEFAULT_LOG", "log_keys", "measured_epochs"]

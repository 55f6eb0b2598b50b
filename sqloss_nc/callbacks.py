"""Keras callbacks that measure the network and write the run directory (SPEC §5, §6).

`Tracker` runs one inference-mode pass over the training set and one over the test set and turns
them into a metrics row (losses, accuracies, norms, ρ, margin statistics) plus the per-sample
margins. `RunLogger` calls it at epoch 0 (before any step) and after every epoch, appends the row
to `metrics.csv`, the margins to `margins.csv` at the scheduled epochs, saves a resume
checkpoint, and keeps `status.json` true. `RichProgress` shows a progress bar.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from . import backend, measures
from .models import feature_extractor, weight_layers
from .nc import FEATURE_COLLAPSE_KEYS, NC_KEYS, NCAccumulator
from .losses import np_accuracy, np_loss
from .normalization import effective_kernel, rho_mode
from .rundir import CSVAppender, RunDir
from .theory import predicted_w_norm_sq

MARGIN_COLUMNS = ["margin_mean", "margin_sq_mean", "margin_std", "margin_min", "margin_p05", "margin_p50", "margin_p95"]
RAW_MARGIN_COLUMNS = ["raw_margin_mean", "raw_margin_std", "raw_margin_min"]
MARGINS_CSV_COLUMNS = ["epoch", "index", "label", "margin", "margin_normalized"]
NC_LAYERS_CSV_COLUMNS = ["epoch", "split", "layer", "measure", "value"]


def metrics_columns(layer_names: list[str]) -> list[str]:
    """The `metrics.csv` header of SPEC §6 for a network with these weight layers."""
    return (
        ["epoch", "lr", "train_loss", "train_objective", "train_acc", "test_loss", "test_acc"]
        + ["rho", "rho_product", "rho_last", "rho_bn"]
        + [f"norm_{n}" for n in layer_names]
        + MARGIN_COLUMNS
        + RAW_MARGIN_COLUMNS
        + ["grad_norm_sq", "elapsed_s"]
        + ["fsc_term"]  # beyond SPEC §6: the finite-step correction term (0 when off)
    )


@dataclass
class Measurement:
    """What one measurement epoch produced."""

    row: dict  # metrics.csv values (without epoch, lr, grad_norm_sq, elapsed_s)
    margins: np.ndarray  # per-sample raw margins on the training set
    nc: dict | None = None  # nc.csv values (without epoch), on NC epochs
    layers: list[dict] = field(default_factory=list)  # nc_layers.csv rows (without epoch)


class Tracker:
    """Measures a network on the full training and test sets, in inference mode, in float64.

    Every epoch: one forward pass over the training set and one over the test set give the
    losses, accuracies and margins; the norms come from the weights. On neural-collapse epochs the
    training pass also returns the hidden activations and feeds the streaming accumulators of
    `nc.py` (NC2, NC3, the theory links, and the trace ratio and CDNV of every hidden layer), and a
    second pass over the features gives the exact NC4 and NC1 (both need the final class means:
    NC1 from the projections of h − μ_y on Σ_B's top C−1 directions). Memory stays O(C·p) per
    measured layer whatever N.

    Args:
        network: the functional network (weight layers named, classifier last).
        data: a `sqloss_nc.data.Dataset`.
        weight_decay: λ, for the objective L + λ/2·Σ||θ||² over the `decayed` variables.
        normalization: the hidden normalization (decides which norm is ρ).
        decayed: the decayed variables (default: every kernel).
        loss, output: the loss kind and output mode (`losses.py`).
        loss_k, loss_M: the rescaled square loss's parameters.
        batch_size: inference batch size (memory and speed only; results do not depend on it).
        jit_compile: compile the inference passes with XLA (speed only).
        nc_test: also measure neural collapse on the test set (columns prefixed `test_`).

    Example:

    ```python
    t = Tracker(net, ds, weight_decay=0.01, normalization="batchnorm")
    out = t.measure(nc=True)
    out.row["rho"], out.nc["nc1"], out.margins.shape
    ```
    """

    def __init__(
        self,
        network,
        data,
        weight_decay: float,
        normalization: str,
        decayed: list | None = None,
        batch_size: int = 1000,
        nc_test: bool = False,
        loss: str = "square",
        output: str = "onehot",
        jit_compile: bool = False,
        loss_k: float = 1.0,
        loss_M: float = 1.0,
    ):
        self.network, self.data = network, data
        self.weight_decay, self.mode = float(weight_decay), rho_mode(normalization)
        self.layers = weight_layers(network)
        self.decayed = list(decayed) if decayed is not None else [layer.kernel for layer in self.layers]
        self.loss, self.output, self.loss_k, self.loss_M = loss, output, float(loss_k), float(loss_M)
        self.bn_layers = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.batch_size, self.nc_test = batch_size, nc_test
        self.num_classes = data.num_classes
        # Hidden representations whose collapse is tracked: every activation before the features
        # (the convnet's last ReLU is the features, reshaped), the features, and the outputs.
        names = [layer.name for layer in network.layers if isinstance(layer, keras.layers.ReLU) and layer.name != "features"]
        if isinstance(network.get_layer("features"), keras.layers.Flatten):
            names = names[:-1]  # the convnet's features are its last ReLU, flattened
        self.probe_names = names + ["features", "classifier"]
        probe = keras.Model(
            network.inputs, [network.get_layer(n).output for n in names] + [network.get_layer("features").output, network.output]
        )

        def compiled(model):
            return backend.compile_inference(model, jit_compile=jit_compile)

        self._predict, self._probe, self._features = compiled(network), compiled(probe), compiled(feature_extractor(network))

    def _batches(self, x):
        for i in range(0, len(x), self.batch_size):
            yield i, x[i : i + self.batch_size]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._predict(xb)[0] for _, xb in self._batches(x)])

    def loss_value(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        """The training loss of these outputs, float64 (`losses.np_loss`)."""
        return np_loss(self.loss, self.output, outputs, labels, k=self.loss_k, M=self.loss_M)

    def norms(self) -> dict[str, float]:
        return {layer.name: measures.frobenius(np.asarray(effective_kernel(layer))) for layer in self.layers}

    def _class_scores(self, f: np.ndarray) -> np.ndarray:
        """Per-class scores for the NC measures: the outputs, or (−f, f) for a scalar head, whose
        argmax is the sign decision and whose `eps_gap` is 1 − mean y·f."""
        return np.concatenate([-f, f], axis=1) if self.output == "scalar" else f

    def collapse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict, list[dict]]:
        """Outputs f, the NC metrics of the features, and per-layer (trace ratio, CDNV) rows."""
        # nc1 comes from the second pass (projections on Sigma_B's top directions), so no
        # p x p scatter matrix is kept.
        full = NCAccumulator(self.num_classes, full=False)
        light = {n: NCAccumulator(self.num_classes, full=False) for n in self.probe_names if n != "features"}
        outputs, finite = [], True
        for i, xb in self._batches(x):
            *hidden, h, f = self._probe(xb)
            f = self._class_scores(f)
            outputs.append(f)
            # A diverged network has no collapse to measure (and an SVD of NaNs would raise).
            finite = finite and bool(np.isfinite(h).all() and np.isfinite(f).all())
            if finite:
                yb = y[i : i + len(xb)]
                full.update(h, yb, f)
                for name, act in zip(self.probe_names[:-2], hidden):
                    light[name].update(act, yb)
                light["classifier"].update(f, yb)
        outputs = np.concatenate(outputs)
        outputs = outputs[:, 1:] if self.output == "scalar" else outputs  # back from (-f, f) to f
        if not finite:
            nc = dict.fromkeys((*NC_KEYS, "w_norm_sq_eq34"), float("nan"))
            return outputs, nc, [{"layer": n, "measure": k, "value": float("nan")} for n in self.probe_names for k in FEATURE_COLLAPSE_KEYS]
        full.nc4_pass(
            (h, y[i : i + len(xb)], self._class_scores(f)) for i, xb in self._batches(x) for h, f in [self._features(xb)]
        )
        # A scalar head has one row, not C: the classifier-geometry metrics do not apply (NaN).
        w = np.asarray(self.network.get_layer("classifier").kernel).T if self.output == "onehot" else None
        nc = full.finalize(classifier_weights=w)
        nc["w_norm_sq_eq34"] = predicted_w_norm_sq(nc["eps_gap"], self.weight_decay, self.num_classes)
        layers = []
        for name in self.probe_names:
            res = nc if name == "features" else light[name].finalize()
            layers += [{"layer": name, "measure": k, "value": res[k]} for k in FEATURE_COLLAPSE_KEYS]
        return outputs, nc, layers

    def measure(self, nc: bool = False) -> Measurement:
        """Measure at the current weights; `nc=True` adds the neural-collapse measures."""
        d = self.data
        nc_row, layer_rows = None, []
        if nc:
            f_train, nc_row, layer_rows = self.collapse(d.x_train, d.y_train)
            for r in layer_rows:
                r["split"] = "train"
            if self.nc_test:
                f_test, nc_test, test_layers = self.collapse(d.x_test, d.y_test)
                nc_row.update({f"test_{k}": v for k, v in nc_test.items()})
                layer_rows += [dict(r, split="test") for r in test_layers]
            else:
                f_test = self.predict(d.x_test)
        else:
            f_train, f_test = self.predict(d.x_train), self.predict(d.x_test)
        norms = self.norms()
        rho = measures.rho_values(norms, self.mode, [np.asarray(layer.moving_variance) for layer in self.bn_layers])
        train_loss = self.loss_value(f_train, d.y_train)
        penalty = 0.5 * self.weight_decay * sum(measures.frobenius(np.asarray(v)) ** 2 for v in self.decayed)
        m = measures.margins(f_train, d.y_train)
        row = {
            "train_loss": train_loss,
            "train_objective": train_loss + penalty,
            "train_acc": np_accuracy(f_train, d.y_train),
            "test_loss": self.loss_value(f_test, d.y_test),
            "test_acc": np_accuracy(f_test, d.y_test),
            **rho,
            **{f"norm_{k}": v for k, v in norms.items()},
            **measures.margin_stats(m, rho["rho"]),
        }
        return Measurement(row, m, nc_row, layer_rows)

    def nc_columns(self) -> list[str]:
        keys = list(NC_KEYS) + ["w_norm_sq_eq34"]
        return ["epoch"] + keys + ([f"test_{k}" for k in keys] if self.nc_test else [])


def diverged(row: dict) -> str | None:
    """The name of the first non-finite key quantity, or None."""
    for key in ("train_loss", "train_objective", "rho", "rho_product"):
        v = row.get(key)
        if v is None or not math.isfinite(v):
            return key
    return None


class RunLogger(keras.callbacks.Callback):
    """Writes one `metrics.csv` row per epoch (epoch 0 = initialization) and margins at scheduled
    epochs, checkpoints for resume, and keeps `status.json` up to date.

    Args:
        rundir: the `RunDir`.
        tracker: the `Tracker` measuring the network.
        lr_at_epoch: callable epoch -> learning rate used during that epoch.
        margin_epochs: epochs at which per-sample margins go to `margins.csv`.
        nc_epochs: epochs at which neural collapse goes to `nc.csv` and `nc_layers.csv`.
        first_epoch: 1 for a fresh run (epoch 0 is then measured first), k+1 when resuming at k.
        elapsed_offset: wall seconds already spent before this session (resume).
        initial_grad_norm_sq: callable giving epoch 0's grad_norm_sq (probe), fresh runs only.
        checkpoint: callable(epoch) saving the resume state after the epoch's rows are written.
    """

    def __init__(
        self,
        rundir: RunDir,
        tracker: Tracker,
        lr_at_epoch,
        margin_epochs,
        nc_epochs=(),
        first_epoch=1,
        elapsed_offset=0.0,
        initial_grad_norm_sq=None,
        checkpoint=None,
    ):
        super().__init__()
        self.rundir, self.tracker, self.lr_at_epoch = rundir, tracker, lr_at_epoch
        self.margin_epochs, self.nc_epochs = set(margin_epochs), set(nc_epochs)
        self.first_epoch, self.elapsed_offset = first_epoch, elapsed_offset
        self.initial_grad_norm_sq, self.checkpoint = initial_grad_norm_sq, checkpoint
        self.columns = metrics_columns([layer.name for layer in tracker.layers])
        self.metrics_csv = CSVAppender(rundir.metrics_path, self.columns)
        self.margins_csv = CSVAppender(rundir.margins_path, MARGINS_CSV_COLUMNS)
        self.nc_csv = CSVAppender(rundir.nc_path, tracker.nc_columns()) if self.nc_epochs else None
        self.nc_layers_csv = CSVAppender(rundir.nc_layers_path, NC_LAYERS_CSV_COLUMNS) if self.nc_epochs else None
        self.last_row: dict | None = None
        self.divergence: str | None = None
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_offset + time.perf_counter() - self._t0

    def record(self, epoch: int, grad_norm_sq: float, fsc_term: float = float("nan")) -> dict:
        out = self.tracker.measure(nc=epoch in self.nc_epochs)
        row, m = out.row, out.margins
        row.update(epoch=epoch, lr=self.lr_at_epoch(epoch), grad_norm_sq=grad_norm_sq, fsc_term=fsc_term, elapsed_s=self.elapsed())
        self.metrics_csv.write(row)
        if out.nc is not None:
            self.nc_csv.write({"epoch": epoch, **out.nc})
            self.nc_layers_csv.write_many({"epoch": epoch, **r} for r in out.layers)
        if epoch in self.margin_epochs:
            labels = self.tracker.data.y_train
            block = zip([epoch] * len(m), range(len(m)), labels.tolist(), m.tolist(), (m / row["rho"]).tolist())
            self.margins_csv.write_array(block)
        self.last_row = row
        bad = diverged(row)
        if bad is not None:
            self.divergence = f"{bad} is {row.get(bad)} at epoch {epoch}"
            self.model.stop_training = True
            self.rundir.write_status("diverged", epoch, reason=self.divergence)
        else:
            if self.checkpoint is not None:
                self.checkpoint(epoch)
            self.rundir.write_status("running", epoch, wall_time_s=row["elapsed_s"])
        return row

    def on_train_begin(self, logs=None):
        if self.first_epoch == 1 and self.last_row is None:
            grad = self.initial_grad_norm_sq() if self.initial_grad_norm_sq else float("nan")
            self.record(0, grad)

    def on_epoch_end(self, epoch, logs=None):
        if self.divergence:  # epoch 0 already diverged
            return
        # fit() runs with initial_epoch = first_epoch - 1, so `epoch` is the absolute 0-based index.
        logs = logs if logs is not None else {}
        row = self.record(epoch + 1, float(logs.get("grad_norm_sq", float("nan"))), float(logs.get("fsc_term", float("nan"))))
        logs.update(row)

    def close(self):
        for f in (self.metrics_csv, self.margins_csv, self.nc_csv, self.nc_layers_csv):
            if f is not None:
                f.close()


STEPS_CSV_COLUMNS = ["epoch", "step", "rho", "rho_product", "train_loss", "train_acc"] + MARGIN_COLUMNS
STEP_MARGINS_CSV_COLUMNS = ["epoch", "step", "index", "label", "margin", "margin_normalized"]


class StepLogger(keras.callbacks.Callback):
    """Per-step tracking in the first iterations (paper Fig. 5): every `every` optimizer steps up
    to step `until`, ρ and the margin statistics go to `steps.csv` and the per-sample margins to
    `margins_steps.csv` (step 0 = initialization). Full training set, inference mode.

    Args:
        rundir: the `RunDir`.
        tracker: the `Tracker`.
        until: last optimizer step recorded.
        every: record every `every` steps.
        steps_per_epoch: to label each step with its (1-based) epoch.
    """

    def __init__(self, rundir: RunDir, tracker: Tracker, until: int, every: int, steps_per_epoch: int):
        super().__init__()
        self.tracker, self.until, self.every, self.spe = tracker, until, every, steps_per_epoch
        self.steps_csv = CSVAppender(rundir.path / "steps.csv", STEPS_CSV_COLUMNS)
        self.margins_csv = CSVAppender(rundir.path / "margins_steps.csv", STEP_MARGINS_CSV_COLUMNS)

    def record(self, step: int) -> None:
        d = self.tracker.data
        f = self.tracker.predict(d.x_train)
        rho = measures.rho_values(self.tracker.norms(), self.tracker.mode)
        m = measures.margins(f, d.y_train)
        epoch = 0 if step == 0 else (step - 1) // self.spe + 1
        row = {"epoch": epoch, "step": step, "rho": rho["rho"], "rho_product": rho["rho_product"]}
        row.update(train_loss=self.tracker.loss_value(f, d.y_train), train_acc=np_accuracy(f, d.y_train))
        row.update(measures.margin_stats(m, rho["rho"]))
        self.steps_csv.write({k: row[k] for k in STEPS_CSV_COLUMNS})
        n = len(m)
        self.margins_csv.write_array(zip([epoch] * n, [step] * n, range(n), d.y_train.tolist(), m.tolist(), (m / rho["rho"]).tolist()))

    def on_train_begin(self, logs=None):
        if int(np.asarray(self.model.optimizer.iterations)) == 0:
            self.record(0)

    def on_train_batch_end(self, batch, logs=None):
        step = int(np.asarray(self.model.optimizer.iterations))
        if step <= self.until and step % self.every == 0:
            self.record(step)

    def close(self):
        self.steps_csv.close()
        self.margins_csv.close()


class RichProgress(keras.callbacks.Callback):
    """A rich progress bar over epochs showing loss, accuracy and ρ.

    Args:
        total_epochs: the run's last epoch.
        first_epoch: the first epoch trained in this session (resume).
        description: text shown left of the bar.
        logger: the `RunLogger` whose latest row is displayed.
    """

    def __init__(self, total_epochs: int, first_epoch: int, description: str, logger: RunLogger, console=None):
        super().__init__()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.logger = logger
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total_epochs, completed=first_epoch - 1, stats="")

    def _stats(self) -> str:
        r = self.logger.last_row or {}
        if not r:
            return ""
        return f"loss {r['train_loss']:.4g}  acc {r['train_acc']:.3f}/{r['test_acc']:.3f}  ρ {r['rho']:.4g}"

    def on_train_begin(self, logs=None):
        self.progress.start()
        self.progress.update(self.task, stats=self._stats())

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update(self.task, advance=1, stats=self._stats())

    def on_train_end(self, logs=None):
        self.progress.stop()

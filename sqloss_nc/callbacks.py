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

import keras
import numpy as np
import tensorflow as tf

from . import measures
from .models import weight_layers
from .normalization import rho_mode
from .rundir import CSVAppender, RunDir

MARGIN_COLUMNS = ["margin_mean", "margin_sq_mean", "margin_std", "margin_min", "margin_p05", "margin_p50", "margin_p95"]
RAW_MARGIN_COLUMNS = ["raw_margin_mean", "raw_margin_std", "raw_margin_min"]
MARGINS_CSV_COLUMNS = ["epoch", "index", "label", "margin", "margin_normalized"]


def metrics_columns(layer_names: list[str]) -> list[str]:
    """The `metrics.csv` header of SPEC §6 for a network with these weight layers."""
    return (
        ["epoch", "lr", "train_loss", "train_objective", "train_acc", "test_loss", "test_acc"]
        + ["rho", "rho_product", "rho_last", "rho_bn"]
        + [f"norm_{n}" for n in layer_names]
        + MARGIN_COLUMNS
        + RAW_MARGIN_COLUMNS
        + ["grad_norm_sq", "elapsed_s"]
    )


class Tracker:
    """Measures a network on the full training and test sets, in inference mode, in float64.

    Args:
        network: the functional network (weight layers named, classifier last).
        data: a `sqloss_nc.data.Dataset`.
        weight_decay: λ, for the objective L + λ/2·Σ||W||² over `decayed` layers.
        normalization: the hidden normalization (decides which norm is ρ).
        decayed: names of the decayed layers (default: all weight layers).
        batch_size: inference batch size (memory only; results do not depend on it).

    Example:

    ```python
    row, m = Tracker(net, ds, weight_decay=0.01, normalization="batchnorm").measure()
    row["rho"], m.shape
    ```
    """

    def __init__(self, network, data, weight_decay: float, normalization: str, decayed: list[str] | None = None, batch_size: int = 1000):
        self.network, self.data = network, data
        self.weight_decay, self.mode = float(weight_decay), rho_mode(normalization)
        self.layers = weight_layers(network)
        self.decayed = set(decayed) if decayed is not None else {layer.name for layer in self.layers}
        self.bn_layers = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.batch_size = batch_size
        self._predict = tf.function(lambda x: network(x, training=False), reduce_retracing=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._predict(x[i : i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)])

    def norms(self) -> dict[str, float]:
        return {layer.name: measures.frobenius(layer.kernel.numpy()) for layer in self.layers}

    def measure(self) -> tuple[dict, np.ndarray]:
        """Returns (metrics row without epoch/lr/grad/elapsed, per-sample raw margins)."""
        d = self.data
        f_train, f_test = self.predict(d.x_train), self.predict(d.x_test)
        norms = self.norms()
        rho = measures.rho_values(norms, self.mode, [layer.moving_variance.numpy() for layer in self.bn_layers])
        train_loss = measures.square_loss(f_train, d.y_train)
        penalty = 0.5 * self.weight_decay * sum(v * v for k, v in norms.items() if k in self.decayed)
        m = measures.margins(f_train, d.y_train)
        row = {
            "train_loss": train_loss,
            "train_objective": train_loss + penalty,
            "train_acc": measures.accuracy(f_train, d.y_train),
            "test_loss": measures.square_loss(f_test, d.y_test),
            "test_acc": measures.accuracy(f_test, d.y_test),
            **rho,
            **{f"norm_{k}": v for k, v in norms.items()},
            **measures.margin_stats(m, rho["rho"]),
        }
        return row, m


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
        first_epoch=1,
        elapsed_offset=0.0,
        initial_grad_norm_sq=None,
        checkpoint=None,
    ):
        super().__init__()
        self.rundir, self.tracker, self.lr_at_epoch = rundir, tracker, lr_at_epoch
        self.margin_epochs = set(margin_epochs)
        self.first_epoch, self.elapsed_offset = first_epoch, elapsed_offset
        self.initial_grad_norm_sq, self.checkpoint = initial_grad_norm_sq, checkpoint
        self.columns = metrics_columns([layer.name for layer in tracker.layers])
        self.metrics_csv = CSVAppender(rundir.metrics_path, self.columns)
        self.margins_csv = CSVAppender(rundir.margins_path, MARGINS_CSV_COLUMNS)
        self.last_row: dict | None = None
        self.divergence: str | None = None
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_offset + time.perf_counter() - self._t0

    def record(self, epoch: int, grad_norm_sq: float) -> dict:
        row, m = self.tracker.measure()
        row.update(epoch=epoch, lr=self.lr_at_epoch(epoch), grad_norm_sq=grad_norm_sq, elapsed_s=self.elapsed())
        self.metrics_csv.write(row)
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
        row = self.record(epoch + 1, float((logs or {}).get("grad_norm_sq", float("nan"))))
        if logs is not None:
            logs.update(row)

    def close(self):
        self.metrics_csv.close()
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

"""Keras callbacks that measure the network and write the run directory (SPEC §5, §6).

`Tracker` runs one inference-mode pass over the training set and one over the test set and turns
them into a metrics row (losses, accuracies, norms, ρ, margin statistics) plus the per-sample
margins. `RunLogger` calls it at epoch 0 (before any step) and after every epoch, appends the row
to `metrics.csv`, the margins to `margins.csv` at the scheduled epochs, saves a resume
checkpoint, and keeps `status.json` true. `RichProgress` shows a progress bar.

What the NC epochs add (issues 13, 14; SPEC §9, §10), and which matrix each measure reads:

* `spectra.csv` (`spectra.SPECTRA_COLUMNS`): the singular values, `rank` (of W/||W||_F at
  `track.rank_tol`) and `stable_rank` of every weight tensor, as `spectra.weight_matrix` reads
  it (out x fan_in), of the weights the layer computes with (`normalization.effective_kernel`,
  the tensor of `norm_<layer>`). For BatchNorm nets that is the conv/dense kernel itself, not
  the map diag(1/sqrt(var + eps))·W that BatchNorm composes with it.
* `nc.csv`: the MSE decomposition (`decomposition.DECOMPOSITION_KEYS`) of the classifier at the
  inference-mode training features, from the same streaming pass that feeds NC (float64, the
  p x p second moment: 8p² bytes, 32 MiB at p = 2048, plus O(N p²) work per NC epoch). Square
  losses: their own k, M, so `mse_total` = `train_loss` + λ/2·||W_L||² (+ λ/2·||b||² for a
  decayed bias) up to float32 rounding of the network. `cross_entropy`: the decomposition of
  the plain one-hot square loss (k = M = 1) at the CE-trained features and classifier:
  `mse_nc1`/`mse_nc23` depend on the features only and compare across losses, while
  `mse_total` is then not the training objective and `mse_perp`/`ls_distance` say how far the
  CE classifier is from the least-squares one. NaN for a scalar head and with
  `track.mse_decomposition: false`. λ is the classifier kernel's weight decay; the bias is in the
  penalty exactly when it is among the trainer's decayed variables.
* `eps_gap` is relative to the true-class target M: 1 − mean_n f_{y_n}(x_n)/M (the plain loss'
  1 − mean f_y for M = 1, unchanged); `w_norm_sq_eq34` is `theory.predicted_w_norm_sq` with the
  loss' k, M (NaN for cross-entropy and exponential losses, for which Eq. 34 is not derived).
* `nc_layers.csv` adds, for every probed representation (`Tracker.probe_names`), `ncc_accuracy`
  on the train split and on the test split (the fraction of samples whose nearest *train* class
  mean of that layer's flattened activation is their label; a second streaming pass, O(C·p) per
  layer), and, on the train split for every hidden representation (not the outputs),
  `alignment` (`spectra.alignment` with the next weight layer's kernel; NaN where that kernel is
  a convolution or does not act on the flattened representation: every conv-to-conv step).
* `metrics.csv` adds `update_norm_<layer>` = ||W_e − W_{e−1}||_F/||W_{e−1}||_F of the same
  effective kernels, every epoch (empty at epoch 0). A resumed run reads W_{e−1} from the
  checkpoint it resumes from, so its values are those of an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import backend, schema, tracking
from .notices import runtime_notices
from .engine import measures, threads
from .engine.collapse import CollapseResult, measure_collapse
from .engine.spectra import DEFAULT_RANK_TOL
from .errors import raise_if_stopped
from .losses import np_accuracy, np_loss
from .models import next_weight_layer, probed_layers, weight_layers
from .normalization import effective_kernel, rho_mode
from .rundir import CSVAppender, RunDir, atomic_write_text
from .theory import predicted_w_norm_sq

@dataclass
class Measurement:
    """What one measurement epoch produced."""

    row: dict  # metrics.csv values (without epoch, lr, grad_norm_sq, elapsed_s)
    margins: np.ndarray  # per-sample raw margins on the training set
    nc: dict | None = None  # nc.csv values (without epoch), on NC epochs
    layers: list[dict] = field(default_factory=list)  # nc_layers.csv rows (without epoch)
    gram: list[dict] = field(default_factory=list)  # class_gram.csv rows (without epoch)


class Tracker:
    """Measures a network on the full training and test sets, in inference mode, in float64.

    Every epoch: one forward pass over the training set and one over the test set give the
    losses, accuracies and margins; the norms come from the weights. On neural-collapse epochs the
    training pass also returns the hidden activations and feeds the streaming accumulators of
    `nc.py` (NC2, NC3, the theory links, the trace ratio and CDNV of every hidden layer, and the
    MSE decomposition's second moment of the features), and a second pass over the activations
    (the first pass's batches replayed when they fit, `engine.collapse.Replay`) gives the exact
    NC4 and NC1 (both need the final class means: NC1 from the projections of
    h − μ_y on Σ_B's top C−1 directions) and every layer's NCC accuracy; the test pass classifies
    the test samples by the train class means. Memory stays O(C·p) per measured layer whatever
    N, plus the features' p x p second moment when the decomposition is on. What each column
    means: the module docstring.

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
        rank_tol: `spectra.csv`'s rank threshold (`track.rank_tol`).
        mse_decomposition: add the MSE decomposition to `nc.csv` (one-hot heads only).

    Example:

    ```python
    t = Tracker(net, ds, weight_decay=0.01, normalization="batchnorm")
    out = t.measure(nc=True)
    out.row["rho"], out.nc["nc1"], out.nc["mse_perp"], out.margins.shape
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
        rank_tol: float = DEFAULT_RANK_TOL,
        mse_decomposition: bool = True,
    ):
        self.network, self.data = network, data
        self.weight_decay, self.mode = float(weight_decay), rho_mode(normalization)
        self.layers = weight_layers(network)
        self.decayed = list(decayed) if decayed is not None else [layer.kernel for layer in self.layers]
        self.loss, self.output, self.loss_k, self.loss_M = loss, output, float(loss_k), float(loss_M)
        self.bn_layers = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.batch_size, self.nc_test = batch_size, nc_test
        self.num_classes = data.num_classes
        self.rank_tol = float(rank_tol)
        # Hidden representations whose collapse is tracked (`models.probed_layers`), the features
        # and the outputs; for the alignment, the weight layer after each (`spectra.alignment`
        # is NaN unless it is a Dense kernel on exactly the flattened representation).
        names = probed_layers(network)
        self.probe_names = names + ["features", "classifier"]
        self.next_layer = {name: next_weight_layer(network, name) for name in self.probe_names[:-1]}
        # The targets' scale M (eps_gap, Eq. 34) and the decomposition's loss: the training
        # loss' own for the square losses, the plain one-hot square loss for cross-entropy.
        rescaled = loss == "square_rescaled"
        self._target = self.loss_M if rescaled else 1.0
        self.decomposition_k, self.decomposition_M = (self.loss_k, self.loss_M) if rescaled else (1.0, 1.0)
        self.decompose = bool(mse_decomposition) and output == "onehot"
        classifier = network.get_layer("classifier")
        self._classifier = classifier
        self._classifier_bias = getattr(classifier, "bias", None)
        # What `collapse` passes the engine (next_layer, decomposition_k/M, kernel_decayed,
        # bias_decayed) is public: a stack's device measurement (`stacking._StackCollapse`) reads it.
        self.kernel_decayed = any(v is classifier.kernel for v in self.decayed)
        self.bias_decayed = self._classifier_bias is not None and any(v is self._classifier_bias for v in self.decayed)
        probe = keras.Model(
            network.inputs, [network.get_layer(n).output for n in names] + [network.get_layer("features").output, network.output]
        )

        def compiled(model):
            return backend.compile_inference(model, jit_compile=jit_compile)

        self._predict, self._probe = compiled(network), compiled(probe)
        # What is measured, by whom, into which file (`tracking`): one probe per measure family.
        self.update_norms = tracking.UpdateNormProbe()
        self.probes = [
            tracking.MetricsProbe(self.loss_value, np_accuracy, self.weight_decay),
            self.update_norms,
            tracking.MarginsProbe(),
            tracking.CollapseProbe(self.probe_names, self._scale_to_target, nc_test=nc_test),
            tracking.SpectraProbe(rank_tol),
        ]

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

    def kernels(self) -> dict[str, np.ndarray]:
        """Copies of the weight tensors the layers compute with (those of `norm_<layer>`), by layer."""
        return {layer.name: np.array(effective_kernel(layer), copy=True) for layer in self.layers}

    def weights(self) -> tracking.Weights:
        """The weights the probes read: effective kernels (copies), ρ mode, BN variances, and
        Σ||θ||² over the decayed variables."""
        return tracking.Weights(
            kernels=self.kernels(),
            rho_mode=self.mode,
            bn_moving_vars=[np.asarray(layer.moving_variance) for layer in self.bn_layers],
            decayed_sq=sum(measures.frobenius(np.asarray(v)) ** 2 for v in self.decayed),
        )

    def _class_scores(self, f: np.ndarray) -> np.ndarray:
        """Per-class scores for the NC measures: the outputs, or (−f, f) for a scalar head, whose
        argmax is the sign decision and whose `eps_gap` is 1 − mean y·f."""
        return np.concatenate([-f, f], axis=1) if self.output == "scalar" else f

    def _probe_pass(self, x):
        """(first index, representations in `probe_names` order, class scores) per batch."""
        for i, xb in self._batches(x):
            *reps, f = self._probe(xb)
            f = self._class_scores(f)
            yield i, [*reps, f], f

    def _outputs(self, scores: list[np.ndarray]) -> np.ndarray:
        outputs = np.concatenate(scores)
        return outputs[:, 1:] if self.output == "scalar" else outputs  # back from (-f, f) to f

    def _source(self, x, y):
        """The engine's batch source over one split: (representations, labels, class scores)."""

        def batches():
            for i, reps, f in self._probe_pass(x):
                yield reps, y[i : i + len(f)], f

        return batches

    def collapse(self, x: np.ndarray, y: np.ndarray, test=None) -> CollapseResult:
        """The engine's fused two-pass measurement of every probed layer on (x, y) (and the test
        split (x_test, y_test) against the train means), with this run's classifier, loss and
        weight decay; `eps_gap` and `w_norm_sq_eq34` in this loss' units (module docstring)."""
        # A scalar head has one row, not C: the classifier-geometry metrics do not apply (NaN).
        w = np.asarray(self._classifier.kernel).T if self.output == "onehot" else None
        bias = None if self._classifier_bias is None else np.asarray(self._classifier_bias)
        out = measure_collapse(
            self._source(x, y),
            self.num_classes,
            self.probe_names,
            test=None if test is None else self._source(*test),
            features="features",
            classifier_weights=w,
            classifier_bias=bias,
            weight_decay=self.weight_decay if self.kernel_decayed else 0.0,
            decay_bias=self.bias_decayed,
            loss_k=self.decomposition_k,
            loss_M=self.decomposition_M,
            decomposition=self.decompose,
            next_kernels={n: (None if nxt is None else np.asarray(effective_kernel(nxt))) for n, nxt in self.next_layer.items()},
            nc_test=self.nc_test,
        )
        return out

    def _scale_to_target(self, nc: dict) -> None:
        """`eps_gap` relative to the target M and Eq. 34 for this loss (module docstring)."""
        if self._target != 1.0:  # the plain loss' numbers stay bit for bit
            nc["eps_gap"] = 1.0 - (1.0 - nc["eps_gap"]) / self._target
        if self.loss in ("square", "square_rescaled"):
            k = self.loss_k if self.loss == "square_rescaled" else 1.0
            nc["w_norm_sq_eq34"] = predicted_w_norm_sq(nc["eps_gap"], self.weight_decay, self.num_classes, k=k, M=self._target)
        else:
            nc["w_norm_sq_eq34"] = float("nan")

    def view(self, epoch: int, nc: bool = False) -> tracking.EpochView:
        """One epoch's inference passes: the engine's layer-wise passes on collapse epochs (they
        give the outputs too), a plain forward pass over train and test otherwise."""
        d = self.data
        collapse = None
        if nc:
            collapse = self.collapse(d.x_train, d.y_train, test=(d.x_test, d.y_test))
            f_train, f_test = self._outputs([collapse.scores["train"]]), self._outputs([collapse.scores["test"]])
        else:
            f_train, f_test = self.predict(d.x_train), self.predict(d.x_test)
        return tracking.EpochView(epoch, d.y_train, f_train, self.weights(), d.y_test, f_test, collapse)

    def record(self, epoch: int, nc: bool = False, margins: bool = False) -> dict[str, list]:
        """Rows per run file (`schema` names) of every probe active at this epoch."""
        with threads.measuring():  # numpy's algebra on one BLAS thread beside the backend's pool
            return tracking.collect(tracking.active(self.probes, nc, margins), self.view(epoch, nc))

    def measure(self, nc: bool = False) -> Measurement:
        """Measure at the current weights; `nc=True` adds the neural-collapse measures (no
        update norms: those need the previous epoch, which `RunLogger` keeps)."""
        probes = [p for p in tracking.active(self.probes, nc, False) if not isinstance(p, tracking.UpdateNormProbe)]
        view = self.view(0, nc)
        rows = tracking.collect(probes, view)
        strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch"} for r in rs]  # noqa: E731
        return Measurement(
            rows[schema.METRICS_CSV][0],
            view.margins(),
            strip(rows[schema.NC_CSV])[0] if nc else None,
            strip(rows.get(schema.NC_LAYERS_CSV, [])),
            strip(rows.get(schema.CLASS_GRAM_CSV, [])),
        )

    def nc_columns(self) -> list[str]:
        return schema.nc_columns(self.nc_test)


def _appender(path, columns: list[str]) -> CSVAppender:
    """A `CSVAppender`, after widening the header of a file written by an older version (a run
    resumed across an upgrade): when its columns are a subset of `columns`, the rows are
    rewritten under the new header with the new columns empty, so no row is misaligned."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), None)
        if header and header != list(columns) and set(header) <= set(columns):
            with open(path, newline="") as fh:
                old = list(csv.DictReader(fh))
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(columns), restval="")
            writer.writeheader()
            writer.writerows(old)
            atomic_write_text(path, buf.getvalue())
    return CSVAppender(path, columns)


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
        durable: callable(epoch) -> bool, whether this epoch writes its checkpoint and
            `status.json` (default: every epoch; a stack spaces them, `compute.stack_checkpoint_s`);
            `checkpointed` is the last epoch written so.
        notify: callable(line) showing a measurement's warning (e.g. "nc1 is NaN: ...") as one
            line when it first occurs (default: one line on stderr); each distinct warning is also
            kept in `status.json`'s `warnings`, with the epoch it first occurred at.
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
        durable=None,
        notify=None,
    ):
        super().__init__()
        self.rundir, self.tracker, self.lr_at_epoch = rundir, tracker, lr_at_epoch
        self.margin_epochs, self.nc_epochs = set(margin_epochs), set(nc_epochs)
        self.first_epoch, self.elapsed_offset = first_epoch, elapsed_offset
        self.initial_grad_norm_sq, self.checkpoint = initial_grad_norm_sq, checkpoint
        self.durable = durable or (lambda epoch: True)
        self.checkpointed = first_epoch - 1 if first_epoch > 1 else None  # the resume checkpoint's epoch
        self.columns = schema.metrics_columns([layer.name for layer in tracker.layers])
        # One appender per file the probes write (`schema`); the collapse files only with NC epochs.
        path = rundir.path
        self.files = {
            schema.METRICS_CSV: _appender(path / schema.METRICS_CSV, self.columns),
            schema.MARGINS_CSV: CSVAppender(path / schema.MARGINS_CSV, schema.MARGINS),
        }
        if self.nc_epochs:
            self.files[schema.NC_CSV] = _appender(path / schema.NC_CSV, tracker.nc_columns())
            self.files[schema.NC_LAYERS_CSV] = CSVAppender(path / schema.NC_LAYERS_CSV, schema.NC_LAYERS)
            self.files[schema.SPECTRA_CSV] = CSVAppender(path / schema.SPECTRA_CSV, schema.SPECTRA)
            self.files[schema.CLASS_GRAM_CSV] = CSVAppender(path / schema.CLASS_GRAM_CSV, schema.CLASS_GRAM)
        self.last_row: dict | None = None
        self.divergence: str | None = None
        self._t0 = time.perf_counter()
        self.notify = notify or (lambda line: print(f"warning: {line}", file=sys.stderr, flush=True))
        # status.json's warnings so far (the config's, an earlier session's) and their messages.
        self.warnings = list((rundir.read_status() or {}).get("warnings") or [])
        self._seen = {w.rsplit(" (from epoch ", 1)[0] for w in self.warnings}

    def _measure(self, epoch: int) -> dict:
        """The tracker's rows of `epoch`; a warning the measurement raises (NaN notices of the
        engine) becomes one line, once per distinct message, and an entry of status.json."""
        with runtime_notices() as notes:
            rows = self.tracker.record(epoch, nc=epoch in self.nc_epochs, margins=epoch in self.margin_epochs)
        for message in notes:
            if message in self._seen:
                continue
            self._seen.add(message)
            self.warnings.append(f"{message} (from epoch {epoch})")
            self.notify(f"{self.rundir.path.name}: epoch {epoch}: {message}")
        return rows

    def elapsed(self) -> float:
        return self.elapsed_offset + time.perf_counter() - self._t0

    def record(self, epoch: int, grad_norm_sq: float, fsc_term: float = float("nan")) -> dict:
        rows = self._measure(epoch)
        row = rows[schema.METRICS_CSV][0]
        row.update(epoch=epoch, lr=self.lr_at_epoch(epoch), grad_norm_sq=grad_norm_sq, fsc_term=fsc_term, elapsed_s=self.elapsed())
        for name, file_rows in rows.items():
            if file_rows and isinstance(file_rows[0], tuple):
                self.files[name].write_array(file_rows)  # long numeric blocks (margins.csv)
            else:
                self.files[name].write_many(file_rows)
        self.last_row = row
        bad = diverged(row)
        if bad is not None:
            self.divergence = f"{bad} is {row.get(bad)} at epoch {epoch}"
            self.model.stop_training = True
            self.rundir.write_status("diverged", epoch, reason=self.divergence, warnings=self.warnings)
        elif self.durable(epoch):
            self.save(epoch, row["elapsed_s"])
        return row

    def save(self, epoch: int, wall_time_s: float, state: str = "running", **status) -> None:
        """The checkpoint of `epoch` (the run's state must be that epoch's) and the status
        that goes with it (its wall time is what a resumed run's `elapsed_s` continues from)."""
        if self.checkpoint is not None:
            self.checkpoint(epoch)
            self.checkpointed = epoch
        self.rundir.write_status(state, epoch, wall_time_s=wall_time_s, **{"warnings": self.warnings, **status})

    def on_train_begin(self, logs=None):
        if self.first_epoch == 1 and self.last_row is None:
            grad = self.initial_grad_norm_sq() if self.initial_grad_norm_sq else float("nan")
            self.record(0, grad)
        elif self.tracker.update_norms.previous is None:
            # Resumed: W_{e-1} of the first update norm is the checkpoint's, read before any step.
            self.tracker.update_norms.prime(self.tracker.kernels())

    def on_epoch_end(self, epoch, logs=None):
        raise_if_stopped()  # a signal's interrupt that was swallowed where it was raised
        if self.divergence:  # epoch 0 already diverged
            return
        # fit() runs with initial_epoch = first_epoch - 1, so `epoch` is the absolute 0-based index.
        logs = logs if logs is not None else {}
        row = self.record(epoch + 1, float(logs.get("grad_norm_sq", float("nan"))), float(logs.get("fsc_term", float("nan"))))
        logs.update(row)

    def close(self):
        for f in self.files.values():
            f.close()


STEPS_CSV_COLUMNS, STEP_MARGINS_CSV_COLUMNS = schema.STEPS, schema.MARGINS_STEPS


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
        self.steps_csv = CSVAppender(rundir.path / schema.STEPS_CSV, STEPS_CSV_COLUMNS)
        self.margins_csv = CSVAppender(rundir.path / schema.MARGINS_STEPS_CSV, STEP_MARGINS_CSV_COLUMNS)

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
        self._step = int(np.asarray(self.model.optimizer.iterations))
        if self._step == 0:
            self.record(0)

    def on_train_batch_end(self, batch, logs=None):
        # Count steps here rather than reading the optimizer: on JAX, touching `self.model`
        # writes the whole training state back into the variables, which every step of a long
        # run would pay for. Per-step tracking runs with one step per execution (config check).
        self._step += 1
        if self._step <= self.until and self._step % self.every == 0:
            _ = self.model  # on JAX: sync the state into the variables the tracker reads
            self.record(self._step)

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

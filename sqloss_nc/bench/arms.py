"""The bench's arms: what each one trains per epoch, and how it is built inside its own process.

An arm is named `<framework>/<kind>` (`ArmSpec.key`): `tensorflow/b`, `jax/c`, `torch/b`,
`jax/stack4`, `jax/stack4+map`. Each runs in a fresh worker process of its own (`worker.py`) that imports only the
arm's framework; `build_arm` is what that process calls. Kinds:

- `a`: plain `model.fit` of the same network with Keras' `MeanSquaredError` and Keras'
  `SGD(momentum=0.9)` on in-memory numpy arrays (no weight decay: Keras' own is decoupled), no
  tracking. What a Keras user would write first.
- `b`: the project's `SquareLossTrainer`, built by `experiment.build_training` exactly as a run
  builds it, fitted over `backend.epoch_dataset` of the epoch, no tracking. `b+<variant>`: with
  other `compute` settings (`options.parse_variant`).
- `c`: (b) with the default tracking exactly as `train_and_evaluate` wires it (`Tracker` +
  `RunLogger` into a temporary run directory: a metrics row with ρ, norms and margin statistics,
  status and a checkpoint every epoch), plus the NC and per-sample-margin epochs of the default
  log schedule amortized (`TrackedArm`).
- `torch/b`, `torch/c`: the PyTorch reference (`torch_reference`) of the same experiment, without
  and with the equivalent per-epoch tracking (inference passes over the training and test sets,
  norms, ρ, margin statistics; no files, no NC).
- `stack<K>`: K runs of the sweep (seeds seed..seed+K−1) trained as one stacked step by
  `sqloss_nc.stacking`, no tracking; its epoch trains K run-epochs (`ArmSpec.runs`); the stack
  chooses its mode (`compute.stack_mode: auto`; which one is in the arm's extras).
  `stack<K>+<mode>`: in that mode (`vmap`, `map`, `unroll`).

Adding a kind: a builder `(spec, ds, cfg, opts) -> Arm` that `build_arm` dispatches to, a label in `LABELS`, and
`arm_specs` naming it; the worker, the rounds and the report need nothing more.

Example:

```python
from sqloss_nc.bench.arms import arm_specs
from sqloss_nc.bench.options import BenchOptions
[s.key for s in arm_specs(BenchOptions(backends=("jax",), torch=True, stack=(2,)).resolved())]
# ['jax/a', 'jax/b', 'jax/c', 'torch/b', 'torch/c', 'jax/stack2']
```
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .options import BenchError, BenchOptions, parse_variant
from .timing import now, timed

LABELS = {
    "a": "(a) Keras model.fit (MSE, SGD)",
    "b": "(b) project train_step",
    "c": "(c) project + tracking",
    "torch/b": "PyTorch reference",
    "torch/c": "PyTorch + tracking",
    "stack": "(b) stacked runs",
}


@dataclass(frozen=True)
class ArmSpec:
    """One arm: which framework, which kind, with which settings.

    Args:
        framework: "tensorflow" or "jax" (the Keras backend), or "torch".
        kind: "a", "b", "c", "b+<variant>", "stack<K>" or "stack<K>+<mode>".

    Example: `ArmSpec("jax", "stack4+map").runs` == 4.
    """

    framework: str
    kind: str

    @property
    def key(self) -> str:
        return f"{self.framework}/{self.kind}"

    @property
    def runs(self) -> int:
        """Run-epochs one epoch of this arm trains (K for a stacked arm, else 1)."""
        return int(self.kind[5:].split("+")[0]) if self.kind.startswith("stack") else 1

    @property
    def stack_mode(self) -> str | None:
        """A stacked arm's `compute.stack_mode` (`auto` for `stack<K>`), else None."""
        if not self.kind.startswith("stack"):
            return None
        return self.kind.split("+", 1)[1] if "+" in self.kind else "auto"

    @property
    def variant(self) -> dict | None:
        return parse_variant(self.kind[2:]) if self.kind.startswith("b+") else None

    @property
    def label(self) -> str:
        if self.framework == "torch":
            return LABELS[self.key]
        if self.kind.startswith("stack"):
            return f"{LABELS['stack']}, K = {self.runs}" + ("" if self.stack_mode == "auto" else f", {self.stack_mode}")
        if self.variant is not None:
            return f"(b+{self.kind[2:]}) project, {self.kind[2:]}"
        return LABELS[self.kind]

    def to_dict(self) -> dict:
        return asdict(self)


def arm_specs(opts: BenchOptions) -> list[ArmSpec]:
    """The arms a (resolved) `BenchOptions` asks for, in their first round's order.

    Args:
        opts: `BenchOptions.resolved()` (backends and torch decided).
    """
    specs = []
    for i, backend in enumerate(opts.backends):
        specs += [ArmSpec(backend, k) for k in ("a", "b", "c")]
        if i == 0:
            specs += [ArmSpec(backend, f"b+{v}") for v in opts.variants]
    if opts.torch:
        specs += [ArmSpec("torch", "b"), ArmSpec("torch", "c")]
    specs += [ArmSpec(opts.stack_backend, f"stack{k}" + ("" if m == "auto" else f"+{m}")) for k in opts.stack for m in opts.stack_modes]
    return specs


# ----------------------------------------------------------------------------- data


def bench_config(batch_size: int = 128):
    """The paper's setting (the project's default config): BN convnet, λ = 0.01, SGD 0.01/0.9."""
    from ..config import load_config

    return load_config(None, [f"optim.batch_size={batch_size}"])


def bench_dataset(n: int, n_test: int, data_dir: str | None = None, seed: int = 0):
    """The benchmark's data: CIFAR-10 classes 1, 2 from `data_dir`, else synthetic images.

    Synthetic images are i.i.d. Gaussian rescaled to unit norm (the paper's input scaling),
    labels alternate 0, 1 (balanced); the time of an epoch does not depend on the values.

    Args:
        n: training images (n // 2 per class from a folder).
        n_test: test images.
        data_dir: image folder or zip (`data.source=folder`), or None.
        seed: seed of the synthetic draw.

    Returns:
        a `sqloss_nc.data.Dataset`.

    Example: `bench_dataset(256, 64).x_train.shape` == (256, 32, 32, 3).
    """
    from ..config import load_config
    from ..data import Dataset, load_dataset

    if data_dir is not None:
        cfg = load_config(
            None,
            [
                "data.source=folder",
                f"data.path={data_dir}",
                "data.classes=[1,2]",
                f"data.train_per_class={n // 2}",
                f"data.test_per_class={max(n_test // 2, 1)}",
            ],
        )
        return load_dataset(cfg, data_dir)
    rng = np.random.default_rng([seed, 0xBE7C])

    def images(m):
        x = rng.standard_normal((m, 32, 32, 3), dtype=np.float32)
        x /= np.linalg.norm(x.reshape(m, -1), axis=1).reshape(-1, 1, 1, 1)
        return x

    y_tr, y_te = (np.arange(n) % 2).astype(np.int32), (np.arange(n_test) % 2).astype(np.int32)
    return Dataset(images(n), y_tr, images(n_test), y_te, ["class1", "class2"], y_train_clean=y_tr)


def save_dataset(ds, path) -> Path:
    """Write a `Dataset`'s arrays to one uncompressed .npz (made once by the parent, read by every
    arm's process, so all arms train on the same bytes and nobody decodes JPEGs twice)."""
    path = Path(path)
    np.savez(path, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test, class_names=np.asarray(ds.class_names))
    return path


def read_dataset(path):
    """The `Dataset` written by `save_dataset`."""
    from ..data import Dataset

    with np.load(path) as z:
        # Fresh copies: np.load hands out arrays read out of the zip member at a 16-byte offset,
        # and PyTorch's epoch on them took 1.94 s against 0.92 s on a copy of the same values
        # (measured, `worker.py alone torch/b --data`); TensorFlow and JAX copy their inputs anyway.
        x_train, y, x_test, y_test = (np.array(z[k], copy=True) for k in ("x_train", "y_train", "x_test", "y_test"))
        return Dataset(x_train, y, x_test, y_test, [str(c) for c in z["class_names"]], y_train_clean=y)


# ----------------------------------------------------------------------------- the arms, in their process


class Arm:
    """An arm inside its process: train one more epoch, timed; finish; close.

    Args:
        epoch: callable(e) training the arm's (0-based) epoch e, returning (wall s, CPU s).
        finish: callable(reps) -> dict run once after the rounds (e.g. the tracking breakdown).
        close: callable run at the very end (temporary files), or None.

    Example: `wall, cpu = build_arm(spec, ds, cfg, opts).epoch(0)`.
    """

    def __init__(self, epoch: Callable[[int], tuple[float, float]], finish: Callable[[int], dict] | None = None, close=None):
        self.epoch, self._finish, self._close = epoch, finish, close

    def finish(self, reps: int) -> dict:
        return self._finish(reps) if self._finish is not None else {}

    def close(self) -> None:
        if self._close is not None:
            self._close()


def project_training(cfg, ds, seed: int, compute: dict | None = None):
    """(network, trainer, optimizer) built exactly as `experiment._train` builds a run, so (b)
    and (c) time what a run executes; `compute` overrides the config's compute settings."""
    from ..experiment import build_training

    update = {"seed": seed}
    if compute:
        update["compute"] = cfg.compute.model_copy(update=compute)
    return build_training(cfg.model_copy(update=update), ds)


def _epoch_clock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Wall and CPU time from the epoch's start to its end, so whatever fit does inside the
        epoch (iterator hand-over, callbacks) is counted and its set-up before it is not."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = now()

        def on_epoch_end(self, epoch, logs=None):
            self.end = now()

    return EpochClock()


def _one_fit_epoch(model, e: int, data, callbacks=(), **fit_kwargs) -> tuple[float, float]:
    """`model.fit` of epoch e alone (initial_epoch=e); the epoch's seconds from the clock."""
    clock = _epoch_clock()
    model.fit(*data, epochs=e + 1, initial_epoch=e, verbose=0, callbacks=[*callbacks, clock], **fit_kwargs)
    return clock.end[0] - clock.start[0], clock.end[1] - clock.start[1]


def keras_fit_arm(spec: ArmSpec, ds, cfg, opts: BenchOptions) -> Arm:
    """Arm (a): plain `model.fit` with Keras' MSE and SGD on in-memory numpy arrays, shuffled by
    Keras, no weight decay and no tracking."""
    import keras

    from .. import backend
    from ..models import build_network

    backend.seed_everything(opts.seed)
    network = build_network(cfg.model, ds.x_train.shape[1:], ds.num_classes, seed=opts.seed)
    network.compile(
        optimizer=keras.optimizers.SGD(learning_rate=cfg.optim.lr, momentum=cfg.optim.momentum), loss=keras.losses.MeanSquaredError()
    )
    targets = np.eye(ds.num_classes, dtype=np.float32)[ds.y_train]
    return Arm(lambda e: _one_fit_epoch(network, e, (ds.x_train, targets), batch_size=cfg.optim.batch_size, shuffle=True))


def project_epochs(trainer, ds, cfg, seed: int, callbacks=()) -> Callable[[int], tuple[float, float]]:
    """Epoch e of the project's trainer on the run's own data feeding (`backend.epoch_dataset`
    of 1-based epoch e + 1)."""
    from .. import backend
    from ..batches import steps_per_epoch

    bs, spe = cfg.optim.batch_size, steps_per_epoch(len(ds.y_train), cfg.optim.batch_size)

    def epoch(e):
        data = (backend.epoch_dataset(ds.x_train, ds.y_train, bs, seed, e + 1, e + 1),)
        return _one_fit_epoch(trainer, e, data, callbacks=callbacks, steps_per_epoch=spe, shuffle=False)

    return epoch


def project_arm(spec: ArmSpec, ds, cfg, opts: BenchOptions) -> Arm:
    """Arm (b) and its `compute` variants."""
    _, trainer, _ = project_training(cfg, ds, opts.seed, spec.variant)
    return Arm(project_epochs(trainer, ds, cfg, opts.seed))


class TrackedArm(Arm):
    """Arm (c): (b) with the default tracking exactly as `train_and_evaluate` wires it, plus the
    neural-collapse and per-sample-margin epochs of the default `log` schedule amortized:
    (record with NC and margins − plain record) × |log schedule of `nc_horizon` epochs| / `nc_horizon`.

    The amortized share is measured by `finish()` after the rounds (at the trained weights) and
    added to each timed epoch by the parent.

    Args:
        spec, ds, cfg, opts: the arm, data, config and options (seed, nc_horizon).
    """

    def __init__(self, spec: ArmSpec, ds, cfg, opts: BenchOptions):
        from ..callbacks import RunLogger
        from ..experiment import build_tracker, save_checkpoint
        from ..rundir import RunDir

        self.ds, self.cfg, self.nc_horizon = ds, cfg, opts.nc_horizon
        network, self.trainer, optimizer = project_training(cfg, ds, opts.seed)
        self._tmp = tempfile.TemporaryDirectory(prefix="sqnc-bench-")
        self.tracker = build_tracker(cfg, ds, network, self.trainer)

        def logger(name, special_epochs):
            rundir = RunDir(Path(self._tmp.name) / name)
            rundir.create()
            return RunLogger(
                rundir,
                self.tracker,
                lambda e: cfg.optim.lr,
                margin_epochs=special_epochs,
                nc_epochs=special_epochs,
                checkpoint=lambda e: save_checkpoint(rundir, network, optimizer, e),
            )

        # Epochs far past the bench's own are both NC and margins epochs in the second logger.
        # (The first logger's epoch-0 record runs in `on_train_begin` of the first fit, before
        # any epoch clock starts, as in a run.)
        self.special_epoch = 10**6
        self.logger, self.nc_logger = logger("tracked", ()), logger("nc", [self.special_epoch])
        super().__init__(project_epochs(self.trainer, ds, cfg, opts.seed, callbacks=[self.logger]), self.breakdown, self._cleanup)

    def breakdown(self, reps: int) -> dict:
        """Each tracking piece timed alone at the current weights: {"wall", "cpu", "summary"}."""
        from ..config import epoch_schedule

        cfg, t = self.cfg, self.tracker
        self.nc_logger.set_model(self.trainer)
        pieces = {
            "predict_train_s": lambda: t.predict(self.ds.x_train),
            "predict_test_s": lambda: t.predict(self.ds.x_test),
            "measure_s": lambda: t.measure(nc=False),
            "record_s": lambda: self.logger.record(1, float("nan")),
            "measure_nc_s": lambda: t.measure(nc=True),
            "record_nc_s": lambda: self.nc_logger.record(self.special_epoch, float("nan")),
        }
        costs = {name: timed(fn, reps) for name, fn in pieces.items()}
        med = {k: v["wall"]["median"] for k, v in costs.items()}
        med_cpu = {k: v["cpu"]["median"] for k, v in costs.items()}
        schedule = epoch_schedule(cfg.track.nc_epochs, self.nc_horizon, cfg.track.log_points)
        margin_schedule = epoch_schedule(cfg.track.margin_epochs, self.nc_horizon, cfg.track.log_points)
        special = len(set(schedule) | set(margin_schedule))
        nc_extra = max(med["record_nc_s"] - med["record_s"], 0.0)
        nc_extra_cpu = max(med_cpu["record_nc_s"] - med_cpu["record_s"], 0.0)
        summary = {
            "nc_epochs_in_schedule": len(schedule),
            "special_epochs_in_schedule": special,
            "nc_horizon": self.nc_horizon,
            "nc_extra_per_measurement_s": nc_extra,
            "nc_amortized_per_epoch_s": nc_extra * special / self.nc_horizon,
            "nc_amortized_per_epoch_cpu_s": nc_extra_cpu * special / self.nc_horizon,
            "stats_s": max(med["measure_s"] - med["predict_train_s"] - med["predict_test_s"], 0.0),
            "files_s": max(med["record_s"] - med["measure_s"], 0.0),
        }
        return {
            "tracking": {
                "breakdown": {k: v["wall"] for k, v in costs.items()},
                "breakdown_cpu": {k: v["cpu"] for k, v in costs.items()},
                **summary,
            }
        }

    def _cleanup(self) -> None:
        self.logger.close()
        self.nc_logger.close()
        self._tmp.cleanup()


def torch_arm(spec: ArmSpec, ds, cfg, opts: BenchOptions) -> Arm:
    """`torch/b`, `torch/c`: the PyTorch reference of the same experiment on the CPU (same net,
    loss, coupled weight decay, batch order drawn per epoch), with torch's default threads unless
    `opts.threads`. Its weights are drawn by `frobenius_init_` at the config's scale: an epoch's
    time does not depend on the values, and this process never imports Keras."""
    import torch

    from . import torch_reference as tr

    if opts.threads:
        torch.set_num_threads(opts.threads)
    h, w, c = ds.x_train.shape[1:]
    net = tr.TorchConvNet(cfg.model.widths, c, ds.num_classes, (h, w), batchnorm=cfg.model.normalization == "batchnorm")
    tr.frobenius_init_(net, cfg.model.init_scale, opts.seed)
    opt = tr.make_optimizer(net, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay)
    x, y = tr.to_torch_data(ds.x_train, ds.y_train)
    xt, yt = tr.to_torch_data(ds.x_test, ds.y_test)
    gen = torch.Generator().manual_seed(opts.seed)
    tracked = spec.kind == "c"

    def epoch(e):
        t0 = now()
        tr.train_epoch(net, opt, x, y, cfg.optim.batch_size, gen)
        if tracked:
            tr.track(net, x, y, xt, yt, cfg.optim.weight_decay)
        t1 = now()
        return t1[0] - t0[0], t1[1] - t0[1]

    return Arm(epoch)


def stacked_arm(spec: ArmSpec, ds, cfg, opts: BenchOptions) -> Arm:
    """`stack<K>[+<mode>]`: K runs (seeds seed..seed+K−1) trained as one stacked step, no tracking.

    The hook for `sqloss_nc.stacking`: it provides `bench_epochs(cfg, ds, k, seed, mode)` returning
    a callable(e) that trains 0-based epoch e of the K stacked runs and returns once the device is
    done (no files, no tracking), whose `mode` and `note` say the mode used (the arm's extras
    `stack_mode`, `stack_mode_note`). Until it does, asking for `--stack` is a one-line error.
    """
    try:
        from .. import stacking
    except ImportError as err:
        raise BenchError(f"--stack: sqloss_nc.stacking cannot be imported ({err})") from None
    if not hasattr(stacking, "bench_epochs"):
        raise BenchError("--stack: sqloss_nc.stacking has no bench_epochs(cfg, ds, k, seed) yet (the hook the bench's stacked arm calls)")
    train = stacking.bench_epochs(cfg, ds, spec.runs, opts.seed, spec.stack_mode)

    def epoch(e):
        t0 = now()
        train(e)
        t1 = now()
        return t1[0] - t0[0], t1[1] - t0[1]

    return Arm(epoch, finish=lambda reps: {"stack_mode": getattr(train, "mode", None), "stack_mode_note": getattr(train, "note", None)})


def build_arm(spec: ArmSpec, ds, cfg, opts: BenchOptions) -> Arm:
    """The arm `spec` in this process (which must run `spec.framework`).

    Example: `build_arm(ArmSpec("jax", "b"), ds, bench_config(), BenchOptions()).epoch(0)`.
    """
    if spec.framework == "torch" and spec.kind in ("b", "c"):
        return torch_arm(spec, ds, cfg, opts)
    if spec.framework == "torch":
        raise BenchError(f"unknown arm {spec.key!r} (PyTorch arms: torch/b, torch/c)")
    if spec.kind.startswith("stack"):
        return stacked_arm(spec, ds, cfg, opts)
    if spec.kind == "a":
        return keras_fit_arm(spec, ds, cfg, opts)
    if spec.kind == "c":
        return TrackedArm(spec, ds, cfg, opts)
    if spec.kind == "b" or spec.variant is not None:
        return project_arm(spec, ds, cfg, opts)
    raise BenchError(f"unknown arm {spec.key!r}")

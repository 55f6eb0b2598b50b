"""`sqnc bench`: how fast one training epoch of the paper's experiment runs, and where time goes.

One process, one call, several arms timed on the same data (N images of 32x32x3, the paper's
convnet with BatchNorm, square loss, coupled weight decay 0.01, SGD lr 0.01 momentum 0.9, batch
128). The arms run in rounds, one epoch of each per round in rotating order (`run_rounds`):
`epochs_warmup` untimed rounds absorb tracing and compilation, then `reps` timed rounds. Ratios
between arms are the median over rounds of each round's ratio, so a drift of a shared machine
(which moved single arms by 40% in back-to-back runs here) cancels instead of deciding them.

- `a`: plain `model.fit` of the same network with Keras' `MeanSquaredError` and Keras'
  `SGD(momentum=0.9)` on in-memory numpy arrays (no weight decay: Keras' own is decoupled), no
  tracking. What a Keras user would write first.
- `b`: the project's `SquareLossTrainer.train_step` fitted over `epoch_batches`, no tracking.
- `c`: (b) with the project's default tracking, exactly as `train_and_evaluate` wires it:
  `Tracker` + `RunLogger` into a temporary run directory (metrics row with ρ, norms and margin
  statistics every epoch, status and checkpoint every epoch), timed inside `fit`; plus the
  neural-collapse and per-sample-margin measurements of the default log schedule amortized:
  (record with NC and margins − plain record) × |log schedule of a 1,000-epoch run| / 1,000.
- `torch`, `torch_tracked` (`--torch`): the PyTorch reference (`torch_reference`) of the same
  experiment, on the CPU, from the same initial weights, with as many threads as TensorFlow
  uses; the second adds the equivalent per-epoch tracking (inference passes over the training
  and test sets, norms, ρ, margin statistics; no files, no NC).
- `b+<variant>` (`--variants xla,epoch,xla+epoch`): (b) with other `compute` settings (XLA,
  several steps or a whole epoch per call of the compiled function), to show what they buy.

FLOPs are counted analytically (`count_flops`) and each epoch is turned into an effective
GFLOP/s rate (training FLOPs only, for every arm: tracking work counts as overhead), compared
with the float32 matmul rate measured in the same process (a 2048x2048 `tf.matmul`, before and
after the arms). Medians and min/max/IQR are reported. Two floors put the tracking target in
context: SPEC §5 asks for a full inference pass over the training and test sets every epoch,
which costs inference FLOPs × (N + N_test) against training FLOPs × N (0.41 of an epoch for the
paper's net, so c/b ≥ 1.41 at equal efficiency), and at the measured speed of those passes.

`--profile` breaks a (b) epoch into data, forward, backward and update, and times every kernel of
a training step alone at its own shapes (`profile_kernels`), with GFLOP/s per conv kernel.

`--scaling` adds how the (b) epoch time grows with N and how one NC measurement's time and peak
memory (tracemalloc) grow with N and with the feature width p.

Example:

```python
from sqloss_nc.bench import BenchOptions, run_bench, results_tables
result = run_bench(BenchOptions(n=2000, reps=2))
result["ratios"]["c_over_b"], result["arms"]["b"]["epoch_s"]["median"]
```
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

DEFAULT_SIZES = (1000, 2000, 5000, 10000, 20000, 50000)
DEFAULT_NC_DIMS = (256, 1024, 2048, 4096)

ARM_LABELS = {
    "a": "(a) Keras model.fit (MSE, SGD)",
    "b": "(b) project train_step",
    "c": "(c) project + tracking",
    "torch": "PyTorch reference",
    "torch_tracked": "PyTorch + tracking",
}

FLOP_CONVENTION = (
    "forward conv: 2*H_out*W_out*k^2*C_in*C_out per image, dense: 2*p*C; backward = 2x forward "
    "(gradients w.r.t. weights and inputs) except the first layer, whose input gradient is not "
    "computed (backward = 1x forward); BatchNorm, ReLU, loss and optimizer update not counted"
)


class BenchError(UserError):
    """A bad `sqnc bench` request (sizes, missing torch, data): one line, exit code 2."""


@dataclass
class BenchOptions:
    """What `run_bench` measures.

    Args:
        n: training images per epoch.
        n_test: test images (the tracking arms measure the test set too; the paper's binary task
            has 2,000).
        reps: timed epochs per arm (after the warm-up).
        epochs_warmup: untimed epochs first (tracing, compilation, allocator warm-up).
        batch_size: minibatch size.
        data_dir: CIFAR-10 image folder or zip (classes 1, 2 = automobile, bird); synthetic
            unit-norm random images when None.
        torch: also time the PyTorch reference (needs torch installed).
        scaling: also measure how epoch time and NC cost grow with N and p.
        sizes: the N values of the scaling study.
        nc_dims: the feature widths p of the scaling study.
        variants: extra (b) rows with other `compute` settings: "xla", "spe<N>" (N steps per
            execution, a divisor of the epoch's steps), "epoch" (one call per epoch), joined by "+".
        profile: break one (b) epoch into data pipeline, forward, backward and update.
        threads: intra-op threads for TensorFlow and torch (None: all cores this process has).
        matmul_size: side of the square matmul that sets the reference rate.
        seed: seed of the data, the weights and the data order.
        nc_horizon: the run length whose default log schedule is amortized into (c).

    Example:

    ```python
    opts = BenchOptions(n=2000, reps=2, torch=True, variants=("xla",))
    ```
    """

    n: int = 10_000
    n_test: int = 2_000
    reps: int = 3
    epochs_warmup: int = 1
    batch_size: int = 128
    data_dir: str | None = None
    torch: bool = False
    scaling: bool = False
    sizes: tuple[int, ...] = DEFAULT_SIZES
    nc_dims: tuple[int, ...] = DEFAULT_NC_DIMS
    variants: tuple[str, ...] = ()
    profile: bool = False
    threads: int | None = None
    matmul_size: int = 2048
    seed: int = 0
    nc_horizon: int = 1000

    def check(self) -> None:
        """Raise `BenchError` (one line) on values that cannot be benchmarked."""
        if self.n < 2 or self.n_test < 2:
            raise BenchError(f"--n/--n-test: need at least 2 images, got {self.n}/{self.n_test}")
        if self.batch_size < 1 or self.batch_size > self.n:
            raise BenchError(f"--batch-size: {self.batch_size} must be in 1..{self.n} (the training images)")
        if self.reps < 1:
            raise BenchError(f"--reps: need at least 1 timed epoch, got {self.reps}")
        if self.epochs_warmup < 0:
            raise BenchError(f"--epochs-warmup: must be >= 0, got {self.epochs_warmup}")
        if self.scaling and (not self.sizes or min(self.sizes) < self.batch_size):
            raise BenchError(f"--sizes: every size must be >= the batch size {self.batch_size}, got {list(self.sizes)}")
        if self.scaling and (not self.nc_dims or min(self.nc_dims) < 1):
            raise BenchError(f"--nc-dims: need positive feature widths, got {list(self.nc_dims)}")
        if self.data_dir is not None and self.n > 10_000:
            raise BenchError(f"--n: CIFAR-10 has 10,000 training images of classes 1 and 2, asked for {self.n}")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"--threads: must be >= 1, got {self.threads}")
        if self.matmul_size < 16:
            raise BenchError(f"--matmul-size: must be >= 16, got {self.matmul_size}")
        steps = -(-self.n // self.batch_size)
        for v in self.variants:
            spe = parse_variant(v)["steps_per_execution"]
            if isinstance(spe, int) and steps % spe:
                raise BenchError(
                    f"--variants: {v!r}: {spe} steps per execution do not divide the {steps} steps of an epoch (use a divisor or 'epoch')"
                )
        if self.torch:
            try:
                import torch  # noqa: F401
            except ImportError:
                raise BenchError('--torch: PyTorch is not installed (pip install -e ".[bench]", or pip install torch)') from None


def parse_variant(text: str) -> dict:
    """A (b) variant name -> the `compute` settings it times (see `config.ComputeConfig`).

    `xla` compiles with XLA, `spe<N>` runs N steps per call of the compiled function, `epoch` a
    whole epoch per call; join with "+".

    Args:
        text: the variant name.

    Example: `parse_variant("xla+epoch")` == {"jit_compile": True, "steps_per_execution": "epoch"}.
    """
    out: dict = {"jit_compile": False, "steps_per_execution": 1}
    for part in text.split("+"):
        part = part.strip().lower()
        if part == "xla":
            out["jit_compile"] = True
        elif part == "epoch":
            out["steps_per_execution"] = "epoch"
        elif part.startswith("spe") and part[3:].isdigit() and int(part[3:]) >= 1:
            out["steps_per_execution"] = int(part[3:])
        else:
            raise BenchError(f"--variants: unknown variant {text!r} (use xla, spe<N>, epoch, or joined by +)")
    return out


# ----------------------------------------------------------------------------- FLOPs


def count_flops(widths=(32, 64, 128), input_shape=(32, 32, 3), num_classes: int = 2, kernel: int = 3, stride: int = 2) -> dict:
    """Analytic FLOPs of the convnet per image (a multiply-add counts 2), see `FLOP_CONVENTION`.

    Args:
        widths: hidden conv widths.
        input_shape: (H, W, C_in) of one image.
        num_classes: C (classifier outputs).
        kernel, stride: conv geometry ('same' padding, so H_out = ceil(H / stride)).

    Returns:
        {"layers": [{"name", "forward", "backward"}...], "forward", "backward", "train",
        "inference", "convention"}; `train` = forward + backward per image.

    Example:

    ```python
    count_flops()["train"]  # 15,065,088 for the paper's convnet on 32x32x3, C = 2
    ```
    """
    h, w, c_in = input_shape
    layers = []
    for k, width in enumerate(widths, start=1):
        h, w = -(-h // stride), -(-w // stride)
        fwd = 2 * h * w * kernel * kernel * c_in * width
        layers.append({"name": f"conv{k}", "forward": fwd})
        c_in = width
    p = h * w * c_in
    layers.append({"name": "classifier", "forward": 2 * p * num_classes})
    for i, layer in enumerate(layers):
        # The first layer's input is the data: only its weight gradient is needed.
        layer["backward"] = layer["forward"] * (1 if i == 0 else 2)
    fwd = sum(layer["forward"] for layer in layers)
    bwd = sum(layer["backward"] for layer in layers)
    return {
        "layers": layers,
        "forward": fwd,
        "backward": bwd,
        "train": fwd + bwd,
        "inference": fwd,
        "features": p,
        "convention": FLOP_CONVENTION,
    }


# ----------------------------------------------------------------------------- statistics


def spread(values) -> dict:
    """Median, min, max, quartiles and the raw values of a list of timings (seconds).

    Example: `spread([1.0, 2.0, 4.0])["median"]` == 2.0.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        nan = float("nan")
        return {"median": nan, "min": nan, "max": nan, "q1": nan, "q3": nan, "n": 0, "values": []}
    return {
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "q1": float(np.percentile(v, 25)),
        "q3": float(np.percentile(v, 75)),
        "n": int(v.size),
        "values": [float(x) for x in v],
    }


def matmul_gflops(size: int = 2048, reps: int = 5) -> dict:
    """The machine's float32 matmul rate in TensorFlow (GFLOP/s of `tf.matmul`, size x size).

    Two untimed products warm up the thread pool and caches; each timed product is forced to
    finish by reading one element back.

    Args:
        size: matrix side.
        reps: timed products.

    Returns:
        `spread` of the rates (GFLOP/s) plus "size".
    """
    import tensorflow as tf

    a = tf.random.stateless_normal((size, size), seed=(1, 2))
    b = tf.random.stateless_normal((size, size), seed=(3, 4))
    mm = tf.function(lambda a, b: tf.matmul(a, b)[0, 0], autograph=False)
    for _ in range(2):
        mm(a, b).numpy()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        rates.append(2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
    out = spread(rates)
    out["size"] = size
    return out


# ----------------------------------------------------------------------------- data and models


def bench_config(batch_size: int = 128):
    """The paper's setting (the project's default config): BN convnet, λ = 0.01, SGD 0.01/0.9."""
    from .config import load_config

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
    """
    from .config import load_config
    from .data import Dataset, load_dataset

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


def _project_trainer(cfg, ds, seed: int, compute: dict | None = None):
    # Built exactly as `experiment._train` builds a run, so (b) and (c) time what a run executes;
    # `compute` overrides the config's compute settings (the variants).
    from .experiment import build_training

    update = {"seed": seed}
    if compute:
        update["compute"] = cfg.compute.model_copy(update=compute)
    return build_training(cfg.model_copy(update=update), ds)


def _now() -> tuple[float, float]:
    # Wall time is what a run costs; the process's CPU time (all threads) is far less sensitive
    # to other work on the same cores, so both are kept.
    return time.perf_counter(), time.process_time()


def _timed(fn, reps: int) -> dict:
    """Call `fn` once untimed (tracing), then `reps` times: {"wall": spread, "cpu": spread}."""
    fn()
    wall, cpu = [], []
    for _ in range(max(reps, 1)):
        t0 = _now()
        fn()
        t1 = _now()
        wall.append(t1[0] - t0[0])
        cpu.append(t1[1] - t0[1])
    return {"wall": spread(wall), "cpu": spread(cpu)}


def _epoch_clock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Wall time between successive epoch ends (the first from the first epoch's start), so
        whatever fit does between epochs (iterator hand-over, callbacks) is counted."""

        def __init__(self):
            super().__init__()
            self.marks: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            if not self.marks:
                self.marks.append(_now())

        def on_epoch_end(self, epoch, logs=None):
            self.marks.append(_now())

        def times(self, skip: int = 0) -> dict:
            """{"wall": [...], "cpu": [...]} seconds of each epoch after the first `skip`."""
            m = np.asarray(self.marks).reshape(-1, 2)
            d = np.diff(m, axis=0)[skip:]
            return {"wall": d[:, 0].tolist(), "cpu": d[:, 1].tolist()}

    return EpochClock()


# ----------------------------------------------------------------------------- the arms
#
# Each arm is an `EpochArm`: a callable that trains one more epoch of its own model and returns
# that epoch's (wall, CPU) seconds. `run_rounds` calls the arms in rounds, one epoch of each per
# round, rotating their order, so that a slow drift of the shared machine hits every arm alike and
# the per-round ratios (c/b, a/b, ...) compare epochs run seconds apart, not minutes apart.


class EpochArm:
    """One way of training an epoch, timed epoch by epoch.

    Args:
        key: the arm's name in the result ("a", "b", "c", "torch", "b+xla", ...).
        epoch: callable(e) training the arm's (0-based) epoch e and returning (wall s, CPU s).
        close: callable run once after the last round (files, loggers), or None.

    Example:

    ```python
    arm = EpochArm("b", project_arm(ds, cfg))
    wall, cpu = arm(0)
    ```
    """

    def __init__(self, key: str, epoch, close=None):
        self.key, self.epoch, self._close = key, epoch, close
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, e: int) -> tuple[float, float]:
        return self.epoch(e)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def run_rounds(arms: list[EpochArm], rounds: int, warmup: int) -> list[dict]:
    """Call every arm once per round (order rotated each round); keep rounds >= `warmup`.

    Returns:
        one {arm key: wall seconds} per timed round (for paired ratios); each arm's `wall` and
        `cpu` lists hold its timed epochs.
    """
    paired = []
    for r in range(rounds):
        k = r % len(arms)
        this = {}
        for arm in arms[k:] + arms[:k]:
            wall, cpu = arm(r)
            if r >= warmup:
                arm.wall.append(wall)
                arm.cpu.append(cpu)
                this[arm.key] = wall
        if r >= warmup:
            paired.append(this)
    return paired


def _one_fit_epoch(model, e: int, data, **fit_kwargs) -> tuple[float, float]:
    """`model.fit` of epoch e alone (initial_epoch=e); the epoch's seconds from the clock, i.e.
    without fit's set-up before the first epoch begins."""
    clock = _epoch_clock()
    callbacks = fit_kwargs.pop("callbacks", [])
    model.fit(*data, epochs=e + 1, initial_epoch=e, verbose=0, callbacks=[*callbacks, clock], **fit_kwargs)
    t = clock.times()
    return t["wall"][0], t["cpu"][0]


def keras_fit_arm(ds, cfg, seed: int = 0):
    """Arm (a): plain `model.fit` with Keras' MSE and SGD on in-memory numpy arrays, shuffled by
    Keras, no weight decay and no tracking. Returns the epoch callable of an `EpochArm`."""
    import keras

    from .models import build_network

    keras.utils.set_random_seed(seed)
    network = build_network(cfg.model, ds.x_train.shape[1:], ds.num_classes, seed=seed)
    network.compile(
        optimizer=keras.optimizers.SGD(learning_rate=cfg.optim.lr, momentum=cfg.optim.momentum),
        loss=keras.losses.MeanSquaredError(),
    )
    targets = np.eye(ds.num_classes, dtype=np.float32)[ds.y_train]
    return lambda e: _one_fit_epoch(network, e, (ds.x_train, targets), batch_size=cfg.optim.batch_size, shuffle=True)


def project_arm(ds, cfg, seed: int = 0, compute: dict | None = None, callbacks=(), trainer=None):
    """Arm (b) (and its `compute` variants): the project's `SquareLossTrainer` on the run's own
    data pipeline (`epoch_batches` of epoch e + 1), built as a run builds it."""
    from .training import epoch_batches, steps_per_epoch

    if trainer is None:
        _, trainer, _ = _project_trainer(cfg, ds, seed, compute)
    bs, spe = cfg.optim.batch_size, steps_per_epoch(len(ds.y_train), cfg.optim.batch_size)

    def epoch(e):
        data = (epoch_batches(ds.x_train, ds.y_train, bs, seed, e + 1, e + 1),)
        return _one_fit_epoch(trainer, e, data, steps_per_epoch=spe, shuffle=False, callbacks=list(callbacks))

    return epoch


class TrackedArm:
    """Arm (c): (b) with the default tracking exactly as `train_and_evaluate` wires it (`Tracker`
    + `RunLogger` into a temporary run directory: a metrics row with ρ, norms and margin
    statistics, status and a checkpoint every epoch), plus the neural-collapse and per-sample
    margin epochs of the default `log` schedule amortized:
    (record with NC and margins − plain record) × |log schedule of `nc_horizon` epochs| / `nc_horizon`.

    The amortized share is measured by `breakdown()` after the rounds (at the trained weights), and
    added to each timed epoch then.

    Args:
        ds, cfg, seed: data, config and seed.
        nc_horizon: the run length whose default log schedule is amortized.
        workdir: where the temporary run directories go (a fresh temp folder when None).
    """

    def __init__(self, ds, cfg, seed: int = 0, nc_horizon: int = 1000, workdir=None):
        from .callbacks import RunLogger
        from .experiment import build_tracker, save_checkpoint
        from .rundir import RunDir

        self.ds, self.cfg, self.nc_horizon = ds, cfg, nc_horizon
        network, self.trainer, optimizer = _project_trainer(cfg, ds, seed)
        self._tmp = tempfile.TemporaryDirectory(prefix="sqnc-bench-", dir=workdir)
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
        self.epoch = project_arm(ds, cfg, seed, callbacks=[self.logger], trainer=self.trainer)

    def breakdown(self, reps: int) -> dict:
        """Each tracking piece timed alone at the current weights: {"wall", "cpu", "summary"}."""
        from .config import epoch_schedule

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
        costs = {name: _timed(fn, reps) for name, fn in pieces.items()}
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
        return {"wall": {k: v["wall"] for k, v in costs.items()}, "cpu": {k: v["cpu"] for k, v in costs.items()}, "summary": summary}

    def close(self) -> None:
        self.logger.close()
        self.nc_logger.close()
        self._tmp.cleanup()


def torch_arm(ds, cfg, seed: int = 0, threads: int | None = None, tracked: bool = False):
    """The PyTorch reference (`torch_reference`) of the same experiment on the CPU, from the same
    initial weights as the project's net, with `threads` intra-op threads; `tracked` adds the
    equivalent per-epoch tracking (inference passes over the training and test sets, norms, ρ,
    margin statistics; no files, no NC). Returns the epoch callable of an `EpochArm`."""
    import keras
    import torch

    from . import torch_reference as tr
    from .models import build_network

    tr.set_threads(threads or tr.default_threads())
    keras.utils.set_random_seed(seed)
    keras_net = build_network(cfg.model, ds.x_train.shape[1:], ds.num_classes, seed=seed)
    h, w, c = ds.x_train.shape[1:]
    net = tr.TorchConvNet(cfg.model.widths, c, ds.num_classes, (h, w), batchnorm=cfg.model.normalization == "batchnorm")
    tr.copy_from_keras(net, keras_net)
    opt = tr.make_optimizer(net, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay)
    x, y = tr.to_torch_data(ds.x_train, ds.y_train)
    xt, yt = tr.to_torch_data(ds.x_test, ds.y_test)
    gen = torch.Generator().manual_seed(seed)

    def epoch(e):
        t0 = _now()
        tr.train_epoch(net, opt, x, y, cfg.optim.batch_size, gen)
        if tracked:
            tr.track(net, x, y, xt, yt, cfg.optim.weight_decay)
        t1 = _now()
        return t1[0] - t0[0], t1[1] - t0[1]

    return epoch


def profile_training(ds, cfg, reps: int = 1, seed: int = 0) -> dict:
    """Where one (b) epoch goes: seconds per epoch of each stage, on pre-built batches.

    - `data`: iterating `epoch_batches` alone (permutation + gather + prefetch);
    - `forward`: the network in training mode;
    - `forward_backward`: the objective and its gradients (`_objective_and_grads`);
    - `train_step`: the full step (gradients, optimizer update, metrics), no `fit` loop;
    - the difference to the (b) fit epoch is `fit`'s own per-step overhead.

    Args:
        ds, cfg, seed: data, config and seed. reps: timed passes per stage (median).

    Returns:
        {stage: spread of seconds per epoch}.
    """
    import tensorflow as tf

    from .training import epoch_batches

    network, trainer, _ = _project_trainer(cfg, ds, seed)
    bs = cfg.optim.batch_size
    batches = list(epoch_batches(ds.x_train, ds.y_train, bs, seed, 1, 1))
    fwd = tf.function(lambda x: tf.reduce_sum(network(x, training=True)), reduce_retracing=True, autograph=False)
    # Element 3 of `_objective_and_grads` is the gradient list; reduce it so nothing is pruned.
    grads = tf.function(
        lambda x, y: tf.add_n([tf.reduce_sum(g) for g in trainer._objective_and_grads(x, y)[3]]), reduce_retracing=True, autograph=False
    )
    step = tf.function(lambda x, y: trainer.train_step((x, y))["batch_loss"], reduce_retracing=True, autograph=False)

    def over_batches(fn):
        def run():
            out = None
            for xb, yb in batches:
                out = fn(xb, yb)
            return out.numpy()

        return run

    def data_pass():
        for _ in epoch_batches(ds.x_train, ds.y_train, bs, seed, 2, 2):
            pass

    stages = {
        "data": data_pass,
        "forward": over_batches(lambda x, y: fwd(x)),
        "forward_backward": over_batches(grads),
        "train_step": over_batches(step),
    }
    # The untimed first call traces both the full and the partial last batch.
    return {name: _timed(fn, reps)["wall"] for name, fn in stages.items()}


def profile_kernels(cfg, input_shape=(32, 32, 3), batch_size: int = 128, reps: int = 20) -> list[dict]:
    """Where a training step's time goes, kernel by kernel, at the step's own shapes.

    Each hidden conv layer's three kernels (forward `Conv2D`, weight gradient
    `Conv2DBackpropFilter`, input gradient `Conv2DBackpropInput`; the first layer needs no input
    gradient) and its BatchNorm + ReLU in training mode (forward and backward, as Keras computes
    them) are timed alone, each a compiled function called `reps` times, one thread pool. The conv
    rows carry their GFLOP/s, to set beside the matmul rate: a kernel far below it is where a
    step loses to the matmul peak.

    Args:
        cfg: the config (widths, normalization).
        input_shape: one image's (H, W, C).
        batch_size: the minibatch.
        reps: timed calls per kernel (the median is kept).

    Returns:
        [{"layer", "kernel", "ms", "gflops" (None for BatchNorm/ReLU)}].
    """
    import tensorflow as tf

    def timed_ms(fn, *args):
        f = tf.function(fn, autograph=False)  # plain ops: nothing to convert
        for _ in range(3):
            f(*args)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(*args).numpy()
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))

    def bn_relu(h):
        with tf.GradientTape() as tape:
            tape.watch(h)
            mean, var = tf.nn.moments(h, axes=[0, 1, 2])
            out = tf.nn.relu(tf.nn.batch_normalization(h, mean, var, None, None, 1e-5))
            total = tf.reduce_sum(out * out)
        return tape.gradient(total, h)[0, 0, 0, 0]

    rows = []
    h, w, c_in = input_shape
    rng = tf.random.Generator.from_seed(0)
    for k, width in enumerate(cfg.model.widths, start=1):
        ho, wo = -(-h // 2), -(-w // 2)
        x = rng.normal((batch_size, h, w, c_in))
        kernel = rng.normal((3, 3, c_in, width))
        dy = rng.normal((batch_size, ho, wo, width))
        flops = 2.0 * batch_size * ho * wo * 9 * c_in * width
        ops = {
            "forward (Conv2D)": lambda x=x, kernel=kernel: tf.nn.conv2d(x, kernel, 2, "SAME")[0, 0, 0, 0],
            "weight gradient (Conv2DBackpropFilter)": lambda x=x, dy=dy, kernel=kernel: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"
            )[0, 0, 0, 0],
        }
        if k > 1:
            ops["input gradient (Conv2DBackpropInput)"] = lambda x=x, dy=dy, kernel=kernel: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"
            )[0, 0, 0, 0]
        for name, fn in ops.items():
            ms = timed_ms(fn)
            rows.append({"layer": f"conv{k}", "kernel": name, "ms": ms, "gflops": flops / ms / 1e6})
        if cfg.model.normalization == "batchnorm":
            rows.append(
                {
                    "layer": f"norm{k}+relu{k}",
                    "kernel": "BatchNorm + ReLU, forward and backward",
                    "ms": timed_ms(bn_relu, dy),
                    "gflops": None,
                }
            )
        h, w, c_in = ho, wo, width
    return rows


# ----------------------------------------------------------------------------- scaling


def scaling_train(cfg, sizes, reps: int, seed: int = 0) -> list[dict]:
    """(b) epoch seconds for each N in `sizes` (synthetic images), one trainer traced once.

    A fit on 2 batches (one full, one partial) first traces both batch shapes, so every size is
    timed from its first epoch without a per-size warm-up epoch.

    Returns:
        [{"n", "epoch_s": spread, "us_per_sample"}].
    """
    bs = cfg.optim.batch_size
    warm = bench_dataset(bs + 2, 2, seed=seed)
    _, trainer, _ = _project_trainer(cfg, warm, seed)
    project_arm(warm, cfg, seed, trainer=trainer)(0)
    rows = []
    for n in sizes:
        ds = bench_dataset(int(n), 2, seed=seed)
        epoch = project_arm(ds, cfg, seed, trainer=trainer)
        s = spread([epoch(e)[0] for e in range(reps)])
        rows.append({"n": int(n), "epoch_s": s, "us_per_sample": 1e6 * s["median"] / n})
        del ds
    return rows


def nc_measurement_cost(n: int, p: int, num_classes: int = 2, batch_size: int = 1000, seed: int = 0) -> dict:
    """Seconds and peak traced memory of one NC measurement (`compute_nc_metrics`, both passes)
    on n synthetic features of width p, fed in batches like `Tracker` does.

    The batches reuse one (batch, p) block, so the inputs add O(batch·p), not O(N·p), to the
    peak: what remains is the measurement's own memory (tracemalloc sees numpy's buffers).

    Returns:
        {"n", "p", "seconds", "peak_mb"}.
    """
    from .nc import compute_nc_metrics

    rng = np.random.default_rng([seed, p])
    block = rng.standard_normal((batch_size, p)).astype(np.float32)
    logits = rng.standard_normal((batch_size, num_classes)).astype(np.float32)
    labels = (np.arange(batch_size) % num_classes).astype(np.int64)
    w = rng.standard_normal((num_classes, p))

    def batches():
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            yield block[:b], labels[:b], logits[:b]

    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        compute_nc_metrics(batches, w, num_classes)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"n": int(n), "p": int(p), "seconds": seconds, "peak_mb": peak / 2**20}


def scaling_nc(sizes, dims, n_for_dims: int, p_for_sizes: int = 2048) -> dict:
    """NC measurement cost against N (at p = `p_for_sizes`) and against p (at N = `n_for_dims`)."""
    return {
        "vs_n": [nc_measurement_cost(int(n), p_for_sizes) for n in sizes],
        "vs_p": [nc_measurement_cost(n_for_dims, int(p)) for p in dims],
    }


# ----------------------------------------------------------------------------- the whole bench


def tensorflow_threads(threads: int | None) -> int:
    """Set (when given) and return TensorFlow's intra-op thread count (0 = all cores resolved)."""
    import tensorflow as tf

    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime already started: keep what it has
            pass
    n = tf.config.threading.get_intra_op_parallelism_threads()
    return n if n > 0 else default_threads()


def default_threads() -> int:
    """The cores this process may use: what TensorFlow's default intra-op pool sizes itself to."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_bench(opts: BenchOptions, log=None) -> dict:
    """Run every requested arm in this process and return the result (see `write_json`).

    Args:
        opts: what to measure.
        log: callable(str) told about each stage (e.g. `console.log`), or None.

    Returns:
        {"options", "environment", "flops", "matmul", "arms", "tracking", "rounds" (each timed
        round's wall seconds per arm), "ratios" (paired), "ratio_spreads", "ratios_cpu",
        "targets", "profile", "scaling"}; times in seconds, rates in GFLOP/s.

    Example:

    ```python
    result = run_bench(BenchOptions(n=1000, reps=1, epochs_warmup=1))
    result["targets"][0]["pass"]
    ```
    """
    opts.check()
    say = log or (lambda msg: None)
    threads = tensorflow_threads(opts.threads)
    import keras
    import tensorflow as tf

    from . import __version__

    cfg = bench_config(opts.batch_size)
    say(f"data: {opts.n} training images ({'CIFAR-10 from ' + str(opts.data_dir) if opts.data_dir else 'synthetic'})")
    ds = bench_dataset(opts.n, opts.n_test, opts.data_dir, opts.seed)
    n = len(ds.y_train)
    flops = count_flops(cfg.model.widths, ds.x_train.shape[1:], ds.num_classes)
    flops["train_per_epoch"] = flops["train"] * n

    say("matmul rate")
    mm_before = matmul_gflops(opts.matmul_size, max(opts.reps, 3))
    arms: dict[str, dict] = {}
    w, r = opts.epochs_warmup, opts.reps

    say("building the arms")
    keys = ["a", "b", "c"] + [f"b+{v}" for v in opts.variants] + (["torch", "torch_tracked"] if opts.torch else [])
    tracked = TrackedArm(ds, cfg, opts.seed, opts.nc_horizon)
    epochs = {"a": keras_fit_arm(ds, cfg, opts.seed), "b": project_arm(ds, cfg, opts.seed), "c": tracked.epoch}
    for v in opts.variants:
        epochs[f"b+{v}"] = project_arm(ds, cfg, opts.seed, parse_variant(v))
    torch_info = None
    if opts.torch:
        epochs["torch"] = torch_arm(ds, cfg, opts.seed, threads)
        epochs["torch_tracked"] = torch_arm(ds, cfg, opts.seed, threads, tracked=True)
        import torch

        from .torch_reference import matmul_gflops as torch_mm

        torch_info = {"threads": torch.get_num_threads(), "padding": "same (TensorFlow placement)", "torch": torch.__version__}
        torch_info["matmul_gflops"] = torch_mm(opts.matmul_size)
    runners = [EpochArm(k, epochs[k]) for k in keys]
    say(f"{w + r} rounds of one epoch per arm ({', '.join(keys)}), the first {w} untimed")
    try:
        paired = run_rounds(runners, w + r, w)
        say("tracking pieces, alone")
        breakdown = tracked.breakdown(r)
    finally:
        tracked.close()
    amortized = breakdown["summary"]["nc_amortized_per_epoch_s"], breakdown["summary"]["nc_amortized_per_epoch_cpu_s"]
    arms: dict[str, dict] = {}
    for arm in runners:
        arms[arm.key] = {"wall": arm.wall, "cpu": arm.cpu}
    # (c) = its fit epoch + the amortized NC / margins epochs.
    arms["c"]["fit_epoch_s"] = arms["c"]["wall"]
    arms["c"]["wall"] = [t + amortized[0] for t in arms["c"]["wall"]]
    arms["c"]["cpu"] = [t + amortized[1] for t in arms["c"]["cpu"]]
    for row in paired:
        row["c"] += amortized[0]
    for v in opts.variants:
        arms[f"b+{v}"]["variant"] = parse_variant(v)
    profile = None
    if opts.profile:
        say("profile of one (b) epoch")
        profile = profile_training(ds, cfg, r, opts.seed)
        profile["kernels"] = profile_kernels(cfg, ds.x_train.shape[1:], opts.batch_size)
    mm_after = matmul_gflops(opts.matmul_size, max(opts.reps, 3))
    matmul = spread(mm_before["values"] + mm_after["values"])
    matmul.update(size=opts.matmul_size, before=mm_before["median"], after=mm_after["median"])

    for key, arm in arms.items():
        arm["label"] = ARM_LABELS.get(key, f"(b+{key[2:]}) project, {key[2:]}")
        arm["epoch_s"], arm["cpu_s"] = spread(arm.pop("wall")), spread(arm.pop("cpu"))
        if "fit_epoch_s" in arm:
            arm["fit_epoch_s"] = spread(arm["fit_epoch_s"])
        arm["gflops"] = flops["train_per_epoch"] / arm["epoch_s"]["median"] / 1e9
        arm["fraction_of_matmul"] = arm["gflops"] / matmul["median"]

    scaling = None
    if opts.scaling:
        say(f"scaling: (b) epoch time for N in {list(opts.sizes)}")
        train_rows = scaling_train(cfg, opts.sizes, r, opts.seed)
        say(f"scaling: NC measurement for N in {list(opts.sizes)} and p in {list(opts.nc_dims)}")
        scaling = {"train": train_rows, "nc": scaling_nc(opts.sizes, opts.nc_dims, n, flops["features"])}

    result = {
        "schema": 1,
        "options": asdict(opts),
        "environment": {
            "sqloss_nc": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": _cpu_name(),
            "cores": os.cpu_count(),
            "tf_threads": threads,
            "gpus": [g.name for g in tf.config.list_physical_devices("GPU")],
            "torch": torch_info,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            # Settings that change CPU timings (torch's OpenMP spin-waiting, TF's oneDNN kernels).
            "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES")},
        },
        "data": {
            "n_train": n,
            "n_test": len(ds.y_test),
            "source": "folder" if opts.data_dir else "synthetic",
            "classes": ds.class_names,
        },
        "flops": flops,
        "matmul": matmul,
        "arms": arms,
        "tracking": {"breakdown": breakdown["wall"], "breakdown_cpu": breakdown["cpu"], **breakdown["summary"]},
        "rounds": paired,
        "profile": profile,
        "scaling": scaling,
    }
    result["ratios"], result["targets"] = ratios_and_targets(result)
    result["ratios_cpu"] = _ratios(result, "cpu_s")
    result["ratio_spreads"] = ratio_spreads(result)
    return result


def _ratio_pairs(arms) -> dict[str, tuple[str, str]]:
    """name -> (numerator arm, denominator arm) of every ratio reported between the arms."""
    pairs = {"c_over_b": ("c", "b"), "a_over_b": ("a", "b")}
    if "torch" in arms:
        pairs.update(c_over_torch=("c", "torch"), b_over_torch=("b", "torch"), c_over_torch_tracked=("c", "torch_tracked"))
    pairs.update({f"b_over_{k}": ("b", k) for k in arms if k.startswith("b+")})
    return pairs


def _ratios(result: dict, key: str = "epoch_s") -> dict:
    """Ratios between the arms. Wall time (`key` "epoch_s"): the median over rounds of each
    round's ratio (paired: the two epochs ran seconds apart), when the rounds were recorded;
    otherwise, and for process CPU time (`key` "cpu_s"), the ratio of the medians."""
    arms, rounds = result["arms"], result.get("rounds") if key == "epoch_s" else None
    out = {}
    for name, (num, den) in _ratio_pairs(arms).items():
        if rounds:
            out[name] = float(np.median([r[num] / r[den] for r in rounds]))
        else:
            out[name] = arms[num][key]["median"] / arms[den][key]["median"]
    return out


def ratio_spreads(result: dict) -> dict:
    """`spread` of each wall-time ratio over the rounds (how much the pairs disagree)."""
    rounds = result.get("rounds") or []
    return {name: spread([r[num] / r[den] for r in rounds]) for name, (num, den) in _ratio_pairs(result["arms"]).items()}


def ratios_and_targets(result: dict) -> tuple[dict, list[dict]]:
    """The ratios between arms (paired medians of wall time, `_ratios`) and the issue's targets.

    Targets: c/b ≤ 1.10 (tracking costs at most 10%), a/b ≥ 1.30 (the project's step is 1.3x
    faster than plain Keras), c/torch ≤ 1.00 (with tracking at least as fast as PyTorch without),
    (b) effective rate / matmul rate ≥ 0.75.

    Args:
        result: a `run_bench` result holding "arms" (with "epoch_s" and "fraction_of_matmul").

    Returns:
        (ratios dict, list of {"name", "what", "value", "op", "threshold", "pass"}); a target
        whose arm was not measured has value and pass None.
    """
    arms = result["arms"]
    ratios = _ratios(result)
    ratios["b_rate_over_matmul"] = arms["b"]["fraction_of_matmul"]
    # What SPEC's per-epoch tracking must cost at least: one inference pass over the training and
    # the test set. `floor_flops`: at the training step's own efficiency (FLOP count);
    # `floor_measured`: at the inference passes' measured speed.
    f, d = result["flops"], result["data"]
    ratios["c_over_b_floor_flops"] = 1.0 + f["inference"] * (d["n_train"] + d["n_test"]) / (f["train"] * d["n_train"])
    bd = result.get("tracking", {}).get("breakdown", {})
    if "predict_train_s" in bd:
        passes = bd["predict_train_s"]["median"] + bd["predict_test_s"]["median"]
        ratios["c_over_b_floor_measured"] = 1.0 + passes / arms["b"]["epoch_s"]["median"]
    ratios["c_rate_over_matmul"] = arms["c"]["fraction_of_matmul"]
    targets = [
        _target("c / b", "tracking overhead: (c) at most 10% over (b)", ratios["c_over_b"], "<=", 1.10),
        _target("a / b", "(b) at least 1.3x faster than plain Keras fit (a)", ratios["a_over_b"], ">=", 1.30),
        _target("c / torch", "project with tracking at least as fast as PyTorch", ratios.get("c_over_torch"), "<=", 1.00),
        _target("(b) rate / matmul", "effective training rate >= 75% of the matmul rate", ratios["b_rate_over_matmul"], ">=", 0.75),
    ]
    return ratios, targets


def _target(name: str, what: str, value, op: str, threshold: float) -> dict:
    ok = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
    return {"name": name, "what": what, "value": value, "op": op, "threshold": threshold, "pass": ok}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- output


def write_json(result: dict, path) -> Path:
    """Write the result as indented JSON (atomically; NaN as null). Returns the path."""
    from .rundir import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(_jsonable(result), indent=2) + "\n")
    return path


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _fmt_s(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def results_tables(result: dict) -> list:
    """Rich tables: the arms (epoch time, spread, GFLOP/s), the ratios with the targets'
    pass/fail, the tracking breakdown, and (when measured) the profile and the scaling study."""
    from rich.table import Table

    out = []
    mm = result["matmul"]
    arms = Table(
        title=f"one epoch, N = {result['data']['n_train']} ({result['data']['source']}), batch {result['options']['batch_size']}; "
        f"matmul {mm['median']:.1f} GFLOP/s ({mm['size']}², {result['environment']['tf_threads']} threads)",
        title_justify="left",
    )
    for col in ("arm", "epoch s (median)", "min–max", "CPU s", "GFLOP/s", "% of matmul"):
        arms.add_column(col, justify="left" if col == "arm" else "right")
    for a in result["arms"].values():
        e = a["epoch_s"]
        arms.add_row(
            a["label"],
            _fmt_s(e["median"]),
            f"{_fmt_s(e['min'])}–{_fmt_s(e['max'])}",
            _fmt_s(a["cpu_s"]["median"]),
            f"{a['gflops']:.1f}",
            f"{100 * a['fraction_of_matmul']:.0f}%",
        )
    out.append(arms)

    ratios = Table(
        title="ratios (wall: median over rounds of each round's ratio, with its min–max; CPU: ratio of medians) and targets",
        title_justify="left",
    )
    for col in ("ratio", "wall", "min–max", "CPU", "target", "result"):
        ratios.add_column(col, justify="left" if col in ("ratio", "result") else "right")
    cpu, spreads = result.get("ratios_cpu", {}), result.get("ratio_spreads", {})
    keys = {"c / b": "c_over_b", "a / b": "a_over_b", "c / torch": "c_over_torch"}

    def cpu_cell(key):
        return f"{cpu[key]:.3f}" if key in cpu else ""

    def range_cell(key):
        sp = spreads.get(key)
        return f"{sp['min']:.2f}–{sp['max']:.2f}" if sp and sp["n"] else ""

    for t in result["targets"]:
        if t["value"] is None:
            ratios.add_row(t["name"], "—", "", "", f"{t['op']} {t['threshold']:.2f}", "[dim]not measured (--torch)[/]")
        else:
            verdict = "[green]pass[/]" if t["pass"] else "[red]fail[/]"
            key = keys.get(t["name"], "")
            ratios.add_row(t["name"], f"{t['value']:.3f}", range_cell(key), cpu_cell(key), f"{t['op']} {t['threshold']:.2f}", verdict)
    r = result["ratios"]
    extra = [
        ("c / b floor: inference FLOPs (train + test) / training FLOPs", "c_over_b_floor_flops"),
        ("c / b floor: measured inference passes / (b)", "c_over_b_floor_measured"),
        ("b / torch", "b_over_torch"),
        ("c / torch+tracking", "c_over_torch_tracked"),
        ("(c) rate / matmul", "c_rate_over_matmul"),
    ]
    extra += [(f"b / {k[len('b_over_') :]}", k) for k in r if k.startswith("b_over_b+")]
    for name, key in extra:
        if r.get(key) is not None:
            ratios.add_row(name, f"{r[key]:.3f}", range_cell(key), cpu_cell(key), "", "[dim]info[/]")
    out.append(ratios)

    tk = result["tracking"]
    b = tk["breakdown"]
    track = Table(title="tracking cost (median seconds per call, trained weights)", title_justify="left")
    track.add_column("piece")
    track.add_column("s", justify="right")
    for name, key in (
        ("inference pass, training set", "predict_train_s"),
        ("inference pass, test set", "predict_test_s"),
        ("Tracker.measure (all metrics)", "measure_s"),
        ("RunLogger.record (+ CSV, status, checkpoint)", "record_s"),
        ("Tracker.measure(nc=True)", "measure_nc_s"),
        ("record on an NC + margins epoch", "record_nc_s"),
    ):
        track.add_row(name, f"{b[key]['median']:.3f}")
    track.add_row(
        f"NC + margins amortized ({tk['special_epochs_in_schedule']} of {tk['nc_horizon']} epochs)",
        f"{tk['nc_amortized_per_epoch_s']:.4f}",
    )
    out.append(track)

    if result.get("profile"):
        p = result["profile"]
        prof = Table(title="profile of one (b) epoch (median seconds per epoch, pre-built batches)", title_justify="left")
        prof.add_column("stage")
        prof.add_column("s", justify="right")
        for name, v in p.items():
            if name != "kernels":
                prof.add_row(name, f"{v['median']:.3f}")
        prof.add_row("fit epoch (b)", f"{result['arms']['b']['epoch_s']['median']:.3f}")
        out.append(prof)
        if p.get("kernels"):
            mm = result["matmul"]["median"]
            kt = Table(title=f"kernels of one training step, alone (median ms; matmul {mm:.0f} GFLOP/s)", title_justify="left")
            for col in ("layer", "kernel", "ms", "GFLOP/s", "% of matmul"):
                kt.add_column(col, justify="left" if col in ("layer", "kernel") else "right")
            for row in p["kernels"]:
                g = row["gflops"]
                kt.add_row(
                    row["layer"],
                    row["kernel"],
                    f"{row['ms']:.2f}",
                    "" if g is None else f"{g:.0f}",
                    "" if g is None else f"{100 * g / mm:.0f}%",
                )
            steps = -(-result["data"]["n_train"] // result["options"]["batch_size"])
            kt.add_row("sum", f"x {steps} steps = s per epoch", f"{sum(r['ms'] for r in p['kernels']) * steps / 1e3:.3f}", "", "")
            out.append(kt)

    sc = result.get("scaling")
    if sc:
        tr = Table(title="scaling: (b) epoch time against N (synthetic)", title_justify="left")
        for col in ("N", "epoch s", "µs / sample"):
            tr.add_column(col, justify="right")
        for row in sc["train"]:
            tr.add_row(str(row["n"]), _fmt_s(row["epoch_s"]["median"]), f"{row['us_per_sample']:.0f}")
        out.append(tr)
        nc = Table(title="scaling: one NC measurement (both passes, float64)", title_justify="left")
        for col in ("N", "p", "s", "peak MiB"):
            nc.add_column(col, justify="right")
        for row in sc["nc"]["vs_n"] + sc["nc"]["vs_p"]:
            nc.add_row(str(row["n"]), str(row["p"]), f"{row['seconds']:.3f}", f"{row['peak_mb']:.1f}")
        out.append(nc)
    return out

"""`sqnc bench`: how fast one training epoch of the paper's experiment runs, and where time goes.

One process, one call, several arms timed on the same data (N images of 32x32x3, the paper's
convnet with BatchNorm, square loss, coupled weight decay 0.01, SGD lr 0.01 momentum 0.9, batch
128), each over `reps` epochs after `epochs_warmup` epochs that absorb tracing and compilation:

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
- `b+<variant>` (`--variants xla,spe8,xla+spe8`): (b) compiled with XLA (`jit_compile=True`)
  and/or `steps_per_execution=N`, to show what those settings would buy.

FLOPs are counted analytically (`count_flops`) and each epoch is turned into an effective
GFLOP/s rate (training FLOPs only, for every arm: tracking work counts as overhead), compared
with the float32 matmul rate measured in the same process (a 2048x2048 `tf.matmul`, before and
after the arms). Medians and min/max/IQR are reported.

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
        variants: extra (b) rows: "xla", "spe<N>" (steps_per_execution=N), or both joined by "+".
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
        for v in self.variants:
            parse_variant(v)
        if self.torch:
            try:
                import torch  # noqa: F401
            except ImportError:
                raise BenchError('--torch: PyTorch is not installed (pip install -e ".[bench]", or pip install torch)') from None


def parse_variant(text: str) -> dict:
    """`"xla"`, `"spe8"`, `"xla+spe8"` -> {"jit_compile": bool, "steps_per_execution": int}.

    Args:
        text: the variant name.

    Example: `parse_variant("xla+spe4")` == {"jit_compile": True, "steps_per_execution": 4}.
    """
    out = {"jit_compile": False, "steps_per_execution": 1}
    for part in text.split("+"):
        part = part.strip().lower()
        if part == "xla":
            out["jit_compile"] = True
        elif part.startswith("spe") and part[3:].isdigit() and int(part[3:]) >= 1:
            out["steps_per_execution"] = int(part[3:])
        else:
            raise BenchError(f"--variants: unknown variant {text!r} (use xla, spe<N>, or xla+spe<N>)")
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
    mm = tf.function(lambda a, b: tf.matmul(a, b)[0, 0])
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


def _project_trainer(cfg, ds, seed: int, jit_compile=False, steps_per_execution: int = 1):
    # Built exactly as `experiment._train` builds a run, so (b) and (c) time what a run executes.
    from .experiment import build_training

    return build_training(cfg.model_copy(update={"seed": seed}), ds, jit_compile=jit_compile, steps_per_execution=steps_per_execution)


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


def time_keras_fit(ds, cfg, reps: int, warmup: int, seed: int = 0) -> dict:
    """Arm (a): epoch seconds of plain `model.fit` with Keras' MSE and SGD (timed epochs only).

    Args:
        ds: the `Dataset`. cfg: the config (model and optimizer settings).
        reps: timed epochs. warmup: untimed epochs first. seed: weights and shuffling.

    Returns:
        {"wall": [...], "cpu": [...]}: seconds of each timed epoch (wall clock, process CPU).
    """
    import keras

    from .models import build_network

    keras.utils.set_random_seed(seed)
    network = build_network(cfg.model, ds.x_train.shape[1:], ds.num_classes, seed=seed)
    network.compile(
        optimizer=keras.optimizers.SGD(learning_rate=cfg.optim.lr, momentum=cfg.optim.momentum),
        loss=keras.losses.MeanSquaredError(),
    )
    targets = np.eye(ds.num_classes, dtype=np.float32)[ds.y_train]
    clock = _epoch_clock()
    network.fit(ds.x_train, targets, batch_size=cfg.optim.batch_size, epochs=warmup + reps, shuffle=True, verbose=0, callbacks=[clock])
    return clock.times(warmup)


def time_project(ds, cfg, reps: int, warmup: int, seed: int = 0, jit_compile=False, steps_per_execution: int = 1) -> dict:
    """Arm (b) (and its variants): epoch seconds of `SquareLossTrainer` over `epoch_batches`.

    Args:
        ds, cfg, reps, warmup, seed: as `time_keras_fit`.
        jit_compile: compile the train step with XLA.
        steps_per_execution: train steps per call of the compiled function.

    Returns:
        {"wall": [...], "cpu": [...]} as `time_keras_fit`.
    """

    _, trainer, _ = _project_trainer(cfg, ds, seed, jit_compile, steps_per_execution)
    return _fit_timed(trainer, ds, cfg.optim.batch_size, seed, warmup + reps).times(warmup)


def _fit_timed(trainer, ds, batch_size: int, seed: int, epochs: int):
    """Train `epochs` epochs on the project's data pipeline; returns the per-epoch clock."""
    from .training import epoch_batches, steps_per_epoch

    clock = _epoch_clock()
    trainer.fit(
        epoch_batches(ds.x_train, ds.y_train, batch_size, seed, 1, epochs),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch(len(ds.y_train), batch_size),
        verbose=0,
        callbacks=[clock],
        shuffle=False,
    )
    return clock


def time_project_tracked(ds, cfg, reps: int, warmup: int, seed: int = 0, nc_horizon: int = 1000, workdir=None) -> dict:
    """Arm (c): (b) with the default tracking of `train_and_evaluate`, and its cost breakdown.

    The fit runs with a `RunLogger` writing metrics, status and a checkpoint every epoch (as a
    real run does on epochs without NC or per-sample margins). Afterwards, at the trained
    weights, each piece is timed on its own (median of `reps` calls after a warm-up call): the
    inference passes, the full metrics record, and a record on an epoch that also has NC and
    per-sample margins (as the default `log` schedule has). The NC epochs are amortized as
    (record with NC − plain record) × |log schedule over `nc_horizon` epochs| / `nc_horizon`.

    Args:
        ds, cfg, reps, warmup, seed: as `time_keras_fit`.
        nc_horizon: the run length whose default log schedule is amortized.
        workdir: where the temporary run directories go (a fresh temp folder when None).

    Returns:
        {"wall", "cpu": per-epoch seconds (fit + amortized NC), "fit_epoch_s": wall seconds of
        the fit epochs alone, "breakdown" / "breakdown_cpu": spread of each piece, "summary"}.
    """
    from .callbacks import RunLogger
    from .config import epoch_schedule
    from .experiment import build_tracker, save_checkpoint
    from .rundir import RunDir
    from .training import epoch_batches, steps_per_epoch

    network, trainer, optimizer = _project_trainer(cfg, ds, seed)
    bs, epochs = cfg.optim.batch_size, warmup + reps
    schedule = epoch_schedule(cfg.track.nc_epochs, nc_horizon, cfg.track.log_points)
    margin_schedule = epoch_schedule(cfg.track.margin_epochs, nc_horizon, cfg.track.log_points)
    with tempfile.TemporaryDirectory(prefix="sqnc-bench-", dir=workdir) as tmp:
        rundir = RunDir(Path(tmp) / "tracked")
        rundir.create()
        tracker = build_tracker(cfg, ds, network, trainer)
        logger = RunLogger(
            rundir,
            tracker,
            lambda e: cfg.optim.lr,
            margin_epochs=(),
            nc_epochs=(),
            checkpoint=lambda e: save_checkpoint(rundir, network, optimizer, e),
        )
        # A second logger whose epoch E is both an NC and a margins epoch (as the default `log`
        # schedule has ~20 of) gives the cost of such an epoch; E is past the fit's epochs.
        e_nc = epochs + 1
        nc_dir = RunDir(Path(tmp) / "nc")
        nc_dir.create()
        nc_logger = RunLogger(
            nc_dir,
            tracker,
            lambda e: cfg.optim.lr,
            margin_epochs=[e_nc],
            nc_epochs=[e_nc],
            checkpoint=lambda e: save_checkpoint(nc_dir, network, optimizer, e),
        )
        clock = _epoch_clock()
        try:
            trainer.fit(
                epoch_batches(ds.x_train, ds.y_train, bs, seed, 1, epochs),
                epochs=epochs,
                steps_per_epoch=steps_per_epoch(len(ds.y_train), bs),
                verbose=0,
                callbacks=[logger, clock],  # the clock last: it stops after the logger's work
                shuffle=False,
            )
            fit_times = clock.times(warmup)
            nc_logger.set_model(trainer)
            # The pieces, at the trained weights.
            timings = {
                "predict_train_s": lambda: tracker.predict(ds.x_train),
                "predict_test_s": lambda: tracker.predict(ds.x_test),
                "measure_s": lambda: tracker.measure(nc=False),
                "record_s": lambda: logger.record(epochs, float("nan")),
                "measure_nc_s": lambda: tracker.measure(nc=True),
                "record_nc_s": lambda: nc_logger.record(e_nc, float("nan")),
            }
            costs = {name: _timed(fn, reps) for name, fn in timings.items()}
        finally:
            logger.close()
            nc_logger.close()

    breakdown = {k: v["wall"] for k, v in costs.items()}
    med = {k: v["median"] for k, v in breakdown.items()}
    nc_extra = max(med["record_nc_s"] - med["record_s"], 0.0)
    nc_extra_cpu = max(costs["record_nc_s"]["cpu"]["median"] - costs["record_s"]["cpu"]["median"], 0.0)
    special = len(set(schedule) | set(margin_schedule))
    amortized, amortized_cpu = nc_extra * special / nc_horizon, nc_extra_cpu * special / nc_horizon
    summary = {
        "nc_epochs_in_schedule": len(schedule),
        "special_epochs_in_schedule": special,
        "nc_horizon": nc_horizon,
        "nc_extra_per_measurement_s": nc_extra,
        "nc_amortized_per_epoch_s": amortized,
        "nc_amortized_per_epoch_cpu_s": amortized_cpu,
        "stats_s": max(med["measure_s"] - med["predict_train_s"] - med["predict_test_s"], 0.0),
        "files_s": max(med["record_s"] - med["measure_s"], 0.0),
    }
    return {
        "fit_epoch_s": fit_times["wall"],
        "wall": [t + amortized for t in fit_times["wall"]],
        "cpu": [t + amortized_cpu for t in fit_times["cpu"]],
        "breakdown": breakdown,
        "breakdown_cpu": {k: v["cpu"] for k, v in costs.items()},
        "summary": summary,
    }


def time_torch(ds, cfg, reps: int, warmup: int, seed: int = 0, threads: int | None = None, tracked: bool = False) -> dict:
    """The PyTorch reference: epoch seconds, from the same initial weights as the project's net.

    Args:
        ds, cfg, reps, warmup, seed: as `time_keras_fit`.
        threads: torch intra-op threads (default: the cores TensorFlow uses).
        tracked: add the per-epoch tracking pass (`torch_reference.track`) to every epoch.

    Returns:
        {"wall", "cpu": per-epoch seconds, "track_s": wall seconds of the tracking part
        (tracked only), "threads", "padding", "torch"}.
    """
    import torch

    from . import torch_reference as tr
    from .models import build_network

    tr.set_threads(threads or tr.default_threads())
    import keras

    keras.utils.set_random_seed(seed)
    keras_net = build_network(cfg.model, ds.x_train.shape[1:], ds.num_classes, seed=seed)
    h, w, c = ds.x_train.shape[1:]
    net = tr.TorchConvNet(cfg.model.widths, c, ds.num_classes, (h, w), batchnorm=cfg.model.normalization == "batchnorm")
    tr.copy_from_keras(net, keras_net)
    opt = tr.make_optimizer(net, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay)
    x, y = tr.to_torch_data(ds.x_train, ds.y_train)
    xt, yt = tr.to_torch_data(ds.x_test, ds.y_test)
    gen = torch.Generator().manual_seed(seed)
    wall, cpu, track_s = [], [], []
    for e in range(warmup + reps):
        t0 = _now()
        tr.train_epoch(net, opt, x, y, cfg.optim.batch_size, gen)
        t1 = _now()
        if tracked:
            tr.track(net, x, y, xt, yt, cfg.optim.weight_decay)
        t2 = _now()
        if e >= warmup:
            wall.append(t2[0] - t0[0])
            cpu.append(t2[1] - t0[1])
            track_s.append(t2[0] - t1[0])
    out = {
        "wall": wall,
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "padding": "same (TensorFlow placement)",
        "torch": torch.__version__,
    }
    if tracked:
        out["track_s"] = track_s
    return out


def profile_training(ds, cfg, reps: int = 1, seed: int = 0) -> dict:
    """Where one (b) epoch goes: seconds per epoch of each stage, on pre-built batches.

    - `data`: iterating `epoch_batches` alone (permutation + gather + prefetch);
    - `forward`: the network in training mode;
    - `forward_backward`: the objective and its gradients (`_objective_and_grads`);
    - `train_step`: the full step (gradients, optimizer update, metrics), no `fit` loop;
    - the difference to the (b) fit epoch is `fit`'s own per-step overhead.

    Args:
        ds, cfg, seed: as `time_keras_fit`. reps: timed passes per stage (median).

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


# ----------------------------------------------------------------------------- scaling


def scaling_train(cfg, sizes, reps: int, seed: int = 0) -> list[dict]:
    """(b) epoch seconds for each N in `sizes` (synthetic images), one trainer traced once.

    A fit on 2 batches (one full, one partial) first traces both batch shapes, so every size is
    timed from its first epoch without a per-size warm-up epoch.

    Returns:
        [{"n", "epoch_s": spread, "us_per_sample"}].
    """
    from .training import epoch_batches

    bs = cfg.optim.batch_size
    warm = bench_dataset(bs + 2, 2, seed=seed)
    _, trainer, _ = _project_trainer(cfg, warm, seed)
    trainer.fit(epoch_batches(warm.x_train, warm.y_train, bs, seed, 1, 2), epochs=2, steps_per_epoch=2, verbose=0, shuffle=False)
    rows = []
    for n in sizes:
        ds = bench_dataset(int(n), 2, seed=seed)
        clock = _fit_timed(trainer, ds, bs, seed, reps)
        s = spread(clock.times()["wall"])
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
        {"options", "environment", "flops", "matmul", "arms", "tracking", "ratios", "targets",
        "profile", "scaling"}; times in seconds, rates in GFLOP/s.

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

    say("(a) Keras model.fit")
    arms["a"] = time_keras_fit(ds, cfg, r, w, opts.seed)
    say("(b) project train_step")
    arms["b"] = time_project(ds, cfg, r, w, opts.seed)
    say("(c) project + tracking")
    tracked = time_project_tracked(ds, cfg, r, w, opts.seed, opts.nc_horizon)
    arms["c"] = {"wall": tracked["wall"], "cpu": tracked["cpu"], "fit_epoch_s": tracked["fit_epoch_s"]}
    for v in opts.variants:
        say(f"(b+{v})")
        arms[f"b+{v}"] = {**time_project(ds, cfg, r, w, opts.seed, **parse_variant(v)), "variant": parse_variant(v)}
    torch_info = None
    if opts.torch:
        say("PyTorch reference")
        t = time_torch(ds, cfg, r, w, opts.seed, threads)
        arms["torch"] = {"wall": t["wall"], "cpu": t["cpu"]}
        say("PyTorch + tracking")
        tt = time_torch(ds, cfg, r, w, opts.seed, threads, tracked=True)
        arms["torch_tracked"] = {"wall": tt["wall"], "cpu": tt["cpu"], "track_s": spread(tt["track_s"])}
        from .torch_reference import matmul_gflops as torch_mm

        torch_info = {k: t[k] for k in ("threads", "padding", "torch")}
        torch_info["matmul_gflops"] = torch_mm(opts.matmul_size)
    profile = None
    if opts.profile:
        say("profile of one (b) epoch")
        profile = profile_training(ds, cfg, r, opts.seed)
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
        "tracking": {"breakdown": tracked["breakdown"], "breakdown_cpu": tracked["breakdown_cpu"], **tracked["summary"]},
        "profile": profile,
        "scaling": scaling,
    }
    result["ratios"], result["targets"] = ratios_and_targets(result)
    result["ratios_cpu"] = _ratios(result, "cpu_s")
    return result


def _ratios(result: dict, key: str = "epoch_s") -> dict:
    """Ratios of the arms' median epoch times (`key`: "epoch_s" wall, "cpu_s" process CPU)."""
    med = {k: a[key]["median"] for k, a in result["arms"].items()}
    ratios = {"c_over_b": med["c"] / med["b"], "a_over_b": med["a"] / med["b"]}
    if "torch" in med:
        ratios["c_over_torch"] = med["c"] / med["torch"]
        ratios["b_over_torch"] = med["b"] / med["torch"]
        ratios["c_over_torch_tracked"] = med["c"] / med["torch_tracked"]
    for k, v in med.items():
        if k.startswith("b+"):
            ratios[f"b_over_{k}"] = med["b"] / v
    return ratios


def ratios_and_targets(result: dict) -> tuple[dict, list[dict]]:
    """The ratios between arms (medians of wall time) and the issue's targets with pass/fail.

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

    ratios = Table(title="ratios (medians of wall time; CPU-time ratio alongside) and targets", title_justify="left")
    for col in ("ratio", "value", "CPU", "target", "result"):
        ratios.add_column(col, justify="left" if col in ("ratio", "result") else "right")
    cpu = result.get("ratios_cpu", {})
    keys = {"c / b": "c_over_b", "a / b": "a_over_b", "c / torch": "c_over_torch"}

    def cpu_cell(key):
        return f"{cpu[key]:.3f}" if key in cpu else ""

    for t in result["targets"]:
        if t["value"] is None:
            ratios.add_row(t["name"], "—", "", f"{t['op']} {t['threshold']:.2f}", "[dim]not measured (--torch)[/]")
        else:
            verdict = "[green]pass[/]" if t["pass"] else "[red]fail[/]"
            ratios.add_row(t["name"], f"{t['value']:.3f}", cpu_cell(keys.get(t["name"], "")), f"{t['op']} {t['threshold']:.2f}", verdict)
    r = result["ratios"]
    extra = [("b / torch", "b_over_torch"), ("c / torch+tracking", "c_over_torch_tracked"), ("(c) rate / matmul", "c_rate_over_matmul")]
    extra += [(f"b / {k[len('b_over_') :]}", k) for k in r if k.startswith("b_over_b+")]
    for name, key in extra:
        if r.get(key) is not None:
            ratios.add_row(name, f"{r[key]:.3f}", cpu_cell(key), "", "[dim]info[/]")
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
            prof.add_row(name, f"{v['median']:.3f}")
        prof.add_row("fit epoch (b)", f"{result['arms']['b']['epoch_s']['median']:.3f}")
        out.append(prof)

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

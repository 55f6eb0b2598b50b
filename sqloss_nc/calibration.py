"""How long a run takes on this machine: a few timed steps per architecture, cached (`sqnc reproduce`).

A run's wall time is modelled as

    run_s = host_s + epochs · spe · step_s + n_nc · nc_s · max(N, N_cal) / N_cal

- `step_s`: one SGD step *with* the per-epoch measuring amortized over the epoch's steps (the
  per-epoch pass over the training set costs one forward per sample, so at a fixed batch it scales
  with the steps, like the training); measured on a steady epoch.
- `nc_s`: the extra time of one neural-collapse epoch at the calibration's N (`N_cal`); an NC
  measurement passes over every training sample, so it is scaled by N / N_cal (never below 1:
  part of it, the eigensolves and spectra, does not shrink with N).
- `host_s`: what a run costs whatever its length: building the model, compiling the step and the
  measurements, the epoch-0 measurement, opening and closing the run directory.
- `spe` = ceil(N / B) steps per epoch (1 for full-batch GD); `n_nc` = the NC epochs the config's
  `track.nc_epochs` schedule records.

Each is measured by one tiny real training through `experiment.train_and_evaluate` on synthetic
data of the run's input shape, batch size and number of classes (at most 10: the synthetic source
has 10; the head's size is a small part of a step), 4 batches per epoch, 6 epochs, NC at epochs 3,
5 and 6 (epoch 1 compiles the step, epoch 3 the NC passes: that is host cost), the test set 1/5 of
the training set as in CIFAR-10. With d_k the seconds of epoch k (`elapsed_s` of metrics.csv),
the faster of two samples is kept, since other work on the machine only ever adds time:
epoch_s = min(d_2, d_4), step_s = epoch_s / spe, nc_s = min(d_5, d_6) − epoch_s, and
host_s = wall − 6·epoch_s − 3·nc_s (everything else: build, compiles, epoch 0, files).

What decides the cost (`cost_key`): backend, arch and the model's shape settings, the loss and
its double backprop, input shape, batch, classes, the `compute` settings, and the threads a run
gets (cores / jobs). Measured costs are cached in `cache_path()` (JSON) under that key plus the
host, CPU count and the versions, so a second `sqnc reproduce` reuses them.

Example:

```python
from sqloss_nc.calibration import Cost, run_seconds
cost = Cost(step_s=0.03, nc_s=0.5, host_s=6.0, n_cal=512)
run_seconds(cost, steps=8000, n_train=1000, n_nc=20)   # 6 + 8000*0.03 + 20*0.5*1000/512
```
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import Config, epoch_schedule
from .timescale import steps_per_epoch

CAL_STEPS_PER_EPOCH = 4  # batches per calibration epoch
CAL_EPOCHS = 6  # epoch 1 compiles the step, 3 the NC passes; 2, 4 time the step, 5, 6 the NC
CAL_NC_EPOCHS = (3, 5, 6)
CAL_MAX_CLASSES = 10  # the synthetic source's classes
CACHE_FORMAT = 2  # 2: six calibration epochs, the faster of two samples


@dataclass(frozen=True)
class Cost:
    """The measured cost of one kind of run (see the module docstring for the model).

    Args:
        step_s: seconds per step, per-epoch measuring included.
        nc_s: seconds of one NC measurement at `n_cal` training samples.
        host_s: fixed seconds per run (build, compile, epoch 0, files).
        n_cal: training samples of the calibration run.
        measured: when (ISO time), or "given" for injected numbers.

    Example: `Cost(0.03, 0.5, 6.0, 512).step_s`
    """

    step_s: float
    nc_s: float
    host_s: float
    n_cal: int
    measured: str = "given"


def run_seconds(cost: Cost, steps: int, n_train: int, n_nc: int, done_fraction: float = 0.0) -> float:
    """A run's estimated wall seconds; with `done_fraction` (epochs already trained / epochs) the
    seconds still to go (the fixed cost is paid again by a resumed run: it rebuilds and recompiles).

    Args:
        cost: the run's kind's `Cost`.
        steps: SGD steps of the whole run (epochs × steps per epoch).
        n_train: its training samples (scales the NC measurements).
        n_nc: how many NC epochs it records.
        done_fraction: 0 for a new run, 1 for a finished one (then 0 seconds).

    Example: `run_seconds(Cost(0.03, 0.5, 6.0, 512), 8000, 1000, 20)` is 6 + 240 + 19.53 = 265.53.
    """
    if done_fraction >= 1.0:
        return 0.0
    work = steps * cost.step_s + n_nc * cost.nc_s * max(n_train, cost.n_cal) / max(cost.n_cal, 1)
    return cost.host_s + (1.0 - done_fraction) * work


def nc_points(config: Config) -> int:
    """The NC epochs a run records (`track.nc_epochs` over `optim.epochs`)."""
    return len(epoch_schedule(config.track.nc_epochs, config.optim.epochs, config.track.log_points))


def cost_key(config: Config, input_shape: tuple[int, ...], n_train: int, threads: int) -> str:
    """What decides a run's cost per step, as a JSON string (the cache's key without the machine).

    Args:
        config: the run's config.
        input_shape: one sample's shape.
        n_train: its training samples (the batch of full-batch GD).
        threads: the threads a run gets (cores / jobs).
    """
    from . import backend
    from .batches import train_batch_size

    m = config.model.model_dump(mode="json")
    for k in ("init", "init_scale"):  # values, not shapes: they do not change the cost
        m.pop(k, None)
    key = {
        "backend": backend.NAME,
        "model": m,
        "loss": [config.loss.kind, config.loss.finite_step_correction],
        "input": list(input_shape),
        "batch": int(train_batch_size(config.optim, n_train)),
        "classes": len(config.data.classes),
        "compute": {k: v for k, v in config.compute.model_dump(mode="json").items() if k not in ("stack", "stack_checkpoint_s")},
        "threads": int(threads),
    }
    return json.dumps(key, sort_keys=True)


def machine() -> dict:
    """The host, its CPU count and the versions: a cached cost is reused only on the same."""
    from . import __version__, backend

    host = {"host": socket.gethostname(), "cpus": os.cpu_count(), "platform": platform.machine()}
    return {**host, "sqloss_nc": __version__, **backend.versions()}


def cache_path() -> Path:
    """`$SQNC_CACHE_DIR/calibration.json`, else `$XDG_CACHE_HOME/sqloss-nc/…`, else `~/.cache/sqloss-nc/…`."""
    root = os.environ.get("SQNC_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sqloss-nc")
    return Path(root) / "calibration.json"


def _full_key(key: str) -> str:
    return json.dumps({"format": CACHE_FORMAT, "machine": machine(), "cost": json.loads(key)}, sort_keys=True)


def load_cache(path: Path | None = None) -> dict[str, Cost]:
    """The cached costs of this machine, by `cost_key` (an unreadable cache is ignored: it is only a cache)."""
    path = path or cache_path()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    mine = {}
    for full, entry in raw.items() if isinstance(raw, dict) else ():
        try:
            d = json.loads(full)
            if d.get("format") == CACHE_FORMAT and d.get("machine") == machine():
                mine[json.dumps(d["cost"], sort_keys=True)] = Cost(**entry)
        except (ValueError, TypeError, KeyError):
            continue
    return mine


def save_cache(costs: dict[str, Cost], path: Path | None = None) -> None:
    """Merge `costs` into the cache file (written atomically; other machines' entries kept)."""
    from .rundir import atomic_write_text

    path = path or cache_path()
    try:
        raw = json.loads(path.read_text())
        raw = raw if isinstance(raw, dict) else {}
    except (OSError, ValueError):
        raw = {}
    raw.update({_full_key(k): asdict(c) for k, c in costs.items()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(raw, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a cache that cannot be written only costs the next calibration


def calibration_config(config: Config, input_shape: tuple[int, ...], n_train: int) -> Config:
    """The tiny run that measures `config`'s cost: synthetic data of its input shape, batch and
    classes, `CAL_STEPS_PER_EPOCH` batches per epoch, `CAL_EPOCHS` epochs, NC at `CAL_NC_EPOCHS`.

    Example: `calibration_config(cfg, (32, 32, 3), 1000).optim.epochs` is 6.
    """
    from .batches import train_batch_size

    c = min(len(config.data.classes), CAL_MAX_CLASSES)
    batch = int(train_batch_size(config.optim, n_train))
    per_class = max(1, math.ceil(batch * (1 if config.optim.full_batch else CAL_STEPS_PER_EPOCH) / c))
    d = config.to_dict()
    d.update(name="calibration", sweep={}, seed=0)
    d["data"] = {
        "source": "synthetic",
        "classes": list(range(c)),
        "train_per_class": per_class,
        "test_per_class": max(1, per_class // 5),
        "input_norm": config.data.input_norm,
        "synthetic": {"shape": list(input_shape)},
    }
    # A step costs the same at any learning rate; a tiny one keeps a protocol's aggressive
    # setting (η = 0.05, a large init) from diverging in the calibration and ending it early.
    d["optim"].update(epochs=CAL_EPOCHS, schedule="constant", milestones=[], lr=1e-4)
    d["track"].update(nc_epochs=list(CAL_NC_EPOCHS), margin_epochs="none", step_margins_until=0)
    return Config.model_validate(d)


def measure_cost(config: Config) -> Cost:
    """Train `calibration_config`'s run once in a temporary folder and read its cost (module docstring).

    Example: `measure_cost(calibration_config(cfg, (12,), 64)).step_s`
    """
    import csv

    from .experiment import train_and_evaluate

    with tempfile.TemporaryDirectory(prefix="sqnc-calibration-") as tmp:
        t0 = time.perf_counter()
        res = train_and_evaluate(config, Path(tmp) / "run")
        wall = time.perf_counter() - t0
        if res["state"] != "done":
            raise RuntimeError(f"calibration run {res['state']}: {res.get('reason')}")
        with open(Path(tmp) / "run" / "metrics.csv", newline="") as f:
            e = {int(r["epoch"]): float(r["elapsed_s"]) for r in csv.DictReader(f)}
    n = len(config.data.classes) * int(config.data.train_per_class)
    spe = steps_per_epoch(n, config.optim.batch_size, config.optim.full_batch)
    d = {k: e[k] - e[k - 1] for k in range(1, CAL_EPOCHS + 1)}
    epoch_s = min(d[2], d[4])
    nc_s = max(0.0, min(d[5], d[6]) - epoch_s)
    host_s = max(0.0, wall - CAL_EPOCHS * epoch_s - len(CAL_NC_EPOCHS) * nc_s)
    return Cost(epoch_s / spe, nc_s, host_s, n, time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def measure_costs(configs: dict[str, Config], threads: int | None = None, console=None, startup: bool = False) -> dict[str, Cost]:
    """`measure_cost` of each calibration config (by cost key); with `threads` (a `--jobs`
    worker's share of the cores), in a worker process started as `--jobs` starts its workers,
    else in this process. Returns key -> Cost, plus `"startup"` -> the worker's start (its
    `host_s`: spawn, imports, thread pools) when one was spawned.
    """
    out: dict[str, Cost] = {}
    if not configs and not startup:
        return out
    if threads:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from .sweep import _init_worker

        t0 = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(threads,)) as pool:
            pool.submit(_ready).result()
            out["startup"] = Cost(0.0, 0.0, time.perf_counter() - t0, 0, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            for key, cfg in configs.items():
                if console is not None:
                    console.print(f"calibrating {_label(cfg)} ({threads} thread(s))", highlight=False, markup=False)
                out[key] = pool.submit(_measure_dict, cfg.to_dict()).result()
        return out
    for key, cfg in configs.items():
        if console is not None:
            console.print(f"calibrating {_label(cfg)}", highlight=False, markup=False)
        out[key] = measure_cost(cfg)
    return out


def _label(cfg: Config) -> str:
    gd = "full batch" if cfg.optim.full_batch else f"batch {cfg.optim.batch_size}"
    return f"{cfg.model.arch} ({cfg.model.normalization}), input {'x'.join(map(str, cfg.data.synthetic.shape))}, {gd}, {cfg.loss.kind}"


def _ready() -> bool:
    return True


def _measure_dict(config_dict: dict) -> Cost:
    return measure_cost(Config.model_validate(config_dict))

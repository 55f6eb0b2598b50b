"""Time issue 19's setup: the paper's Fig. 2 sweep (60 runs: 3 inits x 2 weight decays x 10 seeds)
on synthetic 32x32x3 data, 64 train + 16 test images per class (2 classes, batch 128: one step
per epoch), JAX backend, stacked or one by one.

  # the whole sweep with full per-epoch tracking (NC and margins at epoch 0 only); prints the wall
  # seconds of every sweep-epoch (stacked) or the median per run-epoch and x60 (one by one)
  KERAS_BACKEND=jax python tools/stack_sweep_time.py sweep mlp 60 6 /tmp/o60
  KERAS_BACKEND=jax python tools/stack_sweep_time.py sweep mlp 1 6 /tmp/o1
  # the stacked train step alone (no tracking, no files): seconds per epoch of all K runs
  KERAS_BACKEND=jax python tools/stack_sweep_time.py step mlp 60 8 [vmap|map|unroll|auto]

Extra `KEY=VALUE` overrides may follow the sweep's arguments (e.g. `track.nc_epochs=[]`).
"""

import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)  # a checkout, installed or not
CONFIG = os.path.join(ROOT, "configs", "paper", "fig2_init_wd.yaml")
DATA = ["data.source=synthetic", "data.train_per_class=64", "data.test_per_class=16", "data.path=null"]


def sweep(arch: str, stack: int, epochs: int, out: str, *extra: str) -> dict:
    import numpy as np
    import pandas as pd

    from sqloss_nc.sweep import run_config

    over = [*DATA, f"model.arch={arch}", "track.nc_epochs=[0]", "track.margin_epochs=[0]", f"optim.epochs={epochs}", f"compute.stack={stack}", *extra]
    t0 = time.perf_counter()
    res = run_config(CONFIG, over, out)
    total = time.perf_counter() - t0
    # A run's row e is written after its stack's epoch e: the differences of the last run's
    # elapsed_s are the sweep-epochs (stacked); one by one, each run's own epochs.
    el = {r["run_id"]: pd.read_csv(os.path.join(out, "fig2_init_wd", r["run_id"], "metrics.csv"))["elapsed_s"].tolist() for r in res}
    states = sorted({r["state"] for r in res})
    if stack > 1:
        e = el[res[-1]["run_id"]]
        return {"arch": arch, "stack": stack, "epoch0_s": round(e[0], 3), "sweep_epoch_s": [round(e[i] - e[i - 1], 3) for i in range(1, len(e))], "total_s": round(total, 2), "states": states}
    per = np.median(np.array([[v[i] - v[i - 1] for i in range(1, len(v))] for v in el.values()]), 0)
    return {"arch": arch, "stack": 1, "run_epoch_s_median": per.round(4).tolist(), "x60": (per * 60).round(2).tolist(), "total_s": round(total, 2), "states": states}


def step(arch: str, k: int, epochs: int, mode: str = "auto") -> dict:
    from sqloss_nc.config import load_config
    from sqloss_nc.data import load_clean_dataset
    from sqloss_nc.stacking import bench_epochs

    cfg = load_config(CONFIG, [*DATA, f"model.arch={arch}", "sweep={}"])
    ds = load_clean_dataset(cfg)
    t = time.perf_counter()
    train = bench_epochs(cfg, ds, k, 0, mode)
    build = time.perf_counter() - t
    times = []
    for e in range(epochs):
        t = time.perf_counter()
        train(e)
        times.append(round(time.perf_counter() - t, 4))
    return {"arch": arch, "K": k, "mode": train.mode, "build_s": round(build, 2), "epoch_s": times}


if __name__ == "__main__":
    what, arch, k, epochs, *rest = sys.argv[1:]
    if what == "sweep":
        print(json.dumps(sweep(arch, int(k), int(epochs), rest[0], *rest[1:])))
    else:
        print(json.dumps(step(arch, int(k), int(epochs), *rest)))

"""`sqnc bench --scaling`: how the (b) epoch grows with N, and one NC measurement with N and p.

Runs inside the first backend's (b) process after the rounds (`worker.py`), so it shares that
arm's framework and nothing else.

Example:

```python
from sqloss_nc.bench.scaling import nc_measurement_cost
nc_measurement_cost(2000, 256)["seconds"]
```
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from .arms import bench_dataset, project_epochs, project_training
from .timing import spread


def scaling_train(cfg, sizes, reps: int, seed: int = 0) -> list[dict]:
    """(b) epoch seconds for each N in `sizes` (synthetic images), one trainer traced once.

    A fit on 2 batches (one full, one partial) first traces both batch shapes, so every size is
    timed from its first epoch without a per-size warm-up epoch.

    Returns:
        [{"n", "epoch_s": spread, "us_per_sample"}].
    """
    bs = cfg.optim.batch_size
    warm = bench_dataset(bs + 2, 2, seed=seed)
    _, trainer, _ = project_training(cfg, warm, seed)
    project_epochs(trainer, warm, cfg, seed)(0)
    rows = []
    for n in sizes:
        ds = bench_dataset(int(n), 2, seed=seed)
        epoch = project_epochs(trainer, ds, cfg, seed)
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
    from ..nc import compute_nc_metrics

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

"""The theory's time scale (SPEC §13): τ, elapsed τ, steps per epoch, matched steps, settledness.

With SGD with momentum β, learning rate η and *coupled* weight decay λ (PyTorch's SGD
`weight_decay`), the weight norms relax geometrically: the penalty's pull per step is η·λ and
momentum multiplies the step by 1/(1 − β), so the relaxation time is

    τ = (1 − β) / (η·λ)  steps          (1,000 steps at η = λ = 0.01, β = 0.9).

A step decay of η by γ at a milestone makes each later step count γ times as much. Without weight
decay there is no τ (`tau_steps` returns inf, `elapsed_tau` 0): use steps, the train loss and the
train accuracy instead. Everything here is a pure function of numbers or of a `Config`'s `optim`
and data sizes, so protocols, rules and figures share one definition.

Example:

```python
from sqloss_nc.timescale import tau_steps, elapsed_tau
tau_steps(lr=0.01, weight_decay=0.01, momentum=0.9)            # 1000.0
elapsed_tau(steps=8000, lr=0.01, weight_decay=0.01, momentum=0.9)  # 8.0
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_TAU = 5.0  # SPEC §13: a verdict that needs equilibrium needs >= 5 τ elapsed
SETTLE_WINDOW_TAU = 2.0  # settledness is measured over the last 2 τ


def tau_steps(lr: float, weight_decay: float, momentum: float = 0.0) -> float:
    """τ = (1 − β)/(η·λ) in steps; inf without weight decay (λ = 0).

    Args:
        lr: η, the learning rate (before any decay).
        weight_decay: λ, the coupled weight decay.
        momentum: β.
    """
    if weight_decay <= 0 or lr <= 0:
        return math.inf
    return (1.0 - momentum) / (lr * weight_decay)


def steps_per_epoch(n_train: int, batch_size: int | None, full_batch: bool = False) -> int:
    """SGD steps in one epoch: ceil(N/B) (the last, smaller batch is a step too); 1 for full-batch GD."""
    if full_batch or not batch_size or batch_size >= n_train:
        return 1
    return int(math.ceil(n_train / batch_size))


def lr_factors(epochs: int, schedule: str = "constant", milestones: Sequence[int] = (), gamma: float = 0.1) -> np.ndarray:
    """The learning-rate multiplier of each epoch 1..E (epoch e uses lr·gamma^(#milestones < e)),
    as `training`'s step schedule: the drop takes effect in the epoch after a milestone."""
    e = np.arange(1, int(epochs) + 1)
    if schedule != "step" or not milestones:
        return np.ones(len(e))
    passed = np.searchsorted(np.asarray(sorted(milestones)), e, side="left")
    return np.power(float(gamma), passed)


def elapsed_tau(
    steps: int,
    lr: float,
    weight_decay: float,
    momentum: float = 0.0,
    *,
    steps_per_epoch: int | None = None,
    schedule: str = "constant",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Σ_t η_t·λ/(1 − β) over `steps` steps: how many τ a run has lived (0 without weight decay).

    With a step schedule, `steps_per_epoch` places the milestones (given in epochs) on steps.
    """
    if weight_decay <= 0:
        return 0.0
    per_step = lr * weight_decay / (1.0 - momentum)
    if schedule != "step" or not milestones or not steps_per_epoch:
        return float(steps) * per_step
    spe = int(steps_per_epoch)
    epochs = int(math.ceil(steps / spe))
    f = lr_factors(epochs, schedule, milestones, gamma)
    counts = np.full(epochs, spe, dtype=float)
    counts[-1] = steps - spe * (epochs - 1)
    return float(np.dot(f, counts) * per_step)


def epochs_for_steps(steps: int, n_train: int, batch_size: int | None, full_batch: bool = False) -> int:
    """The fewest whole epochs that make at least `steps` steps."""
    return max(1, int(math.ceil(steps / steps_per_epoch(n_train, batch_size, full_batch))))


def config_tau(config: Any, n_train: int | None = None) -> dict[str, float]:
    """τ, steps and elapsed τ of a run config (a `Config` or its dict).

    Args:
        config: the run's config; `optim` gives η, β, λ, the batch and the schedule.
        n_train: training samples (default: `data.train_per_class` × number of classes).

    Returns: `tau_steps`, `steps_per_epoch`, `steps`, `elapsed_tau` (0 without weight decay).
    """
    d = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    o, data = d["optim"], d["data"]
    if n_train is None:
        n_train = int(data["train_per_class"]) * len(data["classes"])
    spe = steps_per_epoch(n_train, o.get("batch_size"), o.get("full_batch", False))
    steps = spe * int(o["epochs"])
    return {
        "tau_steps": tau_steps(o["lr"], o["weight_decay"], o["momentum"]),
        "steps_per_epoch": float(spe),
        "steps": float(steps),
        "elapsed_tau": elapsed_tau(
            steps,
            o["lr"],
            o["weight_decay"],
            o["momentum"],
            steps_per_epoch=spe,
            schedule=o.get("schedule", "constant"),
            milestones=o.get("milestones", ()),
            gamma=o.get("gamma", 0.1),
        ),
    }


def log_slope_per_tau(tau: Sequence[float], values: Sequence[float], window: float = SETTLE_WINDOW_TAU) -> float:
    """|d ln X / dτ| over the last `window` τ: the least-squares slope of ln X against elapsed τ
    on the points with τ ≥ τ_last − window (NaN with fewer than 2 such points or a non-positive X).

    A quantity is settled when this is below its rule's tolerance (SPEC §13).
    """
    t = np.asarray(tau, dtype=float)
    x = np.asarray(values, dtype=float)
    ok = np.isfinite(t) & np.isfinite(x)
    t, x = t[ok], x[ok]
    if len(t) < 2 or np.any(x <= 0):
        return float("nan")
    sel = t >= t.max() - window
    if sel.sum() < 2:
        return float("nan")
    tt, lx = t[sel], np.log(x[sel])
    if np.ptp(tt) == 0:
        return float("nan")
    return float(abs(np.polyfit(tt, lx, 1)[0]))

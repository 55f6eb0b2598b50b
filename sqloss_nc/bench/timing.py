"""Timing of the bench: rounds over the arms, paired ratios, spreads. Pure Python and numpy.

The arms run in rounds: in round r every arm trains one epoch, the arms' order rotated by r, and
each ratio between two arms is the median over rounds of that round's ratio. On a shared machine
single arms drifted by 40% between back-to-back calls; two epochs run seconds apart in the same
round see the same machine, so pairing them cancels the drift instead of letting it decide.

Example:

```python
from sqloss_nc.bench.timing import paired_ratio, spread
spread([1.0, 2.0, 4.0])["median"]                                   # 2.0
paired_ratio([{"b": 1.0, "c": 3.0}, {"b": 2.0, "c": 2.2}], "c", "b")["median"]   # 2.05
```
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np


def spread(values) -> dict:
    """Median, min, max, quartiles and the raw values of a list of numbers (seconds, ratios).

    Args:
        values: an iterable of numbers (empty gives NaNs and n = 0).

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


def now() -> tuple[float, float]:
    """(wall, process CPU) seconds. Wall time is what a run costs; the process's CPU time (all its
    threads) is far less sensitive to other work on the same cores, so both are kept."""
    return time.perf_counter(), time.process_time()


def timed(fn: Callable[[], object], reps: int) -> dict:
    """Call `fn` once untimed (tracing, caches), then `reps` times.

    Args:
        fn: the work to time. reps: timed calls (at least 1).

    Returns:
        {"wall": spread, "cpu": spread} of the timed calls.

    Example: `timed(lambda: sum(range(10**5)), 3)["wall"]["n"]` == 3.
    """
    fn()
    wall, cpu = [], []
    for _ in range(max(reps, 1)):
        t0 = now()
        fn()
        t1 = now()
        wall.append(t1[0] - t0[0])
        cpu.append(t1[1] - t0[1])
    return {"wall": spread(wall), "cpu": spread(cpu)}


class Epochs(Protocol):
    """What `run_rounds` drives: `key`, and a call training the arm's epoch e -> (wall s, CPU s)."""

    key: str

    def __call__(self, e: int) -> tuple[float, float]: ...


def run_rounds(arms: list, rounds: int, warmup: int) -> tuple[list[dict], dict[str, dict[str, list[float]]]]:
    """Call every arm once per round (the order rotated by one each round); keep rounds >= `warmup`.

    Args:
        arms: `Epochs` (an in-process arm, or the handle of an arm's worker process).
        rounds: rounds in all, the first `warmup` of them untimed.
        warmup: untimed rounds (tracing, compilation, allocator warm-up).

    Returns:
        (paired, times): one {arm key: wall seconds} per timed round, for paired ratios; and
        {arm key: {"wall": [...], "cpu": [...]}} of the timed epochs.

    Example:

    ```python
    paired, times = run_rounds([handle_b, handle_c], rounds=6, warmup=1)
    paired_ratio(paired, "c", "b")["median"]
    ```
    """
    paired: list[dict] = []
    times: dict[str, dict[str, list[float]]] = {arm.key: {"wall": [], "cpu": []} for arm in arms}
    for r in range(rounds):
        k = r % len(arms)
        this = {}
        for arm in arms[k:] + arms[:k]:
            wall, cpu = arm(r)
            if r >= warmup:
                times[arm.key]["wall"].append(wall)
                times[arm.key]["cpu"].append(cpu)
                this[arm.key] = wall
        if r >= warmup:
            paired.append(this)
    return paired, times


def paired_ratio(rounds: list[dict], num: str, den: str) -> dict:
    """`spread` of num/den over the rounds that timed both arms (the median is the reported ratio).

    Args:
        rounds: one {arm key: wall seconds} per timed round (`run_rounds`).
        num, den: the two arms' keys.

    Example: rounds c/b = 3.0, 1.1, 1.1 give median 1.1, where the ratio of the medians of the
    arms' times could say 1.5.
    """
    return spread(r[num] / r[den] for r in rounds if num in r and den in r)


def ratio_of_medians(a: list[float], b: list[float]) -> float:
    """median(a) / median(b): the ratio when the times were not paired (process CPU time)."""
    return float(np.median(a) / np.median(b)) if a and b else float("nan")

"""Planning stacked runs (SPEC §11, `compute.stack`): which sweep points may share a stack, how
the plan is cut into stacks, and the stack size K, decided once per plan. Beside the sweep planner
(`sweep.plan_runs`); the training of a stack is `sqloss_nc.stacking`.

What stacks (`STACKABLE`): `seed`, `model.init_scale`, `optim.lr`, `optim.weight_decay`,
`data.label_noise`, `optim.schedule`, `optim.milestones`, `optim.gamma`. Everything else (shapes,
batch size, epochs, architecture, loss, tracking, compute) must be equal; `stack_groups` puts
other points in other groups. `data_key` names the clean dataset a run trains on (label noise is
applied per run), so a sweep loads each distinct dataset once.

This module imports neither Keras nor the sweep driver (no import cycle: `sweep` and
`stacking` both import it).

Example:

```python
from sqloss_nc.stackplan import stack_groups
from sqloss_nc.sweep import plan_runs
[len(g) for g in stack_groups(plan_runs(None, ["sweep={seed: [0, 1, 2]}"], "outputs"), 2)]   # [2, 1]
```
"""

from __future__ import annotations

import json

from .config import Config, ConfigError
from .data import data_key  # noqa: F401  (re-exported: the planners group runs by it)

STACKABLE = (
    "seed",
    "model.init_scale",
    "optim.lr",
    "optim.weight_decay",
    "data.label_noise",
    "optim.schedule",
    "optim.milestones",
    "optim.gamma",
)
AUTO_CAP = 64  # `compute.stack: auto` never stacks more runs than this


def stack_key(config: Config) -> str:
    """What must be equal for two runs to share a stack: the config without the `STACKABLE` keys
    (and without `name`, which only names the folder).

    Example: `stack_key(load_config(None, ["seed=1"])) == stack_key(load_config(None, ["seed=2"]))`.
    """
    d = config.to_dict()
    d.pop("name", None)
    for dotted in STACKABLE:
        *parents, leaf = dotted.split(".")
        node = d
        for p in parents:
            node = node[p]
        node.pop(leaf, None)
    return json.dumps(d, sort_keys=True)


def stack_groups(plan: list, k: int) -> list[list]:
    """`plan` ((spec, run directory) pairs) cut into stacks: runs with the same `stack_key`, in
    plan order, at most `k` per stack; a group's remainder is a smaller stack.

    Args:
        plan: `sweep.plan_runs(...)`.
        k: the largest stack (1: every run alone).

    Example: 8 seeds with k = 3 give stacks of 3, 3 and 2 runs.
    """
    groups: dict[str, list] = {}
    for item in plan:
        groups.setdefault(stack_key(item[0].config), []).append(item)
    return [g[i : i + k] for g in groups.values() for i in range(0, len(g), max(1, k))]


def requested_stack(plan: list) -> int | str:
    """The `compute.stack` the plan asks for (an int or `auto`); the first point's value (a sweep
    over `compute.stack` itself is refused: it would not say how to stack)."""
    values = {spec.config.compute.stack for spec, _ in plan}
    if len(values) > 1:
        raise ConfigError(f"compute.stack: one value per sweep, got {sorted(map(str, values))}")
    return values.pop() if values else 1


def check_stack_backend(k: int | str) -> None:
    """An explicit `compute.stack` > 1 needs the JAX backend (the vmapped step): one line otherwise."""
    from . import backend

    if k != "auto" and k > 1 and backend.NAME != "jax":
        raise ConfigError(f"compute.stack: stacked runs need the JAX backend (KERAS_BACKEND=jax), this is {backend.NAME}; use --stack 1")


def choose_stack(plan: list, datasets: dict | None = None, console=None, data_dir: str | None = None, step_bytes=None) -> tuple[int, str | None]:
    """The stack size K for this plan and what to tell the user about it: `compute.stack` when it
    is a number, else (`auto`) 1 on a CPU or a non-JAX backend, and on a GPU the K whose stacked
    step fits in 80% of the free device memory (measured by compiling the step for one and two
    runs of the largest group: XLA's memory analysis, nothing is run), capped at `AUTO_CAP` and at
    the largest group. The note (None when no group could stack) is printed on `console`.

    Args:
        plan: `sweep.plan_runs(...)`.
        datasets: the loaded clean datasets by `data_key` (loaded here when None).
        console: a rich Console for the one-line note, or None.
        data_dir: overrides `data.path` when the data is loaded here.
        step_bytes: `stacking.step_bytes` (cfg, ds, k) -> device bytes of the stacked step, which
            a GPU's `auto` measures (passed in: the planner does not import the trainer);
            without it `auto` takes the cap.

    Example: `choose_stack(plan_runs(cfg, [], "outputs"))[0]` is 1 on this CPU.
    """
    k, note = _choose(plan, datasets, data_dir, step_bytes)
    if note and console is not None:
        console.print(f"compute.stack auto: {note}", highlight=False, markup=False, soft_wrap=True)
    return k, note and f"compute.stack auto: {note}"


def _choose(plan: list, datasets: dict | None, data_dir: str | None, step_bytes=None) -> tuple[int, str | None]:
    from . import backend

    k = requested_stack(plan)
    check_stack_backend(k)
    if k != "auto":
        return int(k), None
    largest = max(stack_groups(plan, len(plan) or 1), key=len, default=[])
    if len(largest) < 2 or any(spec.config.track.step_margins_until > 0 for spec, _ in largest):
        return 1, None
    if backend.NAME != "jax":
        return 1, f"1 (stacking needs the JAX backend; this is {backend.NAME})"
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return 1, "1 on a CPU, where stacked runs measured slower than one by one (--stack K forces K)"
    if step_bytes is None:
        chosen = min(AUTO_CAP, len(largest))
        return chosen, f"K={chosen} on {device.device_kind} (the cap; its memory was not measured)"
    spec = largest[0][0]
    if datasets is None:
        from .data import load_clean_dataset

        ds = load_clean_dataset(spec.config, data_dir)
    else:
        ds = datasets[data_key(spec.config)]
    one, two = (step_bytes(spec.config, ds, k) for k in (1, 2))
    stats = device.memory_stats() or {}
    free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
    per_run = max(two - one, 1)
    fit = int((0.8 * free - (one - per_run)) // per_run) if free > 0 else AUTO_CAP
    chosen = max(1, min(AUTO_CAP, len(largest), fit))
    return chosen, (
        f"K={chosen} on {device.device_kind} (free {free / 2**30:.1f} GiB, ~{per_run / 2**20:.0f} MiB per stacked run, "
        f"cap {AUTO_CAP}, largest group {len(largest)} runs)"
    )


AUTO_MODES = ("vmap", "map")  # what `compute.stack_mode: auto` times (`unroll` compiles in time growing with K)


def choose_stack_mode(requested: str, convolutions: bool, build, time_step, rounds: int = 2) -> tuple[object, str, str]:
    """How a stack maps its step over its runs (`compute.stack_mode`), decided once per stack.

    `auto`: `vmap` when the network has no convolution (K runs' dense layers become batched
    matmuls: measured on this CPU, the paper's MLP at K = 60, as fast as `map` within noise);
    with convolutions, each of `AUTO_MODES` is built, its step called once (compiling it), then
    timed `rounds` times, the modes alternating so that other work on the machine falls on
    both, and the mode with the smaller best time is kept (on this 2-core CPU the paper's
    convnet at K = 60 ran `map` ~2× faster than `vmap`; accelerators may differ, hence the
    timing rather than a rule). A candidate that fails (e.g. out of device memory) is skipped;
    when all fail the last error is raised.

    Args:
        requested: `auto`, or a mode of `backend.jax.STACK_MODES` (used as is).
        convolutions: whether the stacked network has a convolution.
        build: mode -> the stack in that mode (built, not yet run).
        time_step: stack -> seconds of one call of its step, changing nothing.
        rounds: timed calls per candidate after its compiling call.

    Returns:
        (the stack in the chosen mode, its step already compiled when timed; the mode; one
        line saying what was chosen and why, for the console).

    Example: `stack, mode, note = choose_stack_mode("auto", False, build, time_step)` gives mode `vmap`.
    """
    if requested != "auto":
        return build(requested), requested, f"stack mode {requested} (compute.stack_mode)"
    if not convolutions:
        return build("vmap"), "vmap", "stack mode vmap (auto: no convolutions)"
    stacks, best, error = {}, {}, None
    for mode in AUTO_MODES:
        try:
            stack = build(mode)
            time_step(stack)  # compiles
            stacks[mode] = stack
        except Exception as err:  # noqa: BLE001 - a mode this device cannot run is not a choice
            error = err
    if not stacks:
        raise error
    for _ in range(rounds):
        for mode, stack in stacks.items():
            best[mode] = min(best.get(mode, float("inf")), time_step(stack))
    chosen = min(best, key=best.get)
    times = ", ".join(f"{m} {f'{best[m]:.3g} s' if m in best else 'failed'}" for m in AUTO_MODES)
    return stacks[chosen], chosen, f"stack mode {chosen} (auto: best of {rounds} timed steps, {times})"


__all__ = ["STACKABLE", "AUTO_CAP", "AUTO_MODES", "data_key", "stack_key", "stack_groups", "requested_stack", "check_stack_backend", "choose_stack", "choose_stack_mode"]

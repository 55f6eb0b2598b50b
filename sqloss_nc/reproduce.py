"""`sqnc reproduce OUT`: the claims' protocols turned into a plan, run, and judged.

Order of business:

1. **Select** the claims (`--claims`, ids or numbers; default all) and collect their protocols for
   the scale (`cpu` or `paper`): evidence and controls. Two protocols with one experiment name are
   one experiment, planned once (`Protocol.key()`); two *different* protocols with one name are a
   registry error (`RegistryError`).
2. **Plan** each protocol: its config with the overrides, `name` = the experiment, its sweep grid
   (`config.expand_sweep`), and per run `optim.epochs` = the fewest whole epochs that make the
   protocol's steps (`timescale.epochs_for_steps` on the loaded training set's N and the run's
   batch). Runs go to `OUT/<experiment>/<run_id>`, as `sqnc run` writes them; the plan is a pure
   function of the registry, the scale and the data, so the same command plans the same runs and
   a rerun continues where it stopped (finished runs are skipped, interrupted ones resume).
   Everything is validated (configs, data, run directories) before anything is written.
3. **Estimate** each run from this machine's calibration (`calibration`: measured once per kind
   of run, cached) and the plan's wall time (with `--jobs J`, the runs packed longest-first on J
   workers, plus a worker's start and its data loads). On a machine without a GPU, `--scale paper` also gives a GPU
   estimate under a stated assumption (`GPU_SPEEDUP`; not measured).
4. **Fit the budget**, honestly: the claims are taken in registry order, each with all of its
   protocols at the steps they ask for, and a claim whose runs would take the plan past the budget
   is left out (and named), never shortened; later, cheaper claims may still fit. The decision
   uses the full estimate of every run, not what is left of it, so that a rerun keeps the same
   claims. A budget that fits no claim is refused (exit 2) before anything runs.
5. **Run** through the sweep runner (`sweep.train_units`: one process, or `--jobs` workers; a
   protocol's runs stack where `compute.stack` says so, as `sqnc run` does), with a line per
   finished run and an ETA (the remaining estimate scaled by how the finished runs compared with
   theirs).
6. **Judge**: `report.make_report` (runs `analyze`, writes OUT/report/), then the selected claims'
   verdicts and their controls' verdicts (`claims.evaluate_claims`).

Example:

```python
from sqloss_nc.reproduce import make_plan, parse_budget, run_plan
plan = make_plan("outputs/repro", budget_s=parse_budget("2h"), scale="cpu", data_dir="../shared/data/cifar10-jpeg.zip")
plan.estimate_s, [c.claim.id for c in plan.included]
result = run_plan(plan)          # trains, analyzes, judges
result.verdicts["rho_wd_init"]
```
"""

from __future__ import annotations

import copy
import heapq
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .calibration import Cost, calibration_config, cost_key, load_cache, machine, measure_costs, nc_points, run_seconds, save_cache
from .config import Config, ConfigError, RunSpec, expand_sweep, read_yaml, set_dotted, validate
from .errors import UserError
from .protocol import SCALES, Protocol
from .timescale import config_tau, epochs_for_steps

REPO = Path(__file__).resolve().parent.parent  # protocols name configs relative to the repository root

# The GPU estimate's assumption (no GPU was available to measure one): a training step and an NC
# measurement run 8x faster on one GPU than on this machine's CPU cores, the fixed per-run cost
# unchanged; runs one at a time, no stacking. 8x is the paper convnet's ~4 s per epoch of 10k
# images on 2 CPU cores (measured, README "Measured") against the ~0.5 s estimated for a GPU in
# configs/paper/fig2_init_wd.yaml; both the ratio and that 0.5 s are estimates, not measurements.
GPU_SPEEDUP = 8.0
GPU_ASSUMPTION = (
    f"assumed: one GPU runs a step and an NC measurement {GPU_SPEEDUP:g}x faster than this machine's CPU "
    "(the paper convnet's ~4 s/epoch of 10k images here against ~0.5 s estimated for a GPU; not measured), "
    "fixed per-run cost unchanged, one run at a time, no stacking"
)


class RegistryError(ValueError):
    """The claims registry itself is inconsistent (a bug in the registry, not a user mistake)."""


# ----------------------------------------------------------------------------- user input


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_budget(text: str) -> float:
    """A time budget in seconds: `3h`, `20m`, `90s`, `1h30m`, `1.5h` (units h, m, s, largest first).

    Raises:
        UserError: anything else, or a budget of 0.

    Example: `parse_budget("1h30m")` is 5400.0.
    """
    t = str(text).strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    units = [u for _, u in parts]
    if not t or "".join(f"{n}{u}" for n, u in parts) != t or len(set(units)) != len(units) or units != sorted(units, key="hms".index):
        raise UserError(f"--budget: {text!r} is not a duration; write e.g. 3h, 20m, 90s or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"--budget: {text!r} is no time at all")
    return seconds


def select_claims(text: str | None, claims: tuple | None = None) -> tuple:
    """The claims `--claims` names (ids or numbers, comma-separated), in registry order; all when empty.

    Raises:
        UserError: an unknown id or number (the message lists the valid ids).

    Example: `select_claims("rho_wd_init,7")` gives claims 1 and 7.
    """
    claims = _registry(claims)
    if not text or not text.strip():
        return tuple(claims)
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    by_name = {c.id: c for c in claims} | {str(c.number): c for c in claims}
    bad = [w for w in wanted if w not in by_name]
    if bad:
        raise UserError(f"--claims: unknown claim {bad[0]!r}; valid: {', '.join(f'{c.number} {c.id}' for c in claims)}")
    keep = {by_name[w].id for w in wanted}
    return tuple(c for c in claims if c.id in keep)


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise UserError(f"--scale: {scale!r} is not a scale; use {' or '.join(SCALES)}")
    return scale


def _registry(claims):
    if claims is not None:
        return tuple(claims)
    from .claims import CLAIMS

    return tuple(CLAIMS)


def claim_protocols(claim, scale: str) -> tuple[Protocol, ...]:
    """A claim's protocols at this scale (evidence first, then controls); () when it has none yet."""
    protocols = tuple((getattr(claim, "protocols", None) or {}).get(scale, ()))
    return tuple(p for p in protocols if p.role == "evidence") + tuple(p for p in protocols if p.role == "control")


def unique_protocols(claims, scale: str) -> dict[str, Protocol]:
    """experiment -> its protocol, over the claims' protocols at `scale`, each experiment once.

    Raises:
        RegistryError: two different protocols with one experiment name.

    Example: two claims reading `fig2_init_wd` with the same protocol give one entry.
    """
    seen: dict[str, tuple[Protocol, str]] = {}
    for claim in claims:
        for p in claim_protocols(claim, scale):
            if p.experiment in seen:
                other, who = seen[p.experiment]
                if other.key() != p.key():
                    raise RegistryError(
                        f"registry: experiment {p.experiment!r} has two different protocols at scale {scale} "
                        f"(claims {who} and {claim.id}); one name must be one experiment"
                    )
                continue
            seen[p.experiment] = (p, claim.id)
    return {name: p for name, (p, _) in seen.items()}


# ----------------------------------------------------------------------------- the plan


@dataclass
class PlannedRun:
    """One run of the plan: its spec (epochs set from the protocol's steps), folder and estimate.

    Example: `run.estimate_s / 60` minutes; `run.state` is new, resume, done or diverged.
    """

    spec: RunSpec
    path: Path
    n_train: int
    steps: int
    tau: dict[str, float]
    cost_key: str
    state: str = "new"
    done_fraction: float = 0.0
    estimate_s: float = float("nan")
    remaining_s: float = float("nan")


@dataclass
class ExperimentPlan:
    """One protocol's runs.

    Example: `ExperimentPlan(protocol, runs).steps`
    """

    protocol: Protocol
    runs: list[PlannedRun]

    @property
    def estimate_s(self) -> float:
        return sum(r.estimate_s for r in self.runs)

    @property
    def remaining_s(self) -> float:
        return sum(r.remaining_s for r in self.runs)

    def n_train(self) -> str:
        ns = sorted({r.n_train for r in self.runs})
        return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"

    def tau_text(self) -> str:
        """The elapsed τ of its runs with weight decay (the smallest), and `no WD` for those without."""
        taus = [r.tau["elapsed_tau"] for r in self.runs if r.tau["elapsed_tau"] > 0]
        no_wd = len(taus) < len(self.runs)
        if not taus:
            return "no WD (steps)"
        lo, hi = min(taus), max(taus)
        text = f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f}–{hi:.1f}"
        return text + " τ" + (" + no WD" if no_wd else "")

    def to_dict(self) -> dict:
        taus = [r.tau["elapsed_tau"] for r in self.runs if r.tau["elapsed_tau"] > 0]
        return {
            **asdict(self.protocol),
            "runs": len(self.runs),
            "epochs": sorted({r.spec.config.optim.epochs for r in self.runs}),
            "n_train": sorted({r.n_train for r in self.runs}),
            "steps_per_epoch": sorted({int(r.tau["steps_per_epoch"]) for r in self.runs}),
            "tau_steps": sorted({r.tau["tau_steps"] for r in self.runs if math.isfinite(r.tau["tau_steps"])}),
            "elapsed_tau": min(taus) if taus else None,
            "elapsed_tau_max": max(taus) if taus else None,
            "runs_without_wd": sum(1 for r in self.runs if r.tau["elapsed_tau"] <= 0),
            "estimate_s": self.estimate_s,
        }


@dataclass
class ClaimPlan:
    """A claim's part of the plan: its evidence and control experiments, and whether it fits.

    Args:
        estimate_s: the run-seconds its plan adds (an experiment shared with an earlier claim is
            counted there).
        left_out: why it is not run ("" when it is).
    """

    claim: Any
    evidence: list[str]
    control: list[str]
    estimate_s: float = 0.0
    left_out: str = ""


@dataclass
class Plan:
    """What `sqnc reproduce` will do (see the module docstring).

    Example: `make_plan("outputs/repro", budget_s=7200).included`
    """

    out: Path
    scale: str
    budget_s: float | None
    jobs: int
    claims: list[ClaimPlan]
    experiments: dict[str, ExperimentPlan]
    costs: dict[str, Cost]
    startup_s: float = 0.0
    estimate_s: float = 0.0
    remaining_s: float = 0.0
    gpu_estimate_s: float | None = None
    datasets: dict = field(default_factory=dict, repr=False)
    data_dir: str | None = None

    @property
    def included(self) -> list[ClaimPlan]:
        return [c for c in self.claims if not c.left_out]

    def included_experiments(self) -> list[ExperimentPlan]:
        names = dict.fromkeys(n for c in self.included for n in c.evidence + c.control)
        return [self.experiments[n] for n in names]

    def runs(self) -> list[PlannedRun]:
        return [r for e in self.included_experiments() for r in e.runs]


def protocol_config(p: Protocol) -> Config:
    """The protocol's config: the file, the overrides, `name` = the experiment, its sweep.

    Raises:
        RegistryError: the config cannot be read or is invalid with these overrides.
    """
    try:
        raw = copy.deepcopy(read_yaml(REPO / p.config))
        for key, value in p.overrides.items():
            set_dotted(raw, key, copy.deepcopy(value))
        raw["name"] = p.experiment
        if p.sweep:
            raw["sweep"] = copy.deepcopy(p.sweep)
        return validate(raw)
    except ConfigError as err:
        raise RegistryError(f"registry: protocol {p.experiment} ({p.config}): {err}") from None


def protocol_runs(
    p: Protocol, out: Path, datasets: dict, data_dir: str | None = None, load_s: dict | None = None
) -> list[tuple[RunSpec, Path]]:
    """The protocol's runs with `optim.epochs` = the fewest whole epochs that make `p.steps` steps
    on each run's training set (loaded into `datasets`, by data key, when not there yet; the
    seconds each load took go to `load_s`).

    Raises:
        UserError: the data cannot be loaded (a missing --data-dir, ...).
        RegistryError: an invalid config.

    Example: a 1,000-image protocol of 8,000 steps at batch 128 gets 8 steps/epoch, 1,000 epochs.
    """
    from .data import data_key, load_clean_dataset

    cfg = protocol_config(p)
    try:
        specs = expand_sweep(cfg)
    except ConfigError as err:
        raise RegistryError(f"registry: protocol {p.experiment}: {err}") from None
    runs = []
    for spec in specs:
        key = data_key(spec.config)
        if key not in datasets:
            t0 = time.perf_counter()
            datasets[key] = load_clean_dataset(spec.config, data_dir)
            if load_s is not None:
                load_s[key] = time.perf_counter() - t0
        n = len(datasets[key].y_train)
        o = spec.config.optim
        d = spec.config.to_dict()
        d["optim"]["epochs"] = epochs_for_steps(p.steps, n, o.batch_size, o.full_batch)
        try:
            config = validate(d)
        except ConfigError as err:
            raise RegistryError(f"registry: protocol {p.experiment} [{spec.run_id}]: {err}") from None
        runs.append((RunSpec(spec.run_id, config), Path(out) / p.experiment / spec.run_id))
    return runs


def worker_threads(jobs: int) -> int:
    """The threads each run gets: all cores in one process, cores // jobs in `--jobs` workers."""
    cores = os.cpu_count() or 1
    return cores if jobs <= 1 else max(1, cores // jobs)


def _startup_key(threads: int) -> str:
    from . import backend

    return json.dumps({"backend": backend.NAME, "startup": threads}, sort_keys=True)


def makespan(seconds: list[float], jobs: int) -> float:
    """Wall seconds of these runs on `jobs` workers taking them longest first (LPT scheduling).

    Example: `makespan([3, 3, 2, 2, 2], 2)` is 7.0 (3+2+2 on one worker, 3+2 on the other).
    """
    loads = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def make_plan(
    out,
    budget_s: float | None = None,
    scale: str = "cpu",
    claims: tuple | None = None,
    data_dir: str | None = None,
    jobs: int = 1,
    costs: dict[str, Cost] | None = None,
    calibrate: bool = True,
    console=None,
) -> Plan:
    """Plan the claims' protocols at `scale` within `budget_s` (module docstring, steps 1-4).

    Args:
        out: the output root (runs under OUT/<experiment>/<run_id>).
        budget_s: the wall-time budget in seconds; None: every claim.
        scale: `cpu` or `paper`.
        claims: the claims to plan (default: the registry's, `select_claims`).
        data_dir: the image folder / zip of `data.source: folder` protocols.
        jobs: local worker processes.
        costs: cost key -> `Cost` to use (injected numbers, e.g. in tests); missing keys are
            taken from the cache, else measured (`calibrate`), else an error.
        calibrate: measure what neither `costs` nor the cache holds.
        console: where calibration says what it times.

    Raises:
        UserError: a bad scale, missing data, a conflicting run directory, a budget that fits no claim.
        RegistryError: the registry's protocols are inconsistent or invalid.

    Example: `make_plan("outputs/repro", 7200, claims=select_claims("1,7")).estimate_s`
    """
    from .data import data_key
    from .experiment import check_rundir
    from .rundir import RunDir
    from .sweep import validate_plan

    scale = check_scale(scale)
    claims = _registry(claims)
    out = Path(out)
    protocols = unique_protocols(claims, scale)
    datasets: dict = {}
    load_s: dict[str, float] = {}
    experiments: dict[str, ExperimentPlan] = {}
    threads = worker_threads(jobs)
    for name, p in protocols.items():
        items = protocol_runs(p, out, datasets, data_dir, load_s)
        validate_plan(items, None, datasets)  # data and run directories, before anything is written
        runs = []
        for spec, path in items:
            ds = datasets[data_key(spec.config)]
            n = len(ds.y_train)
            tau = config_tau(spec.config, n_train=n)
            run = PlannedRun(spec, path, n, int(tau["steps"]), tau, cost_key(spec.config, ds.x_train.shape[1:], n, threads))
            state = check_rundir(spec.config, RunDir(path))
            run.state = state
            if state in ("done", "diverged"):
                run.done_fraction = 1.0
            elif state == "resume":
                epoch = int((RunDir(path).read_status() or {}).get("epoch", 0) or 0)
                run.done_fraction = min(1.0, epoch / spec.config.optim.epochs)
            runs.append(run)
        experiments[name] = ExperimentPlan(p, runs)
    costs = _costs(experiments, datasets, dict(costs or {}), threads, jobs, calibrate, console)
    # `--jobs` workers start (in parallel) and each loads the datasets of the runs it is handed
    # (at worst all of them, as long as they took here); one process has loaded them already.
    startup = costs.get(_startup_key(threads), Cost(0, 0, 0, 0)).host_s + sum(load_s.values()) if jobs > 1 else 0.0
    for e in experiments.values():
        for r in e.runs:
            cost = costs[r.cost_key]
            n_nc = nc_points(r.spec.config)
            r.estimate_s = run_seconds(cost, r.steps, r.n_train, n_nc)
            r.remaining_s = run_seconds(cost, r.steps, r.n_train, n_nc, r.done_fraction)
    plan = Plan(out, scale, budget_s, jobs, [], experiments, costs, startup, datasets=datasets, data_dir=data_dir)
    _fit_budget(plan, claims)
    runs = plan.runs()
    plan.estimate_s = makespan([r.estimate_s for r in runs], jobs) + startup if runs else 0.0
    left = [r.remaining_s for r in runs if r.remaining_s > 0]
    plan.remaining_s = makespan(left, jobs) + startup if left else 0.0
    if scale == "paper" and not _has_gpu():
        plan.gpu_estimate_s = sum(_gpu_seconds(plan.costs[r.cost_key], r) for r in runs)
    return plan


def _gpu_seconds(cost: Cost, run: PlannedRun) -> float:
    return cost.host_s + (run_seconds(cost, run.steps, run.n_train, nc_points(run.spec.config)) - cost.host_s) / GPU_SPEEDUP


def _has_gpu() -> bool:
    from . import backend

    return "gpu" in str(backend.devices()).lower()


def _costs(experiments, datasets, costs: dict, threads: int, jobs: int, calibrate: bool, console) -> dict[str, Cost]:
    """Every cost key of the plan's runs (and a worker's start with `--jobs`): given, cached, or measured."""
    from .data import data_key

    cached = load_cache()
    need: dict[str, Config] = {}
    for e in experiments.values():
        for r in e.runs:
            if r.cost_key in costs:
                continue
            if r.cost_key in cached:
                costs[r.cost_key] = cached[r.cost_key]
            elif r.cost_key not in need:
                x = datasets[data_key(r.spec.config)].x_train
                need[r.cost_key] = calibration_config(r.spec.config, x.shape[1:], r.n_train)
    skey = _startup_key(threads)
    want_startup = jobs > 1 and skey not in costs
    if want_startup and skey in cached:
        costs[skey], want_startup = cached[skey], False
    if need or want_startup:
        if not calibrate:
            raise UserError(f"calibration: no measured cost for {len(need)} kind(s) of run on this machine; run without --no-calibrate")
        measured = measure_costs(need, threads if jobs > 1 else None, console, startup=want_startup)
        if "startup" in measured:
            measured[skey] = measured.pop("startup")
        save_cache(measured)
        costs.update(measured)
    return costs


def _fit_budget(plan: Plan, claims) -> None:
    """The claims in registry order, each whole or left out (module docstring, step 4)."""
    taken: dict[str, None] = {}
    for claim in claims:
        ps = claim_protocols(claim, plan.scale)
        cp = ClaimPlan(claim, [p.experiment for p in ps if p.role == "evidence"], [p.experiment for p in ps if p.role == "control"])
        plan.claims.append(cp)
        if not ps:
            cp.left_out = f"no protocol at scale {plan.scale}"
            continue
        new = [n for n in dict.fromkeys(cp.evidence + cp.control) if n not in taken]
        cp.estimate_s = sum(plan.experiments[n].estimate_s for n in new)
        if plan.budget_s is not None:
            trial = [r.estimate_s for n in list(taken) + new for r in plan.experiments[n].runs]
            wall = makespan(trial, plan.jobs) + (plan.startup_s if trial else 0.0)
            if wall > plan.budget_s:
                cp.left_out = f"over budget: with it the plan takes {_minutes(wall)} min > {_minutes(plan.budget_s)} min"
                continue
        taken.update(dict.fromkeys(new))
    if plan.budget_s is not None and not plan.included and any(claim_protocols(c, plan.scale) for c in claims):
        cheapest = min(c.estimate_s for c in plan.claims if claim_protocols(c.claim, plan.scale))
        raise UserError(f"--budget: {_minutes(plan.budget_s)} min fits no claim; the cheapest needs about {_minutes(cheapest)} min")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}" if seconds < 600 else f"{seconds / 60:.0f}"


# ----------------------------------------------------------------------------- display


def plan_table(plan: Plan):
    """The plan as a table (rows per claim and protocol): runs × steps × images, elapsed τ (or
    `no WD`: the claim's time scale is then its steps), estimated minutes, and the total against
    the budget in the notes.

    Example: `rich.console.Console().print(plan_table(plan))`.
    """
    from .sweep import FitTable

    rows, notes = [], []
    for cp in plan.claims:
        head = {"claim": f"{cp.claim.number} {cp.claim.id}"}
        if cp.left_out and not (cp.evidence or cp.control):
            rows.append({**head, "role": "—", "exp": cp.left_out})
            continue
        for i, name in enumerate(cp.evidence + cp.control):
            e = plan.experiments[name]
            rows.append(
                {
                    **(head if i == 0 else {}),
                    # The claim's role for it (an experiment read as evidence by one claim can be
                    # another's control, or both for one claim: claim 1 reads cpu_fig2's WD-0 runs
                    # as its control), not the role of whichever protocol was planned first.
                    "role": ("evidence" if i < len(cp.evidence) else "control") + (" (left out)" if cp.left_out else ""),
                    "exp": name,
                    "runs": str(len(e.runs)),
                    "steps": f"{e.protocol.steps:,}",
                    "images": e.n_train(),
                    "tau": e.tau_text(),
                    "min": _minutes(e.estimate_s),
                    "left": _minutes(e.remaining_s) if e.remaining_s < e.estimate_s else "",
                }
            )
    columns = [
        ("claim", "claim", "left"),
        ("role", "role", "left"),
        ("experiment", "exp", "left"),
        ("runs", "runs", "right"),
        ("steps\n/run", "steps", "right"),
        ("images", "images", "right"),
        ("elapsed\nτ", "tau", "right"),
        ("est.\nmin", "min", "right"),
        ("left\nmin", "left", "right"),
    ]
    budget = f" against a budget of {_minutes(plan.budget_s)} min" if plan.budget_s is not None else ""
    over = plan.budget_s is not None and plan.estimate_s > plan.budget_s
    notes.append(
        f"total: {len(plan.runs())} runs, estimated {_minutes(plan.estimate_s)} min on this machine with --jobs {plan.jobs}"
        f"{budget}{' (OVER BUDGET)' if over else ''}; still to run: {_minutes(plan.remaining_s)} min"
    )
    for cp in plan.claims:
        if cp.left_out and (cp.evidence or cp.control):
            notes.append(f"left out: {cp.claim.number} {cp.claim.id}: {cp.left_out} (its protocol is not shortened)")
    if plan.gpu_estimate_s is not None:
        notes.append(f"GPU estimate (not measured): {_minutes(plan.gpu_estimate_s)} min; {GPU_ASSUMPTION}")
    notes.append(
        "τ = (1−β)/(ηλ) steps (SPEC §13); elapsed τ of the runs with weight decay; without it the claim's time scale is its steps"
    )
    return FitTable(f"sqnc reproduce: scale {plan.scale}, {len(plan.included)} of {len(plan.claims)} claims", columns, rows, notes, plain=3)


# ----------------------------------------------------------------------------- running and judging


@dataclass
class Reproduction:
    """What `run_plan` did: the runs' results, wall time, and per claim its verdicts.

    Example: `result.verdicts["rho_wd_init"]["control_verdict"]`
    """

    plan: Plan
    results: list[dict]
    wall_s: float
    verdicts: dict[str, dict]
    report_files: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)  # 1-minute load average at the start and the end


class Eta:
    """A line per finished run with the time so far and an ETA: the remaining runs' estimates
    scaled by the ratio of the finished runs' real to estimated seconds.

    Example: `Eta(plan.runs(), console)(result)` after each run.
    """

    def __init__(self, runs: list[PlannedRun], console=None, jobs: int = 1):
        self.estimates = {f"{r.spec.config.name}/{r.spec.run_id}": r.remaining_s for r in runs}
        self.by_path = {str(r.path): f"{r.spec.config.name}/{r.spec.run_id}" for r in runs}
        self.console, self.jobs, self.t0 = console, jobs, time.time()
        self.done: dict[str, float] = {}
        self.real = self.estimated = 0.0

    def __call__(self, res: dict) -> None:
        name = self.by_path.get(str(res.get("rundir")), res.get("run_id", "?"))
        self.done[name] = self.estimates.get(name, 0.0)
        if not res.get("skipped"):
            self.real += float(res.get("seconds") or 0.0)
            self.estimated += self.estimates.get(name, 0.0)
        ratio = self.real / self.estimated if self.estimated > 0 else 1.0
        left = sum(v for k, v in self.estimates.items() if k not in self.done) * ratio / max(1, self.jobs)
        if self.console is not None:
            elapsed = time.time() - self.t0
            what = res["state"] + (" (already)" if res.get("skipped") else f" in {float(res.get('seconds') or 0) / 60:.1f} min")
            self.console.print(
                f"[{len(self.done)}/{len(self.estimates)}] {name}: {what}; elapsed {elapsed / 60:.1f} min, ETA {left / 60:.1f} min",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def run_plan(
    plan: Plan, progress: bool = False, console=None, figures: bool = True, evaluate: Callable | None = None
) -> Reproduction:
    """Train the plan's runs (sweep runner), then `analyze` + the report, and judge its claims.

    Args:
        plan: `make_plan(...)`.
        progress: a progress bar per run (one process).
        console: a rich Console for the run lines and ETA, or None.
        figures: draw the figures for the report.
        evaluate: (tables, claims) -> results with `.claim`, `.verdict`, `.why`, `.numbers`,
            `.control_verdict` (default `claims.evaluate_claims`).

    Example: `run_plan(make_plan("outputs/repro", 7200)).verdicts`
    """
    from .report import make_report
    from .stackplan import choose_stack
    from .sweep import plan_units, train_units

    t0, load0 = time.time(), _load()
    runs = plan.runs()
    if not runs:
        raise UserError(f"nothing to run: none of the selected claims has a protocol at scale {plan.scale}")
    items = [(r.spec, r.path) for r in runs]
    units, said = [], False
    for e in plan.included_experiments():  # stacks within one protocol, as `sqnc run` stacks a sweep
        sub = [(r.spec, r.path) for r in e.runs]
        k, note = choose_stack(sub, plan.datasets, None if said else console)
        said = said or bool(note)
        units += plan_units(sub, k)
    if plan.jobs > 1 and len(units) > 1:
        plan.datasets = {}  # the workers load their own copy: free this one while they train
    results = train_units(items, units, plan.datasets, plan.data_dir, progress, console, plan.jobs, Eta(runs, console, plan.jobs))
    rep = make_report(plan.out, figures=figures)
    verdicts = judge(plan, evaluate)
    return Reproduction(plan, results, time.time() - t0, verdicts, dict(rep.files), {"start": load0, "end": _load()})


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def verdicts_table(result: Reproduction):
    """Per claim: its verdict, its control's verdict and why (a `sweep.FitTable`).

    Example: `rich.console.Console().print(verdicts_table(run_plan(plan)))`.
    """
    from .sweep import FitTable

    rows = [
        {"claim": f"{cp.claim.number} {cp.claim.id}", **{k: str(v or "") for k, v in verdict.items() if k != "numbers"}}
        for cp in result.plan.included
        for verdict in [result.verdicts.get(cp.claim.id, {})]
    ]
    columns = [("claim", "claim", "left"), ("verdict", "verdict", "left"), ("control", "control_verdict", "left"), ("why", "why", "left")]
    return FitTable("verdicts", columns, rows, plain=2)


def judge(plan: Plan, evaluate: Callable | None = None) -> dict[str, dict]:
    """claim id -> verdict, control verdict, why, numbers of the plan's included claims on OUT's tables."""
    from .claims import load_tables

    if evaluate is None:
        from .claims import evaluate_claims as evaluate
    claims = tuple(c.claim for c in plan.included)
    out = {}
    for res in evaluate(load_tables(plan.out), claims):
        out[res.claim.id] = {
            "verdict": res.verdict,
            "control_verdict": getattr(res, "control_verdict", None),
            "why": res.why,
            "numbers": res.numbers,
        }
    return out


def _plain(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python numbers, NaN/inf to None, tuples to lists."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def plan_json(plan: Plan, result: Reproduction | None = None, command: str | None = None) -> dict:
    """The `--json` document: budget, estimates, per claim its runs, estimate and protocols (and
    after a run its verdicts, the wall time and the load average at its start and end).

    Example: `plan_json(plan)["claims"][0]["protocol"][0]["elapsed_tau"]`
    """
    doc = {
        "command": command,
        "scale": plan.scale,
        "budget_s": plan.budget_s,
        "estimate_s": plan.estimate_s,
        "remaining_s": plan.remaining_s,
        "jobs": plan.jobs,
        "gpu_estimate_s": plan.gpu_estimate_s,
        "gpu_assumption": GPU_ASSUMPTION if plan.gpu_estimate_s is not None else None,
        "machine": machine(),
        "calibration": {k: asdict(c) for k, c in plan.costs.items()},
        "claims": [],
    }
    for cp in plan.claims:
        entry = {
            "claim": cp.claim.id,
            "number": cp.claim.number,
            "sentence": cp.claim.sentence,
            "included": not cp.left_out,
            "left_out": cp.left_out or None,
            "runs": sum(len(plan.experiments[n].runs) for n in cp.evidence + cp.control),
            "estimate_s": cp.estimate_s,
            "protocol": [{**plan.experiments[n].to_dict(), "role": "evidence"} for n in cp.evidence],
            "control": [{**plan.experiments[n].to_dict(), "role": "control"} for n in cp.control],
        }
        if result is not None and cp.claim.id in result.verdicts:
            entry.update(result.verdicts[cp.claim.id])
        doc["claims"].append(entry)
    if result is not None:
        doc["wall_s"] = result.wall_s
        doc["load"] = result.load
        doc["runs_by_state"] = _count(r["state"] for r in result.results)
    return _plain(doc)


def _count(states) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(states))


def write_json(doc: dict, path) -> Path:
    """Write the `--json` document (atomically)."""
    from .rundir import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path

"""Planning and executing the runs of a config: sequential, local worker processes, or Ray.

`run_config` is what `sqnc run` calls: it loads and validates the config, expands its `sweep:`
block, loads every distinct dataset and checks every run directory *before* writing anything (so a
bad value in the 40th sweep point fails before the first run starts), then trains the runs. Runs
already `done` are skipped; unfinished ones resume from their checkpoint, so re-running the same
command is how a sweep is continued. A run that fails or diverges is recorded as such and the
sweep goes on.

Executors:
- `local`, `jobs=1`: one run after the other in this process (with a progress bar).
- `local`, `jobs=J`: J spawned worker processes, each limited to cores/J TensorFlow threads so
  the runs do not fight over the cores.
- `ray`: each run is a Ray task (`num_cpus`, `num_gpus` per task) on a local or remote cluster
  (`address`); the output folder must be on a filesystem all nodes share. A task's worker process
  exits after its run (`max_calls=1`) so its GPU memory is returned.

Example:

```python
results = run_config("configs/quickstart.yaml", ["optim.epochs=3"], "outputs")
results = run_config(cfg_path, [], "outputs", jobs=2)
```
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from .config import Config, RunSpec, expand_sweep, load_config
from .data import Dataset, load_clean_dataset, with_label_noise
from .errors import UserError
from .experiment import check_compatible, check_rundir, check_writable, train_and_evaluate
from .rundir import RunDir


def plan_runs(config_path, overrides, out) -> list[tuple[RunSpec, Path]]:
    """The runs of a config and their directories `OUT/<name>/<run_id>`."""
    cfg = load_config(config_path, overrides)
    return [(spec, Path(out) / spec.config.name / spec.run_id) for spec in expand_sweep(cfg)]


def _data_key(config: Config) -> str:
    d = config.data.model_dump(mode="json")
    d.pop("label_noise")  # applied per run, with the run's seed
    return json.dumps(d, sort_keys=True)


def load_datasets(plan, data_dir=None) -> dict[str, Dataset]:
    """Each distinct `data` section loaded once (label noise is applied per run)."""
    cache: dict[str, Dataset] = {}
    for spec, _ in plan:
        key = _data_key(spec.config)
        if key not in cache:
            cache[key] = load_clean_dataset(spec.config, data_dir)
    return cache


def run_states(plan) -> list[dict]:
    """What each run's folder says: new / resume (last epoch) / done / conflict, without training."""
    out = []
    for spec, path in plan:
        rd = RunDir(path)
        try:
            state = check_rundir(spec.config, rd)
        except UserError as err:
            state = f"conflict: {err}"
        status = rd.read_status() or {}
        out.append(
            {
                "run_id": spec.run_id,
                "rundir": str(path),
                "plan": state,
                "state": status.get("state", ""),
                "epoch": status.get("epoch", ""),
                "epochs": spec.config.optim.epochs,
            }
        )
    return out


def validate_plan(plan, data_dir=None) -> dict[str, Dataset]:
    """Every check that can fail on user input, before anything is written."""
    datasets = load_datasets(plan, data_dir)
    for spec, path in plan:
        ds = with_label_noise(datasets[_data_key(spec.config)], spec.config.data.label_noise, spec.config.seed)
        check_compatible(spec.config, ds)
        check_writable(path)
        check_rundir(spec.config, RunDir(path))
    return datasets


def run_config(
    config_path,
    overrides,
    out,
    data_dir=None,
    progress=False,
    console=None,
    jobs: int = 1,
    backend: str = "local",
    address: str | None = None,
    gpus_per_run: float | None = None,
) -> list[dict]:
    """Validate everything, then train each run of the config; returns one result per run."""
    plan = plan_runs(config_path, overrides, out)
    datasets = validate_plan(plan, data_dir)
    if backend == "ray":
        return _run_ray(plan, data_dir, address, gpus_per_run)
    if backend != "local":
        raise UserError(f"--backend: unknown backend {backend!r} (local or ray)")
    if jobs > 1 and len(plan) > 1:
        del datasets  # workers load their own copy
        return _run_processes(plan, data_dir, jobs, console)
    results = []
    for spec, path in plan:
        res = _guarded(
            lambda: train_and_evaluate(
                spec.config, path, data=datasets[_data_key(spec.config)], data_dir=data_dir, progress=progress, console=console
            ),
            spec,
            path,
        )
        results.append(res)
    return results


def _guarded(fn, spec: RunSpec, path) -> dict:
    """Run one training; a crash of this run is recorded and the sweep continues."""
    try:
        res = fn()
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:  # noqa: BLE001 - the run's status.json already says "failed"
        res = {
            "state": "failed",
            "skipped": False,
            "epoch": (RunDir(path).read_status() or {}).get("epoch", 0),
            "reason": f"{type(err).__name__}: {err}",
            "final": None,
            "rundir": str(path),
            "seconds": 0.0,
        }
    res["run_id"] = spec.run_id
    return res


# ----------------------------------------------------------------------------- worker processes


def _limit_threads(threads: int) -> None:
    """Called first thing in a worker: TensorFlow reads its thread pools' sizes once."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


@functools.lru_cache(maxsize=4)
def _worker_dataset(data_json: str, data_dir: str | None) -> Dataset:
    # A worker often trains several runs on the same data (seeds, inits): load it once.
    return load_clean_dataset(Config.model_validate({"data": json.loads(data_json)}), data_dir)


def run_one(config_dict: dict, run_id: str, path: str, data_dir: str | None = None) -> dict:
    """Train one run in this process (the unit of work of the process and Ray executors)."""
    config = Config.model_validate(config_dict)
    spec = RunSpec(run_id, config)
    data = _worker_dataset(_data_key(config), data_dir)
    res = _guarded(lambda: train_and_evaluate(config, path, data=data, data_dir=data_dir), spec, path)
    res["final"] = {k: float(v) for k, v in (res.get("final") or {}).items()}
    return res


def _run_processes(plan, data_dir, jobs: int, console=None) -> list[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: TensorFlow's runtime is not fork-safe once initialized.
    ctx = mp.get_context("spawn")
    results = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, spec.config.to_dict(), spec.run_id, str(path), data_dir): spec.run_id for spec, path in plan}
        for fut in as_completed(futures):
            res = fut.result()
            results[futures[fut]] = res
            if console is not None:
                console.print(f"{res['run_id']}: {res['state']}" + (" (skipped)" if res.get("skipped") else ""), highlight=False)
    return [results[spec.run_id] for spec, _ in plan]


# ----------------------------------------------------------------------------- Ray


def _run_ray(plan, data_dir, address: str | None, gpus_per_run: float | None) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise UserError('--backend ray: Ray is not installed (pip install -e ".[ray]")') from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if gpus_per_run is None:
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_calls=1)(_ray_task)
        refs = [task.remote(spec.config.to_dict(), spec.run_id, str(Path(path).resolve()), data_dir) for spec, path in plan]
        return ray.get(refs)
    finally:
        if started_here:
            ray.shutdown()


def _ray_task(config_dict, run_id, path, data_dir):
    from . import experiment

    experiment.configure_tensorflow()  # memory growth before TensorFlow touches the GPU
    return run_one(config_dict, run_id, path, data_dir)


# ----------------------------------------------------------------------------- display


def summary_table(results: list[dict]):
    """A rich table of the runs' final numbers."""
    from rich.table import Table

    table = Table(title="runs", caption=f"run directories under {Path(results[0]['rundir']).parent}" if results else None)
    for col in ("run", "state", "epoch", "train loss", "train acc", "test acc", "ρ", "mean m̄", "s/epoch"):
        table.add_column(col, justify="left" if col in ("run", "state") else "right", overflow="fold")
    for r in results:
        f = r.get("final") or {}

        def fmt(k, spec=".4g"):
            return format(f[k], spec) if k in f and f[k] == f[k] else ""

        # elapsed_s is cumulative over resumes (and includes the epoch-0 measurement).
        per_epoch = (
            f["elapsed_s"] / r["epoch"] if r["epoch"] and f.get("elapsed_s") == f.get("elapsed_s") and "elapsed_s" in f else float("nan")
        )
        table.add_row(
            r.get("run_id", ""),
            r["state"] + (" (skipped)" if r.get("skipped") else ""),
            str(r["epoch"]),
            fmt("train_loss"),
            fmt("train_acc", ".4f"),
            fmt("test_acc", ".4f"),
            fmt("rho"),
            fmt("margin_mean"),
            f"{per_epoch:.2f}" if per_epoch == per_epoch else "",
        )
    return table


def states_table(states: list[dict]):
    """A rich table for `--dry-run`."""
    from rich.table import Table

    table = Table(title=f"{len(states)} run(s)")
    for col in ("run", "would", "state", "epoch"):
        table.add_column(col, overflow="fold")
    for s in states:
        table.add_row(s["run_id"], s["plan"], s["state"], f"{s['epoch']}/{s['epochs']}" if s["epoch"] != "" else f"-/{s['epochs']}")
    return table

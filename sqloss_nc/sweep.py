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

With `compute.stack` K > 1 (`--stack K`; JAX backend) the unit of work is a stack: up to K runs
that differ only in shape-free values, trained together by `stacking.train_stack` (one stack per
worker process or Ray task; a lone run takes the plain path). `stackplan.choose_stack` turns `auto`
into a K (1 on a CPU); on Ray it decides inside a task, where the GPU is.

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
import time
from pathlib import Path

from .config import Config, RunSpec, expand_sweep, load_config
from .data import Dataset, load_clean_dataset, with_label_noise
from .errors import UserError
from .experiment import check_compatible, check_rundir, check_writable, setting_warnings, train_and_evaluate
from .rundir import RunDir
from .stacking import step_bytes, train_stack
from .stackplan import data_key


def plan_runs(config_path, overrides, out) -> list[tuple[RunSpec, Path]]:
    """The runs of a config and their directories `OUT/<name>/<run_id>`."""
    cfg = load_config(config_path, overrides)
    return [(spec, Path(out) / spec.config.name / spec.run_id) for spec in expand_sweep(cfg)]


_data_key = data_key  # the clean dataset's key (label noise is applied per run, with the run's seed)


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


def check_data_dir(plan, data_dir) -> None:
    """`--data-dir` is read by the `folder` source (and `tfds`, as its data_dir); with `sample`
    or `synthetic` it would be ignored and the run would train on other data than the user named."""
    if data_dir is None:
        return
    for spec, _ in plan:
        source = spec.config.data.source
        if source in ("sample", "synthetic"):
            what = "the shipped CIFAR-10 sample" if source == "sample" else "generated data"
            raise UserError(
                f"--data-dir: data.source is {source!r} ({what}), which reads no folder; add --set data.source=folder to train on {data_dir}"
            )


def check_data_paths(plan, data_dir=None) -> None:
    """What `--dry-run` checks of the data without loading it: `--data-dir` fits each run's
    source, and every folder source's path is an image folder or zip (`data.check_data_path`)."""
    from .data import check_data_path

    check_data_dir(plan, data_dir)
    for spec in {_data_key(spec.config): spec for spec, _ in plan}.values():
        check_data_path(spec.config, data_dir)


def plan_warnings(plan) -> list[str]:
    """`experiment.setting_warnings` of every run of `plan`, each distinct line once."""
    return list(dict.fromkeys(w for spec, _ in plan for w in setting_warnings(spec.config)))


def validate_plan(plan, data_dir=None, datasets: dict[str, Dataset] | None = None) -> dict[str, Dataset]:
    """Every check that can fail on user input, before anything is written (`datasets`: the
    clean datasets by data key when the caller already loaded them)."""
    check_data_dir(plan, data_dir)
    datasets = datasets if datasets is not None else load_datasets(plan, data_dir)
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
    from .stackplan import check_stack_backend, choose_stack, requested_stack

    plan = plan_runs(config_path, overrides, out)
    check_stack_backend(requested_stack(plan))
    datasets = validate_plan(plan, data_dir)
    if backend not in ("local", "ray"):
        raise UserError(f"--backend: unknown backend {backend!r} (local or ray)")
    for line in plan_warnings(plan) if console is not None else ():
        console.print(f"warning: {line}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    if backend == "ray":
        return _run_ray(plan, data_dir, address, gpus_per_run, console)
    units = plan_units(plan, choose_stack(plan, datasets, console, step_bytes=step_bytes)[0])
    return train_units(plan, units, datasets, data_dir, progress, console, jobs)


def train_units(plan, units, datasets, data_dir=None, progress=False, console=None, jobs: int = 1, on_result=None) -> list[dict]:
    """Train validated units of work (`plan_units`): one after the other in this process, or in
    `jobs` local worker processes (which load their own data). Returns one result per run of `plan`.

    Args:
        plan: (spec, run directory) per run; `units`: its runs grouped into units (stacks).
        datasets: the clean datasets by data key (`validate_plan`'s); unused by workers.
        on_result: called with each run's result as it arrives (progress, ETA), or None.

    Example: `train_units(plan, plan_units(plan, 1), validate_plan(plan))`.
    """
    if jobs > 1 and len(units) > 1:
        return _run_processes(plan, units, data_dir, jobs, console, on_result)
    results = []
    for unit in units:
        if len(unit) > 1:
            new = _guarded_stack(lambda: train_stack(unit, datasets, data_dir, console), unit)
        else:
            spec, path = unit[0]
            new = [
                _guarded(
                    lambda: train_and_evaluate(
                        spec.config, path, data=datasets[_data_key(spec.config)], data_dir=data_dir, progress=progress, console=console
                    ),
                    spec,
                    path,
                )
            ]
        for res in new:
            if on_result is not None:
                on_result(res)
        results += new
    return results


def plan_units(plan, k: int) -> list[list]:
    """The units of work: stacks of up to `k` stackable runs (`stackplan.stack_groups`), or every
    run alone when k == 1, in plan order within a group.

    Example: `plan_units(plan, 1) == [[item] for item in plan]`.
    """
    from .stackplan import stack_groups

    return stack_groups(plan, k) if k > 1 else [[item] for item in plan]


def _guarded_stack(fn, unit) -> list[dict]:
    """`_guarded` for a stack: a crash outside the stack's own recording fails each of its runs."""
    try:
        return fn()
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:  # noqa: BLE001
        return [dict(_failed(path, err), run_id=spec.run_id) for spec, path in unit]


def _guarded(fn, spec: RunSpec, path) -> dict:
    """Run one training; a crash of this run is recorded and the sweep continues."""
    try:
        res = fn()
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:  # noqa: BLE001 - the run's status.json already says "failed"
        res = _failed(path, err)
    res["run_id"] = spec.run_id
    return res


def _failed(path, err: Exception) -> dict:
    """The result of a run whose training raised `err`."""
    return {
        "state": "failed",
        "skipped": False,
        "epoch": (RunDir(path).read_status() or {}).get("epoch", 0),
        "reason": f"{type(err).__name__}: {err}",
        "final": None,
        "rundir": str(path),
        "seconds": 0.0,
    }


# ----------------------------------------------------------------------------- worker processes


# A `--jobs` worker's interrupt state. Its SIGINT comes from the terminal's Ctrl-C (the workers
# share the driver's process group) and from the driver, which forwards one on any interrupt
# (SIGTERM / SIGHUP / a SIGINT sent to it alone): so a worker may get two. The first interrupts
# the unit it trains (its runs save their last epoch and say `interrupted`); later ones are
# ignored, so they cannot cut that save short; and no unit starts after it (the pool may already
# have handed this worker its next one).
_WORKER = {"training": False, "stopping": False}


def _interrupt_worker(signum, frame) -> None:
    from .errors import request_stop

    if _WORKER["stopping"]:
        return
    _WORKER["stopping"] = True
    # The stop is remembered (raised again at the next epoch end if this raise is swallowed) and
    # watched (a worker stuck after it prints its stacks and exits: `errors.STOP_GRACE_S`), so the
    # driver, which waits for its workers, always ends.
    err = KeyboardInterrupt()  # no message: the run's status says "interrupted by the user"
    request_stop(err)
    if _WORKER["training"]:
        raise err
    # Idle: raising here would kill the worker, and a dead worker makes the pool kill the others
    # (possibly while they save); the next unit refuses to start instead (`_worker_unit`).


def _worker_unit(items: list[tuple[dict, str, str]], data_dir: str | None = None) -> list[dict]:
    """`run_unit` in a `--jobs` worker, unless the sweep is stopping (then nothing is opened)."""
    _WORKER["training"] = True
    try:
        if _WORKER["stopping"]:
            raise KeyboardInterrupt
        return run_unit(items, data_dir)
    except KeyboardInterrupt:
        pass
    finally:
        _WORKER["training"] = False
    # Raised afresh, outside the handler (no __context__): the pool formats the traceback of what
    # a worker raises, chained ones included, and an interrupt's deep inside a Keras fit took up
    # to ~7 s to format; the driver's exit waited for it.
    raise KeyboardInterrupt("interrupted")


def _init_worker(threads: int) -> None:
    """Called first thing in a worker: its interrupt handler (`_interrupt_worker`), its thread
    pools (the backends read their sizes once) and its quick exit (`_leave_now`)."""
    import atexit
    import signal

    signal.signal(signal.SIGINT, _interrupt_worker)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # numpy's BLAS (OpenBLAS here) sized its pool when this module imported numpy, before the
    # variable above was set; the measurements' float64 algebra (p x p scatters and solves on NC
    # epochs) then ran with all cores in each of J workers and fought the backend's threads
    # (issue 27: NC epochs 5-25 s instead of ~2 s with two runs on 2 cores). Resize it now.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    from . import register_custom_objects

    register_custom_objects()  # Keras and its backend, without the backend's C++ import lines
    from . import backend

    backend.limit_threads(threads)
    atexit.register(_leave_now)  # after the backend's own handlers: runs before them


def _leave_now() -> None:
    """A worker's last act when the pool lets it go. Its interpreter teardown (TensorFlow's
    native threads and objects) was seen taking over 4 s after its last unit (a stack dump of a
    stopped `--jobs 2` sweep's worker, in native code), which the driver waits for; by then
    every file a unit writes is closed and synced and the pool's result queue was written
    synchronously, so the process leaves at once."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


@functools.lru_cache(maxsize=4)
def _worker_dataset(data_json: str, data_dir: str | None) -> Dataset:
    # A worker often trains several runs on the same data (seeds, inits): load it once.
    return load_clean_dataset(Config.model_validate({"data": json.loads(data_json)}), data_dir)


def run_one(config_dict: dict, run_id: str, path: str, data_dir: str | None = None) -> dict:
    """Train one run in this process (the unit of work of the process and Ray executors)."""
    config = Config.model_validate(config_dict)
    spec = RunSpec(run_id, config)
    data = _worker_dataset(_data_key(config), data_dir)
    # A console on stderr (shared with the driver's terminal): a worker's run says where it
    # resumes and its warnings there too, as a run trained in the driver does (issue 28).
    from rich.console import Console

    console = Console(stderr=True)
    res = _guarded(lambda: train_and_evaluate(config, path, data=data, data_dir=data_dir, console=console), spec, path)
    res["final"] = {k: float(v) for k, v in (res.get("final") or {}).items()}
    return res


def run_unit(items: list[tuple[dict, str, str]], data_dir: str | None = None) -> list[dict]:
    """Train one unit of work in this process: a lone run (`run_one`) or a stack, given as
    (config dict, run id, run directory) per run (picklable, for worker processes and Ray)."""
    if len(items) == 1:
        return [run_one(*items[0], data_dir=data_dir)]
    unit = [(RunSpec(run_id, Config.model_validate(c)), Path(path)) for c, run_id, path in items]
    datasets = {_data_key(unit[0][0].config): _worker_dataset(_data_key(unit[0][0].config), data_dir)}
    results = _guarded_stack(lambda: train_stack(unit, datasets, data_dir), unit)
    for res in results:
        res["final"] = {k: float(v) for k, v in (res.get("final") or {}).items()}
    return results


def _unit_items(unit, resolve: bool = False) -> list[tuple[dict, str, str]]:
    return [(spec.config.to_dict(), spec.run_id, str(Path(path).resolve() if resolve else path)) for spec, path in unit]


def _run_processes(plan, units, data_dir, jobs: int, console=None, on_result=None) -> list[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: TensorFlow's runtime is not fork-safe once initialized.
    ctx = mp.get_context("spawn")
    results = {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    try:
        futures = [pool.submit(_worker_unit, _unit_items(unit), data_dir) for unit in units]
        for fut in as_completed(futures):
            for res in fut.result():
                results[res["run_id"]] = res
                if on_result is not None:
                    on_result(res)
                if console is not None:
                    console.print(f"{res['run_id']}: {res['state']}" + (" (skipped)" if res.get("skipped") else ""), highlight=False)
    except BaseException:
        # Interrupted (Ctrl-C; SIGTERM / SIGHUP, which the CLI raises as one) or failing: no
        # queued unit starts, the running ones are interrupted (a worker takes the first SIGINT
        # only) and save their last epoch, and then this returns. Leaving the pool as `with`
        # does would wait for every queued unit to train to its end.
        _interrupt_workers()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[spec.run_id] for spec, _ in plan]


def _interrupt_workers() -> None:
    """SIGINT to this process's worker processes (`_interrupt_worker` handles it)."""
    import multiprocessing
    import signal

    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signal.SIGINT)
        except OSError:
            pass


# ----------------------------------------------------------------------------- Ray


# How often the driver looks at the runs (ray.wait timeout), and how often a non-terminal console
# (log file, CI) gets a line of per-run epochs when nothing finished in between.
RAY_POLL_S = 2.0
RAY_LOG_EVERY_S = 60.0


def _run_ray(plan, data_dir, address: str | None, gpus_per_run: float | None, console=None) -> list[dict]:
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
        # `auto` is decided where the GPU is: in a task like the ones that will train.
        from .stackplan import requested_stack

        k, note = requested_stack(plan), None
        if k == "auto" and gpus_per_run > 0:
            probe = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_calls=1)(_ray_choose_stack)
            k, note = ray.get(probe.remote(_unit_items(plan), data_dir))
        units = plan_units(plan, 1 if k == "auto" else k)  # auto without GPUs: a CPU cluster, no stacking
        if console is not None:
            for line in ([note] if note else []) + ([f"{len(plan)} runs in {len(units)} stack(s) of up to {k}"] if len(units) < len(plan) else []):
                console.print(line, highlight=False, markup=False, soft_wrap=True)
        # A worker killed mid-run (OOM killer, preempted node) is retried by Ray (max_retries);
        # the retry resumes the run (every run of the stack) from its checkpoint, so its numbers
        # are those of an uninterrupted run. A stack is one task with the same GPU share as a run.
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_calls=1)(_ray_task)
        progress = SweepProgress(plan, console)
        refs = {task.remote(_unit_items(unit, resolve=True), data_dir): unit for unit in units}
        pending, results = list(refs), {}
        with progress:
            while pending:
                # Returns when all are done or after RAY_POLL_S with those finished so far.
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=RAY_POLL_S)
                for ref in ready:
                    # A task that still fails after Ray's retries is recorded as failed; the sweep goes on.
                    for res in _guarded_stack(lambda: ray.get(ref), refs[ref]):
                        results[res["run_id"]] = res
                        progress.finished(res)
                progress.poll()
        return [results[spec.run_id] for spec, _ in plan]
    finally:
        if started_here:
            ray.shutdown()


class SweepProgress:
    """Live progress of runs that train elsewhere (Ray workers, maybe on other nodes): runs done /
    running / failed / waiting, and each running run's epoch, read from its `status.json` in the
    shared output folder (written at the run's start and after every epoch). A run counts as
    running once its status says so and was written after this sweep started (an older
    `running` status is a run killed earlier, waiting to be resumed).

    On a terminal it is a rich progress display (one bar for the sweep, one per running run);
    elsewhere (log file, CI) it prints a line when a run starts or ends, and the running runs'
    epochs every `RAY_LOG_EVERY_S` seconds.

    Args:
        plan: `plan_runs(...)`: (spec, run directory) per run.
        console: a rich Console; None shows nothing.

    Example:

    ```python
    with SweepProgress(plan, Console()) as progress:
        ...  # progress.finished(result) as results arrive, progress.poll() now and then
    ```
    """

    def __init__(self, plan, console=None):
        self.plan, self.console = plan, console
        self.since = time.time() - 1.0  # status.json mtimes have coarse resolution on some filesystems
        self.epochs = {spec.run_id: spec.config.optim.epochs for spec, _ in plan}
        self.running: dict[str, int] = {}  # run_id -> last finished epoch
        self.states: dict[str, str] = {}  # run_id -> final state
        self.live = None
        self.last_log = time.time()

    def counts(self) -> str:
        """`3 done · 1 failed · 2 running · 2 waiting (of 8)`; other final states (diverged,
        interrupted, locked) are named when present."""
        from collections import Counter

        finished = Counter(self.states.values())
        parts = [f"{finished.pop('done', 0)} done", f"{finished.pop('failed', 0)} failed"]
        parts += [f"{n} {state}" for state, n in sorted(finished.items())]
        waiting = len(self.plan) - len(self.states) - len(self.running)
        parts += [f"{len(self.running)} running", f"{waiting} waiting"]
        return " · ".join(parts) + f" (of {len(self.plan)})"

    def __enter__(self):
        if self.console is not None and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.live = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(), console=self.console,
            )  # fmt: skip
            self.sweep_task = self.live.add_task("runs", total=len(self.plan), note=self.counts())
            self.run_tasks: dict[str, int] = {}
            self.live.start()
        elif self.console is not None:
            self._say(f"{len(self.plan)} run(s) submitted to Ray")
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
        return False

    def _say(self, text: str) -> None:
        (self.live.console if self.live is not None else self.console).print(text, highlight=False, markup=False, soft_wrap=True)

    def poll(self) -> None:
        """Read the status of every unfinished run and show what changed."""
        started = []
        for spec, path in self.plan:
            if spec.run_id in self.states:
                continue
            rd = RunDir(path)
            try:
                fresh = rd.status_path.stat().st_mtime >= self.since
            except OSError:
                continue
            status = rd.read_status() or {}
            if fresh and status.get("state") == "running":
                if spec.run_id not in self.running:
                    started.append(spec.run_id)
                self.running[spec.run_id] = int(status.get("epoch", 0))
        if self.console is None:
            return
        if self.live is not None:
            for run_id, epoch in self.running.items():
                if run_id not in self.run_tasks:
                    self.run_tasks[run_id] = self.live.add_task(run_id, total=self.epochs[run_id], note="")
                self.live.update(self.run_tasks[run_id], completed=epoch)
            self.live.update(self.sweep_task, note=self.counts())
            return
        for run_id in started:
            self._say(f"{run_id}: running, epoch {self.running[run_id]}/{self.epochs[run_id]}  [{self.counts()}]")
        if self.running and not started and time.time() - self.last_log >= RAY_LOG_EVERY_S:
            self._say("epochs: " + ", ".join(f"{r} {e}/{self.epochs[r]}" for r, e in self.running.items()) + f"  [{self.counts()}]")
            self.last_log = time.time()

    def finished(self, res: dict) -> None:
        """Record a run's result (from `run_one`) and show it."""
        run_id = res["run_id"]
        self.running.pop(run_id, None)
        self.states[run_id] = res["state"]
        if self.console is None:
            return
        if self.live is not None:
            if run_id in self.run_tasks:
                self.live.remove_task(self.run_tasks.pop(run_id))
            self.live.update(self.sweep_task, completed=len(self.states), note=self.counts())
        what = f"{res['state']}" + (" (skipped)" if res.get("skipped") else "") + f", epoch {res.get('epoch', '')}/{self.epochs[run_id]}"
        if res["state"] not in ("done", "locked") and res.get("reason"):
            what += f": {res['reason']}"
        self._say(f"{run_id}: {what}  [{self.counts()}]")


def _ray_task(items, data_dir):
    from . import experiment

    experiment.configure_device()  # GPU memory on demand, before the backend touches the GPU
    return run_unit(items, data_dir)


def _ray_choose_stack(items, data_dir) -> tuple[int, str | None]:
    from . import experiment
    from .stackplan import choose_stack

    experiment.configure_device()
    plan = [(RunSpec(run_id, Config.model_validate(c)), Path(path)) for c, run_id, path in items]
    return choose_stack(plan, data_dir=data_dir, step_bytes=step_bytes)


# ----------------------------------------------------------------------------- display


class FitTable:
    """A table that never breaks a cell across lines: rendered as a table when every column fits
    the console at its widest cell, else as one line per row (`key=value` tokens, wrapped between
    tokens). Numbers, run ids and states are single tokens, so a log file, a CI page or an 80-column
    terminal shows them whole.

    Args:
        title: shown above the table (and above the compact lines).
        columns: `(header, key, justify)` per column; a header may hold a newline (two lines).
        rows: one dict per row, `key -> already formatted text` ("" when there is no value).
        notes: lines printed under the table (legend, where the files are), wrapped between words.
        plain: how many leading columns the compact form prints as bare values (the others as
            `key=value`).
        drop: keys of columns that may be left out, in this order, to keep a table that is too
            wide for the console a table (a note names them); the compact form comes after.

    Example:

    ```python
    t = FitTable("runs", [("run", "run", "left"), ("train\\nloss", "loss", "right")],
                 [{"run": "init=0.1_seed=0", "loss": "0.0904"}])
    rich.console.Console(width=80).print(t)
    ```
    """

    def __init__(
        self, title: str, columns: list[tuple[str, str, str]], rows: list[dict], notes: list[str] = (), plain: int = 2, drop: list[str] = ()
    ):
        self.title, self.columns, self.rows, self.notes, self.plain = title, columns, rows, list(notes), plain
        self.drop = list(drop)

    def widths(self) -> list[int]:
        from rich.cells import cell_len

        return [
            max([cell_len(line) for line in header.split("\n")] + [cell_len(r.get(key, "")) for r in self.rows])
            for header, key, _ in self.columns
        ]

    def compact_lines(self) -> list[str]:
        """One line per row: the leading `plain` columns' values, then `key=value` for the others."""
        lead, rest = [c[1] for c in self.columns[: self.plain]], [c[1] for c in self.columns[self.plain :]]
        return [" ".join([r.get(k, "") for k in lead if r.get(k, "")] + [f"{k}={r[k]}" for k in rest if r.get(k, "")]) for r in self.rows]

    def __rich_console__(self, console, options):
        from rich import box
        from rich.table import Table
        from rich.text import Text

        fitted = None
        for n_left_out in range(len(self.drop) + 1):  # the whole table first, then fewer columns
            left_out = set(self.drop[:n_left_out])
            shown = [(c, w) for c, w in zip(self.columns, self.widths()) if c[1] not in left_out]
            for gap in (2, 1):  # two spaces between columns when they fit, else one
                if sum(w for _, w in shown) + gap * (len(shown) - 1) <= options.max_width:
                    fitted = (shown, gap, [c[0].replace("\n", " ") for c in self.columns if c[1] in left_out])
                    break
            if fitted:
                break
        if fitted:
            shown, gap, names = fitted
            # box.SIMPLE_HEAD's column divider is one blank; padding adds the rest of the gap.
            table = Table(title=self.title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, gap - 1, 0, 0))
            for (header, _, justify), width in shown:
                table.add_column(header, justify=justify, no_wrap=True, width=width)
            for r in self.rows:
                table.add_row(*(r.get(c[1], "") for c, _ in shown))
            yield table
            if names:
                yield Text(f"left out at this width: {', '.join(names)}", style="dim")
        else:
            yield Text(self.title, style="italic")
            for line in self.compact_lines():
                yield Text(line)  # wraps between tokens; a token wider than the console is folded
        for note in self.notes:
            yield Text(note, style="dim")


def _fmt(value, spec: str) -> str:
    """`value` formatted, or "" when missing or NaN (a failed run, an untracked quantity)."""
    return format(value, spec) if isinstance(value, (int, float)) and value == value else ""


# (header, key, justify): short keys, since the compact form prints them as `key=value`.
SUMMARY_COLUMNS = [
    ("run", "run", "left"),
    ("state", "state", "left"),
    ("epoch", "epoch", "right"),
    ("train\nloss", "loss", "right"),
    ("train\nacc", "train_acc", "right"),
    ("test\nacc", "test_acc", "right"),
    ("ρ", "rho", "right"),
    ("mean\nm̄", "margin", "right"),
    ("s/ep", "s/epoch", "right"),
]


def summary_rows(results: list[dict]) -> list[dict]:
    """The formatted cells of `summary_table`: 3 significant digits for the loss and mean margin,
    4 for ρ (it spans decades across inits), 3 decimals for accuracies, 2 for seconds per epoch.

    Args:
        results: what `run_config` returns (one dict per run: run_id, state, epoch, final, ...).

    Example: `summary_rows(run_config(cfg, [], "outputs"))[0]["loss"]` is e.g. `"0.0904"`.
    """
    rows = []
    for r in results:
        f = r.get("final") or {}
        # elapsed_s is cumulative over resumes (and includes the epoch-0 measurement).
        per_epoch = f.get("elapsed_s", float("nan")) / r["epoch"] if r.get("epoch") else float("nan")
        rows.append(
            {
                "run": r.get("run_id", ""),
                "state": r["state"] + ("*" if r.get("skipped") and r["state"] != "locked" else ""),
                "epoch": "" if r.get("epoch") is None else str(r["epoch"]),  # a run locked before its first epoch has none
                "loss": _fmt(f.get("train_loss"), ".3g"),
                "train_acc": _fmt(f.get("train_acc"), ".3f"),
                "test_acc": _fmt(f.get("test_acc"), ".3f"),
                "rho": _fmt(f.get("rho"), ".4g"),
                "margin": _fmt(f.get("margin_mean"), ".3g"),
                "s/epoch": _fmt(per_epoch, ".2f"),
            }
        )
    return rows


def summary_table(results: list[dict]) -> FitTable:
    """The runs' final numbers, as a table that fits the console (else one line per run).

    Args:
        results: what `run_config` returns.

    Example: `rich.console.Console().print(summary_table(run_config(cfg, [], "outputs")))`.
    """
    notes = []
    if any(r.get("skipped") and r["state"] != "locked" for r in results):
        notes.append("* finished before this command (skipped)")
    # A run another process is training right now is not finished: say who trains it.
    notes += [f"{r.get('run_id', '')}: {r['reason']} (skipped here)" for r in results if r["state"] == "locked" and r.get("reason")]
    if results:
        notes.append(f"run directories under {Path(results[0]['rundir']).parent}")
    return FitTable("runs", SUMMARY_COLUMNS, summary_rows(results), notes)


def states_table(states: list[dict], stacks: tuple[dict, str] | None = None) -> FitTable:
    """What `--dry-run` shows: each run's plan (new / resume / done / conflict) and last epoch.
    A conflict's message (prose, with a path) goes under the table, not into a cell.

    Args:
        states: what `run_states` returns.
        stacks: `stacks_plan(plan)`: each run's stack (a column) and a note on how they stack.

    Example: `rich.console.Console().print(states_table(run_states(plan_runs(cfg, [], "outputs"))))`.
    """
    rows, notes = [], []
    for s in states:
        plan = s["plan"]
        if plan.startswith("conflict: "):
            notes.append(f"{s['run_id']}: {plan.removeprefix('conflict: ')}")
            plan = "conflict"
        epoch = f"{s['epoch']}/{s['epochs']}" if s["epoch"] != "" else f"-/{s['epochs']}"
        rows.append({"run": s["run_id"], "would": plan, "state": s["state"], "epoch": epoch})
    columns = [("run", "run", "left"), ("would", "would", "left"), ("state", "state", "left"), ("epoch", "epoch", "right")]
    if stacks is not None:
        labels, note = stacks
        for row in rows:
            row["stack"] = labels.get(row["run"], "")
        columns.append(("stack", "stack", "right"))
        notes.append(note)
    return FitTable(f"{len(states)} run(s)", columns, rows, notes)


def stacks_plan(plan) -> tuple[dict, str] | None:
    """Which stack each run of `plan` trains in, for `--dry-run`: (run id -> stack number, a
    note), or None when the runs train one by one (`compute.stack: 1`, or nothing can stack).
    With `auto` the stackable groups are shown; their size K is chosen when training starts.

    Args:
        plan: `plan_runs(...)`.

    Example: `stacks_plan(plan_runs(cfg, ["compute.stack=2", "sweep={seed: [0, 1, 2]}"], "out"))`
    gives `({"seed=0": "1", "seed=1": "1", "seed=2": "2"}, "...")`.
    """
    from .stackplan import check_stack_backend, requested_stack

    k = requested_stack(plan)
    check_stack_backend(k)
    units = plan_units(plan, len(plan) if k == "auto" else k)
    if k == 1 or all(len(u) == 1 for u in units):
        return None
    labels = {spec.run_id: str(i) for i, unit in enumerate(units, 1) for spec, _ in unit}
    if k == "auto":
        note = (
            f"stack = group of stackable runs ({len(units)}); compute.stack auto picks the stack size when training starts "
            "(1 on a CPU, on a GPU from its free memory, at most 64)"
        )
    else:
        note = f"{len(plan)} runs in {len(units)} stack(s) of up to {k} (compute.stack), each trained as one vmapped step"
    return labels, note

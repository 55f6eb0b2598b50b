"""One run end to end: `train_and_evaluate(config, workdir)` (the library behind `sqnc run`).

Order of business, so that a user mistake never leaves half-written output: validate the config,
load (and so validate) the data, check the run directory against any earlier run there, and only
then create files. A run directory holding the same config resumes from its checkpoint (the CSVs
are cut back to the checkpointed epoch first, so every epoch appears exactly once); one marked
`done` is skipped; one holding a different config is refused.

Example:

```python
from sqloss_nc.config import load_config
from sqloss_nc.experiment import train_and_evaluate
result = train_and_evaluate(load_config("configs/quickstart.yaml"), "outputs/quickstart/seed=0")
result["state"], result["final"]["test_acc"]
```
"""

from __future__ import annotations

import csv
import errno
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config, ConfigError, RunSpec, config_warnings, epoch_schedule, resolve_steps_per_execution
from .data import Dataset, data_key, load_clean_dataset, with_label_noise
from .errors import UserError
from .rundir import EPOCH_CSVS, RunDir, RunLock, atomic_write_text, current, environment, one_sync, replace_file, sync_file


class RunDirError(UserError):
    """The run directory conflicts with the request (different config, not writable): one line."""


def configure_device() -> None:
    """Let several runs share a GPU: allocate GPU memory on demand instead of all at once."""
    from . import backend

    backend.configure_device()


def check_compatible(cfg: Config, data: Dataset) -> None:
    """Config checks that need the data (raised before anything is written)."""
    from .batches import steps_per_epoch, train_batch_size
    from .models import check_input_shape

    n = len(data.y_train)
    if not cfg.optim.full_batch and cfg.optim.batch_size > n:
        raise ConfigError(f"optim.batch_size: {cfg.optim.batch_size} is larger than the {n} training samples")
    check_input_shape(cfg.model, data.x_train.shape[1:])
    resolve_steps_per_execution(cfg.compute, steps_per_epoch(n, train_batch_size(cfg.optim, n)))


FINISHED = ("done", "diverged")  # rerunning would only repeat them


def check_rundir(cfg: Config, rundir: RunDir) -> str:
    """`new`, `resume`, or the finished state (`done`, `diverged`) of this config in this folder;
    raises on a conflict. The stored config is read through the current schema first, so a run
    written before a key with a default was added still counts as the same config. The `compute`
    section is not compared: it changes how the numbers are computed, not what they are."""
    if rundir.path.exists() and not rundir.path.is_dir():
        raise RunDirError(f"output: {rundir.path} exists and is not a folder")
    old = rundir.read_config()
    if old is None:
        return "new"
    try:
        old = Config.model_validate(old).to_dict()
    except ValueError:
        pass  # an older schema we cannot read: compare as stored, which reports the difference
    new = cfg.to_dict()
    old, new = ({k: v for k, v in d.items() if k != "compute"} for d in (old, new))
    if old != new:
        diff = sorted(_diff_keys(old, new))
        raise RunDirError(f"output: {rundir.path} holds a run with a different config ({', '.join(diff[:4])}); use another --out or name")
    state = (rundir.read_status() or {}).get("state")
    return state if state in FINISHED else "resume"


def check_writable(path: Path) -> None:
    """Fail early and cleanly when the output folder cannot be created or written. Tries a real
    write in the nearest existing folder (as root, permission bits say little; a read-only mount
    or a file in the way says more), leaving nothing behind."""
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RunDirError(f"output: cannot create {path}: {probe} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".sqnc-write-test-"):
            pass
    except OSError as err:
        raise RunDirError(f"output: cannot write to {probe} ({err.strerror or err})") from None


def _diff_keys(a: dict, b: dict, prefix: str = "") -> set[str]:
    out = set()
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out |= _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.add(prefix + k)
    return out


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(rundir: RunDir, network, optimizer, epoch: int) -> None:
    """Weights (all, incl. BatchNorm statistics) and optimizer state after `epoch`, atomically."""
    arrays = {f"w{i}": w for i, w in enumerate(network.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    arrays["epoch"] = np.asarray(epoch)
    tmp = rundir.path / ".checkpoint.tmp.npz"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            sync_file(fh)  # fsynced now, or with the stack's epoch (`rundir.one_sync`)
        replace_file(tmp, rundir.path / "checkpoint.npz")
    except BaseException:
        # A half-written checkpoint is useless, and on a full disk it holds the space that the
        # run's `failed` status still has to be written into.
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(rundir: RunDir, network, optimizer) -> int | None:
    path = rundir.path / "checkpoint.npz"
    if not path.exists():
        return None
    with np.load(path) as ck:
        weights = [ck[f"w{i}"] for i in range(len(network.get_weights()))]
        network.set_weights(weights)
        for i, v in enumerate(optimizer.variables):
            v.assign(ck[f"o{i}"])
        return int(ck["epoch"])


def _truncate_csv(path: Path, last_epoch: int) -> None:
    """Keep the header and the rows with epoch <= last_epoch (rows written after the checkpoint
    by a run that then died); a torn last line is dropped too."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    keep = []
    for r in body:
        try:
            if len(r) == len(header) and int(r[0]) <= last_epoch:
                keep.append(r)
        except ValueError:
            continue
    from io import StringIO

    buf = StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(keep)
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- the run


def train_and_evaluate(
    config: Config, workdir: str | Path, data: Dataset | None = None, data_dir: str | None = None, progress: bool = False, console=None
) -> dict:
    """Train one run as `config` says and write its run directory `workdir`.

    Args:
        config: a validated, sweep-free `Config`.
        workdir: the run directory (`OUT/<name>/<run_id>`).
        data: the clean dataset for `config.data` (loaded here when None); label noise is applied
            here with the run seed.
        data_dir: overrides `data.path`.
        progress: show a rich progress bar.
        console: the rich console for the bar.

    Returns:
        {"state", "epoch", "reason", "final" (last metrics row), "rundir", "seconds"}.

    Raises:
        whatever ended the training, after the run's status says `failed` or `interrupted`.
    """
    if config.sweep:
        raise ConfigError("sweep: train_and_evaluate takes one run; expand the sweep first")
    spec = RunSpec(Path(workdir).name, config)
    datasets = None if data is None else {data_key(config): data}
    result = train_runs([(spec, workdir)], lambda runs: fit_epochs(runs, progress, console), datasets, data_dir)[0]
    result.pop("run_id")
    return result


# ----------------------------------------------------------------------------- the run driver


@dataclass
class TrainingRun:
    """A run this process trains: what `train_runs` claims and opens, and the epoch loop
    (`fit_epochs`, or a stack's `stacking.train_epochs`) trains, records and stops.

    Attributes:
        spec: its `RunSpec` (None for the benchmark's file-less runs).
        config: its config; `ds` its dataset (label noise applied).
        rundir, lock: its directory and the claim on it.
        run: its `OpenRun` (network, trainer, optimizer, first epoch, earlier wall time).
        logger: its `RunLogger`, once the epoch loop has attached it.
        stopped: diverged (its status says so; a stack freezes it).
        result: its result (`run_result`); set when it is not trained (finished, locked) or done.
        row: its metrics row of the last epoch every run trained with it recorded (a stack).
    """

    spec: object
    config: Config
    ds: Dataset
    rundir: RunDir | None = None
    lock: RunLock | None = None
    run: OpenRun | None = None
    logger: object = None
    stopped: bool = False
    result: dict | None = None
    row: dict | None = None

    network = property(lambda self: self.run.network)
    trainer = property(lambda self: self.run.trainer)
    optimizer = property(lambda self: self.run.optimizer)
    first_epoch = property(lambda self: self.run.first_epoch)

    def resume_epoch(self) -> int:
        """The epoch a rerun resumes after: that of the checkpoint on disk (the one about to be
        renamed into place, inside a `one_sync` block), 0 without one."""
        try:
            with np.load(current(self.rundir.path / "checkpoint.npz")) as ck:
                return int(ck["epoch"])
        except Exception:  # noqa: BLE001 - none yet (or unreadable): nothing to resume from
            return 0


def open_training_run(spec: RunSpec, path, datasets: dict, data_dir: str | None = None, stack: list[str] | None = None) -> TrainingRun:
    """Check, claim and open one run of a plan: its data (the clean dataset from `datasets` by
    `data_key`, loaded into it when absent, then its own label noise), then `claim_run` and
    `open_run` (resume from its checkpoint, rows past it cut, config and status written).
    `result` is set instead when it is not to be trained (finished, or locked by another process).
    `stack`: the run ids trained together, recorded in its status."""
    key = data_key(spec.config)
    if key not in datasets:
        datasets[key] = load_clean_dataset(spec.config, data_dir)
    ds = with_label_noise(datasets[key], spec.config.data.label_noise, spec.config.seed)
    check_compatible(spec.config, ds)
    r = TrainingRun(spec, spec.config, ds, RunDir(path))
    check_writable(r.rundir.path)
    r.lock, state, r.result = claim_run(spec.config, r.rundir)
    if r.result is None:
        r.run = open_run(spec.config, ds, r.rundir, state, **({"stack": stack} if stack else {}))
    return r


def train_runs(plan: list, train_epochs, datasets: dict | None = None, data_dir: str | None = None) -> list[dict]:
    """The one run driver, for a lone run and a stack alike: claim and open every run of `plan`,
    train their epochs with `train_epochs`, then finish each (`finish_run`), or record why not:
    `interrupted` (Ctrl-C, SIGTERM: re-raised) or `failed`, each run at the epoch it resumes
    after. Locks are released whatever happens.

    Args:
        plan: (RunSpec, run directory) pairs; several are one stack (`stacking.train_stack`).
        train_epochs: callable(runs) training the opened runs (a list of `TrainingRun`),
            attaching each one's `logger`: `fit_epochs` (one run), `stacking.train_epochs`.
        datasets: clean datasets by `data.data_key` (loaded here when absent).
        data_dir: overrides `data.path`.

    Returns:
        One result per run, in plan order (`run_result`, with `run_id`). A failed lone run
        raises its error (after its status says `failed`); a failed stack returns its runs as
        `failed`, so that a sweep goes on.

    Example: `train_runs([(spec, "outputs/quickstart/seed=0")], fit_epochs)[0]["state"]` == "done".
    """
    datasets = {} if datasets is None else datasets
    stack = [spec.run_id for spec, _ in plan] if len(plan) > 1 else None
    runs: list[TrainingRun] = []
    try:
        with one_sync():  # every run's config, status and truncated CSVs: one sync
            for spec, path in plan:  # appended as they open: a failure half-way releases the locks taken
                runs.append(open_training_run(spec, path, datasets, data_dir, stack))
        live = [r for r in runs if r.result is None]
        if live:
            _train_opened(live, train_epochs, raise_failure=len(plan) == 1)
    finally:
        for r in runs:
            if r.lock is not None:
                r.lock.release()
    return [dict(r.result, run_id=r.spec.run_id) for r in runs]


def _train_opened(runs: list[TrainingRun], train_epochs, raise_failure: bool) -> None:
    t0 = time.perf_counter()
    try:
        train_epochs(runs)
    except KeyboardInterrupt as err:
        # Ctrl-C, or SIGTERM / SIGHUP, which the CLI raises as a KeyboardInterrupt naming the signal.
        why = str(err) or "interrupted by the user"
        with one_sync():
            for r in runs:
                if not r.stopped:
                    r.rundir.write_status("interrupted", r.resume_epoch(), reason=f"{why} (rerun the same command to resume)")
        raise
    except Exception as err:  # noqa: BLE001 - recorded for every run; a stack's sweep goes on
        hint = " (free disk space, then rerun the same command to resume)" if getattr(err, "errno", None) == errno.ENOSPC else ""
        reason = f"{type(err).__name__}: {err}{hint}"
        for r in runs:
            if not r.stopped:
                r.rundir.write_status("failed", r.resume_epoch(), reason=reason)
            r.result = run_result(r, "failed", reason, time.perf_counter() - t0)
        if raise_failure:
            raise
        return
    finally:
        for r in runs:
            if r.logger is not None:
                r.logger.close()
    seconds = time.perf_counter() - t0
    with one_sync():
        for r in runs:
            r.result = finish_run(r.rundir, r.ds, r.run, r.logger, seconds)


def run_result(r: TrainingRun, state: str, reason: str | None, seconds: float) -> dict:
    """A run's result, as `train_and_evaluate` and a sweep return it."""
    return {
        "state": state,
        "skipped": False,
        "epoch": r.resume_epoch() if state == "failed" else _last_epoch(r.logger, r.first_epoch),
        "reason": reason,
        "final": r.logger.last_row if r.logger is not None else None,
        "rundir": str(r.rundir.path),
        "seconds": seconds,
    }


def claim_run(cfg: Config, rundir: RunDir) -> tuple[RunLock | None, str | None, dict | None]:
    """Claim `rundir` for training `cfg`: (lock, `new`/`resume`, None), or (None, None, the
    skipped result) when the run is finished or another process holds it. The state is checked
    again under the lock: another process may have finished the run meanwhile."""
    state = check_rundir(cfg, rundir)
    if state in FINISHED:
        return None, None, _skipped(rundir, state)
    rundir.create()
    lock = RunLock(rundir.path)
    if not lock.acquire():
        owner = lock.owner() or {}
        who = f"pid {owner['pid']} on host {owner.get('host')}" if owner.get("pid") else "another process (its .lock is being written)"
        return None, None, dict(_skipped(rundir, "locked"), reason=f"being trained by {who}")
    state = check_rundir(cfg, rundir)
    if state in FINISHED:
        lock.release()
        return None, None, _skipped(rundir, state)
    return lock, state, None


def _skipped(rundir: RunDir, state: str) -> dict:
    status = rundir.read_status() or {}
    return {
        "state": state,
        "skipped": True,
        "backend": (status.get("environment") or {}).get("backend"),  # which backend trained it
        "epoch": status.get("epoch"),
        "reason": None,
        "final": _last_row(rundir),
        "rundir": str(rundir.path),
        "seconds": 0.0,
    }


def build_training(cfg: Config, ds: Dataset):
    """(network, trainer, optimizer) exactly as a run builds them: seeded network, the trainer
    with this normalization's decayed variables, loss and output, compiled with the optimizer and
    the `compute` settings (XLA, steps per execution)."""
    from . import backend
    from .batches import steps_per_epoch, train_batch_size
    from .models import build_network
    from .normalization import decayed_variables
    from .optimizers import make_optimizer
    from .training import SquareLossTrainer

    backend.seed_everything(cfg.seed)
    network = build_network(cfg.model, ds.x_train.shape[1:], ds.num_classes, seed=cfg.seed)
    trainer = SquareLossTrainer(
        network,
        weight_decay=cfg.optim.weight_decay,
        decayed=decayed_variables(network, cfg.model.normalization),
        loss=cfg.loss.kind,
        output=cfg.model.output,
        finite_step_correction=cfg.loss.finite_step_correction,
        loss_k=cfg.loss.k,
        loss_M=cfg.loss.M,
    )
    spe = steps_per_epoch(len(ds.y_train), train_batch_size(cfg.optim, len(ds.y_train)))
    optimizer = make_optimizer(cfg.optim, spe)
    # On JAX the step is always XLA-compiled (an uncompiled JAX step runs op by op).
    jit_compile = cfg.compute.jit_compile or backend.NAME == "jax"
    trainer.compile(optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=resolve_steps_per_execution(cfg.compute, spe))
    optimizer.build(network.trainable_variables)
    return network, trainer, optimizer


def build_tracker(cfg: Config, ds: Dataset, network, trainer):
    """The `Tracker` a run measures with."""
    from .callbacks import Tracker

    return Tracker(
        network,
        ds,
        cfg.optim.weight_decay,
        cfg.model.normalization,
        decayed=trainer.decayed,
        nc_test=cfg.track.nc_test,
        loss=cfg.loss.kind,
        output=cfg.model.output,
        batch_size=cfg.compute.inference_batch,
        jit_compile=cfg.compute.jit_compile,
        loss_k=cfg.loss.k,
        loss_M=cfg.loss.M,
        rank_tol=cfg.track.rank_tol,
        mse_decomposition=cfg.track.mse_decomposition,
    )


@dataclass
class OpenRun:
    """A run ready to train: its Keras objects, restored from its checkpoint when resuming."""

    network: object
    trainer: object
    optimizer: object
    first_epoch: int  # 1 for a fresh run, k+1 when resuming after epoch k
    elapsed: float  # wall seconds of earlier sessions


def setting_warnings(cfg: Config) -> list[str]:
    """Settings that are valid but surely not meant (`config.config_warnings`, the widths that
    `model.width` clamps to 1): printed once by `sqnc run`, kept in each run's status.json.

    Example: `setting_warnings(load_config(None, ["model.width=0.0001"]))[0]` starts `model.width: 0.0001 rounds`.
    """
    from .models import width_warnings

    return [*config_warnings(cfg), *width_warnings(cfg.model)]


def open_run(cfg: Config, ds: Dataset, rundir: RunDir, state: str, **status: object) -> OpenRun:
    """Build the run's network, trainer and optimizer; resume from its checkpoint (cutting the
    rows written after it) or start clean; write its config and a `running` status (`status`
    adds keys, e.g. a stack's run ids)."""
    configure_device()
    network, trainer, optimizer = build_training(cfg, ds)
    first_epoch, elapsed = 1, 0.0
    if state == "resume":
        done_epoch = load_checkpoint(rundir, network, optimizer)
        if done_epoch is not None:
            first_epoch = done_epoch + 1
            elapsed = float((rundir.read_status() or {}).get("wall_time_s", 0.0))
            for name in EPOCH_CSVS:
                _truncate_csv(rundir.path / name, done_epoch)
    if first_epoch == 1:  # nothing reusable: start clean
        for name in EPOCH_CSVS:
            (rundir.path / name).unlink(missing_ok=True)
    rundir.write_config(cfg.to_dict())
    if first_epoch > 1:
        # The run's record of its sessions: each resume, at which epoch and when (status.json).
        earlier = (rundir.read_status() or {}).get("resumed") or []
        status = {"resumed": [*earlier, {"epoch": first_epoch, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}], **status}
    rundir.write_status(
        "running",
        first_epoch - 1,
        reason=None,
        warnings=setting_warnings(cfg),
        data=ds.summary(),
        environment=environment(),
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **status,
    )
    return OpenRun(network, trainer, optimizer, first_epoch, elapsed)


def run_logger(cfg: Config, ds: Dataset, rundir: RunDir, lock: RunLock, run: OpenRun, probe, tracker=None, state=None, durable=None, console=None):
    """The run's `RunLogger` over its `Tracker`, checkpointing (and heart-beating the lock) after
    every epoch; `probe()` gives epoch 0's grad_norm_sq of a fresh run. A stack passes its own
    `tracker` (measuring from its batched pass), `state()` -> (network, optimizer) objects
    whose values the checkpoint saves (default: the run's own) and `durable(epoch)`, whether
    the epoch checkpoints (default: every epoch). A measurement's warning is one line on
    `console` (default: stderr) and an entry of status.json's `warnings`."""
    from .callbacks import RunLogger
    from .optimizers import lr_at_epoch

    epochs = cfg.optim.epochs
    state = state or (lambda: (run.network, run.optimizer))
    return RunLogger(
        rundir,
        tracker if tracker is not None else build_tracker(cfg, ds, run.network, run.trainer),
        lambda e: lr_at_epoch(cfg.optim, e),
        epoch_schedule(cfg.track.margin_epochs, epochs, cfg.track.log_points),
        nc_epochs=epoch_schedule(cfg.track.nc_epochs, epochs, cfg.track.log_points),
        first_epoch=run.first_epoch,
        elapsed_offset=run.elapsed,
        initial_grad_norm_sq=probe,
        checkpoint=lambda e: (save_checkpoint(rundir, *state(), e), lock.heartbeat()),
        durable=durable,
        notify=None if console is None else lambda line: console.print(f"warning: {line}", style="yellow", highlight=False, markup=False, soft_wrap=True),
    )


def finish_run(rundir: RunDir, ds: Dataset, run: OpenRun, logger, seconds: float) -> dict:
    """Save `model.keras` and `theory.csv`, write the final status; the run's result."""
    if logger.last_row is None:  # resumed after its last epoch: nothing trained in this session
        logger.last_row = _last_row(rundir)
    rundir.save_model(run.network)
    last = _last_epoch(logger, run.first_epoch)
    state, reason = ("diverged", logger.divergence) if logger.divergence else ("done", None)
    _write_theory_checks(rundir, ds)
    rundir.write_status(state, last, reason=reason, wall_time_s=logger.elapsed(), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return {"state": state, "skipped": False, "epoch": last, "reason": reason, "final": logger.last_row, "rundir": str(rundir.path), "seconds": seconds}


def resume_line(r: TrainingRun) -> str | None:
    """What a resumed run says before it trains (None for a fresh run): the epoch it resumes at.

    Example: `resume_line(r)` is e.g. `"seed=0: resuming at epoch 31 of 60 (epochs 1-30 from its checkpoint)"`.
    """
    first, epochs = r.first_epoch, r.config.optim.epochs
    name = r.spec.run_id if r.spec is not None else r.rundir.path.name
    if first <= 1:
        return None
    if first > epochs:
        return f"{name}: resuming after its last epoch ({epochs}, all trained before): finishing it"
    return f"{name}: resuming at epoch {first} of {epochs} (epochs 1-{first - 1} from its checkpoint)"


def announce_resume(r: TrainingRun, console) -> None:
    """Print `resume_line(r)` on `console` (also recorded in status.json's `resumed`)."""
    line = resume_line(r)
    if line is not None and console is not None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def fit_epochs(runs: list[TrainingRun], progress: bool = False, console=None) -> None:
    """The epochs of one opened run (`train_runs`' loop for a lone run): its `RunLogger` (and
    the per-step logger, the progress bar) as Keras callbacks of `fit`, from its first epoch."""
    from . import backend
    from .batches import array_batches, steps_per_epoch, train_batch_size
    from .callbacks import StepLogger
    from .progress import EpochProgress

    (r,) = runs
    cfg, ds, run = r.config, r.ds, r.run
    batch_size = train_batch_size(cfg.optim, len(ds.y_train))
    spe = steps_per_epoch(len(ds.y_train), batch_size)
    epochs, first_epoch = cfg.optim.epochs, run.first_epoch

    def probe():
        return run.trainer.probe_grad_norm_sq(array_batches(ds.x_train, ds.y_train, batch_size, cfg.seed, 1, 1))

    announce_resume(r, console)
    r.logger = logger = run_logger(cfg, ds, r.rundir, r.lock, run, probe, console=console)
    callbacks = [logger]
    if cfg.track.step_margins_until > 0:
        callbacks.insert(0, StepLogger(r.rundir, logger.tracker, cfg.track.step_margins_until, cfg.track.step_margins_every, spe))
    if progress:
        callbacks.append(EpochProgress(epochs, first_epoch, r.rundir.path.name, logger, console=console))
    try:
        if first_epoch <= epochs:
            run.trainer.fit(
                backend.epoch_dataset(ds.x_train, ds.y_train, batch_size, cfg.seed, first_epoch, epochs),
                epochs=epochs,
                initial_epoch=first_epoch - 1,
                steps_per_epoch=spe,
                verbose=0,
                callbacks=callbacks,
                shuffle=False,
            )
    finally:
        r.stopped = logger.divergence is not None
        for cb in callbacks:
            if cb is not logger and hasattr(cb, "close"):
                cb.close()


def _write_theory_checks(rundir: RunDir, ds: Dataset) -> None:
    """`theory.csv`: the toy model's predictions against this run (`theory.theory_checks`).
    A measurement aid, so a failure here is recorded in status.json but never fails the run."""
    import pandas as pd

    from .theory import theory_checks

    try:
        metrics = pd.read_csv(rundir.metrics_path)
        nc = pd.read_csv(rundir.nc_path) if rundir.nc_path.exists() else None
        table = theory_checks(metrics, rundir.read_config(), nc, n_train=len(ds.y_train))
        atomic_write_text(rundir.path / "theory.csv", table.to_csv(index=False))
    except Exception as err:  # noqa: BLE001
        rundir.write_status(
            (rundir.read_status() or {}).get("state", "running"),
            (rundir.read_status() or {}).get("epoch", 0),
            theory_error=f"{type(err).__name__}: {err}",
        )


def _last_epoch(logger, first_epoch: int) -> int:
    return int(logger.last_row["epoch"]) if logger.last_row else first_epoch - 1


def _last_row(rundir: RunDir) -> dict | None:
    if not rundir.metrics_path.exists():
        return None
    with open(rundir.metrics_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    return {k: (float(v) if v not in ("", None) else float("nan")) for k, v in rows[-1].items()}

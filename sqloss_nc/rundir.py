"""The run directory (SPEC §6): atomic JSON/YAML writes, per-epoch flushed CSVs, status.

Crash safety: `config.yaml`, `status.json` and `model.keras` are written to a temporary file in
the same folder and renamed over the old one (atomic on POSIX), so a reader never sees half a
file. CSVs are appended one epoch at a time, flushed and fsynced, so a crash loses at most the
epoch in flight.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import schema
from .schema import EPOCH_CSVS  # noqa: F401  (files cut back together on resume; re-exported)

STATES = ("running", "done", "failed", "diverged", "interrupted")


# While a `one_sync()` block is open: final path -> its pending temporary file.
_pending: dict[Path, Path] | None = None


@contextlib.contextmanager
def one_sync(sync: bool = True):
    """Write many runs' files with one sync (a stack's epoch: K runs' rows, checkpoints and
    statuses would otherwise cost ~3 fsyncs each, ~10 ms apiece on this machine's disk).

    Inside the block, files written through this module (`CSVAppender`, `atomic_write_text`,
    `sync_file` / `replace_file`) are flushed to the kernel as they are written, and the atomic
    replacements are held back; at the end one `os.sync()` makes everything durable, then the
    replacements are made, in order. A killed process thus loses at most what was in flight in
    the block (the replacements not yet made: the epoch being written, as without the block; the
    CSV rows past a run's checkpoint are cut on resume), and a power cut never leaves a renamed,
    unsynced file. A `status.json` read inside the block is the pending one (`current`).
    Nested blocks join the outer one.

    With `sync=False` nothing is synced: the rows are flushed to the kernel (a killed process
    loses none of them) and the replacements are made at the end. A stack's epochs between two
    checkpoints use it: a power cut may then lose rows past the last synced checkpoint, which
    resume cuts anyway (`stacking`, `compute.stack_checkpoint_s`).

    Example:

    ```python
    with one_sync():
        for rd in rundirs:
            rd.write_status("running", 3)
    ```
    """
    global _pending
    if _pending is not None:
        yield
        return
    _pending = {}
    try:
        yield
    finally:
        pending, _pending = _pending, None
        if sync:
            os.sync()
        for path, tmp in pending.items():
            os.replace(tmp, path)


def sync_file(fh) -> None:
    """Flush `fh` and fsync it, now or (inside `one_sync`) at the end of the block."""
    fh.flush()
    if _pending is None:
        os.fsync(fh.fileno())


def replace_file(tmp: Path, path: Path) -> None:
    """`os.replace(tmp, path)`, now or (inside `one_sync`) after the block's sync."""
    if _pending is None:
        os.replace(tmp, path)
        return
    path = Path(path)
    old = _pending.pop(path, None)
    if old is not None and Path(old) != Path(tmp):
        Path(old).unlink(missing_ok=True)  # replaced twice in the block: the later one wins
    _pending[path] = Path(tmp)


def current(path: Path) -> Path:
    """The file to read for `path`: its pending replacement inside a `one_sync` block."""
    return _pending.get(Path(path), path) if _pending else path


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; results are meant to be shared like any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            sync_file(fh)
        replace_file(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


class CSVAppender:
    """Append rows with fixed columns; the header is written once; every `write` is flushed.

    Args:
        path: the CSV file (created with a header when absent).
        columns: the column order; missing values are written empty, unknown keys are an error.
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = Path(path), list(columns)
        # Inside `one_sync` a rewritten file (resume cut, widened header) is still pending: append
        # to that one, the inode the rename then puts in place.
        target = current(self.path)
        new = not target.exists() or target.stat().st_size == 0
        self._fh = open(target, "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.columns)
            self._sync()

    def write(self, row: dict[str, Any]) -> None:
        self.write_many([row])

    def write_many(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise KeyError(f"{self.path.name}: unknown columns {sorted(unknown)}")
            self._writer.writerow([_csv_value(row.get(c)) for c in self.columns])
        self._sync()

    def write_array(self, array) -> None:
        """Fast path for long-format numeric blocks: rows in column order."""
        self._writer.writerows(array)
        self._sync()

    def _sync(self) -> None:
        sync_file(self._fh)

    def close(self) -> None:
        self._fh.close()


def environment() -> dict[str, Any]:
    """Versions and device, recorded in `status.json` so numbers can be traced to a setup."""
    import keras

    from . import __version__, backend

    return {
        "sqloss_nc": __version__,
        "backend": backend.NAME,
        **backend.versions(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "device": backend.devices(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


class RunDir:
    """One run's folder `OUT/<experiment>/<run_id>/` and its files.

    Example:

    ```python
    rd = RunDir("outputs/quickstart/seed=0")
    rd.create()
    rd.write_status("running", epoch=0)
    ```
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / schema.CONFIG_YAML)
    status_path = property(lambda self: self.path / schema.STATUS_JSON)
    metrics_path = property(lambda self: self.path / schema.METRICS_CSV)
    margins_path = property(lambda self: self.path / schema.MARGINS_CSV)
    nc_path = property(lambda self: self.path / schema.NC_CSV)
    nc_layers_path = property(lambda self: self.path / schema.NC_LAYERS_CSV)
    model_path = property(lambda self: self.path / schema.MODEL_KERAS)

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict | None:
        return yaml.safe_load(self.config_path.read_text()) if self.config_path.exists() else None

    def read_status(self) -> dict | None:
        try:
            return json.loads(current(self.status_path).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_status(self, state: str, epoch: int, reason: str | None = None, **extra: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        status = self.read_status() or {}
        status.update(extra)
        status.update({"state": state, "epoch": int(epoch), "reason": reason, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        atomic_write_text(self.status_path, json.dumps(status, indent=2, default=str) + "\n")

    def save_model(self, network) -> None:
        # Keras insists on the `.keras` suffix, so the temporary file keeps it.
        tmp = self.path / ".model.tmp.keras"
        network.save(tmp)
        os.replace(tmp, self.model_path)


class RunLock:
    """An exclusive claim on a run directory, so two `sqnc run` commands (on one machine or on a
    shared filesystem) never train the same run at once.

    The claim is the file `.lock`, created atomically (O_CREAT|O_EXCL) and holding its owner's
    host, pid and start time; its mtime is the owner's heartbeat, refreshed every epoch. A lock is
    stale, and is taken over, when its owner is a dead process on this host, or when its heartbeat
    is older than `stale_after` seconds (an owner on another host cannot be asked). Taking over
    renames the stale file first: of two processes racing for it only one rename succeeds.

    Args:
        path: the run directory.
        stale_after: seconds without heartbeat after which a lock from another host is stale.

    Example:

    ```python
    lock = RunLock("outputs/quickstart/seed=0")
    if lock.acquire():
        try:
            ...  # train, calling lock.heartbeat() every epoch
        finally:
            lock.release()
    ```
    """

    def __init__(self, path: str | Path, stale_after: float = 1800.0):
        self.file = Path(path) / ".lock"
        self.stale_after = stale_after
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        self.held = False

    def owner(self) -> dict | None:
        try:
            return json.loads(self.file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _stale(self) -> bool:
        owner = self.owner()
        try:
            age = time.time() - self.file.stat().st_mtime
        except FileNotFoundError:
            return True
        if owner is None:
            return age > 5.0  # a lock being written right now has no content yet; give it a moment
        if owner.get("host") == self.me["host"]:
            return not _pid_alive(int(owner.get("pid", -1)))
        return age > self.stale_after

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when a live owner holds it."""
        for _ in range(3):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    return False
                try:
                    os.rename(self.file, self.file.with_name(f".lock.stale.{os.getpid()}"))
                    os.unlink(self.file.with_name(f".lock.stale.{os.getpid()}"))
                except FileNotFoundError:
                    pass  # someone else took it over first; try again
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.me, fh)
            self.held = True
            return True
        return False

    def heartbeat(self) -> None:
        if self.held:
            os.utime(self.file)

    def release(self) -> None:
        if self.held:
            owner = self.owner()
            if owner and owner.get("pid") == self.me["pid"] and owner.get("host") == self.me["host"]:
                self.file.unlink(missing_ok=True)
            self.held = False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The run directory (SPEC §6): atomic JSON/YAML writes, per-epoch flushed CSVs, status.

Crash safety: `config.yaml`, `status.json` and `model.keras` are written to a temporary file in
the same folder and renamed over the old one (atomic on POSIX), so a reader never sees half a
file. CSVs are appended one epoch at a time, flushed and fsynced, so a crash loses at most the
epoch in flight.
"""

from __future__ import annotations

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

STATES = ("running", "done", "failed", "diverged", "interrupted")


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
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
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
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="")
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
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def environment() -> dict[str, Any]:
    """Versions and device, recorded in `status.json` so numbers can be traced to a setup."""
    import keras
    import tensorflow as tf

    from . import __version__

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "sqloss_nc": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "device": ", ".join(g.name for g in gpus) if gpus else f"CPU ({os.cpu_count()} cores)",
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

    config_path = property(lambda self: self.path / "config.yaml")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    margins_path = property(lambda self: self.path / "margins.csv")
    nc_path = property(lambda self: self.path / "nc.csv")
    nc_layers_path = property(lambda self: self.path / "nc_layers.csv")
    model_path = property(lambda self: self.path / "model.keras")

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict | None:
        return yaml.safe_load(self.config_path.read_text()) if self.config_path.exists() else None

    def read_status(self) -> dict | None:
        try:
            return json.loads(self.status_path.read_text())
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

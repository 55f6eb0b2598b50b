"""TensorBoard event files from run directories: `sqnc tensorboard OUT`.

The export reads only the per-epoch CSVs of each run directory (`metrics.csv`, `nc.csv`), like
`analyze`, so it works on runs made by any Keras backend, by older versions or on other machines,
and it never touches training. Each run directory `OUT/<name>/<run_id>/` becomes one TensorBoard
run `LOGDIR/<name>/<run_id>/` with one scalar series per numeric column, tagged
`metrics/<column>` and `nc/<column>`, at step = epoch. Values are written as float32 scalar
tensors with TensorBoard's scalar metadata (through TensorBoard's own `DirectoryOutput` writer,
which needs no TensorFlow): float32 because TensorBoard's default (Rust, "fast") data loader
reads scalar tensors of dtype float only and silently drops float64 ones, so a float64 export
showed runs but no curves. The CSVs stay the float64 record; a curve differs from its CSV
column by float32 rounding only (a relative 6e-8, far below what a plot shows; magnitudes above
3.4e38 become inf). Empty cells (a quantity not tracked in that run) are left out. Wall times are the run's `elapsed_s` before the CSV's last
write, so TensorBoard's "relative" axis shows training time.

Rerunning the export replaces each run's event files, so the result is the same however often
it runs (each run is written to a hidden temporary folder and then moved into place).

Example:

```python
from sqloss_nc.tensorboard import export_tensorboard
export = export_tensorboard("outputs")           # -> outputs/tensorboard/<name>/<run_id>/
print(export.runs, export.skipped)               # then: tensorboard --logdir outputs/tensorboard
```
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import schema
from .analysis import read_csv_robust, require_run_dirs
from .errors import UserError

# CSV -> tag prefix. Both are one row per (tracked) epoch with an `epoch` column.
CSVS = {schema.METRICS_CSV: "metrics", schema.NC_CSV: "nc"}
EVENTS_PREFIX = "events.out.tfevents."


@dataclass
class TensorBoardExport:
    """What `export_tensorboard` wrote.

    Attributes:
        logdir: the folder to give `tensorboard --logdir`.
        runs: run name (path relative to OUT) -> number of scalar points written.
        skipped: (run name, why) for run directories with nothing to export.
        problems: (run name, problem) for CSVs read with repairs (a torn last line, ...).
    """

    logdir: Path
    runs: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def run_scalars(run_dir: Path) -> tuple[list[tuple[str, int, float, float]], list[str]]:
    """The scalar points of one run directory, from its per-epoch CSVs.

    Args:
        run_dir: a run directory (holds `metrics.csv`, maybe `nc.csv`).

    Returns:
        ([(tag, step, value, wall_time), ...], problems found while reading the CSVs).

    Example: `points, _ = run_scalars(Path("outputs/quickstart/seed=0"))`, then
    `points[0]` is e.g. `("metrics/train_loss", 0, 0.4999, 1.7e9)`.
    """
    points, problems = [], []
    end_time, elapsed = _clock(run_dir)
    for name, prefix in CSVS.items():
        path = run_dir / name
        if not path.exists():
            continue
        df, found = read_csv_robust(path)
        problems += found
        if df is None or "epoch" not in df.columns:
            continue
        df = df.dropna(subset=["epoch"])
        for col in df.columns:
            if col == "epoch" or not np.issubdtype(df[col].dtype, np.number):
                continue
            for epoch, value in zip(df["epoch"].astype(int), df[col].astype(float)):
                if value == value:  # an empty cell: not tracked at that epoch
                    points.append((f"{prefix}/{col}", int(epoch), float(value), end_time - elapsed.get(int(epoch), 0.0)))
    return points, problems


def _clock(run_dir: Path) -> tuple[float, dict[int, float]]:
    """(time of the last metrics row, epoch -> seconds before it), from `elapsed_s`."""
    path = run_dir / schema.METRICS_CSV
    try:
        end = path.stat().st_mtime
    except OSError:
        return 0.0, {}
    df, _ = read_csv_robust(path)
    if df is None or "elapsed_s" not in df.columns or "epoch" not in df.columns or df["elapsed_s"].isna().all():
        return end, {}
    last = float(df["elapsed_s"].max())
    return end, {int(e): last - float(s) for e, s in zip(df["epoch"], df["elapsed_s"]) if e == e and s == s}


def export_tensorboard(out: str | Path, logdir: str | Path | None = None) -> TensorBoardExport:
    """Write TensorBoard event files for every run directory under `out`.

    Args:
        out: the output root of `sqnc run` (holds `<name>/<run_id>/` folders).
        logdir: where the event files go (default `OUT/tensorboard`); one TensorBoard run per
            run directory, named by its path under `out`.

    Returns:
        A `TensorBoardExport` (the logdir, points per run, skipped runs, CSV problems).

    Raises:
        UserError: `out` is not a folder, holds no run directories, or none of them has
            per-epoch rows yet, or TensorBoard is not installed; nothing is written then.

    Example:

    ```python
    export_tensorboard("outputs")                      # outputs/tensorboard/...
    export_tensorboard("outputs", "/tmp/tb")           # elsewhere
    ```
    """
    from .analysis import AnalysisError

    from .startup import quietly

    try:
        # TensorBoard's writer uses TensorFlow when it is installed: imported here with its C++
        # import lines filtered, as the CLI imports it, instead of printing them mid-export.
        from importlib.util import find_spec

        quietly(lambda: find_spec("tensorflow") is not None and __import__("tensorflow"))
        from tensorboard.plugins.scalar import metadata as scalar_metadata
        from tensorboard.summary import DirectoryOutput
    except ImportError:
        raise UserError('sqnc tensorboard: TensorBoard is not installed (pip install -e ".[tensorboard]")') from None

    out = Path(out)
    run_dirs, _ = require_run_dirs(out)
    logdir = Path(logdir) if logdir is not None else out / "tensorboard"
    result = TensorBoardExport(logdir)
    planned = []
    for run_dir in run_dirs:
        name = run_dir.relative_to(out).as_posix()
        points, problems = run_scalars(run_dir)
        result.problems += [(name, p) for p in problems]
        if points:
            planned.append((name, points))
        else:
            result.skipped.append((name, "no per-epoch rows in metrics.csv or nc.csv yet"))
    if not planned:
        raise AnalysisError(f"OUT: none of the {len(run_dirs)} run directories under {out} has per-epoch rows yet (metrics.csv)")
    logdir.mkdir(parents=True, exist_ok=True)
    for name, points in planned:
        target = logdir / name
        # Write the whole run aside, then swap it in: a rerun replaces, never appends.
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=logdir))
        writer = DirectoryOutput(str(tmp))
        try:
            for tag, step, value, wall_time in points:
                writer.emit_scalar(
                    plugin_name=scalar_metadata.PLUGIN_NAME, tag=tag, data=_float32(value), step=np.int64(step), wall_time=wall_time
                )
        finally:
            writer.close()
        _replace_events(target, tmp)
        result.runs[name] = len(points)
    return result


def _float32(value: float) -> np.float32:
    """`value` as float32, the only scalar dtype TensorBoard's default (Rust) loader shows;
    overflow to +-inf is the intended result for magnitudes above float32's range, so numpy's
    overflow warning is silenced."""
    with np.errstate(over="ignore"):
        return np.float32(value)


def _replace_events(target: Path, new: Path) -> None:
    """Move the event files of `new` into `target`, dropping target's older event files only
    (anything else a user put there stays)."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob(EVENTS_PREFIX + "*"):
        old.unlink()
    for f in new.iterdir():
        os.replace(f, target / f.name)
    shutil.rmtree(new, ignore_errors=True)


__all__ = ["TensorBoardExport", "export_tensorboard", "run_scalars"]

"""Run directories -> tables (the library behind `sqnc analyze OUT`).

This module reads only what SPEC §6 puts in a run directory (`config.yaml`, `status.json`,
`metrics.csv`, `nc.csv`, `nc_layers.csv`, `margins.csv`, `spectra.csv`, and the optional
`theory.csv`, `steps.csv`, `margins_steps.csv`, `class_gram.csv`); it never imports the training code, so it works on runs made by
older versions of the tool or on other machines, and on runs still in progress.

A run directory is any folder under OUT holding `config.yaml`, `status.json` or `metrics.csv`
(runs normally live at `OUT/<experiment>/<run_id>/`; `OUT/analysis`, `OUT/figures` and
`OUT/simulations` are not searched). The experiment of a run is its parent folder relative to OUT.

What goes where (all under `OUT/analysis/`, each written atomically):

| table | one row per | columns |
|---|---|---|
| `runs.csv` | run (all runs, whatever their state) | experiment, run_id, path, setting, seed, the flattened config (`model.init_scale`, ...), state, status_epoch, reason, wall_time_s, n_train, n_test, label_noise_realised, class_names (JSON list, index = label), last_epoch, the last metrics row (`train_loss`, `rho`, ...), nc_epoch and the last nc row (`nc1`, ...), aggregated (bool) |
| `summary.csv` | setting (experiment + every config key but `seed`) | experiment, setting, n_seeds, seeds, the config, epochs_min, epochs_max, `<metric>_mean`, `<metric>_std` of the final values |
| `epochs.csv` | setting x epoch | experiment, setting, epoch, n_runs, `<metric>_mean`, `<metric>_std` of `metrics.csv` |
| `nc_epochs.csv` | setting x NC epoch | the same for `nc.csv` |
| `nc_layers_epochs.csv` | setting x epoch x split x layer x measure | depth (the layer's position in the run's `nc_layers.csv`, 0 = first), n_runs, mean, std of `nc_layers.csv` (`trace_ratio`, `cdnv`, `ncc_accuracy`, `alignment`) |
| `nc_layers_final.csv` | setting x split x layer x measure | the same at each run's last NC epoch (`epoch`): the layer-wise collapse against depth |
| `spectra_epochs.csv` | setting x epoch x layer x index | depth, n_runs, `singular_value_mean/std`, `sv_normalized_mean/std` (σ_i/σ_1 of each run, then over seeds) of `spectra.csv` |
| `rank_epochs.csv` | setting x epoch x layer | depth, n_singular (min(out, fan_in)), n_runs, `rank_mean/std`, `stable_rank_mean/std` |
| `rank_final.csv` | setting x layer | the same at each run's last spectra epoch, with the axes of "rank against batch size and weight decay": `batch` (`optim.batch_size`, or `full` for `optim.full_batch`), `batch_size_numeric` (the batch size; N for full batch), `full_batch`, `optim.weight_decay` |
| `update_norms.csv` | setting x layer (and `all layers`) | `epoch_first`, `epoch_last` of the tail window (the last 10% of the epochs, at least 1), n_runs, mean/std over seeds of `tail` (mean of `update_norm_<layer>` over the window), `tail_min` (its minimum there) and `first` (epoch 1): is the SGD noise bounded away from zero at the end? |
| `class_gram_final.csv` | setting x split x i x j | the C x C Gram matrix of the normalized centred class means (runs' `class_gram.csv`) at each run's last epoch: epoch, n_runs, mean, std |
| `margins_hist.csv` | setting x margin epoch x quantity x bin | histograms of the per-sample train margins (`normalized` = m/ρ, `raw` = m) pooled over seeds: bin edges, pooled count and density, per-seed density mean/std |
| `steps.csv`, `margins_steps_hist.csv` | the same per SGD step | only when runs hold per-step files |
| `theory.csv`, `rho_flow.csv` | row of a run's `theory.csv` / `rho_flow.csv` | experiment, run_id, setting, state, its columns |
| `simulations.csv` | row of `OUT/simulations/*.csv` | source (file stem), its columns |
| `problems.csv` | problem found | run, problem |

Aggregates (summary, epochs, nc_epochs, histograms) use only runs that finished (`state: done`)
with a config and a complete `metrics.csv`; failed, diverged and unfinished runs stay in
`runs.csv` with their state and are listed in `problems.csv` (`include_partial=True` also
aggregates running/interrupted runs, for a look at runs in flight). Standard deviations are the
sample std over seeds (ddof=1; empty with one seed). Three derived columns are added to every
metrics row: `train_error = 1 - train_acc`, `test_error = 1 - test_acc`, `inv_rho = 1/rho`
(so the mean of 1/ρ over seeds, the paper's Figs 11-12, is exact, not 1/mean ρ), and with
`update_norm_<layer>` columns `update_norm_layer_mean` (their mean over layers, per epoch); runs and
summary rows get `update_norm_tail` (that mean over the tail window of `update_norms.csv`).

A run's `class_gram.csv` (long: `epoch, split, i, j, value`, the Gram matrix
G_ij = cos(μ_i − μ_G, μ_j − μ_G) of its features' class means, split `train` and optionally `test`)
is read when present; the simplex ETF has G_ii = 1, G_ij = −1/(C−1).

Example:

```python
from pathlib import Path
from sqloss_nc.analysis import analyze, key_numbers_table
res = analyze(Path("outputs"))
print(res.summary[["experiment", "setting", "n_seeds", "rho_mean", "test_acc_mean"]])
for run, problem in res.problems:
    print(run, problem)
```
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .config import SHORT_NAMES  # setting labels use the run ids' short names (config is pure Python)
from . import schema
from .errors import UserError
from .rundir import atomic_write_text  # plain file I/O; no TensorFlow at import

ANALYSIS_DIR = "analysis"
SKIP_DIRS = frozenset({"analysis", "figures", "simulations", "tensorboard", "report"})
MARKERS = (schema.CONFIG_YAML, schema.STATUS_JSON, schema.METRICS_CSV, schema.MEASURE_JSON, schema.MONITOR_JSON)
DONE_STATES = frozenset({"done"})
PARTIAL_STATES = frozenset({"running", "interrupted"})
HIST_BINS = 60
IGNORED_FOR_SETTING = ("seed",)
UPDATE_TAIL_FRACTION = 0.1  # the "end of training" window of update_norms.csv: the last 10% of epochs
ALL_LAYERS = "all layers"  # the layer label of update_norm_layer_mean in update_norms.csv


# Per-epoch tables of 1,000-epoch sweeps run to megabytes at full precision; 12 significant
# digits lose nothing a figure or a comparison over seeds can see. Histograms are only drawn.
_FLOAT_FORMAT = {
    "epochs.csv": "%.12g",
    "nc_epochs.csv": "%.12g",
    "nc_layers_epochs.csv": "%.12g",
    "nc_layers_final.csv": "%.12g",
    "spectra_epochs.csv": "%.12g",
    "rank_epochs.csv": "%.12g",
    "rank_final.csv": "%.12g",
    "update_norms.csv": "%.12g",
    "class_gram_final.csv": "%.12g",
    "steps.csv": "%.12g",
    "margins_hist.csv": "%.7g",
    "margins_steps_hist.csv": "%.7g",
}

TABLES = (
    "runs.csv",
    "summary.csv",
    "epochs.csv",
    "nc_epochs.csv",
    "nc_layers_epochs.csv",
    "nc_layers_final.csv",
    "spectra_epochs.csv",
    "rank_epochs.csv",
    "rank_final.csv",
    "update_norms.csv",
    "class_gram_final.csv",
    "margins_hist.csv",
    "steps.csv",
    "margins_steps_hist.csv",
    "theory.csv",
    "rho_flow.csv",
    "simulations.csv",
    "problems.csv",
)


class AnalysisError(UserError):
    """OUT does not exist or holds no run directories (one line, for the CLI)."""


@dataclass
class AnalysisResult:
    """The tables `analyze` wrote, as DataFrames, and the problems it found.

    Attributes:
        out: the output root that was analyzed.
        runs, summary, epochs, nc_epochs, nc_layers_epochs, nc_layers_final, spectra_epochs,
            rank_epochs, rank_final, update_norms, class_gram_final, margins_hist, steps,
            margins_steps_hist, theory, rho_flow, simulations: the tables (empty DataFrames where
            there was no data).
        problems: (run, problem) pairs, `run` being the path relative to OUT.
        files: table name -> the file written.
    """

    out: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    epochs: pd.DataFrame
    nc_epochs: pd.DataFrame
    nc_layers_epochs: pd.DataFrame
    margins_hist: pd.DataFrame
    steps: pd.DataFrame
    margins_steps_hist: pd.DataFrame
    theory: pd.DataFrame
    rho_flow: pd.DataFrame
    simulations: pd.DataFrame
    problems: list[tuple[str, str]]
    nc_layers_final: pd.DataFrame = field(default_factory=pd.DataFrame)
    spectra_epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    rank_epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    rank_final: pd.DataFrame = field(default_factory=pd.DataFrame)
    update_norms: pd.DataFrame = field(default_factory=pd.DataFrame)
    class_gram_final: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Run:
    path: Path
    rel: str
    experiment: str
    run_id: str
    config: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    metrics: pd.DataFrame | None = None
    nc: pd.DataFrame | None = None
    nc_layers: pd.DataFrame | None = None
    theory: pd.DataFrame | None = None
    rho_flow: pd.DataFrame | None = None
    steps: pd.DataFrame | None = None
    spectra: pd.DataFrame | None = None
    class_gram: pd.DataFrame | None = None
    setting: str = ""
    setting_key: str = ""
    aggregated: bool = False
    measured: bool = False  # a `sqnc measure` folder: one NC state of a model, no training
    torn_metrics: bool = False  # metrics.csv ended in a torn row (dropped when read)

    @property
    def state(self) -> str:
        return str((self.status or {}).get("state") or "unknown")


# ----------------------------------------------------------------------------- reading


def find_run_dirs(out: Path) -> tuple[list[Path], list[Path]]:
    """The run directories under `out` and the empty leaf folders that look like failed runs.

    Args:
        out: the output root.

    Returns:
        (run directories, empty or unrecognised leaf folders at depth >= 2), both sorted.
    """
    out = Path(out)
    runs, empty = [], []
    for root, dirs, files in os.walk(out):
        here = Path(root)
        rel_parts = here.relative_to(out).parts
        # The tool's own output folders (also those of a nested OUT analyzed before, such as
        # OUT/quickstart/analysis after `sqnc analyze OUT/quickstart`) hold no runs.
        if rel_parts and rel_parts[-1] in SKIP_DIRS and (len(rel_parts) == 1 or not any(m in files for m in MARKERS)):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(m in files for m in MARKERS):
            runs.append(here)
            dirs[:] = []  # a run's folder holds no further runs
        elif not dirs and len(rel_parts) >= 2:
            empty.append(here)
    return sorted(runs), sorted(empty)


def require_run_dirs(out: Path) -> tuple[list[Path], list[Path]]:
    """`find_run_dirs(out)`, or one clear error for a wrong OUT (used by every reader of OUT).

    Args:
        out: the output root of `sqnc run`.

    Raises:
        AnalysisError: `out` is not a folder, or holds no run directory.

    Example: `require_run_dirs(Path("outputs"))[0][0]` is e.g. `outputs/quickstart/seed=0`.
    """
    out = Path(out)
    if not out.is_dir():
        raise AnalysisError(f"OUT: {out} is not a folder (give the --out of `sqnc run`)")
    for name, what in ((schema.MEASURE_JSON, "sqnc measure"), (schema.MONITOR_JSON, "CollapseMonitor")):
        if (out / name).is_file():
            raise AnalysisError(f"OUT: {out} is one measurement's folder ({what}); give the folder that holds it: {out.parent}")
    if any((out / m).is_file() for m in MARKERS):
        # OUT/<experiment>/<run_id>/ is one run: its output root is two levels up.
        raise AnalysisError(f"OUT: {out} is one run's folder; give the output root that holds it: {out.parent.parent}")
    run_dirs, empty_dirs = find_run_dirs(out)
    if not run_dirs:
        extra = f" ({len(empty_dirs)} empty folder(s))" if empty_dirs else ""
        raise AnalysisError(
            f"OUT: no run directories under {out}{extra}; a run folder holds config.yaml, status.json or metrics.csv (sqnc measure: measure.json)"
        )
    return run_dirs, empty_dirs


def read_csv_robust(path: Path) -> tuple[pd.DataFrame | None, list[str]]:
    """Read a CSV the tool appends to, tolerating a crash mid-write.

    A torn last line (no final newline: the writer died mid-row) is dropped; rows with the wrong
    number of fields are dropped; every column that parses as numbers becomes numeric.

    Args:
        path: the CSV file.

    Returns:
        (the DataFrame or None when nothing usable is there, a list of problems found).
    """
    problems: list[str] = []
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return None, [f"{path.name}: unreadable ({err.strerror or err})"]
    if not data.strip():
        return None, [f"{path.name}: empty file"]
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else b""
        problems.append(f"{path.name}: torn last line dropped (the writer stopped mid-row)")
        if not data:
            return None, problems + [f"{path.name}: no complete header line"]
    try:
        df = pd.read_csv(io.BytesIO(data))
    except pd.errors.EmptyDataError:
        return None, problems + [f"{path.name}: no header"]
    except pd.errors.ParserError:
        df, bad = _read_csv_lenient(data)
        problems.append(f"{path.name}: {bad} malformed row(s) dropped")
    else:
        # Short rows parse silently as NaN-padded rows; find them by counting fields.
        n_fields = len(df.columns)
        lines = [line for line in data.decode("utf-8", "replace").splitlines()[1:] if line.strip()]
        short = [i for i, line in enumerate(lines) if line and line.count(",") + 1 < n_fields and '"' not in line]
        if short:
            df = df.drop(index=df.index[short]).reset_index(drop=True)
            problems.append(f"{path.name}: {len(short)} short row(s) dropped")
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            conv = pd.to_numeric(df[col], errors="coerce")
            # Only convert columns that are numbers (empty cells allowed), never real text.
            if conv.notna().sum() == df[col].replace("", np.nan).notna().sum():
                df[col] = conv
    if df.empty:
        return None, problems + [f"{path.name}: no rows"]
    return df, problems


def _read_csv_lenient(data: bytes) -> tuple[pd.DataFrame, int]:
    import csv

    rows = list(csv.reader(io.StringIO(data.decode("utf-8", "replace"))))
    header, body = rows[0], rows[1:]
    good = [r for r in body if len(r) == len(header)]
    df = pd.DataFrame(good, columns=header).replace("", np.nan)
    return df, len(body) - len(good)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config -> dotted keys (`model.init_scale`); lists become JSON strings (`[1, 2]`)
    so the values are hashable and survive a CSV round trip; empty sections are dropped.

    Example: `flatten({"model": {"widths": [8]}, "seed": 0}) == {"model.widths": "[8]", "seed": 0}`
    """
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            flat[key] = json.dumps(list(v))
        else:
            flat[key] = v
    return flat


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and value.startswith("["):
        return value.replace(", ", ",")  # a flattened list: keep the label's ", " unambiguous
    return str(value)


def _sort_value(v: Any) -> tuple:
    if isinstance(v, bool) or v is None:
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, float(v))
    return (1, str(v))


def _read_run(path: Path, out: Path, problems: list[tuple[str, str]]) -> _Run:
    rel = path.relative_to(out).as_posix()
    parent = path.parent.relative_to(out).as_posix()
    run = _Run(path=path, rel=rel, experiment="", run_id=path.name)

    def report(msg: str) -> None:
        problems.append((rel, msg))

    if (path / schema.MEASURE_JSON).exists() and not (path / schema.STATUS_JSON).exists():
        _read_measurement(run, path, report)
    elif (path / schema.MONITOR_JSON).exists() and not (path / schema.METRICS_CSV).exists():
        _read_measurement(run, path, report, schema.MONITOR_JSON)
    cfg_path = path / schema.CONFIG_YAML
    if run.measured:
        pass
    elif cfg_path.exists():
        try:
            raw = yaml.safe_load(cfg_path.read_text())
            if not isinstance(raw, dict):
                raise TypeError("not a mapping")
            raw.pop("sweep", None)  # an expanded run's sweep is empty; it is not a setting
            run.config = flatten(raw)
        except (yaml.YAMLError, TypeError, ValueError, OSError) as err:
            report(f"config.yaml unreadable ({type(err).__name__}): left out of the aggregates")
    else:
        report("no config.yaml: setting unknown, left out of the aggregates")
    # The folder is the truth for where a run belongs (a renamed experiment folder wins).
    run.experiment = parent if parent != "." else str((run.config or {}).get("name") or out.name)

    st_path = path / schema.STATUS_JSON
    if run.measured:
        pass
    elif st_path.exists():
        try:
            run.status = json.loads(st_path.read_text())
            if not isinstance(run.status, dict):
                raise TypeError("not an object")
        except (json.JSONDecodeError, TypeError, ValueError, OSError) as err:
            run.status = None
            report(f"status.json unreadable ({type(err).__name__}): state unknown, left out of the aggregates")
    else:
        report("no status.json: state unknown, left out of the aggregates")

    for name, attr in (
        (schema.METRICS_CSV, "metrics"),
        (schema.NC_CSV, "nc"),
        (schema.NC_LAYERS_CSV, "nc_layers"),
        (schema.THEORY_CSV, "theory"),
        (schema.RHO_FLOW_CSV, "rho_flow"),
        (schema.STEPS_CSV, "steps"),
        (schema.SPECTRA_CSV, "spectra"),
        (schema.CLASS_GRAM_CSV, "class_gram"),
    ):
        p = path / name
        if not p.exists():
            if name == schema.METRICS_CSV and not run.measured:
                report(f"no {schema.METRICS_CSV}")
            continue
        df, msgs = read_csv_robust(p)
        run.torn_metrics |= name == schema.METRICS_CSV and any("torn last line" in m for m in msgs)
        for m in msgs:
            # A header-only theory.csv is the run saying that no check applies to its loss
            # (cross-entropy, the exponential loss): expected, not a problem.
            if not (name == schema.THEORY_CSV and m == f"{name}: no rows"):
                report(m)
        if df is not None and "epoch" in df.columns and name in (schema.METRICS_CSV, schema.NC_CSV):
            df = df[pd.to_numeric(df["epoch"], errors="coerce").notna()]
            df["epoch"] = df["epoch"].astype(int)
            if df["epoch"].duplicated().any():
                report(f"{name}: repeated epochs, the last row of each kept")
                df = df.drop_duplicates("epoch", keep="last")
            df = df.sort_values("epoch").reset_index(drop=True)
        if df is not None and name == schema.METRICS_CSV:
            df = _add_derived(df)
        setattr(run, attr, df)
    return run


def _read_measurement(run: _Run, path: Path, report, name: str = schema.MEASURE_JSON) -> None:
    """A `sqnc measure` folder (`measure.json`, SPEC §12) as a run of one NC epoch: its setting
    is the measured model (`measure.model`, `measure.sha256`), the pooling and the data section;
    it has no `metrics.csv` and enters the NC tables (nc, nc_layers, spectra, Gram) only.

    A `CollapseMonitor` folder (`monitor.json`, the same fields) is read the same way, with the
    NC epochs of its `nc.csv` and the state and epoch of its `status.json` (`running` until the
    monitored `fit` ends: a partial run)."""
    try:
        m = json.loads((path / name).read_text())
        if not isinstance(m, dict):
            raise TypeError("not an object")
    except (json.JSONDecodeError, TypeError, ValueError, OSError) as err:
        report(f"{name} unreadable ({type(err).__name__}): left out of the aggregates")
        return
    model = m.get("model") if isinstance(m.get("model"), dict) else {}
    pools = sorted({str(layer.get("pool")) for layer in m.get("layers", []) if isinstance(layer, dict)})
    run.measured = True
    run.config = flatten(
        {
            "name": run.experiment or path.parent.name,
            "seed": 0,
            "measure": {"model": model.get("source") or model.get("path"), "sha256": model.get("sha256"), "pool": ",".join(pools)},
            "data": m.get("data") if isinstance(m.get("data"), dict) else {},
        }
    )
    splits = m.get("splits") if isinstance(m.get("splits"), dict) else {}
    data = {"n_train": splits.get("train"), "n_test": splits.get("test")}
    if isinstance(m.get("class_names"), list):
        data["class_names"] = m["class_names"]
    run.status = {"state": "done", "epoch": m.get("epoch", 0), "data": data, "wall_time_s": m.get("seconds")}
    if name == schema.MONITOR_JSON:
        try:
            st = json.loads((path / schema.STATUS_JSON).read_text())
            run.status.update({k: st[k] for k in ("state", "epoch", "reason", "wall_time_s") if k in st})
        except (json.JSONDecodeError, TypeError, ValueError, OSError):
            run.status["state"] = "unknown"


def _add_derived(m: pd.DataFrame) -> pd.DataFrame:
    m = m.copy()
    if "train_acc" in m:
        m["train_error"] = 1.0 - m["train_acc"]
    if "test_acc" in m:
        m["test_error"] = 1.0 - m["test_acc"]
    if "rho" in m:
        with np.errstate(divide="ignore"):
            m["inv_rho"] = 1.0 / m["rho"].astype(float)
    upd = _update_norm_columns(m)
    if upd:
        # skipna=False: a layer missing at an epoch must not tilt the mean towards the others.
        m["update_norm_layer_mean"] = m[upd].astype(float).mean(axis=1, skipna=False)
    return m


def _update_norm_columns(m: pd.DataFrame) -> list[str]:
    return [c for c in m.columns if c.startswith("update_norm_") and c != "update_norm_layer_mean"]


def _check_run(run: _Run, include_partial: bool, report) -> bool:
    """Whether the run may enter the aggregates; reports why not."""
    st = run.status or {}
    state, epoch, reason = run.state, st.get("epoch"), st.get("reason")
    if state == "failed":
        report(f"failed at epoch {epoch}: {reason}; left out of the aggregates")
        return False
    if state == "diverged":
        report(f"diverged at epoch {epoch}: {reason}; left out of the aggregates")
        return False
    if run.measured:
        if state in PARTIAL_STATES and not include_partial:
            report(f"{state} (epoch {epoch}): left out of the aggregates (include_partial to add it)")
            return False
        return run.config is not None and run.nc is not None
    if run.config is None or run.metrics is None:
        return False
    total = run.config.get("optim.epochs")
    if state in PARTIAL_STATES:
        if not include_partial:
            report(f"{state} (epoch {epoch} of {total}): left out of the aggregates (include_partial to add it)")
            return False
    elif state not in DONE_STATES:
        if run.status is not None:
            report(f"unknown state {state!r}: left out of the aggregates")
        return False
    last = int(run.metrics["epoch"].max())
    if isinstance(epoch, int) and last == epoch - 1 and run.torn_metrics:
        # Only the torn row is missing: the run is whole up to the epoch before it.
        report(f"metrics.csv: the torn row of epoch {epoch} is dropped; the run is kept, ending at epoch {last}")
    elif isinstance(epoch, int) and last < epoch:
        report(f"metrics.csv ends at epoch {last} but status.json says epoch {epoch}: incomplete, left out of the aggregates")
        return False
    rho = run.metrics.get("rho")
    if rho is not None and not np.isfinite(rho.astype(float)).iloc[-1]:
        report(f"non-finite rho at epoch {last}: left out of the aggregates")
        return False
    return True


# ----------------------------------------------------------------------------- settings


def _assign_settings(runs: list[_Run]) -> None:
    by_exp: dict[str, list[_Run]] = {}
    for r in runs:
        by_exp.setdefault(r.experiment, []).append(r)
    for exp, rs in by_exp.items():
        cfgs = [r.config for r in rs if r.config is not None]
        keys = sorted({k for c in cfgs for k in c} - set(IGNORED_FOR_SETTING))
        varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in cfgs}) > 1]
        # Put the paper's knobs first in the label, then the rest alphabetically.
        varying.sort(key=lambda k: (list(SHORT_NAMES).index(k) if k in SHORT_NAMES else len(SHORT_NAMES), k))
        # SGD against full batch: one `batch=32` / `batch=full` part instead of `batch_size=None,
        # full_batch=True` (a full-batch run's batch size is written as null).
        if "optim.full_batch" in varying:
            at = min(varying.index(k) for k in ("optim.batch_size", "optim.full_batch") if k in varying)
            varying = [k for k in varying if k not in ("optim.batch_size", "optim.full_batch")]
            varying.insert(at, _BATCH)
        for r in rs:
            if r.config is None:
                r.setting, r.setting_key = "(no config)", ""
                continue
            label = ", ".join(_label_part(r.config, k) for k in varying)
            r.setting = label or exp
            r.setting_key = json.dumps({k: r.config.get(k) for k in keys}, sort_keys=True, default=str)


_BATCH = "batch"  # the batch axis of `batch_axis` in a setting label


def _label_part(config: dict[str, Any], key: str) -> str:
    if key == _BATCH:
        return f"batch={batch_axis(config)[0]}"
    return f"{SHORT_NAMES.get(key, key.split('.')[-1])}={_fmt(config.get(key))}"


def _setting_order(runs: list[_Run]) -> dict[tuple[str, str], int]:
    """A natural order of settings: by experiment, then numerically by the varying values."""
    seen: dict[tuple[str, str], tuple] = {}
    for r in runs:
        if r.config is None:
            continue
        seen.setdefault((r.experiment, r.setting), (r.experiment,) + _varying_sort_key(r))
    return {k: i for i, k in enumerate(sorted(seen, key=lambda k: seen[k]))}


def _varying_sort_key(r: _Run) -> tuple:
    # The label lists the varying values in a fixed key order; sort on those values.
    parts = [p.split("=", 1)[1] if "=" in p else p for p in r.setting.split(", ")]
    out = []
    for p in parts:
        try:
            out.append((0, float(p), ""))
        except ValueError:
            out.append((1, 0.0, p))
    return tuple(out)


# ----------------------------------------------------------------------------- aggregation


def _numeric_columns(df: pd.DataFrame, exclude: tuple[str, ...]) -> list[str]:
    return [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]


def aggregate_over_seeds(long: pd.DataFrame, keys: list[str], exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean and sample std (ddof=1) of every numeric column within groups, plus `n_runs`.

    Args:
        long: one row per run and time point, with the `keys` columns.
        keys: the grouping columns (e.g. experiment, setting, epoch).
        exclude: numeric columns not to aggregate.

    Returns:
        keys, n_runs, then `<col>_mean`, `<col>_std` for each numeric column.

    Example: `aggregate_over_seeds(df, ["experiment", "setting", "epoch"])`
    """
    if long.empty:
        return pd.DataFrame(columns=keys + ["n_runs"])
    cols = _numeric_columns(long, tuple(keys) + tuple(exclude))
    # inf (a run blowing up between checks) must not turn a mean into inf silently.
    values = long[cols].astype(float).replace([np.inf, -np.inf], np.nan)
    grouped = pd.concat([long[keys], values], axis=1).groupby(keys, sort=False, dropna=False)
    mean, std = grouped.mean(), grouped.std(ddof=1)
    n = grouped.size().rename("n_runs")
    parts = [n]
    for c in cols:
        parts += [mean[c].rename(f"{c}_mean"), std[c].rename(f"{c}_std")]
    # .copy() consolidates the one-block-per-column frame (reset_index on it warns and is slow).
    return pd.concat(parts, axis=1).copy().reset_index()


def _final_row(df: pd.DataFrame | None, prefix_epoch: str) -> dict[str, Any]:
    if df is None or df.empty:
        return {}
    row = df.iloc[-1].to_dict()
    row[prefix_epoch] = row.pop("epoch", None)
    return row


# ----------------------------------------------------------------------------- long per-run tables


def batch_axis(config: dict[str, Any], n_train: Any = None) -> tuple[str, float]:
    """The batch-size axis of "rank against batch size": (label, number) of a run's flattened config.

    Full-batch gradient descent (`optim.full_batch: true`, whose `optim.batch_size` is written as
    null) is labelled `full` and placed at N, the number of training samples (NaN when unknown);
    runs made before `optim.full_batch` existed are minibatch runs.

    Args:
        config: the run's flattened config (`optim.batch_size`, `optim.full_batch`).
        n_train: N, the run's number of training samples (`status.json` data.n_train).

    Example: `batch_axis({"optim.batch_size": None, "optim.full_batch": True}, 640) == ("full", 640.0)`
    """
    if bool(config.get("optim.full_batch") or False):
        n = pd.to_numeric(pd.Series([n_train]), errors="coerce").iloc[0]
        return "full", float(n)
    bs = pd.to_numeric(pd.Series([config.get("optim.batch_size")]), errors="coerce").iloc[0]
    return (f"{int(bs)}", float(bs)) if np.isfinite(bs) else ("unknown", float("nan"))


def _numeric_long(df: pd.DataFrame | None, required: set[str]) -> pd.DataFrame | None:
    """A long per-run table with numeric epoch/value columns, or None when unusable."""
    if df is None or not required <= set(df.columns):
        return None
    df = df.copy()
    for c in required - {"layer", "split", "measure"}:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df[df["epoch"].notna()]
    if df.empty:
        return None
    df["epoch"] = df["epoch"].astype(int)
    return df


def _with_depth(df: pd.DataFrame) -> pd.DataFrame:
    # The run writes its layers input-to-output; their first appearance is the depth order.
    df.insert(df.columns.get_loc("layer") + 1, "depth", pd.factorize(df["layer"])[0])
    return df


def _last_epoch(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["epoch"] == df["epoch"].max()]


def _spectra_rows(r: _Run) -> pd.DataFrame | None:
    df = _numeric_long(r.spectra, {"epoch", "layer", "index", "singular_value"})
    if df is None:
        return None
    df = _with_depth(df)
    top = df.groupby(["epoch", "layer"], sort=False)["singular_value"].transform("max")
    df["sv_normalized"] = df["singular_value"] / top.where(top > 0)
    return df[["epoch", "layer", "depth", "index", "singular_value", "sv_normalized"]]


def _rank_rows(r: _Run) -> pd.DataFrame | None:
    df = _numeric_long(r.spectra, {"epoch", "layer", "index", "singular_value", "rank", "stable_rank"})
    if df is None:
        return None
    df = _with_depth(df)
    # rank and stable_rank are repeated on every row of a layer; one row per (epoch, layer).
    g = df.groupby(["epoch", "layer", "depth"], sort=False)
    return pd.concat([g["index"].size().rename("n_singular"), g["rank"].first(), g["stable_rank"].first()], axis=1).reset_index()


def _rank_final_rows(r: _Run) -> pd.DataFrame | None:
    df = _rank_rows(r)
    if df is None:
        return None
    df = _last_epoch(df).copy()
    label, number = batch_axis(r.config or {}, ((r.status or {}).get("data") or {}).get("n_train"))
    for i, (k, v) in enumerate(
        (
            ("batch", label),
            ("batch_size_numeric", number),
            ("full_batch", label == "full"),
            ("optim.weight_decay", (r.config or {}).get("optim.weight_decay")),
        )
    ):
        df.insert(i, k, v)
    return df


def _nc_layer_rows(r: _Run, final: bool = False) -> pd.DataFrame | None:
    df = _numeric_long(r.nc_layers, {"epoch", "layer", "measure", "value"})
    if df is None:
        return None
    if "split" not in df:
        df["split"] = "train"
    df["value"] = df["value"].replace([np.inf, -np.inf], np.nan)
    df = _with_depth(df[["epoch", "split", "layer", "measure", "value"]].copy())
    return _last_epoch(df) if final else df


def _gram_rows(r: _Run) -> pd.DataFrame | None:
    df = _numeric_long(r.class_gram, {"epoch", "i", "j", "value"})
    if df is None:
        return None
    if "split" not in df:
        df["split"] = "train"
    return _last_epoch(df)[["epoch", "split", "i", "j", "value"]]


def update_norm_tail(metrics: pd.DataFrame, fraction: float = UPDATE_TAIL_FRACTION) -> pd.DataFrame:
    """Per layer, the relative update norms at the end of a run: the SGD-noise key numbers.

    The tail window is the last `ceil(fraction * E)` epochs (at least one) of a run whose
    `metrics.csv` ends at epoch E.

    Args:
        metrics: a run's `metrics.csv` (with `update_norm_<layer>` columns; `update_norm_layer_mean`
            is added by `analyze` and reported as layer `all layers`).
        fraction: the share of the epochs that make the window.

    Returns:
        One row per layer: layer, depth (column order; NaN for `all layers`), epoch_first,
        epoch_last (the window), tail (mean over the window), tail_min (minimum over it), first
        (the value at epoch 1). Empty without update-norm columns.

    Example: 20 epochs, fraction 0.1: `tail` is the mean of epochs 19 and 20.
    """
    cols = _update_norm_columns(metrics)
    if not cols or metrics.empty:
        return pd.DataFrame()
    epoch = pd.to_numeric(metrics["epoch"], errors="coerce")
    last = int(epoch.max())
    k = max(1, math.ceil(fraction * last))
    window = (epoch > last - k) & (epoch >= 1)
    at1 = epoch == 1
    rows = []
    for depth, col in enumerate(cols + (["update_norm_layer_mean"] if "update_norm_layer_mean" in metrics else [])):
        v = pd.to_numeric(metrics[col], errors="coerce").replace([np.inf, -np.inf], np.nan)
        all_layers = col == "update_norm_layer_mean"
        rows.append(
            {
                "layer": ALL_LAYERS if all_layers else col.removeprefix("update_norm_"),
                "depth": np.nan if all_layers else float(depth),
                "epoch_first": max(last - k + 1, 1),
                "epoch_last": last,
                "tail": v[window].mean(),
                "tail_min": v[window].min(),
                "first": v[at1].mean() if at1.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _update_rows(r: _Run) -> pd.DataFrame | None:
    return update_norm_tail(r.metrics) if r.metrics is not None else None


def _run_update_tail(r: _Run) -> dict[str, Any]:
    t = _update_rows(r)
    if t is None or t.empty or ALL_LAYERS not in set(t["layer"]):
        return {}
    return {"update_norm_tail": float(t.loc[t["layer"] == ALL_LAYERS, "tail"].iloc[0])}


def _long_table(runs: list[_Run], build, keys: list[str], order: dict, sort: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean ± std over seeds of a per-run table: `build(run)` gives each run's rows (or None),
    grouped by experiment, setting and `keys`; rows in setting order, then by `sort`, else as
    first seen. A single `value` column becomes plain `mean`, `std` (nc_layers_epochs.csv)."""
    frames = []
    for r in runs:
        df = build(r)
        if df is None or df.empty:
            continue
        df = df.copy()
        df.insert(0, "setting", r.setting)
        df.insert(0, "experiment", r.experiment)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["experiment", "setting"] + keys + ["n_runs"])
    res = aggregate_over_seeds(pd.concat(frames, ignore_index=True), ["experiment", "setting"] + keys)
    res = res.rename(columns={"value_mean": "mean", "value_std": "std"})
    res["_o"] = [order.get((e, s), 0) for e, s in zip(res["experiment"], res["setting"])]
    return res.sort_values(["_o", *sort], kind="stable").drop(columns="_o").reset_index(drop=True)


def _margin_histograms(runs: list[_Run], filename: str, time_col: str, order: dict, report, bins: int = HIST_BINS) -> pd.DataFrame:
    """Per setting, time point and quantity: a histogram of the pooled per-sample margins, with
    the per-seed densities on the same bins (so figures can draw mean ± std over seeds)."""
    by_setting: dict[tuple[str, str], list[_Run]] = {}
    for r in runs:
        if (r.path / filename).exists():
            by_setting.setdefault((r.experiment, r.setting), []).append(r)
    out = []
    for (exp, setting), rs in sorted(by_setting.items(), key=lambda kv: order.get(kv[0], 0)):
        frames = []
        for i, r in enumerate(rs):
            df, msgs = read_csv_robust(r.path / filename)
            for m in msgs:
                report(r.rel, m)
            if df is None or time_col not in df.columns:
                continue
            df = df[[c for c in (time_col, "margin", "margin_normalized") if c in df.columns]].copy()
            df["_run"] = i
            frames.append(df)
        if not frames:
            continue
        allm = pd.concat(frames, ignore_index=True)
        for t, at_t in allm.groupby(time_col, sort=True):
            for quantity, col in (("normalized", "margin_normalized"), ("raw", "margin")):
                if col not in at_t:
                    continue
                v = at_t[col].to_numpy(dtype=float)
                ok = np.isfinite(v)
                if not ok.any():
                    continue
                # ~sqrt(n) bins (at least 10, at most `bins`): fine for 10k samples x 10 seeds,
                # still readable for a few dozen.
                n_bins = int(np.clip(np.sqrt(ok.sum()), 10, bins))
                edges = np.histogram_bin_edges(v[ok], bins=n_bins)
                counts, _ = np.histogram(v[ok], bins=edges)
                width = np.diff(edges)
                per_run = []
                for _, g in at_t[ok].groupby("_run"):
                    c, _ = np.histogram(g[col].to_numpy(dtype=float), bins=edges)
                    per_run.append(c / (c.sum() * width) if c.sum() else np.zeros_like(width))
                per_run = np.array(per_run)
                out.append(
                    pd.DataFrame(
                        {
                            "experiment": exp,
                            "setting": setting,
                            time_col: int(t),
                            "quantity": quantity,
                            "bin": np.arange(len(counts)),
                            "left": edges[:-1],
                            "right": edges[1:],
                            "count": counts,
                            "density": counts / (counts.sum() * width),
                            "density_mean": per_run.mean(axis=0),
                            "density_std": per_run.std(axis=0, ddof=1) if len(per_run) > 1 else np.nan,
                            "n_runs": len(per_run),
                            "n_samples": int(ok.sum()),
                            "mean": float(v[ok].mean()),
                            "std": float(v[ok].std()),
                        }
                    )
                )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _collect_simulations(out: Path, report) -> pd.DataFrame:
    sim_dir = out / "simulations"
    frames = []
    for p in sorted(sim_dir.glob("*.csv")) if sim_dir.is_dir() else []:
        df, msgs = read_csv_robust(p)
        for m in msgs:
            report(f"simulations/{p.name}", m)
        if df is not None:
            df.insert(0, "source", p.stem)
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ----------------------------------------------------------------------------- writing


def atomic_write_csv(df: pd.DataFrame, path: Path, float_format: str | None = None) -> None:
    """Write `df` to `path` through a temporary file and a rename, so readers never see half a
    table."""
    atomic_write_text(Path(path), df.to_csv(index=False, float_format=float_format, lineterminator="\n"))


# ----------------------------------------------------------------------------- the entry point


def analyze(out: Path, include_partial: bool = False, write: bool = True) -> AnalysisResult:
    """Read every run directory under `out` and write the tables of `out/analysis/`.

    Args:
        out: the output root (`sqnc run --out`), holding `<experiment>/<run_id>/` folders.
        include_partial: also aggregate runs still running or interrupted (each contributes the
            epochs it has; `n_runs` in the per-epoch tables says how many runs reached an epoch).
        write: write the tables (False: only return them).

    Returns:
        An `AnalysisResult` with the DataFrames and the (run, problem) list.

    Raises:
        AnalysisError: `out` is not a folder or holds no run directories.

    Example:

    ```python
    res = analyze(Path("outputs"))
    res.summary.loc[:, ["setting", "n_seeds", "rho_mean", "rho_std"]]
    ```
    """
    out = Path(out)
    run_dirs, empty_dirs = require_run_dirs(out)

    problems: list[tuple[str, str]] = []
    for d in empty_dirs:
        problems.append((d.relative_to(out).as_posix(), "empty run directory (no config.yaml, status.json or metrics.csv): skipped"))
    runs = [_read_run(d, out, problems) for d in run_dirs]
    _assign_settings(runs)
    for r in runs:
        r.aggregated = _check_run(r, include_partial, lambda msg, r=r: problems.append((r.rel, msg)))
    order = _setting_order(runs)

    def report(run: str, msg: str) -> None:
        problems.append((run, msg))

    runs.sort(key=lambda r: (order.get((r.experiment, r.setting), len(order)), _sort_value((r.config or {}).get("seed")), r.rel))

    # runs.csv: every run, whatever its state.
    rows = []
    for r in runs:
        st = r.status or {}
        data = st.get("data") if isinstance(st.get("data"), dict) else {}
        row: dict[str, Any] = {"experiment": r.experiment, "run_id": r.run_id, "path": r.rel, "setting": r.setting}
        row.update(r.config or {})
        row.update(
            {
                "state": r.state,
                "status_epoch": st.get("epoch"),
                "reason": st.get("reason"),
                "wall_time_s": st.get("wall_time_s"),
                "n_train": data.get("n_train"),
                "n_test": data.get("n_test"),
                "label_noise_realised": data.get("label_noise_realised"),
                # Class index -> name (status.json), so figures can name classes, not 0..C-1.
                "class_names": json.dumps([str(c) for c in data["class_names"]]) if isinstance(data.get("class_names"), list) else None,
                "aggregated": r.aggregated,
            }
        )
        row.update(_final_row(r.metrics, "last_epoch"))
        row.update(_final_row(r.nc, "nc_epoch"))
        row.update(_run_update_tail(r))
        rows.append(row)
    runs_df = pd.DataFrame(rows)

    agg = [r for r in runs if r.aggregated]
    config_cols = sorted({k for r in agg for k in r.config})

    # summary.csv: final values, mean ± std over seeds per setting.
    finals = []
    for r in agg:
        f = {"experiment": r.experiment, "setting": r.setting, "_key": r.setting_key}
        f.update(_final_row(r.metrics, "last_epoch"))
        f.update(_final_row(r.nc, "nc_epoch"))
        f.update(_run_update_tail(r))
        finals.append(f)
    if finals:
        fin = pd.DataFrame(finals)
        stats = aggregate_over_seeds(fin, ["experiment", "setting", "_key"], exclude=("last_epoch", "nc_epoch"))
        meta = []
        for (exp, setting, key), rs in _group(agg).items():
            m = {"experiment": exp, "setting": setting, "_key": key, "n_seeds": len(rs)}
            m["seeds"] = " ".join(str(r.config.get("seed")) for r in rs)
            m.update({k: rs[0].config.get(k) for k in config_cols if k not in IGNORED_FOR_SETTING})
            last = [int((r.nc if r.measured else r.metrics)["epoch"].max()) for r in rs]
            m["epochs_min"], m["epochs_max"] = min(last), max(last)
            meta.append(m)
        summary = pd.DataFrame(meta).merge(stats.drop(columns="n_runs"), on=["experiment", "setting", "_key"], how="left")
        summary = summary.drop(columns="_key")
    else:
        summary = pd.DataFrame(columns=["experiment", "setting", "n_seeds", "seeds"])

    def per_time(attr: str, time_col: str = "epoch") -> pd.DataFrame:
        def rows(r: _Run) -> pd.DataFrame | None:
            df = getattr(r, attr)
            return df if df is not None and time_col in df.columns else None

        return _long_table(agg, rows, [time_col], order, sort=(time_col,))

    epochs = per_time("metrics")
    nc_epochs = per_time("nc")
    steps = per_time("steps", "step")

    # The long per-run files: aggregated per (epoch, layer, ...) over seeds.
    nc_layers_epochs = _long_table(agg, _nc_layer_rows, ["epoch", "split", "layer", "depth", "measure"], order)
    nc_layers_final = _long_table(agg, lambda r: _nc_layer_rows(r, final=True), ["epoch", "split", "layer", "depth", "measure"], order)
    spectra_epochs = _long_table(agg, _spectra_rows, ["epoch", "layer", "depth", "index"], order)
    rank_epochs = _long_table(agg, _rank_rows, ["epoch", "layer", "depth", "n_singular"], order)
    rank_keys = ["batch", "batch_size_numeric", "full_batch", "optim.weight_decay", "epoch", "layer", "depth", "n_singular"]
    rank_final = _long_table(agg, _rank_final_rows, rank_keys, order)
    update_norms = _long_table(agg, _update_rows, ["layer", "depth", "epoch_first", "epoch_last"], order)
    class_gram_final = _long_table(agg, _gram_rows, ["epoch", "split", "i", "j"], order)

    margins_hist = _margin_histograms(agg, "margins.csv", "epoch", order, report)
    margins_steps_hist = _margin_histograms(agg, "margins_steps.csv", "step", order, report)

    # theory.csv and rho_flow.csv (`sqnc simulate --rho-flow`): any columns, collected with the
    # run's identity from every run that has one (a diverged run's checks are still
    # informative), with its state alongside.
    def collect(attr: str) -> pd.DataFrame:
        frames = []
        for r in runs:
            df = getattr(r, attr)
            if df is not None:
                df = df.copy()
                for i, (k, v) in enumerate(
                    (("experiment", r.experiment), ("run_id", r.run_id), ("setting", r.setting), ("state", r.state))
                ):
                    df.insert(i, k, v)
                frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    theory, rho_flow = collect("theory"), collect("rho_flow")
    simulations = _collect_simulations(out, report)

    problems.sort(key=lambda p: p[0])  # stable: each run's problems together, in the order found
    problems_df = pd.DataFrame(problems, columns=["run", "problem"])
    result = AnalysisResult(
        out=out,
        runs=runs_df,
        summary=summary,
        epochs=epochs,
        nc_epochs=nc_epochs,
        nc_layers_epochs=nc_layers_epochs,
        margins_hist=margins_hist,
        steps=steps,
        margins_steps_hist=margins_steps_hist,
        theory=theory,
        rho_flow=rho_flow,
        simulations=simulations,
        problems=problems,
        nc_layers_final=nc_layers_final,
        spectra_epochs=spectra_epochs,
        rank_epochs=rank_epochs,
        rank_final=rank_final,
        update_norms=update_norms,
        class_gram_final=class_gram_final,
    )
    if write:
        adir = out / ANALYSIS_DIR
        adir.mkdir(parents=True, exist_ok=True)
        tables = {
            "runs.csv": runs_df,
            "summary.csv": summary,
            "epochs.csv": epochs,
            "nc_epochs.csv": nc_epochs,
            "nc_layers_epochs.csv": nc_layers_epochs,
            "nc_layers_final.csv": nc_layers_final,
            "spectra_epochs.csv": spectra_epochs,
            "rank_epochs.csv": rank_epochs,
            "rank_final.csv": rank_final,
            "update_norms.csv": update_norms,
            "class_gram_final.csv": class_gram_final,
            "margins_hist.csv": margins_hist,
            "steps.csv": steps,
            "margins_steps_hist.csv": margins_steps_hist,
            "theory.csv": theory,
            "rho_flow.csv": rho_flow,
            "simulations.csv": simulations,
            "problems.csv": problems_df,
        }
        always = {"runs.csv", "summary.csv", "epochs.csv", "problems.csv"}
        for name, df in tables.items():
            path = adir / name
            if name in always or not df.empty:
                atomic_write_csv(df, path, float_format=_FLOAT_FORMAT.get(name))
                result.files[name] = path
            elif path.exists():
                # A table left over from an earlier analysis would be drawn as if current.
                path.unlink()
    return result


def _group(runs: list[_Run]) -> dict[tuple[str, str, str], list[_Run]]:
    groups: dict[tuple[str, str, str], list[_Run]] = {}
    for r in runs:
        groups.setdefault((r.experiment, r.setting, r.setting_key), []).append(r)
    return groups


# ----------------------------------------------------------------------------- console tables


def _pm(row: pd.Series, col: str, spec: str = ".3g") -> str:
    m, s = row.get(f"{col}_mean"), row.get(f"{col}_std")
    if m is None or not isinstance(m, (int, float)) or math.isnan(m):
        return ""
    if s is None or not isinstance(s, (int, float)) or math.isnan(s):
        return format(m, spec)
    return f"{m:{spec}}±{s:.2g}"


def key_numbers_table(result: AnalysisResult, max_rows: int = 60):
    """The key final numbers per setting (mean±std over seeds), as a table that never breaks a
    cell: where the console is too narrow, the less important columns are left out (a note says
    which), then one line per setting (`sweep.FitTable`).

    Args:
        result: what `analyze` returned.
        max_rows: settings shown at most (the CSV has them all).

    Example: `rich.print(key_numbers_table(analyze(Path("outputs"))))`
    """
    from .sweep import FitTable  # plain rich rendering; sweep.py imports no framework at module level

    s = result.summary
    experiments = list(dict.fromkeys(s["experiment"])) if "experiment" in s else []
    one = len(experiments) == 1
    title = "final values per setting, mean±std over seeds" + (f" — {experiments[0]}" if one else "")
    cols = [] if one else [("experiment", "experiment", "left")]
    cols += [("setting", "setting", "left"), ("n", "n", "right"), ("epoch", "epoch", "right"), ("ρ", "rho", "right")]
    cols += [("train\nacc", "train_acc", "right"), ("test\nacc", "test_acc", "right"), ("m̄\nmean", "m_mean", "right")]
    cols += [("m̄\nstd", "m_std", "right"), ("NC1", "nc1", "right")]
    # The SGD-noise key number (issue 14): the relative update per epoch at the end of training.
    noise = "update_norm_tail_mean" in s and pd.to_numeric(s["update_norm_tail_mean"], errors="coerce").notna().any()
    if noise:
        cols.append(("‖ΔW‖/‖W‖\nend", "dw_end", "right"))
    rows = []
    for _, row in s.head(max_rows).iterrows():
        epochs = row.get("epochs_max")
        rows.append(
            {
                "experiment": str(row.get("experiment", "")),
                "setting": str(row["setting"]),
                "n": str(row["n_seeds"]),
                "epoch": "" if epochs is None or (isinstance(epochs, float) and math.isnan(epochs)) else str(int(epochs)),
                "rho": _pm(row, "rho"),
                "train_acc": _pm(row, "train_acc", ".3f"),
                "test_acc": _pm(row, "test_acc", ".3f"),
                "m_mean": _pm(row, "margin_mean"),
                "m_std": _pm(row, "margin_std"),
                "nc1": _pm(row, "nc1", ".2g"),
                "dw_end": _pm(row, "update_norm_tail", ".2g") if noise else "",
            }
        )
    notes = [f"{len(s) - max_rows} more settings in summary.csv"] if len(s) > max_rows else []
    notes.append(f"all columns: {result.out / ANALYSIS_DIR / 'summary.csv'}")
    drop = ["m_std", "dw_end", "epoch", "n", "m_mean", "experiment"]
    return FitTable(title, cols, rows, notes, plain=1 if one else 2, drop=drop)


def problems_table(problems: list[tuple[str, str]], max_rows: int = 50):
    """A rich table of the (run, problem) pairs found by `analyze`.

    Example: `rich.print(problems_table(res.problems))`
    """
    from rich.table import Table

    table = Table(title=f"problems ({len(problems)})", title_style="bold yellow")
    table.add_column("run", overflow="fold")
    table.add_column("problem")  # prose: wrapped between words
    for run, problem in problems[:max_rows]:
        table.add_row(run, problem)
    if len(problems) > max_rows:
        table.add_row("…", f"{len(problems) - max_rows} more in problems.csv")
    return table


def states_line(result: AnalysisResult) -> str:
    """`8 runs: 7 done, 1 failed; 8 aggregated into 4 settings` (one line for the console;
    `1 run`, `1 setting` in the singular)."""
    counts = result.runs["state"].value_counts() if not result.runs.empty else pd.Series(dtype=int)
    parts = ", ".join(f"{n} {state}" for state, n in counts.items())
    n_agg = int(result.runs["aggregated"].sum()) if "aggregated" in result.runs else 0
    n, k = len(result.runs), len(result.summary)
    return f"{n} run{'' if n == 1 else 's'}: {parts}; {n_agg} aggregated into {k} setting{'' if k == 1 else 's'}"

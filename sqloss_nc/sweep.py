"""Planning and executing the runs of a config (sequential local executor).

`run_config` is what `sqnc run` calls: it loads and validates the config, expands its `sweep:`
block, loads every distinct dataset and checks every run directory *before* writing anything (so a
bad value in the 40th sweep point fails before the first run starts), then trains the runs one
after the other. Runs already `done` are skipped; unfinished ones resume.

Example:

```python
results = run_config("configs/quickstart.yaml", ["optim.epochs=3"], "outputs")
```
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import RunSpec, expand_sweep, load_config
from .data import Dataset, load_clean_dataset, with_label_noise
from .experiment import check_compatible, check_rundir, check_writable, train_and_evaluate


def plan_runs(config_path, overrides, out) -> list[tuple[RunSpec, Path]]:
    """The runs of a config and their directories `OUT/<name>/<run_id>`."""
    cfg = load_config(config_path, overrides)
    return [(spec, Path(out) / spec.config.name / spec.run_id) for spec in expand_sweep(cfg)]


def load_datasets(plan, data_dir=None) -> dict[str, Dataset]:
    """Each distinct `data` section loaded once (label noise is applied per run)."""
    cache: dict[str, Dataset] = {}
    for spec, _ in plan:
        key = _data_key(spec)
        if key not in cache:
            cache[key] = load_clean_dataset(spec.config, data_dir)
    return cache


def _data_key(spec: RunSpec) -> str:
    d = spec.config.data.model_dump(mode="json")
    d.pop("label_noise")
    return json.dumps(d, sort_keys=True)


def run_config(config_path, overrides, out, data_dir=None, progress=False, console=None) -> list[dict]:
    """Validate everything, then train each run of the config in turn; returns their results."""
    plan = plan_runs(config_path, overrides, out)
    datasets = load_datasets(plan, data_dir)
    check_writable(Path(out))
    for spec, path in plan:
        from .rundir import RunDir

        check_compatible(spec.config, with_label_noise(datasets[_data_key(spec)], spec.config.data.label_noise, spec.config.seed))
        check_rundir(spec.config, RunDir(path))
    results = []
    for spec, path in plan:
        res = train_and_evaluate(spec.config, path, data=datasets[_data_key(spec)], data_dir=data_dir, progress=progress, console=console)
        res["run_id"] = spec.run_id
        results.append(res)
    return results


def summary_table(results: list[dict]):
    """A rich table of the runs' final numbers."""
    from rich.table import Table

    table = Table(title="runs", caption=f"run directories under {Path(results[0]['rundir']).parent}" if results else None)
    for col in ("run", "state", "epoch", "train loss", "train acc", "test acc", "ρ", "mean m̄", "s/epoch"):
        table.add_column(col, justify="left" if col in ("run", "state") else "right", overflow="fold")
    for r in results:
        f = r.get("final") or {}
        fmt = lambda k, spec=".4g": format(f[k], spec) if k in f and f[k] == f[k] else ""  # noqa: E731
        # elapsed_s is cumulative over resumes (and includes the epoch-0 measurement).
        per_epoch = f["elapsed_s"] / r["epoch"] if r["epoch"] and f.get("elapsed_s") == f.get("elapsed_s") else float("nan")
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

"""The bench's output: the JSON file and the rich tables `sqnc bench` prints. No framework.

Example:

```python
from rich.console import Console
from sqloss_nc.bench.report import results_tables, write_json
write_json(result, "outputs/bench/bench.json")
for table in results_tables(result):
    Console().print(table)
```
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def write_json(result: dict, path) -> Path:
    """Write the result as indented JSON (atomically; NaN as null). Returns the path.

    Args:
        result: a `run_bench` result. path: the file.
    """
    from ..rundir import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(_jsonable(result), indent=2) + "\n")
    return path


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _s(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def _faults(n) -> str:
    """Minor page faults per epoch (median), in thousands: "" when not measured."""
    return "" if n is None else f"{n / 1000:.0f}k"


def _table(title: str, columns: list[str], left: int = 1, caption: str | None = None):
    """A rich table whose first `left` columns are text (left-aligned, may wrap) and the rest
    numbers (right-aligned); `caption` under it says what a column means or where a dropped one
    went. Print it only after :func:`_fit`."""
    from rich import box
    from rich.table import Table

    # No vertical rules: two characters per column back. Even so 80 columns hold only a few
    # number columns with short headers (units go in the title); a wider view is split in two.
    t = Table(title=title, title_justify="left", caption=caption and caption + "\n", caption_justify="left", box=box.SIMPLE_HEAD)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i < left else "right")
    return t


def _fit(table):
    """Keep every number whole: a number column is at least as wide as its widest cell, and a
    name too long for its column folds onto the next line instead of ending in "…". Without
    this, rich shrank all columns alike at 80 columns or in a file and cut every number to
    "1.5…" (issue 27)."""
    from rich.text import Text

    for col in table.columns:
        col.overflow = "fold"
        if col.justify == "right":
            col.min_width = max((Text.from_markup(c).cell_len for c in col._cells if isinstance(c, str)), default=0)
            # Out of rich's shrinking: it narrows every wrappable column, then widens a number
            # column back to its min_width, and the table overran its width and was cropped.
            col.no_wrap = True
    return table


def results_tables(result: dict) -> list:
    """Rich tables, each readable at 80 columns and in a file: what each arm is, the arms' times
    (epoch time, spread, CPU time), their rates (GFLOP/s against the arm's own framework's matmul
    rate, minor page faults per epoch), the paired ratios and the targets, the stacked sweep
    (per-run time, throughput, speed-up), the arms timed alone, the (b) arms against plain
    PyTorch, the tracking breakdown, and (when measured) the profile and the scaling.

    Args:
        result: a `run_bench` result (or its JSON read back).
    """
    out = []
    d, o = result["data"], result["options"]
    # One view per table, few columns each: the arms' labels alone are 30 characters, so
    # "what" gets a table of its own rather than folding every row of the numbers into three.
    what = _table("the arms: what each one times, and its framework's intra-op threads", ["arm", "what", "threads"], left=2)
    stacked = any(a.get("runs", 1) > 1 for a in result["arms"].values())
    arms = _table(
        f"seconds per epoch, each arm in its own process: wall median and min–max, process CPU median, of "
        f"{o['reps']} timed rounds after {o['epochs_warmup']} untimed; N = {d['n_train']} ({d['source']}), batch {o['batch_size']}",
        ["arm", "epoch", "min–max", "CPU"],
        # Per run-epoch time and run-epochs/s differ from the epoch time only for K > 1.
        caption="a stacked arm's time per run-epoch and its run-epochs/s: the stacked sweep table and the JSON" if stacked else None,
    )
    rates = _table(
        "rates: GFLOP/s of the training step (counted FLOPs / epoch time), against the arm's own "
        "framework's matmul rate; faults: minor page faults per epoch (median)",
        ["arm", "GFLOP/s", "% of matmul", "faults"],
    )
    for key, a in result["arms"].items():
        e = a["epoch_s"]
        frac = a.get("fraction_of_matmul")
        what.add_row(key, a["label"], str((a.get("environment") or {}).get("threads", "")))
        arms.add_row(key, _s(e["median"]), f"{_s(e['min'])}–{_s(e['max'])}", _s(a["cpu_s"]["median"]))
        rates.add_row(
            key,
            f"{a['gflops']:.1f}",
            "" if frac is None else f"{100 * frac:.0f}%",
            _faults(a.get("page_faults_per_epoch")),
        )
    out += [what, arms, rates]

    floors = result.get("floors") or {}
    ratios = _table(
        "ratios of per-run epoch times (wall: median over rounds of each round's ratio, with its min–max; CPU: ratio of medians)",
        ["ratio", "wall", "min–max", "CPU"],
        # The floors' definitions here, not in every row: spelled out they folded over two lines.
        caption="floors of c/b: by FLOPs = inference FLOPs (train + test) / training FLOPs; "
        "measured = the (c) arm's measured inference passes / (b)"
        if floors
        else None,
    )
    for name, v in result["ratios"].items():
        ratios.add_row(name, f"{v['median']:.3f}", f"{v['min']:.2f}–{v['max']:.2f}", f"{v['cpu']:.3f}")
    for key, fl in floors.items():
        ratios.add_row(f"{key} / b floor by FLOPs", f"{fl['flops']:.3f}", "", "")
        if fl["measured"] is not None:
            ratios.add_row(f"{key} / b floor measured", f"{fl['measured']:.3f}", "", "")
    out.append(ratios)

    # What a target means goes under its name: as a column of its own, it and the name folded
    # over three lines each.
    tg = _table("targets", ["target", "value", "goal", "result"])
    for t in result["targets"]:
        name = f"{t['name']}\n[dim]{t['what']}[/]"
        if t["value"] is None:
            tg.add_row(name, "—", f"{t['op']} {t['threshold']:.2f}", "[dim]not measured[/]")
        else:
            tg.add_row(
                name,
                f"{t['value']:.3f}",
                f"{t['op']} {t['threshold']:.2f}",
                "[green]pass[/]" if t["pass"] else "[red]fail[/]",
            )
    out.append(tg)

    for backend, rows in (result.get("stacking") or {}).items():
        st = _table(
            f"stacked sweep on {backend}: K runs as one step; seconds per epoch and per run-epoch, "
            "run-epochs per second, speed-up of a run-epoch over K = 1",
            ["arm", "K", "epoch", "per run", "run-epochs/s", "speed-up"],
        )
        for row in rows:
            sp = row.get("speedup_per_run")
            st.add_row(
                row["arm"],
                str(row["k"]),
                _s(row["epoch_s"]),
                _s(row["per_run_epoch_s"]),
                f"{row['run_epochs_per_s']:.3f}",
                "" if sp is None else f"{sp:.2f}x",
            )
        out.append(st)

    if result.get("alone"):
        al = _table(
            "the same arm alone in a fresh process (plain loop, nothing else running) against the bench: "
            "seconds per epoch alone (median, min–max) and in the bench (median); faults: minor page faults per epoch alone",
            ["arm", "alone", "min–max", "bench", "bench/alone", "faults"],
        )
        for key, a in result["alone"].items():
            e = a["epoch_s"]
            bench = (_s(a["in_bench_epoch_s"]), f"{a['in_bench_over_alone']:.3f}") if "in_bench_over_alone" in a else ("—", "—")
            al.add_row(key, _s(e["median"]), f"{_s(e['min'])}–{_s(e['max'])}", *bench, _faults(a.get("page_faults_per_epoch")))
        out.append(al)

    plain = result.get("plain_torch")
    if plain:
        pt = _table(
            f"against plain PyTorch alone (torch/plain, {_s(plain['epoch_s'])} s; medians of separate processes, unpaired)",
            ["arm", "epoch s", "/ plain PyTorch"],
        )
        for row in plain["rows"]:
            pt.add_row(row["arm"], _s(row["epoch_s"]), f"{row['over_plain']:.3f}")
        out.append(pt)

    for key, tk in (result.get("tracking") or {}).items():
        b = tk["breakdown"]
        track = _table(f"tracking cost of {key} (median seconds per call, trained weights)", ["piece", "s"])
        for name, k in (
            ("inference pass, training set", "predict_train_s"),
            ("inference pass, test set", "predict_test_s"),
            ("Tracker.measure (all metrics)", "measure_s"),
            ("RunLogger.record (+ CSV, status, checkpoint)", "record_s"),
            ("Tracker.measure(nc=True)", "measure_nc_s"),
            ("record on an NC + margins epoch", "record_nc_s"),
        ):
            track.add_row(name, f"{b[k]['median']:.3f}")
        track.add_row(
            f"NC + margins amortized ({tk['special_epochs_in_schedule']} of {tk['nc_horizon']} epochs)",
            f"{tk['nc_amortized_per_epoch_s']:.4f}",
        )
        out.append(track)

    out += _profile_tables(result)
    out += _scaling_tables(result.get("scaling"))
    return [_fit(t) for t in out]


def _profile_tables(result: dict) -> list:
    p = result.get("profile")
    if not p:
        return []
    b = next(k for k in result["arms"] if k.endswith("/b") and result["arms"][k]["framework"] == "tensorflow")
    prof = _table(f"profile of one {b} epoch (median seconds per epoch, pre-built batches)", ["stage", "s"])
    for name, v in p.items():
        if name != "kernels":
            prof.add_row(name, f"{v['median']:.3f}")
    prof.add_row(f"fit epoch ({b})", f"{result['arms'][b]['epoch_s']['median']:.3f}")
    out = [prof]
    if p.get("kernels"):
        mm = result["arms"][b]["matmul"]["median"]
        kt = _table(
            f"kernels of one training step, alone (median ms; matmul {mm:.0f} GFLOP/s)",
            ["layer", "kernel", "ms", "GFLOP/s", "% matmul"],
            left=2,
        )
        for row in p["kernels"]:
            g = row["gflops"]
            kt.add_row(
                row["layer"],
                row["kernel"],
                f"{row['ms']:.2f}",
                "" if g is None else f"{g:.0f}",
                "" if g is None else f"{100 * g / mm:.0f}%",
            )
        steps = -(-result["data"]["n_train"] // result["options"]["batch_size"])
        kt.add_row("sum", f"x {steps} steps = s per epoch", f"{sum(r['ms'] for r in p['kernels']) * steps / 1e3:.3f}", "", "")
        out.append(kt)
    return out


def _scaling_tables(sc: dict | None) -> list:
    if not sc:
        return []
    tr = _table("scaling: (b) epoch time against N (synthetic)", ["N", "epoch s", "µs / sample"], left=0)
    for row in sc["train"]:
        tr.add_row(str(row["n"]), _s(row["epoch_s"]["median"]), f"{row['us_per_sample']:.0f}")
    nc = _table("scaling: one NC measurement (both passes, float64)", ["N", "p", "s", "peak MiB"], left=0)
    for row in sc["nc"]["vs_n"] + sc["nc"]["vs_p"]:
        nc.add_row(str(row["n"]), str(row["p"]), f"{row['seconds']:.3f}", f"{row['peak_mb']:.1f}")
    return [tr, nc]

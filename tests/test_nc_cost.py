"""tools/nc_cost.py, issue 27's measure of record, on run files whose epoch times are known."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nc_cost  # noqa: E402


def write_run(path, dts: dict, nc_epochs=None):
    """metrics.csv whose epoch e took dts[e] seconds (epoch 0 at 1 s); nc.csv with `nc_epochs`."""
    path.mkdir(parents=True)
    elapsed, rows = 1.0, [{"epoch": 0, "elapsed_s": 1.0}]
    for e in sorted(dts):
        elapsed += dts[e]
        rows.append({"epoch": e, "elapsed_s": elapsed})
    pd.DataFrame(rows).to_csv(path / "metrics.csv", index=False)
    if nc_epochs is not None:
        pd.DataFrame({"epoch": sorted(nc_epochs), "nc1": 0.5}).to_csv(path / "nc.csv", index=False)
    return path


def test_medians_of_nc_and_plain_epochs_leave_out_the_compiling_first(tmp_path):
    nc = {0, 2, 5, 8}
    dts = {1: 5.0, **{e: (0.3 if e in nc else 0.1) for e in range(2, 10)}}
    dts[7] = 0.12  # one slower plain epoch: the median ignores it
    c = nc_cost.nc_cost(write_run(tmp_path / "r", dts, nc))
    assert (c["nc_epochs"], c["plain_epochs"]) == (3, 5)
    assert math.isclose(c["nc_s"], 0.3) and math.isclose(c["plain_s"], 0.1)
    assert math.isclose(c["ratio"], 3.0)


def test_a_run_without_nc_epochs_has_no_ratio(tmp_path):
    c = nc_cost.nc_cost(write_run(tmp_path / "r", {e: 0.2 for e in range(1, 6)}))
    assert c["nc_epochs"] == 0 and c["plain_epochs"] == 4 and math.isnan(c["ratio"])


def test_the_script_names_a_folder_that_is_no_run(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "nc_cost.py"), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and str(tmp_path) in res.stderr, res.stderr

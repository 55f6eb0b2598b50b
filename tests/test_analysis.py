"""`sqnc analyze`: run directories -> tables, on real runs made by the tool (one tiny sweep per
session, shared with test_figures.py), and on broken trees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from cli.report import register
from sqloss_nc.analysis import AnalysisError, analyze, flatten, read_csv_robust

SWEEP = "{model.init_scale: [0.01, 5], optim.weight_decay: [0.01, 0], seed: [0, 1]}"
TINY = [
    "name=tiny",
    "data.source=synthetic",
    "data.synthetic.shape=[8,8,3]",
    "data.train_per_class=32",
    "data.test_per_class=8",
    "model.arch=mlp",
    "model.widths=[8]",
    "optim.batch_size=32",
    "optim.epochs=3",
    "track.nc_epochs=all",
    "track.margin_epochs=all",
    f"sweep={SWEEP}",
]
SETTINGS = {"init=0.01, wd=0", "init=0.01, wd=0.01", "init=5, wd=0", "init=5, wd=0.01"}

_SWEEP_CACHE: dict[str, Path] = {}


def make_sweep(tmp_path_factory) -> Path:
    """Train the 2 x 2 x 2 sweep once per session (the real `sqnc run`); returns a pristine OUT
    that tests must copy before changing."""
    if "out" not in _SWEEP_CACHE:
        from cli.main import app

        out = tmp_path_factory.mktemp("sweep") / "out"
        args = ["run", "--out", str(out), "--no-progress"] + [a for o in TINY for a in ("--set", o)]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        _SWEEP_CACHE["out"] = out
    return _SWEEP_CACHE["out"]


def fresh_copy(src: Path, dst: Path) -> Path:
    """A copy of the runs without any earlier analysis or figures."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("analysis", "figures", "*.keras", "checkpoint.npz"))
    return dst


@pytest.fixture(scope="session")
def sweep_out(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory)


def cli_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def sqnc(*args):
    return CliRunner().invoke(cli_app(), [str(a) for a in args])


def read_run_config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


# ----------------------------------------------------------------------------- the sweep


def test_sweep_tables_have_the_expected_shape(sweep_out, tmp_path):
    out = fresh_copy(sweep_out, tmp_path / "out")
    res = analyze(out)
    assert res.problems == []
    adir = out / "analysis"
    for name in ("runs.csv", "summary.csv", "epochs.csv", "nc_epochs.csv", "nc_layers_epochs.csv", "margins_hist.csv", "problems.csv"):
        assert (adir / name).stat().st_size > 0, name
    assert not list(adir.glob(".*tmp")), "temporary files left behind"

    runs = pd.read_csv(adir / "runs.csv")
    assert len(runs) == 8
    assert set(runs["state"]) == {"done"} and runs["aggregated"].all()
    assert set(runs["setting"]) == SETTINGS  # only the varying keys, not the seed
    assert {"model.init_scale", "optim.weight_decay", "data.label_noise", "seed", "model.widths"} <= set(runs.columns)
    assert (runs["last_epoch"] == 3).all() and (runs["nc_epoch"] == 3).all()
    # Final values are the last rows of the run's own files.
    for _, r in runs.iterrows():
        m = pd.read_csv(out / r["path"] / "metrics.csv")
        assert r["rho"] == pytest.approx(m["rho"].iloc[-1], rel=1e-12)
        assert r["test_error"] == pytest.approx(1 - m["test_acc"].iloc[-1], rel=1e-12, abs=1e-15)
        nc = pd.read_csv(out / r["path"] / "nc.csv")
        assert r["nc1"] == pytest.approx(nc["nc1"].iloc[-1], rel=1e-12)

    summary = pd.read_csv(adir / "summary.csv")
    assert len(summary) == 4 and (summary["n_seeds"] == 2).all()
    assert set(summary["setting"]) == SETTINGS
    assert "seed" not in summary.columns and {"rho_mean", "rho_std", "nc1_mean", "inv_rho_mean"} <= set(summary.columns)

    epochs = pd.read_csv(adir / "epochs.csv")
    assert len(epochs) == 4 * 4 and set(epochs["setting"]) == SETTINGS
    assert sorted(epochs["epoch"].unique()) == [0, 1, 2, 3] and (epochs["n_runs"] == 2).all()
    nc_epochs = pd.read_csv(adir / "nc_epochs.csv")
    assert len(nc_epochs) == 16 and "nc1_mean" in nc_epochs and "nc2_maxangle_weights_std" in nc_epochs

    hist = pd.read_csv(adir / "margins_hist.csv")
    assert set(hist["quantity"]) == {"normalized", "raw"} and set(hist["epoch"]) == {0, 1, 2, 3}
    # Each histogram holds every training sample of both seeds (2 x 64) exactly once.
    counts = hist.groupby(["setting", "epoch", "quantity"])["count"].sum()
    assert (counts == 128).all()
    dens = hist.assign(area=hist["density"] * (hist["right"] - hist["left"])).groupby(["setting", "epoch", "quantity"])["area"].sum()
    np.testing.assert_allclose(dens, 1.0, rtol=1e-5)


def test_summary_and_epochs_equal_a_pandas_recomputation(sweep_out, tmp_path):
    out = fresh_copy(sweep_out, tmp_path / "out")
    res = analyze(out)
    rows, nc_rows, per_epoch = [], [], []
    for run in sorted((out / "tiny").iterdir()):
        cfg = read_run_config(run)
        key = {"init": cfg["model"]["init_scale"], "wd": cfg["optim"]["weight_decay"]}
        m = pd.read_csv(run / "metrics.csv")
        rows.append({**key, **m.iloc[-1].to_dict()})
        nc_rows.append({**key, **pd.read_csv(run / "nc.csv").iloc[-1].to_dict()})
        per_epoch.append(m.assign(**key))
    raw = pd.DataFrame(rows)
    expected = raw.groupby(["init", "wd"]).agg(["mean", "std"])
    expected_nc = pd.DataFrame(nc_rows).groupby(["init", "wd"]).agg(["mean", "std"])
    s = res.summary.set_index(["model.init_scale", "optim.weight_decay"]).sort_index()
    assert list(s.index) == list(expected.index)
    for col in ("rho", "train_loss", "test_acc", "margin_mean", "margin_std", "grad_norm_sq", "norm_dense1"):
        np.testing.assert_allclose(s[f"{col}_mean"], expected[(col, "mean")], rtol=1e-12, err_msg=col)
        np.testing.assert_allclose(s[f"{col}_std"], expected[(col, "std")], rtol=1e-9, atol=1e-300, err_msg=col)
    for col in ("nc1", "nc3", "eps_gap"):
        np.testing.assert_allclose(s[f"{col}_mean"], expected_nc[(col, "mean")], rtol=1e-12, err_msg=col)
        np.testing.assert_allclose(s[f"{col}_std"], expected_nc[(col, "std")], rtol=1e-9, err_msg=col)
    # The mean of 1/rho over seeds, not 1/mean(rho).
    inv = raw.assign(inv=1 / raw["rho"]).groupby(["init", "wd"])["inv"].mean()
    np.testing.assert_allclose(s["inv_rho_mean"], inv, rtol=1e-12)

    # The CSV on disk holds the same numbers as the returned frame.
    on_disk = pd.read_csv(out / "analysis" / "summary.csv")
    np.testing.assert_allclose(on_disk["rho_mean"], res.summary["rho_mean"], rtol=1e-15)

    ep = pd.concat(per_epoch).groupby(["init", "wd", "epoch"])["rho"].agg(["mean", "std"])
    e = res.epochs.merge(res.summary[["setting", "model.init_scale", "optim.weight_decay"]], on="setting")
    e = e.set_index(["model.init_scale", "optim.weight_decay", "epoch"]).sort_index()
    np.testing.assert_allclose(e["rho_mean"], ep["mean"], rtol=1e-12)
    np.testing.assert_allclose(e["rho_std"], ep["std"], rtol=1e-9)


# ----------------------------------------------------------------------------- broken trees


def broken_tree(sweep_out: Path, out: Path) -> Path:
    """One experiment with an intact run, a torn metrics.csv, a failed run, a diverged run, an
    empty run folder and a run without config."""
    src = sweep_out / "tiny"
    exp = out / "broken"
    exp.mkdir(parents=True)

    def copy(name, new):
        shutil.copytree(src / name, exp / new, ignore=shutil.ignore_patterns("*.keras", "checkpoint.npz"))
        return exp / new

    copy("init=0.01_wd=0.01_seed=0", "ok_seed=0")
    copy("init=0.01_wd=0.01_seed=1", "ok_seed=1")
    torn = copy("init=5_wd=0.01_seed=0", "torn")
    text = (torn / "metrics.csv").read_text()
    (torn / "metrics.csv").write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # cut mid-row
    failed = copy("init=5_wd=0_seed=0", "failed")
    st = json.loads((failed / "status.json").read_text())
    st.update(state="failed", epoch=1, reason="RuntimeError: simulated crash")
    (failed / "status.json").write_text(json.dumps(st))
    diverged = copy("init=0.01_wd=0_seed=0", "diverged")
    st = json.loads((diverged / "status.json").read_text())
    st.update(state="diverged", epoch=3, reason="rho is inf at epoch 3")
    (diverged / "status.json").write_text(json.dumps(st))
    m = pd.read_csv(diverged / "metrics.csv")
    m.loc[m.index[-1], ["rho", "train_loss"]] = [np.inf, np.nan]
    m.to_csv(diverged / "metrics.csv", index=False)
    noconfig = copy("init=0.01_wd=0_seed=1", "noconfig")
    (noconfig / "config.yaml").unlink()
    (exp / "empty_run").mkdir()
    return out


def test_broken_runs_are_reported_and_the_tables_still_written(sweep_out, tmp_path):
    out = broken_tree(sweep_out, tmp_path / "out")
    res = analyze(out)
    problems = {}
    for run, problem in res.problems:
        problems.setdefault(run, []).append(problem)
    assert any("torn last line" in p for p in problems["broken/torn"])
    # status.json says 3: only the torn row is missing, so the run is kept (issue 28: it was dropped).
    assert any("torn row of epoch 3 is dropped; the run is kept, ending at epoch 2" in p for p in problems["broken/torn"])
    assert any("failed at epoch 1" in p and "simulated crash" in p for p in problems["broken/failed"])
    assert any(p.startswith("diverged at epoch 3: rho is inf") for p in problems["broken/diverged"])
    assert any("no config.yaml" in p for p in problems["broken/noconfig"])
    assert any("empty run directory" in p for p in problems["broken/empty_run"])
    assert "broken/ok_seed=0" not in problems and "broken/ok_seed=1" not in problems

    adir = out / "analysis"
    runs = pd.read_csv(adir / "runs.csv")
    assert len(runs) == 6  # every run folder with something in it, whatever its state
    state = dict(zip(runs["run_id"], runs["state"]))
    assert state["failed"] == "failed" and state["diverged"] == "diverged" and state["ok_seed=0"] == "done"
    assert set(runs.loc[runs["aggregated"], "run_id"]) == {"ok_seed=0", "ok_seed=1", "torn"}
    # The torn run keeps the rows that were complete.
    assert runs.loc[runs["run_id"] == "torn", "last_epoch"].item() == 2

    summary = pd.read_csv(adir / "summary.csv")
    assert dict(zip(summary["setting"], summary["n_seeds"])) == {"init=0.01, wd=0.01": 2, "init=5, wd=0.01": 1}
    epochs = pd.read_csv(adir / "epochs.csv")
    assert set(epochs["setting"]) == {"init=0.01, wd=0.01", "init=5, wd=0.01"}  # no diverged curve to plot
    assert epochs.loc[epochs["setting"] == "init=5, wd=0.01", "epoch"].max() == 2
    assert np.isfinite(epochs["rho_mean"]).all()
    probs = pd.read_csv(adir / "problems.csv")
    assert list(probs.columns) == ["run", "problem"] and len(probs) == len(res.problems)

    # Through the command line: the problems are printed, the exit code is 0.
    res = sqnc("analyze", out)
    assert res.exit_code == 0, res.output
    assert "torn" in res.output and "failed" in res.output and "empty_run" in res.output


def test_include_partial_aggregates_running_runs(sweep_out, tmp_path):
    out = tmp_path / "out"
    exp = out / "e"
    for i in (0, 1):
        shutil.copytree(sweep_out / "tiny" / f"init=5_wd=0_seed={i}", exp / f"seed={i}")
    st = json.loads((exp / "seed=1" / "status.json").read_text())
    st.update(state="running", epoch=3)
    (exp / "seed=1" / "status.json").write_text(json.dumps(st))
    res = analyze(out)
    assert res.summary["n_seeds"].tolist() == [1]
    assert any("running" in p for _, p in res.problems)
    res = analyze(out, include_partial=True)
    assert res.summary["n_seeds"].tolist() == [2] and res.summary["setting"].tolist() == ["e"]


def test_stale_optional_tables_are_removed(sweep_out, tmp_path):
    out = fresh_copy(sweep_out, tmp_path / "out")
    analyze(out)
    assert (out / "analysis" / "nc_epochs.csv").exists()
    for p in out.glob("tiny/*/nc.csv"):
        p.unlink()
    res = analyze(out)
    assert res.nc_epochs.empty and not (out / "analysis" / "nc_epochs.csv").exists()


# ----------------------------------------------------------------------------- errors and units


def test_analyze_refuses_a_missing_or_empty_folder(tmp_path):
    res = sqnc("analyze", tmp_path / "nope")
    assert res.exit_code == 2 and "not a folder" in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1
    (tmp_path / "empty" / "exp" / "run").mkdir(parents=True)
    res = sqnc("analyze", tmp_path / "empty")
    assert res.exit_code == 2 and "no run directories" in res.stderr and "Traceback" not in res.output
    with pytest.raises(AnalysisError):
        analyze(tmp_path / "empty")
    assert not (tmp_path / "empty" / "analysis").exists()


def test_read_csv_robust(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("epoch,a,b\n0,1.0,\n1,2.0,3\n2,3.")
    df, problems = read_csv_robust(p)
    assert df["epoch"].tolist() == [0, 1] and np.isnan(df["b"].iloc[0]) and any("torn" in x for x in problems)
    p.write_text("epoch,a,b\n0,1.0,2\n1,2.0\n2,3,4\n")
    df, problems = read_csv_robust(p)
    assert df["epoch"].tolist() == [0, 2] and any("short" in x for x in problems)
    p.write_text("epoch,a,b\n")
    df, problems = read_csv_robust(p)
    assert df is None and any("no rows" in x for x in problems)
    p.write_text("epo")
    df, problems = read_csv_robust(p)
    assert df is None and problems


def test_flatten():
    assert flatten({"model": {"widths": [8, 4], "init_scale": 0.1}, "seed": 0, "data": {"path": None}}) == {
        "model.widths": "[8, 4]",
        "model.init_scale": 0.1,
        "seed": 0,
        "data.path": None,
    }


def test_the_states_line_says_1_run_and_1_setting_in_the_singular():
    """Issue 28 item 11: `sqnc analyze` on the quick start said "1 runs: 1 done; 1 aggregated into 1 setting(s)"."""
    from types import SimpleNamespace

    from sqloss_nc.analysis import states_line

    one = SimpleNamespace(runs=pd.DataFrame({"state": ["done"], "aggregated": [True]}), summary=pd.DataFrame({"setting": ["a"]}))
    assert states_line(one) == "1 run: 1 done; 1 aggregated into 1 setting"
    three = SimpleNamespace(runs=pd.DataFrame({"state": ["done", "done", "failed"], "aggregated": [True, True, False]}), summary=pd.DataFrame({"setting": ["a", "b"]}))
    assert states_line(three) == "3 runs: 2 done, 1 failed; 2 aggregated into 2 settings"

"""Crash safety, divergence, concurrency: nothing lost, nothing duplicated, status always true."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.config import load_config
from sqloss_nc.experiment import train_and_evaluate
from sqloss_nc.rundir import RunLock
from sqloss_nc.sweep import run_config

runner = CliRunner()


def test_divergence_marks_the_run_keeps_its_csvs_and_the_sweep_goes_on(tmp_path, synthetic_overrides):
    res = run_config(
        None, [*synthetic_overrides, "model.normalization=none", "optim.epochs=6", "sweep={optim.lr: [1000000.0, 0.01]}"], tmp_path
    )
    by_lr = {r["run_id"]: r for r in res}
    bad, good = by_lr["lr=1e+06_seed=0"], by_lr["lr=0.01_seed=0"]
    assert bad["state"] == "diverged" and good["state"] == "done"
    status = json.loads((tmp_path / "quickstart" / "lr=1e+06_seed=0" / "status.json").read_text())
    assert status["state"] == "diverged" and "at epoch" in status["reason"]
    m = pd.read_csv(tmp_path / "quickstart" / "lr=1e+06_seed=0" / "metrics.csv")
    assert m["epoch"].tolist() == list(range(status["epoch"] + 1))  # rows up to the divergence, each once
    last = m.iloc[-1][["train_loss", "train_objective", "rho"]].astype(float).to_numpy()
    assert not np.isfinite(last).all() and np.isfinite(m.iloc[0][["train_loss", "rho"]].astype(float)).all()


def test_a_live_lock_keeps_a_second_process_out_and_a_dead_ones_lock_is_taken_over(tmp_path, synthetic_overrides):
    cfg = load_config(None, synthetic_overrides)
    run = tmp_path / "run"
    run.mkdir()
    held = RunLock(run)
    assert held.acquire()
    res = train_and_evaluate(cfg, run)
    assert res["state"] == "locked" and str(os.getpid()) in res["reason"] and not (run / "metrics.csv").exists()
    held.release()
    # A lock left by a process that no longer exists (on this host) is stale.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (run / ".lock").write_text(json.dumps({"host": held.me["host"], "pid": int(dead), "started": 0}))
    res = train_and_evaluate(cfg, run)
    assert res["state"] == "done" and not (run / ".lock").exists()


def test_two_processes_on_one_sweep_train_each_run_exactly_once(tmp_path, synthetic_overrides):
    over = [*synthetic_overrides, "optim.epochs=6", "sweep={model.init_scale: [0.5, 1, 2], seed: [0, 1]}"]
    args = [a for o in over for a in ("--set", o)]
    cmd = [sys.executable, "-m", "cli.main", "run", "--no-progress", "--out", str(tmp_path), *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    runs = sorted((tmp_path / "quickstart").iterdir())
    assert len(runs) == 6
    trained_by = []
    for run in runs:
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "done"
        assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == list(range(7))
        trained_by.append(status["environment"]["pid"])
        assert not (run / ".lock").exists()
    # Both processes got work (or one finished everything before the other started; then the
    # other must have skipped every run as done).
    assert len(set(trained_by)) in (1, 2)
    assert "locked" in outs[0][0] + outs[1][0] or "already done" in outs[0][0] + outs[1][0]


def test_interrupt_marks_the_run_resumable(tmp_path, synthetic_overrides, monkeypatch):
    import sqloss_nc.experiment as experiment

    real = experiment.save_checkpoint

    def interrupt(rundir, network, optimizer, epoch):
        real(rundir, network, optimizer, epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "save_checkpoint", interrupt)
    args = [a for o in [*synthetic_overrides, "optim.epochs=4"] for a in ("--set", o)]
    res = runner.invoke(app, ["run", "--no-progress", "--out", str(tmp_path), *args])
    assert res.exit_code == 130 and "rerun the same command" in res.stderr
    status = yaml.safe_load((tmp_path / "quickstart" / "seed=0" / "status.json").read_text())
    assert status["state"] == "interrupted" and status["epoch"] == 2
    monkeypatch.setattr(experiment, "save_checkpoint", real)
    assert runner.invoke(app, ["run", "--no-progress", "--out", str(tmp_path), *args]).exit_code == 0
    assert pd.read_csv(tmp_path / "quickstart" / "seed=0" / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3, 4]


def test_disk_full_is_reported_and_earlier_epochs_survive(tmp_path, synthetic_overrides, monkeypatch):
    import errno

    from sqloss_nc import rundir

    real = rundir.CSVAppender.write_many

    def full_disk(self, rows):
        rows = list(rows)
        if self.path.name == "metrics.csv" and rows and rows[0].get("epoch") == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, rows)

    monkeypatch.setattr(rundir.CSVAppender, "write_many", full_disk)
    args = [a for o in [*synthetic_overrides, "optim.epochs=5"] for a in ("--set", o)]
    res = runner.invoke(app, ["run", "--no-progress", "--out", str(tmp_path), *args])
    assert res.exit_code == 1 and "No space left on device" in res.stderr
    run = tmp_path / "quickstart" / "seed=0"
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0, 1, 2]
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    monkeypatch.setattr(rundir.CSVAppender, "write_many", real)
    assert runner.invoke(app, ["run", "--no-progress", "--out", str(tmp_path), *args]).exit_code == 0
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3, 4, 5]


def test_a_diverged_run_is_not_retrained_and_an_older_config_without_new_keys_still_matches(tmp_path, synthetic_overrides):
    over = [*synthetic_overrides, "model.normalization=none", "optim.epochs=4", "optim.lr=1000000.0"]
    first = run_config(None, over, tmp_path)[0]
    assert first["state"] == "diverged"
    run = tmp_path / "quickstart" / first["run_id"]
    before = (run / "metrics.csv").read_text()
    again = run_config(None, over, tmp_path)[0]
    assert again["state"] == "diverged" and again["skipped"] and (run / "metrics.csv").read_text() == before
    # A config.yaml written before a defaulted key existed (here: track.nc_test removed from it)
    # is read through the current schema and still matches.
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    del cfg["track"]["nc_test"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert run_config(None, over, tmp_path)[0]["skipped"]

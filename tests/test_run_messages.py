"""What `sqnc run` says (issue 28): a resumed run says where it resumes (console and status.json),
a clamped width and a measurement's NaN notice are one line each and kept in status.json, a run
locked by another command is named with its owner and the exit code is not 0, `--dry-run` checks
the data paths, a finished command names the next steps, and `sqnc analyze` does not take the
tool's own output folders of a nested OUT for empty runs."""

from __future__ import annotations

import io
import json
import os
import socket
import warnings

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.config import load_config

# A synthetic MLP run of a few milliseconds per epoch.
SYN = [
    "data.source=synthetic",
    "data.synthetic.shape=[8,8,3]",
    "data.train_per_class=16",
    "data.test_per_class=4",
    "model.arch=mlp",
    "model.widths=[4]",
    "optim.epochs=4",
    "optim.batch_size=8",
    "optim.schedule=constant",  # configs/quickstart.yaml decays its rate at epoch 270
    "optim.milestones=[]",
    "track.nc_epochs=all",
]


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def status(out):
    return json.loads((out / "quickstart" / "seed=0" / "status.json").read_text())


def interrupted_after_epoch_2(tmp_path, monkeypatch):
    """The SYN run stopped (as by Ctrl-C) after its epoch-2 checkpoint: (config, run folder)."""
    from sqloss_nc import experiment

    cfg = load_config(None, SYN)
    rundir = tmp_path / "quickstart" / "seed=0"
    save = experiment.save_checkpoint

    def stop_after_epoch_2(rd, network, optimizer, epoch):
        save(rd, network, optimizer, epoch)
        if epoch == 2:
            raise KeyboardInterrupt("stopped by the test")

    monkeypatch.setattr(experiment, "save_checkpoint", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        experiment.train_and_evaluate(cfg, rundir)
    monkeypatch.setattr(experiment, "save_checkpoint", save)
    return cfg, rundir


def test_a_resumed_run_says_where_it_resumes_on_the_console_and_in_status_json(tmp_path, monkeypatch):
    from sqloss_nc import experiment

    cfg, rundir = interrupted_after_epoch_2(tmp_path, monkeypatch)
    text = io.StringIO()
    res = experiment.train_and_evaluate(cfg, rundir, console=Console(file=text, width=200))
    assert res["state"] == "done"
    assert "seed=0: resuming at epoch 3 of 4 (epochs 1-2 from its checkpoint)" in text.getvalue()
    resumed = status(tmp_path)["resumed"]
    assert [r["epoch"] for r in resumed] == [3] and resumed[0]["date"]


def test_a_clamped_width_is_one_warning_line_kept_in_status_json(tmp_path):
    res = CliRunner().invoke(app, ["run", *sets([*SYN, "model.width=0.0001"]), "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    line = "model.width: 0.0001 rounds every hidden width of mlp ([4] x 0.0001) below 1: clamped to 1 unit"
    assert [ln for ln in res.output.splitlines() if ln.startswith("warning:")] == [f"warning: {line}"]
    assert status(tmp_path)["warnings"] == [line]


def test_a_measurement_warning_is_one_line_once_and_in_status_json(tmp_path, monkeypatch):
    """The engine's NaN notice (a RuntimeWarning) was printed raw, with a source path, every NC epoch."""
    from sqloss_nc import callbacks, experiment

    record = callbacks.Tracker.record

    def noisy(self, epoch, **kwargs):
        warnings.warn("nc1 is NaN: Sigma_B is numerically rank-deficient (0 of 1 class-mean directions)", RuntimeWarning, stacklevel=2)
        return record(self, epoch, **kwargs)

    monkeypatch.setattr(callbacks.Tracker, "record", noisy)
    text = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a notice escaping the run would fail the test
        res = experiment.train_and_evaluate(load_config(None, SYN), tmp_path / "quickstart" / "seed=0", console=Console(file=text, width=300))
    assert res["state"] == "done"
    lines = [ln for ln in text.getvalue().splitlines() if ln.strip()]
    assert lines == ["warning: seed=0: epoch 0: nc1 is NaN: Sigma_B is numerically rank-deficient (0 of 1 class-mean directions)"]
    assert status(tmp_path)["warnings"] == ["nc1 is NaN: Sigma_B is numerically rank-deficient (0 of 1 class-mean directions) (from epoch 0)"]


def test_a_run_locked_by_another_command_names_its_owner_and_fails(tmp_path):
    run = tmp_path / "quickstart" / "seed=0"
    run.mkdir(parents=True)
    # A live owner on this host: this test's own process.
    (run / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": 0}))
    res = CliRunner().invoke(app, ["run", *sets(SYN), "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 1, res.output
    assert f"seed=0: not trained by this command: being trained by pid {os.getpid()} on host {socket.gethostname()}" in res.stderr
    table = res.stdout.split("run directories under")[0]
    assert "locked" in table and "None" not in table
    assert "next:" not in res.stdout


def test_a_finished_command_names_the_next_steps(tmp_path):
    res = CliRunner().invoke(app, ["run", *sets([*SYN, "optim.epochs=1"]), "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == f"next: sqnc analyze {tmp_path}; sqnc figures {tmp_path}; sqnc report {tmp_path}"


def test_dry_run_checks_the_data_path(tmp_path):
    missing = tmp_path / "nope.zip"
    res = CliRunner().invoke(app, ["run", "configs/paper/fig2_init_wd.yaml", "--data-dir", str(missing), "--set", "data.source=folder", "--dry-run", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [f"error: data.path: {missing} does not exist"]
    assert not (tmp_path / "o").exists()
    # A folder source without any path, and the sample source with --data-dir, as the real run.
    res = CliRunner().invoke(app, ["run", "--set", "data.source=folder", "--dry-run", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "data.path: source 'folder' needs a path" in res.stderr


def test_tool_folders_of_a_nested_out_are_not_empty_runs(tmp_path):
    from sqloss_nc.analysis import find_run_dirs

    run = tmp_path / "quickstart" / "seed=0"
    run.mkdir(parents=True)
    (run / "status.json").write_text("{}")
    for tool in ("analysis", "figures", "report"):
        (tmp_path / "quickstart" / tool).mkdir()
        (tmp_path / "quickstart" / tool / "x.csv").write_text("a\n1\n")
    (tmp_path / "other" / "empty_run").mkdir(parents=True)
    runs, empty = find_run_dirs(tmp_path)
    assert runs == [run] and empty == [tmp_path / "other" / "empty_run"]


def test_every_commands_summary_in_the_listing_is_one_paragraph():
    """`sqnc --help` lists each command with its help's first paragraph, hard line breaks kept:
    the bench's broke mid-sentence ("... plain Keras fit, the" / "project's step, ...")."""
    import typer

    for name, command in typer.main.get_command(app).commands.items():
        first = (command.help or "").strip().split("\n\n")[0]
        assert "\n" not in first, (name, first)


def test_a_run_resumed_in_a_jobs_or_ray_worker_says_so_too(tmp_path, monkeypatch, capsys):
    """`run_one` is the unit a `--jobs` worker or a Ray task trains: its resume line goes to the
    worker's stderr (the driver's terminal), not only to status.json."""
    from sqloss_nc import sweep

    cfg, rundir = interrupted_after_epoch_2(tmp_path, monkeypatch)
    capsys.readouterr()
    res = sweep.run_one(cfg.to_dict(), "seed=0", str(rundir))
    assert res["state"] == "done"
    assert "seed=0: resuming at epoch 3 of 4 (epochs 1-2 from its checkpoint)" in capsys.readouterr().err

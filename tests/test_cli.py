"""End to end through the `sqnc` command line (in process, via Typer's runner)."""

import csv
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from sqloss_nc.config import validate
from sqloss_nc.data import load_dataset

runner = CliRunner()

SPEC_METRICS_PREFIX = [
    "epoch",
    "lr",
    "train_loss",
    "train_objective",
    "train_acc",
    "test_loss",
    "test_acc",
    "rho",
    "rho_product",
    "rho_last",
    "rho_bn",
]
SPEC_MARGIN_COLUMNS = [
    "margin_mean",
    "margin_sq_mean",
    "margin_std",
    "margin_min",
    "margin_p05",
    "margin_p50",
    "margin_p95",
    "raw_margin_mean",
    "raw_margin_std",
    "raw_margin_min",
]


def sqnc(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_run_on_shipped_sample_writes_the_contract(tmp_path):
    res = sqnc(
        "run",
        "--out",
        tmp_path,
        "--no-progress",
        "--set",
        "optim.epochs=3",
        "--set",
        "data.train_per_class=60",
        "--set",
        "data.test_per_class=20",
        "--set",
        "optim.batch_size=32",
        "--set",
        "track.margin_epochs=[0,2,3]",
    )
    assert res.exit_code == 0, res.output
    run = tmp_path / "quickstart" / "seed=0"
    assert {"config.yaml", "status.json", "metrics.csv", "margins.csv", "model.keras"} <= {p.name for p in run.iterdir()}
    status = yaml.safe_load((run / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == 3 and status["data"]["n_train"] == 120
    m = pd.read_csv(run / "metrics.csv")
    norm_cols = ["norm_conv1", "norm_conv2", "norm_conv3", "norm_classifier"]
    update_cols = [f"update_norm_{c[len('norm_'):]}" for c in norm_cols]  # issue 14, appended last
    assert list(m.columns) == SPEC_METRICS_PREFIX + norm_cols + SPEC_MARGIN_COLUMNS + ["grad_norm_sq", "elapsed_s", "fsc_term"] + update_cols
    assert m[update_cols].iloc[0].isna().all() and (m[update_cols].iloc[1:] > 0).all().all()
    assert m["epoch"].tolist() == [0, 1, 2, 3]
    # Epoch 0 is the initialization: every norm equals init_scale (0.1 in the quickstart).
    np.testing.assert_allclose(m.loc[0, norm_cols].to_numpy(dtype=float), 0.1, rtol=1e-6)
    # BatchNorm: rho is the classifier norm; rho_product the product of all four.
    np.testing.assert_allclose(m["rho"], m["norm_classifier"])
    np.testing.assert_allclose(m["rho_product"], m[norm_cols].prod(axis=1), rtol=1e-9)
    np.testing.assert_allclose(m["margin_std"] ** 2, m["margin_sq_mean"] - m["margin_mean"] ** 2, rtol=1e-6, atol=1e-12)
    assert m["grad_norm_sq"].notna().all() and (m["grad_norm_sq"] > 0).all()
    # Objective = loss + lambda/2 sum ||W||^2 over all four kernels (lambda = 0.5 in the quickstart).
    cfg = validate(yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.optim.weight_decay == 0.5
    np.testing.assert_allclose(m["train_objective"], m["train_loss"] + 0.25 * (m[norm_cols] ** 2).sum(axis=1), rtol=1e-9)
    assert cfg.optim.epochs == 3 and cfg.model.init_scale == 0.1

    # The margins in margins.csv are those of the saved model on the same data.
    margins = pd.read_csv(run / "margins.csv")
    assert list(margins.columns) == ["epoch", "index", "label", "margin", "margin_normalized"]
    assert sorted(margins["epoch"].unique()) == [0, 2, 3]
    last = margins[margins["epoch"] == 3].sort_values("index")
    ds = load_dataset(cfg)
    model = keras.saving.load_model(run / "model.keras")
    f = model.predict(ds.x_train, verbose=0).astype(np.float64)
    independent = np.where(ds.y_train == 0, f[:, 0] - f[:, 1], f[:, 1] - f[:, 0])  # y(f0 - f1), y = +-1
    np.testing.assert_array_equal(last["label"], ds.y_train)
    np.testing.assert_allclose(last["margin"], independent, rtol=1e-4, atol=1e-6)
    rho = np.linalg.norm(np.asarray(model.get_layer("classifier").kernel).astype(np.float64))
    np.testing.assert_allclose(last["margin_normalized"], independent / rho, rtol=1e-4, atol=1e-6)
    assert m["rho"].iloc[-1] == pytest.approx(rho, rel=1e-6)
    assert m["margin_mean"].iloc[-1] == pytest.approx(np.mean(independent / rho), rel=1e-4, abs=1e-7)

    # A second identical command finds the run done and changes nothing.
    before = (run / "metrics.csv").read_text()
    again = sqnc(
        "run",
        "--out",
        tmp_path,
        "--no-progress",
        "--set",
        "optim.epochs=3",
        "--set",
        "data.train_per_class=60",
        "--set",
        "data.test_per_class=20",
        "--set",
        "optim.batch_size=32",
        "--set",
        "track.margin_epochs=[0,2,3]",
    )
    assert again.exit_code == 0 and "skipped" in again.output and (run / "metrics.csv").read_text() == before


@pytest.mark.parametrize(
    "args, field",
    [
        (["--set", "optim.lr=-0.1"], "optim.lr"),
        (["--set", "optim.learning_rate=0.1"], "optim.learning_rate"),
        (["--set", "data.classes=[1,10]"], "data.classes"),
        (["--set", "data.source=folder", "--data-dir", "/nonexistent/cifar"], "data.path"),
        (["--set", "data.source=folder"], "data.path"),
        (["--set", "optim.batch_size=100000", "--set", "data.train_per_class=null"], "optim.batch_size"),
        (["--set", "model.normalization=groupnorm"], "model.normalization"),
        (["--set", "data.train_per_class=100000"], "data.train_per_class"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, field):
    out = tmp_path / "out"
    res = sqnc("run", "--out", out, "--no-progress", *args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert not out.exists()


def test_missing_and_broken_config_files(tmp_path):
    res = sqnc("run", tmp_path / "nope.yaml", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "not found" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0.1\n   momentum: 0.9\n")
    res = sqnc("run", bad, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "line" in res.stderr and not (tmp_path / "o").exists()


def test_a_different_config_in_the_same_run_dir_is_refused(tmp_path, synthetic_overrides):
    sets = [a for o in synthetic_overrides for a in ("--set", o)]
    assert sqnc("run", "--out", tmp_path, "--no-progress", *sets).exit_code == 0
    res = sqnc("run", "--out", tmp_path, "--no-progress", *sets, "--set", "optim.lr=0.5")
    assert res.exit_code == 2 and "different config" in res.stderr and "optim.lr" in res.stderr


def read_rows(path):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("elapsed_s", None)
    return rows


def test_same_seed_same_numbers_and_resume_after_a_crash(tmp_path, synthetic_overrides, monkeypatch):
    sets = [
        a
        for o in [*synthetic_overrides, "optim.epochs=5", "model.normalization=batchnorm", "track.margin_epochs=all"]
        for a in ("--set", o)
    ]
    assert sqnc("run", "--out", tmp_path / "a", "--no-progress", *sets).exit_code == 0
    assert sqnc("run", "--out", tmp_path / "b", "--no-progress", *sets).exit_code == 0
    a = tmp_path / "a" / "quickstart" / "seed=0"
    assert read_rows(a / "metrics.csv") == read_rows(tmp_path / "b" / "quickstart" / "seed=0" / "metrics.csv")

    # Crash at epoch 3 after its rows were written but before its checkpoint: the rerun must cut
    # the orphan rows, resume from epoch 2 and end with the uninterrupted run's numbers.
    import sqloss_nc.experiment as experiment

    real = experiment.save_checkpoint

    def crashing(rundir, network, optimizer, epoch):
        if epoch == 3:
            raise RuntimeError("simulated crash")
        real(rundir, network, optimizer, epoch)

    monkeypatch.setattr(experiment, "save_checkpoint", crashing)
    res = sqnc("run", "--out", tmp_path / "c", "--no-progress", *sets)
    assert res.exit_code != 0
    c = tmp_path / "c" / "quickstart" / "seed=0"
    status = yaml.safe_load((c / "status.json").read_text())
    assert status["state"] == "failed" and "simulated crash" in status["reason"]
    monkeypatch.setattr(experiment, "save_checkpoint", real)
    assert sqnc("run", "--out", tmp_path / "c", "--no-progress", *sets).exit_code == 0
    assert read_rows(c / "metrics.csv") == read_rows(a / "metrics.csv")
    assert (c / "margins.csv").read_text() == (a / "margins.csv").read_text()


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "cli.main", "run", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--set" in res.stdout and "--data-dir" in res.stdout

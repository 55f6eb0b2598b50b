"""The `compute` settings change speed only: a run computed the tuned way (XLA, a whole epoch per
call of the compiled train function, small inference batches) writes the same numbers as the
untuned way, and may resume a run started with other settings."""

import numpy as np
import pandas as pd
import pytest

from conftest import SIXTEEN_STEP_CONVNET, assert_runs_equal
from sqloss_nc import backend, experiment
from sqloss_nc.config import ComputeConfig, ConfigError, load_config, resolve_steps_per_execution
from sqloss_nc.experiment import check_rundir, train_and_evaluate
from sqloss_nc.rundir import RunDir

BASE = SIXTEEN_STEP_CONVNET
UNTUNED = ["compute.jit_compile=false", "compute.steps_per_execution=1", "compute.inference_batch=1000"]
TUNED = ["compute.jit_compile=true", "compute.steps_per_execution=epoch", "compute.inference_batch=7"]
BUILD_TRAINING = experiment.build_training


def _run(tmp_path, name, overrides, monkeypatch):
    built = {}

    def spy(cfg, ds):
        built["network"], built["trainer"], built["optimizer"] = BUILD_TRAINING(cfg, ds)
        return built["network"], built["trainer"], built["optimizer"]

    monkeypatch.setattr(experiment, "build_training", spy)
    res = train_and_evaluate(load_config(None, overrides), tmp_path / name)
    assert res["state"] == "done", res
    return tmp_path / name, built


@pytest.mark.parametrize("normalization", ["batchnorm", "lagrange"])
def test_tuned_and_untuned_runs_write_the_same_numbers(tmp_path, monkeypatch, normalization):
    over = [*BASE, f"model.normalization={normalization}"]
    plain, plain_built = _run(tmp_path, "plain", over + UNTUNED, monkeypatch)
    tuned, tuned_built = _run(tmp_path, "tuned", over + TUNED, monkeypatch)
    # The tuned run really took the tuned path.
    assert tuned_built["trainer"].jit_compile is True and tuned_built["trainer"].steps_per_execution == 4
    # (On JAX the step is always XLA-compiled: there `compute.jit_compile` has nothing to choose.)
    assert plain_built["trainer"].jit_compile is (backend.NAME == "jax") and plain_built["trainer"].steps_per_execution == 1

    assert_runs_equal(plain, tuned)
    m = pd.read_csv(plain / "metrics.csv")
    assert m["epoch"].tolist() == [0, 1, 2, 3, 4]
    # Training moved the network, so agreeing after 4 epochs means the same 16 steps were taken.
    assert abs(m["rho"].iloc[-1] - m["rho"].iloc[0]) > 1e-3 * m["rho"].iloc[0]
    assert abs(m["train_loss"].iloc[-1] - m["train_loss"].iloc[0]) > 1e-3
    for wa, wb in zip(plain_built["network"].get_weights(), tuned_built["network"].get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=2e-4, atol=1e-6)


def test_resolve_steps_per_execution():
    assert resolve_steps_per_execution(ComputeConfig(), 79) == 1
    assert resolve_steps_per_execution(ComputeConfig(steps_per_execution="epoch"), 79) == 79
    assert resolve_steps_per_execution(ComputeConfig(steps_per_execution=4), 8) == 4
    with pytest.raises(ConfigError, match="does not divide the 79 steps"):
        resolve_steps_per_execution(ComputeConfig(steps_per_execution=8), 79)
    for bad in ("0", "true", "fast", "2.5"):  # `true` must not pass as 1
        with pytest.raises(ConfigError, match=r"compute.steps_per_execution: must be an integer >= 1 or 'epoch'"):
            load_config(None, [f"compute.steps_per_execution={bad}"])


def test_a_run_is_the_same_run_whatever_its_compute_settings(tmp_path):
    cfg = load_config(None, BASE + UNTUNED)
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    rundir.write_config(cfg.to_dict())
    rundir.write_status("running", 2)
    assert check_rundir(load_config(None, BASE + TUNED), rundir) == "resume"
    # Anything outside `compute` is still a different run.
    with pytest.raises(Exception, match="different config"):
        check_rundir(load_config(None, [*BASE, *TUNED, "optim.lr=0.1"]), rundir)

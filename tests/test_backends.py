"""The same runs on Keras' TensorFlow and JAX backends (SPEC §11).

The test process runs on one backend (KERAS_BACKEND); the other backend runs in a subprocess
(skipped when it is not installed, e.g. in the TF-free environment of CI). Tolerance: every
column of every CSV and the final weights agree to rtol 2e-4 / atol 1e-6 after 16 steps, the
float32 summation-order tolerance `tests/test_compute.py` uses for the compute settings (the two
backends run different convolution kernels: oneDNN on TensorFlow, XLA on JAX)."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import SIXTEEN_STEP_CONVNET, assert_runs_equal
from sqloss_nc import backend
from sqloss_nc.config import load_config
from sqloss_nc.experiment import train_and_evaluate

THIS = backend.NAME
OTHER = {"tensorflow": "jax", "jax": "tensorflow"}[THIS]
needs_other = pytest.mark.skipif(importlib.util.find_spec(OTHER) is None, reason=f"the {OTHER} backend is not installed")

BASE = [*SIXTEEN_STEP_CONVNET, "track.nc_test=true"]
VARIANTS = {
    "batchnorm": ["model.normalization=batchnorm"],
    # The tangent step, the double backprop and a learning-rate step inside the run.
    "lagrange-fsc-step": ["model.normalization=lagrange", "loss.finite_step_correction=true", "optim.schedule=step", "optim.milestones=[2]"],
    "weightnorm-rescaled": ["model.normalization=weightnorm", "loss.kind=square_rescaled", "loss.k=2", "loss.M=3"],
}


def on_other_backend(args: list[str], check=True, **env) -> subprocess.CompletedProcess:
    """`python args...` in a fresh process on the other Keras backend."""
    full_env = {**os.environ, "KERAS_BACKEND": OTHER, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    res = subprocess.run([sys.executable, *args], env=full_env, capture_output=True, text=True, timeout=600)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def sqnc_other(*args: str, **env) -> subprocess.CompletedProcess:
    return on_other_backend(["-c", "from cli.main import main; main()", *args], **env)


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


@needs_other
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_same_run_on_both_backends_writes_the_same_numbers(tmp_path, variant):
    over = [*BASE, *VARIANTS[variant]]
    res = train_and_evaluate(load_config(None, over), tmp_path / "here" / "quickstart" / "seed=0")
    assert res["state"] == "done"
    sqnc_other("run", "--no-progress", "--out", str(tmp_path / "there"), *sets(over))
    here, there = tmp_path / "here" / "quickstart" / "seed=0", tmp_path / "there" / "quickstart" / "seed=0"
    assert_runs_equal(here, there)
    m = pd.read_csv(here / "metrics.csv")
    # Training moved the network, so agreeing after 4 epochs means the same 16 steps were taken.
    assert abs(m["rho"].iloc[-1] - m["rho"].iloc[0]) > 1e-3 * m["rho"].iloc[0]
    assert abs(m["train_loss"].iloc[-1] - m["train_loss"].iloc[0]) > 1e-3
    # The other backend's model.keras loads here, with the same weights and the same function.
    mine, theirs = keras.saving.load_model(here / "model.keras"), keras.saving.load_model(there / "model.keras")
    for wa, wb in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=2e-4, atol=1e-6)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(theirs(x)), np.asarray(mine(x)), rtol=1e-3, atol=1e-5)
    for path, name in ((here, THIS), (there, OTHER)):
        status = json.loads((path / "status.json").read_text())
        assert status["environment"]["backend"] == name and status["environment"]["device"].startswith("CPU")
        assert status["environment"][name] == importlib.import_module(name).__version__ if name == THIS else True


INTERRUPT_AT_EPOCH_2 = """
import sys
from sqloss_nc import experiment
from sqloss_nc.config import load_config

real = experiment.save_checkpoint

def interrupt(rundir, network, optimizer, epoch):
    real(rundir, network, optimizer, epoch)
    if epoch == 2:
        raise KeyboardInterrupt

experiment.save_checkpoint = interrupt
try:
    experiment.train_and_evaluate(load_config(None, sys.argv[2:]), sys.argv[1])
except KeyboardInterrupt:
    pass
"""


@needs_other
@pytest.mark.parametrize("first", ["here", "there"])
def test_a_checkpoint_written_on_one_backend_resumes_on_the_other(tmp_path, first):
    """Interrupted after epoch 2 on one backend (checkpoint written), resumed on the other."""
    over = [*BASE, *VARIANTS["batchnorm"]]
    straight = tmp_path / "straight" / "quickstart" / "seed=0"
    assert train_and_evaluate(load_config(None, over), straight)["state"] == "done"
    split = tmp_path / "split" / "quickstart" / "seed=0"
    if first == "here":
        on_this_backend_interrupted = [sys.executable, "-c", INTERRUPT_AT_EPOCH_2, str(split), *over]
        subprocess.run(on_this_backend_interrupted, env={**os.environ, "KERAS_BACKEND": THIS}, check=True, timeout=600)
        assert json.loads((split / "status.json").read_text())["state"] == "interrupted"
        sqnc_other("run", "--no-progress", "--out", str(tmp_path / "split"), *sets(over))
        resumed_on = OTHER
    else:
        on_other_backend(["-c", INTERRUPT_AT_EPOCH_2, str(split), *over])
        assert json.loads((split / "status.json").read_text())["state"] == "interrupted"
        assert train_and_evaluate(load_config(None, over), split)["state"] == "done"
        resumed_on = THIS
    status = json.loads((split / "status.json").read_text())
    assert status["state"] == "done" and status["environment"]["backend"] == resumed_on
    assert pd.read_csv(split / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert_runs_equal(straight, split)


@needs_other
def test_a_model_saved_here_loads_on_the_other_backend(tmp_path):
    res = train_and_evaluate(load_config(None, [*BASE, "model.normalization=lagrange", "optim.epochs=1"]), tmp_path / "run")
    assert res["state"] == "done"
    x = np.random.default_rng(1).normal(size=(6, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = f"""
        import numpy as np, keras, sqloss_nc
        m = keras.saving.load_model({str(tmp_path / "run" / "model.keras")!r})
        assert keras.backend.backend() == {OTHER!r}
        np.save({str(tmp_path / "f.npy")!r}, np.asarray(m(np.load({str(tmp_path / "x.npy")!r}))))
    """
    on_other_backend(["-c", textwrap.dedent(script)])
    here = keras.saving.load_model(tmp_path / "run" / "model.keras")
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), np.asarray(here(x)), rtol=1e-4, atol=1e-6)


# A `sitecustomize` that makes TensorFlow and TFDS unimportable, as in an environment without them.
BLOCK_TF = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTensorFlow())
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_every_command_works_on_jax_without_tensorflow(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_TF)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.getcwd()])}

    def sqnc(*args):
        return subprocess.run(
            [sys.executable, "-c", "from cli.main import main; main()", *args], env=env, capture_output=True, text=True, timeout=600
        )

    out = tmp_path / "out"
    over = [*BASE, "model.normalization=batchnorm", "optim.epochs=2"]
    res = sqnc("run", "--no-progress", "--out", str(out), *sets(over))
    assert res.returncode == 0, res.stderr[-3000:]
    status = json.loads((out / "quickstart" / "seed=0" / "status.json").read_text())
    assert status["state"] == "done" and status["environment"]["backend"] == "jax" and "tensorflow" not in status["environment"]
    for args in (("analyze", str(out)), ("figures", str(out)), ("simulate", "--logistic", "--out", str(tmp_path / "sim"))):
        res = sqnc(*args)
        assert res.returncode == 0, (args, res.stderr[-3000:])
    assert list((out / "figures").glob("*.png"))
    res = sqnc("run", "--no-progress", "--out", str(tmp_path / "tfds"), "--set", "data.source=tfds")
    assert res.returncode == 2 and "TensorFlow Datasets" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "tfds").exists()

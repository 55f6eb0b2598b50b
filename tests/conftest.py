import contextlib
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the suite is CPU-only and deterministic

import pytest  # noqa: E402

import sqloss_nc  # noqa: E402,F401  (first: it picks the Keras backend before a test module imports keras)


# The equality tests' run (compute settings, backends, stacking): 2 x 60 images of 8x8x3, batch
# 32, so 4 steps per epoch and the last one partial (24 samples): a group of steps that ran past
# the epoch's end, or a batch order that differs, would shift every later epoch's batches.
SIXTEEN_STEP_CONVNET = [
    "data.source=synthetic",
    "data.synthetic.shape=[8,8,3]",
    "data.train_per_class=60",
    "data.test_per_class=10",
    "model.arch=convnet",
    "model.widths=[4,8]",
    "model.init_scale=1.0",
    "optim.batch_size=32",
    "optim.epochs=4",
    "optim.lr=0.05",
    # the schema's defaults, which the CLI's configs/quickstart.yaml (0.3.0) overrides: so that
    # `sqnc run --set ...` and `load_config(None, ...)` build the same run
    "optim.weight_decay=0.01",
    "optim.schedule=constant",
    "optim.milestones=[]",
    "track.nc_epochs=all",
    "track.margin_epochs=[0,4]",
]


@pytest.fixture
def synthetic_overrides():
    """A tiny, fast synthetic run (MLP on 8x8x3 inputs)."""
    return [
        "data.source=synthetic",
        "data.synthetic.shape=[8,8,3]",
        "data.train_per_class=64",
        "data.test_per_class=16",
        "model.arch=mlp",
        "model.widths=[16,16]",
        "model.init_scale=1.0",
        "optim.batch_size=32",
        "optim.epochs=3",
    ]


@contextlib.contextmanager
def float64_backend():
    """Real float64 inside the block: JAX truncates float64 to float32 unless x64 is enabled
    (TensorFlow computes in float64 whenever asked)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def assert_runs_equal(dir_a, dir_b, rtol=2e-4, atol=1e-6, csvs=("metrics.csv", "nc.csv", "margins.csv", "nc_layers.csv")):
    """Every numeric column of every CSV of two run directories agrees (wall time aside)."""
    import numpy as np
    import pandas as pd

    for csv in csvs:
        a, b = pd.read_csv(Path(dir_a) / csv), pd.read_csv(Path(dir_b) / csv)
        assert list(a.columns) == list(b.columns) and len(a) == len(b), csv
        for col in a.columns:
            if col == "elapsed_s" or not pd.api.types.is_numeric_dtype(a[col]):
                continue
            np.testing.assert_allclose(b[col], a[col], rtol=rtol, atol=atol, err_msg=f"{csv}:{col}")


@pytest.fixture
def interrupt_after_epoch(monkeypatch):
    """`interrupt_after_epoch(e)`: the next in-process run raises KeyboardInterrupt right after
    checkpointing epoch e (a resumable interruption); `interrupt_after_epoch(None)` undoes it."""
    import sqloss_nc.experiment as experiment

    real = experiment.save_checkpoint

    def arm(epoch):
        if epoch is None:
            monkeypatch.setattr(experiment, "save_checkpoint", real)
            return

        def interrupt(rundir, network, optimizer, done):
            real(rundir, network, optimizer, done)
            if done == epoch:
                raise KeyboardInterrupt

        monkeypatch.setattr(experiment, "save_checkpoint", interrupt)

    return arm

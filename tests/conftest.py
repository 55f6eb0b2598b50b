import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the suite is CPU-only and deterministic

import pytest  # noqa: E402


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

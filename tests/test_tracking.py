"""The callbacks' numbers against independent recomputation from the saved model."""

import keras
import numpy as np
import pandas as pd
import pytest

from sqloss_nc.config import load_config
from sqloss_nc.data import load_dataset
from sqloss_nc.experiment import train_and_evaluate
from sqloss_nc.theory import predicted_w_norm_sq


def brute_nc(h, y, w):
    """Float64 brute force of SPEC §5's nc1, nc3, nc4-style quantities on full arrays."""
    h = h.astype(np.float64)
    c = w.shape[0]
    mu = np.stack([h[y == k].mean(axis=0) for k in range(c)])
    mug = mu.mean(axis=0)
    d = h - mu[y]
    sw = d.T @ d / len(h)
    m = mu - mug
    sb = m.T @ m / c
    vals, vecs = np.linalg.eigh((sb + sb.T) / 2)
    top = np.argsort(vals)[::-1][: c - 1]
    sb_pinv = (vecs[:, top] / vals[top]) @ vecs[:, top].T
    nc1 = np.trace(sw @ sb_pinv) / c
    wt = w.T / np.linalg.norm(w)
    nc3 = np.sum((wt - m.T / np.linalg.norm(m)) ** 2)
    dist = ((h[:, None, :] - mu[None]) ** 2).sum(-1)
    trace_ratio = np.trace(sw) / np.trace(sb)
    return nc1, nc3, dist.argmin(1), trace_ratio


@pytest.mark.parametrize(
    "arch, extra", [("mlp", ["model.widths=[24,16]"]), ("convnet", ["model.widths=[4,8,8]", "data.synthetic.shape=[8,8,3]"])]
)
def test_nc_csv_matches_recomputation_from_saved_model(tmp_path, synthetic_overrides, arch, extra):
    cfg = load_config(
        None,
        [
            *synthetic_overrides,
            f"model.arch={arch}",
            *extra,
            "data.classes=[0,3,5]",
            "track.nc_epochs=[0,3]",
            "track.nc_test=true",
            "model.normalization=batchnorm",
        ],
    )
    res = train_and_evaluate(cfg, tmp_path / "run")
    assert res["state"] == "done"
    nc = pd.read_csv(tmp_path / "run" / "nc.csv")
    assert nc["epoch"].tolist() == [0, 3]
    last = nc.iloc[-1]
    ds = load_dataset(cfg)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    feats = keras.Model(model.inputs, [model.get_layer("features").output, model.output])
    h, f = (t.astype(np.float64) for t in feats.predict(ds.x_train, verbose=0))
    w = np.asarray(model.get_layer("classifier").kernel).astype(np.float64).T
    nc1, nc3, nearest, trace_ratio = brute_nc(h, ds.y_train, w)
    assert last["nc1"] == pytest.approx(nc1, rel=1e-4)
    assert last["nc3"] == pytest.approx(nc3, rel=1e-4, abs=1e-9)
    assert last["nc4"] == pytest.approx(np.mean(nearest != f.argmax(1)), abs=1e-12)
    assert last["eps_gap"] == pytest.approx(1 - np.mean(f[np.arange(len(f)), ds.y_train]), rel=1e-4)
    assert last["w_norm_sq_mean"] == pytest.approx(np.mean(np.sum(w**2, axis=1)), rel=1e-5)
    assert last["w_norm_sq_eq34"] == pytest.approx(predicted_w_norm_sq(last["eps_gap"], 0.01, 3), rel=1e-9)
    ht, _ = (t.astype(np.float64) for t in feats.predict(ds.x_test, verbose=0))
    assert last["test_nc1"] == pytest.approx(brute_nc(ht, ds.y_test, w)[0], rel=1e-4)

    layers = pd.read_csv(tmp_path / "run" / "nc_layers.csv")
    assert set(layers["split"]) == {"train", "test"} and {"features", "classifier", "relu1"} <= set(layers["layer"])
    row = layers[(layers.epoch == 3) & (layers.split == "train") & (layers.layer == "features") & (layers.measure == "trace_ratio")]
    assert row["value"].item() == pytest.approx(trace_ratio, rel=1e-4)
    r1 = keras.Model(model.inputs, model.get_layer("relu1").output).predict(ds.x_train, verbose=0).reshape(len(h), -1)
    tr1 = brute_nc(r1, ds.y_train, np.ones((3, r1.shape[1])))[3]
    row = layers[(layers.epoch == 3) & (layers.split == "train") & (layers.layer == "relu1") & (layers.measure == "trace_ratio")]
    assert row["value"].item() == pytest.approx(tr1, rel=1e-4)


def test_per_step_margins_agree_with_epoch_rows(tmp_path, synthetic_overrides):
    """Fig. 5 tracking: steps.csv at step k*steps_per_epoch sees the weights metrics.csv sees at epoch k."""
    cfg = load_config(
        None,
        [*synthetic_overrides, "optim.epochs=3", "track.step_margins_until=8", "track.step_margins_every=2", "track.margin_epochs=all"],
    )
    train_and_evaluate(cfg, tmp_path / "run")
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert steps["step"].tolist() == [0, 2, 4, 6, 8]  # 128 samples / batch 32 = 4 steps per epoch
    assert steps["epoch"].tolist() == [0, 1, 1, 2, 2]
    m = pd.read_csv(tmp_path / "run" / "metrics.csv").set_index("epoch")
    for step, epoch in ((0, 0), (4, 1), (8, 2)):
        row = steps[steps.step == step].iloc[0]
        assert row["rho"] == pytest.approx(m.loc[epoch, "rho"], rel=1e-12)
        assert row["margin_mean"] == pytest.approx(m.loc[epoch, "margin_mean"], rel=1e-9, abs=1e-15)
    per_sample = pd.read_csv(tmp_path / "run" / "margins_steps.csv")
    epoch_margins = pd.read_csv(tmp_path / "run" / "margins.csv")
    a = per_sample[per_sample.step == 8]["margin"].to_numpy()
    b = epoch_margins[epoch_margins.epoch == 2]["margin"].to_numpy()
    np.testing.assert_array_equal(a, b)

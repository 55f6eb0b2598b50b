"""The run's spectra, update norms, layer-wise NCC/alignment, MSE decomposition and full-batch
mode against independent computations on the saved models (issues 13, 14)."""

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from conftest import assert_runs_equal
from sqloss_nc.config import ConfigError, load_config
from sqloss_nc.data import load_dataset
from sqloss_nc.experiment import build_training, train_and_evaluate

CONVNET = ["model.arch=convnet", "model.widths=[4,8,8]", "data.classes=[0,3,5]"]


def _kernels(model):
    return {layer.name: layer.kernel.numpy().astype(np.float64) for layer in model.layers if getattr(layer, "kernel", None) is not None}


def _run(tmp_path, name, overrides):
    cfg = load_config(None, overrides)
    res = train_and_evaluate(cfg, tmp_path / name)
    assert res["state"] == "done"
    return cfg, tmp_path / name


def _brute_ncc(train_h, train_y, h, y, c):
    """Nearest train class mean by the full distance matrix (float64)."""
    mu = np.stack([train_h[train_y == k].mean(axis=0) for k in range(c)])
    dist = ((h[:, None, :] - mu[None]) ** 2).sum(-1)
    return float(np.mean(dist.argmin(1) == y))


def test_spectra_update_norms_and_layer_measures_match_the_saved_models(tmp_path, synthetic_overrides):
    """Two runs of 1 and 2 epochs (same batches: the order depends on (seed, epoch) only) give
    the weights at epochs 0, 1, 2; every new column is recomputed from them."""
    base = [*synthetic_overrides, *CONVNET, "track.nc_epochs=all", "track.rank_tol=0.05"]
    cfg1, run1 = _run(tmp_path, "e1", [*base, "optim.epochs=1"])
    cfg2, run2 = _run(tmp_path, "e2", [*base, "optim.epochs=2"])
    ds = load_dataset(cfg2)
    w0 = _kernels(build_training(cfg2, ds)[0])
    m1, m2 = (keras.saving.load_model(r / "model.keras") for r in (run1, run2))
    w1, w2 = _kernels(m1), _kernels(m2)

    metrics = pd.read_csv(run2 / "metrics.csv").set_index("epoch")
    for name in w0:
        assert np.isnan(metrics.loc[0, f"update_norm_{name}"])
        for e, (prev, cur) in {1: (w0, w1), 2: (w1, w2)}.items():
            expected = np.sqrt(np.sum((cur[name] - prev[name]) ** 2)) / np.sqrt(np.sum(prev[name] ** 2))
            assert metrics.loc[e, f"update_norm_{name}"] == pytest.approx(expected, rel=1e-5), (name, e)

    spectra = pd.read_csv(run2 / "spectra.csv")
    assert list(spectra.columns) == ["epoch", "layer", "index", "singular_value", "rank", "stable_rank"]
    assert sorted(set(spectra.epoch)) == [0, 1, 2] and set(spectra.layer) == set(w2)
    for name, kernel in w2.items():
        # Output units first, then one row per (kh, kw, in) patch entry: conv3 is 8 x 72.
        mat = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
        s = np.linalg.svd(mat, compute_uv=False)
        rows = spectra[(spectra.epoch == 2) & (spectra.layer == name)].sort_values("index")
        np.testing.assert_allclose(rows["singular_value"], s, rtol=1e-6, atol=1e-9 * s[0])
        assert (rows["rank"] == np.sum(s / np.linalg.norm(mat) > 0.05)).all()
        np.testing.assert_allclose(rows["stable_rank"], np.sum(mat**2) / s[0] ** 2, rtol=1e-6)

    # NCC accuracy (train, and test against the train means) and alignment from recomputed
    # activations of the saved model.
    layers = pd.read_csv(run2 / "nc_layers.csv")
    layers = layers[layers.epoch == 2]
    c = 3

    def value(split, layer, measure):
        return layers[(layers.split == split) & (layers.layer == layer) & (layers.measure == measure)]["value"].item()

    probes = ["relu1", "relu2", "features", "classifier"]
    acts = keras.Model(m2.inputs, [m2.get_layer(n).output for n in probes])
    train = [a.reshape(len(ds.y_train), -1).astype(np.float64) for a in acts.predict(ds.x_train, verbose=0)]
    test = [a.reshape(len(ds.y_test), -1).astype(np.float64) for a in acts.predict(ds.x_test, verbose=0)]
    for name, h, ht in zip(probes, train, test):
        assert value("train", name, "ncc_accuracy") == pytest.approx(_brute_ncc(h, ds.y_train, h, ds.y_train, c), abs=1e-12)
        assert value("test", name, "ncc_accuracy") == pytest.approx(_brute_ncc(h, ds.y_train, ht, ds.y_test, c), abs=1e-12)
    # relu1 -> conv2 is a convolution: no alignment; features -> classifier is defined.
    assert np.isnan(value("train", "relu1", "alignment")) and np.isnan(value("train", "relu2", "alignment"))
    h = train[2]
    means = np.stack([h[ds.y_train == k].mean(axis=0) for k in range(c)])
    centred = (means - means.mean(axis=0)).T  # p x C, rank C - 1
    _, _, vt = np.linalg.svd(w2["classifier"].T)
    cosines = np.cos(scipy.linalg.subspace_angles(centred, vt[:c].T))
    assert value("train", "features", "alignment") == pytest.approx(np.mean(cosines), rel=1e-4)
    assert not ((layers.split == "test") & (layers.measure == "alignment")).any()


@pytest.mark.parametrize(
    "extra, k, M",
    [([], 1.0, 1.0), (["loss.kind=square_rescaled", "loss.k=1.5", "loss.M=2.0", "model.bias=true", "optim.weight_decay=0.02"], 1.5, 2.0)],
    ids=["square", "rescaled_with_bias"],
)
def test_decomposition_columns_sum_to_the_training_objective_of_the_head(tmp_path, synthetic_overrides, extra, k, M):
    cfg, run = _run(tmp_path, "r", [*synthetic_overrides, "data.classes=[0,3,5]", "track.nc_epochs=[0,3]", *extra])
    nc = pd.read_csv(run / "nc.csv").set_index("epoch")
    metrics = pd.read_csv(run / "metrics.csv").set_index("epoch")
    last = nc.loc[3]
    parts = last["mse_nc1"] + last["mse_nc23"] + last["mse_perp"]
    assert parts == pytest.approx(last["mse_total"], rel=1e-10)
    assert min(last["mse_nc1"], last["mse_nc23"], last["mse_perp"]) >= 0
    model = keras.saving.load_model(run / "model.keras")
    head = model.get_layer("classifier")
    lam = cfg.optim.weight_decay
    # The bias is decayed with model.bias (normalization.decayed_variables), so it is in J.
    penalty = 0.5 * lam * sum(float(np.sum(v.numpy().astype(np.float64) ** 2)) for v in head.trainable_variables)
    assert last["mse_total"] == pytest.approx(metrics.loc[3, "train_loss"] + penalty, rel=2e-5)
    # eps_gap is relative to the target M; Eq. 34 carries k and M.
    ds = load_dataset(cfg)
    f = model.predict(ds.x_train, verbose=0).astype(np.float64)
    eps = 1.0 - np.mean(f[np.arange(len(f)), ds.y_train]) / M
    assert last["eps_gap"] == pytest.approx(eps, rel=1e-4)
    c = 3
    eq34 = 2 * M**2 / (lam * c * c) * (k * eps * (1 - eps) - eps**2 / (c - 1))
    assert last["w_norm_sq_eq34"] == pytest.approx(eq34, rel=1e-3)


def test_scalar_head_and_switch_leave_the_decomposition_empty(tmp_path, synthetic_overrides):
    _, run = _run(tmp_path, "s", [*synthetic_overrides, "model.output=scalar", "data.classes=[0,1]", "optim.epochs=1"])
    nc = pd.read_csv(run / "nc.csv")
    assert nc["mse_total"].isna().all() and nc["nc1"].notna().all()
    _, run = _run(tmp_path, "off", [*synthetic_overrides, "track.mse_decomposition=false", "optim.epochs=1"])
    assert pd.read_csv(run / "nc.csv")["mse_perp"].isna().all()


def test_full_batch_is_one_gradient_step_on_all_samples(tmp_path, synthetic_overrides):
    """Without normalization: the run's weights after one epoch equal W0 − η(∇L + λW0) with ∇L
    by independent numpy backprop on all N samples (a minibatch epoch would take 4 steps). With
    BatchNorm: the moving statistics after the step are those of one batch of all N samples."""
    over = [*synthetic_overrides, "optim.full_batch=true", "optim.epochs=1", "model.widths=[12]", "optim.lr=0.5"]
    cfg, run = _run(tmp_path, "gd", [*over, "model.normalization=none"])
    assert cfg.optim.batch_size is None and "batch_size: null" in (run / "config.yaml").read_text()
    ds = load_dataset(cfg)
    w1, w2 = (v.astype(np.float64) for v in _kernels(build_training(cfg, ds)[0]).values())
    x = ds.x_train.reshape(len(ds.y_train), -1).astype(np.float64)
    z = x @ w1
    h = np.maximum(z, 0)
    f = h @ w2
    df = 2 * (f - np.eye(f.shape[1])[ds.y_train]) / f.size
    g2, g1 = h.T @ df, x.T @ ((df @ w2.T) * (z > 0))
    lr, lam = cfg.optim.lr, cfg.optim.weight_decay
    trained = _kernels(keras.saving.load_model(run / "model.keras"))
    np.testing.assert_allclose(trained["dense1"], w1 - lr * (g1 + lam * w1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(trained["classifier"], w2 - lr * (g2 + lam * w2), rtol=1e-4, atol=1e-6)

    cfg, run = _run(tmp_path, "gd_bn", [*over, "model.normalization=batchnorm"])
    net0 = build_training(cfg, ds)[0]
    pre = keras.Model(net0.inputs, net0.get_layer("dense1").output).predict(ds.x_train, verbose=0).astype(np.float64)
    bn = keras.saving.load_model(run / "model.keras").get_layer("norm1")
    # Keras momentum 0.9 from (0, 1): one batch moves the statistics by 0.1 of its mean and
    # (biased) variance.
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * pre.mean(axis=0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * pre.var(axis=0), rtol=1e-4)


def test_full_batch_config():
    cfg = load_config(None, ["optim.full_batch=true", "optim.batch_size=64"])  # ignored, written as null
    assert cfg.optim.batch_size is None and load_config(None, ["optim.full_batch=true"]).to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match=r"^optim: optim.batch_size: null needs optim.full_batch true"):
        load_config(None, ["optim.batch_size=null"])


def test_a_resumed_run_writes_the_new_columns_of_an_uninterrupted_one(tmp_path, synthetic_overrides, interrupt_after_epoch):
    over = [*synthetic_overrides, *CONVNET, "optim.epochs=3", "track.nc_epochs=all", "track.nc_test=true"]
    _, whole = _run(tmp_path, "whole", over)
    interrupt_after_epoch(2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_config(None, over), tmp_path / "resumed")
    interrupt_after_epoch(None)
    _, resumed = _run(tmp_path, "resumed", over)
    assert_runs_equal(whole, resumed, rtol=0, atol=0, csvs=("metrics.csv", "nc.csv", "nc_layers.csv", "spectra.csv"))
    m = pd.read_csv(resumed / "metrics.csv")
    assert m["update_norm_conv1"].iloc[1:].notna().all() and m["update_norm_conv1"].iloc[0] != m["update_norm_conv1"].iloc[0]


def test_resuming_a_run_written_before_the_new_columns_widens_its_csvs(tmp_path, synthetic_overrides, interrupt_after_epoch):
    over = [*synthetic_overrides, "optim.epochs=2", "track.nc_epochs=all"]
    interrupt_after_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_config(None, over), tmp_path / "run")
    interrupt_after_epoch(None)
    for name, prefix in (("metrics.csv", "update_norm_"), ("nc.csv", "mse_")):  # as an older version wrote them
        df = pd.read_csv(tmp_path / "run" / name)
        df.drop(columns=[c for c in df.columns if c.startswith(prefix) or c == "ls_distance"]).to_csv(tmp_path / "run" / name, index=False)
    _, run = _run(tmp_path, "run", over)
    m, nc = pd.read_csv(run / "metrics.csv"), pd.read_csv(run / "nc.csv")
    assert m["epoch"].tolist() == [0, 1, 2] and nc["epoch"].tolist() == [0, 1, 2]
    assert m["update_norm_classifier"].isna().tolist() == [True, True, False]  # epoch 2 is new
    assert m["train_loss"].notna().all() and m["rho"].gt(0).all() and nc["nc1"].notna().all()
    assert nc["mse_total"].isna().tolist() == [True, True, False]

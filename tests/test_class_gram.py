"""`class_gram.csv`: the Gram matrix of the normalized centred class means of the features, per
NC epoch and split, against a brute force on features recomputed from the saved model."""

import keras
import numpy as np
import pandas as pd
import pytest

from sqloss_nc.config import load_config
from sqloss_nc.data import load_dataset
from sqloss_nc.experiment import train_and_evaluate
from sqloss_nc.nc import class_mean_gram


def test_class_mean_gram_of_a_simplex_is_the_etf_and_is_scale_and_shift_invariant():
    C = 4
    etf = np.eye(C) - 1.0 / C  # rows: a simplex ETF's centred vertices
    g = class_mean_gram(7.0 * etf + 3.0)
    np.testing.assert_allclose(g, np.where(np.eye(C) == 1, 1.0, -1.0 / (C - 1)), atol=1e-12)
    # A mean that sits on the global mean has no direction: NaN, not a division by zero.
    means = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert np.isnan(class_mean_gram(means)[0]).all() and class_mean_gram(means)[1, 2] == pytest.approx(-1.0)


def test_run_writes_the_gram_of_its_features_class_means(tmp_path, synthetic_overrides):
    over = [*synthetic_overrides, "data.classes=[0,1,2]", "track.nc_epochs=[0,3]", "track.nc_test=true"]
    cfg = load_config(None, over)
    assert train_and_evaluate(cfg, tmp_path / "run")["state"] == "done"
    gram = pd.read_csv(tmp_path / "run" / "class_gram.csv")
    assert sorted(gram["epoch"].unique()) == [0, 3] and set(gram["split"]) == {"train", "test"}
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    features = keras.Model(model.inputs, model.get_layer("features").output)
    ds = load_dataset(cfg)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        h = np.asarray(features(x), dtype=np.float64)
        mu = np.stack([h[y == c].mean(axis=0) for c in range(3)])
        d = mu - mu.mean(axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        got = gram[(gram["epoch"] == 3) & (gram["split"] == split)].pivot(index="i", columns="j", values="value").to_numpy()
        np.testing.assert_allclose(got, d @ d.T, rtol=1e-4, atol=1e-5)

"""`CollapseMonitor` (collapse inside anyone's `model.fit`) and `sqnc measure FEATURES.npz`.

The numbers are checked against `tests.test_measure.reference` (SPEC §5/§9/§12 by brute force on
the full (N, p) float64 matrix: eigh of Σ_B with its top C−1 eigenpairs, explicit Σ_W, a dense
least-squares solve) on features taken out of the model at each measured epoch with a sub-model's
`predict`, not through the engine; against `sqnc measure` of the model saved at that epoch; and
the archive against the model path on the same features. The whole file runs on either backend
(`KERAS_BACKEND=jax python3 -m pytest tests/test_monitor.py`); the last test runs its first one on
the other backend in a subprocess.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from sqloss_nc import CollapseMonitor, backend
from tests.test_measure import SYNTHETIC_DATA, load_data, plain_model, read_rows, reference, write_config

ROOT = Path(__file__).resolve().parent.parent
NC_KEYS = ("nc1", "nc2_equinorm_means", "nc2_equiangular_means", "nc2_maxangle_means", "nc2_equinorm_weights", "nc2_equiangular_weights",
           "nc3", "nc3_centered", "nc4", "eps_gap", "cos_w_mu", "w_dot_muG", "w_norm_sq_mean", "trace_ratio", "cdnv", "sigma_w_fro",
           "mse_nc1", "mse_nc23", "mse_perp", "mse_total", "ls_distance")  # fmt: skip
TEST_KEYS = ("nc1", "nc2_equinorm_means", "nc3", "nc4", "eps_gap", "trace_ratio")


def num(v: str) -> float:
    return float(v) if v != "" else float("nan")


def nc_rows(path: Path) -> dict[int, dict]:
    return {int(r["epoch"]): {k: num(v) for k, v in r.items() if k != "epoch"} for r in read_rows(path / "nc.csv")}


def layer_rows(path: Path, epoch: int | None = None) -> dict:
    return {(r["split"], r["layer"], r["measure"]): num(r["value"]) for r in read_rows(path / "nc_layers.csv") if epoch is None or int(r["epoch"]) == epoch}


class Recorder(keras.callbacks.Callback):
    """After the monitor: the weights at epoch 0 and at every epoch end, the count of the
    monitor's inference calls so far, and the model saved at `save_at`."""

    def __init__(self, calls: list, save_at: int | None = None, path: Path | None = None):
        super().__init__()
        self.calls, self.save_at, self.path = calls, save_at, path
        self.weights, self.seen = {}, {}

    def on_train_begin(self, logs=None):
        self.weights[0], self.seen[0] = [np.array(w) for w in self.model.get_weights()], len(self.calls)

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1], self.seen[epoch + 1] = [np.array(w) for w in self.model.get_weights()], len(self.calls)
        if epoch + 1 == self.save_at:
            self.model.save(self.path)


@pytest.fixture
def counted(monkeypatch):
    """Every batch the monitor's compiled inference model runs, appended to a list."""
    calls: list = []
    real = backend.compile_inference

    def compile_inference(model, jit_compile=False):
        run = real(model, jit_compile=jit_compile)

        def counting(x):
            calls.append(len(x))
            return run(x)

        return counting

    monkeypatch.setattr(backend, "compile_inference", compile_inference)
    return calls


def test_fit_with_the_monitor_against_brute_force_and_sqnc_measure(tmp_path, counted):
    from sqloss_nc.analysis import analyze
    from sqloss_nc.measure import measure

    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    ds = load_data(cfg)
    model = plain_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    out = tmp_path / "runs" / "mine"
    monitor = CollapseMonitor((ds.x_train, ds.y_train), every=2, out=out, validation=(ds.x_test, ds.y_test), layers=["conv_relu"], batch_size=32)
    recorder = Recorder(counted, save_at=2, path=tmp_path / "epoch2.keras")
    history = model.fit(ds.x_train, np.eye(3)[ds.y_train], batch_size=32, epochs=3, callbacks=[monitor, recorder], verbose=0)

    rows = nc_rows(out)
    assert sorted(rows) == monitor.epochs == [0, 2, 3]
    # An epoch that does not measure runs no inference at all; a measuring one streams the data.
    assert recorder.seen[1] == recorder.seen[0] > 0
    assert recorder.seen[2] > recorder.seen[1] and recorder.seen[3] > recorder.seen[2]

    head = model.get_layer("head")
    sub = keras.Model(model.inputs, [model.get_layer("conv_relu").output, model.get_layer("hidden").output, model.output])
    for epoch in (0, 2, 3):
        model.set_weights(recorder.weights[epoch])
        conv, h, f = sub.predict(ds.x_train, verbose=0)
        _, h_te, f_te = sub.predict(ds.x_test, verbose=0)
        w, b = np.asarray(head.kernel).T, np.asarray(head.bias)
        ref, ref_te = reference(h, ds.y_train, 3, w=w, b=b, scores=f), reference(h_te, ds.y_test, 3, w=w, b=b, scores=f_te)
        for key in NC_KEYS:
            np.testing.assert_allclose(rows[epoch][key], ref[key], rtol=1e-5, atol=1e-9, err_msg=f"{key} at epoch {epoch}")
        for key in TEST_KEYS:
            np.testing.assert_allclose(rows[epoch][f"test_{key}"], ref_te[key], rtol=1e-5, atol=1e-9, err_msg=f"test_{key} at epoch {epoch}")
        assert math.isnan(rows[epoch]["w_norm_sq_eq34"])  # no training loss known
        conv_ref = reference(conv.reshape(len(conv), -1), ds.y_train, 3)
        layers = layer_rows(out, epoch)
        for measure_name in ("trace_ratio", "cdnv", "ncc_accuracy"):
            np.testing.assert_allclose(layers[("train", "conv_relu", measure_name)], conv_ref[measure_name], rtol=1e-5)
        assert monitor.results[epoch]["nc1"] == pytest.approx(rows[epoch]["nc1"], rel=1e-12)

    # History: one entry per epoch, NaN where the monitor did not measure, nc.csv's values where it did.
    for key, column in (("nc1", "nc1"), ("nc4", "nc4"), ("nc3", "nc3"), ("val_nc1", "test_nc1")):
        got = history.history[key]
        assert len(got) == 3 and math.isnan(got[0])
        np.testing.assert_allclose(got[1:], [rows[2][column], rows[3][column]], rtol=1e-12)

    # The same numbers as `sqnc measure` on the model saved at epoch 2 (its data config, same batches).
    measured = measure(tmp_path / "epoch2.keras", cfg, tmp_path / "measured" / "e2", layers=["conv_relu"], batch_size=32)
    for key, value in nc_rows(measured.out)[0].items():
        np.testing.assert_allclose(rows[2][key], value, rtol=1e-6, atol=1e-12, err_msg=key)
    expected = layer_rows(measured.out)
    assert layer_rows(out, 2).keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(layer_rows(out, 2)[key], value, rtol=1e-6, atol=1e-12, err_msg=str(key))

    # A run for `sqnc analyze`: done, aggregated, its NC epochs in the NC tables.
    analyze(tmp_path / "runs")
    runs_csv = read_rows(tmp_path / "runs" / "analysis" / "runs.csv")
    assert [(r["run_id"], r["state"], r["aggregated"]) for r in runs_csv] == [("mine", "done", "True")]
    nc_epochs = read_rows(tmp_path / "runs" / "analysis" / "nc_epochs.csv")
    assert [int(r["epoch"]) for r in nc_epochs] == [0, 2, 3]
    np.testing.assert_allclose([float(r["nc1_mean"]) for r in nc_epochs], [rows[e]["nc1"] for e in (0, 2, 3)], rtol=1e-9)


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, size):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size : (i + 1) * self.size], self.y[i * self.size : (i + 1) * self.size]


def _epoch0(data, **kw) -> dict:
    """The monitor's epoch-0 row of plain_model on `data` (a one-epoch fit on one batch)."""
    model = plain_model()
    model.compile(optimizer="sgd", loss="mse")
    monitor = CollapseMonitor(data, every=[0], **kw)
    x = np.zeros((2, 8, 8, 3), "float32")
    model.fit(x, np.zeros((2, 3), "float32"), epochs=1, callbacks=[monitor], verbose=0)
    return monitor.results[0]


def test_datasets_and_one_hot_labels_give_the_arrays_numbers(tmp_path):
    ds = load_data(write_config(tmp_path / "data.yaml", SYNTHETIC_DATA))
    x, y = ds.x_train, ds.y_train
    one_hot = np.eye(3, dtype="float32")[y]
    expected = _epoch0((x, y), batch_size=50)
    sources = {"one-hot arrays": (x, one_hot), "PyDataset": Batches(x, one_hot, 17)}
    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        sources["tf.data batched"] = tf.data.Dataset.from_tensor_slices((x, y)).batch(23)
        sources["tf.data unbatched"] = tf.data.Dataset.from_tensor_slices((x, one_hot))
    for name, data in sources.items():
        got = _epoch0(data)
        for key in NC_KEYS:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-10, err_msg=f"{name}: {key}")  # float32 network, other batches


class XOnly(Batches):
    def __getitem__(self, i):
        return self.x[i * self.size : (i + 1) * self.size]


def test_a_scalar_binary_head_with_plus_minus_one_labels(tmp_path):
    """One output f: class scores (−f, f), labels ±1 read as 0/1 (SPEC §5's scalar margins)."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    x = (rng.normal(size=(200, 5)) + 1.5 * np.eye(2, 5)[y]).astype("float32")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh", name="hidden"), keras.layers.Dense(1, name="head")])
    model.compile(optimizer="sgd", loss="mse")
    h = keras.Model(model.inputs, model.get_layer("hidden").output).predict(x, verbose=0)  # epoch 0's
    f = model.predict(x, verbose=0)
    monitor = CollapseMonitor((x, 2 * y - 1), every=[0])
    model.fit(x, (2 * y - 1).astype("float32"), epochs=1, callbacks=[monitor], verbose=0)
    ref = reference(h, y, 2, scores=np.concatenate([-f, f], axis=1))
    for key in ("nc1", "nc4", "trace_ratio", "cdnv"):
        np.testing.assert_allclose(monitor.results[0][key], ref[key], rtol=1e-5, atol=1e-9, err_msg=key)
    assert math.isnan(monitor.results[0]["mse_total"]) and math.isnan(monitor.results[0]["nc3"])  # no C x p head


class Spy(keras.callbacks.Callback):
    epochs = 0

    def on_epoch_begin(self, epoch, logs=None):
        Spy.epochs += 1


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        ("xy", {"layers": ["conv_rleu"]}, r"^CollapseMonitor: layers: the model has no layer 'conv_rleu'.*conv_relu"),
        ("xy", {"feature_layer": "nope"}, r"^CollapseMonitor: feature_layer: the model has no layer 'nope'"),
        ("xy", {"classifier_layer": "conv_relu"}, r"^CollapseMonitor: classifier_layer: .*not a Dense layer"),
        ("onehot5", {}, r"^CollapseMonitor: data: one-hot labels with 5 columns but the classifier has 3 classes"),
        ("label7", {}, r"^CollapseMonitor: data: label 7 but the classifier has 3 classes"),
        ("label7-val", {}, r"^CollapseMonitor: validation: label 7 but the classifier has 3 classes"),
        ("x-only", {}, r"^CollapseMonitor: data: give \(x, y\) with the labels y"),
        ("pydataset-x-only", {}, r"^CollapseMonitor: data: the PyDataset yields x without labels"),
        ("wrong-shape", {}, r"^CollapseMonitor: data: the model takes inputs of shape"),
        ("xy", {"out": "FILE"}, r"^CollapseMonitor: out: .* is not a folder"),
    ],
)
def test_bad_arguments_raise_one_value_error_before_any_epoch(tmp_path, data, kwargs, message):
    ds = load_data(write_config(tmp_path / "data.yaml", SYNTHETIC_DATA))
    x, y = ds.x_train, ds.y_train
    y7 = y.copy()
    y7[5] = 7
    sources = {
        "xy": (x, y),
        "onehot5": (x, np.eye(5)[y]),
        "label7": (x, y7),
        "label7-val": (x, y),
        "x-only": (x,),
        "pydataset-x-only": XOnly(x, y, 32),
        "wrong-shape": (x[:, :4], y),
    }
    if kwargs.get("out") == "FILE":
        (tmp_path / "file").write_text("")
        kwargs = {"out": tmp_path / "file"}
    Spy.epochs = 0
    model = plain_model()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=message) as info:
        monitor = CollapseMonitor(sources[data], validation=(x, y7) if data == "label7-val" else None, **kwargs)
        model.fit(x, np.eye(3)[y], epochs=2, callbacks=[monitor, Spy()], verbose=0)
    assert Spy.epochs == 0
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"every": 0}, "every: must be a positive"), ({"every": "often"}, "every: 'often'"), ({"pool": "max"}, "pool: 'max'"), ({"log": ["nc9"]}, "log: 'nc9'")],
)
def test_bad_options_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CollapseMonitor((np.zeros((4, 2)), np.zeros(4, int)), **kwargs)


def test_an_earlier_monitors_folder_is_kept_unless_overwrite(tmp_path):
    ds = load_data(write_config(tmp_path / "data.yaml", SYNTHETIC_DATA))
    out = tmp_path / "runs" / "m"
    for overwrite in (False, False, True):
        model = plain_model()
        model.compile(optimizer="sgd", loss="mse")
        monitor = CollapseMonitor((ds.x_train, ds.y_train), every=1, out=out, overwrite=overwrite)
        fit = lambda: model.fit(ds.x_train, np.eye(3)[ds.y_train], epochs=1, callbacks=[monitor], verbose=0)  # noqa: E731
        if out.exists() and not overwrite:
            with pytest.raises(ValueError, match="already holds a monitor's files"):
                fit()
        else:
            fit()
        assert sorted(nc_rows(out)) == [0, 1]


# ----------------------------------------------------------------------------- FEATURES.npz


def _invoke(*args):
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, ["measure", *map(str, args), "--no-progress"])


@pytest.mark.parametrize("pool", ["flatten", "avg"])
def test_features_archive_gives_the_model_paths_numbers(tmp_path, pool):
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    ds = load_data(cfg)
    model = plain_model()
    model.save(tmp_path / "plain.keras")
    res = _invoke(tmp_path / "plain.keras", cfg, "--out", tmp_path / "m" / "model", "--layers", "conv_relu", "--batch-size", "32", "--pool", pool)
    assert res.exit_code == 0, res.output

    sub = keras.Model(model.inputs, [model.get_layer("conv_relu").output, model.get_layer("hidden").output, model.output])
    conv, h, f = sub.predict(ds.x_train, batch_size=32, verbose=0)
    conv_te, h_te, f_te = sub.predict(ds.x_test, batch_size=32, verbose=0)
    head = model.get_layer("head")
    arrays = {"labels": ds.y_train, "layer/conv_relu": conv, "layer/hidden": h, "scores": f, "classifier/weight": np.asarray(head.kernel).T,
              "classifier/bias": np.asarray(head.bias), "test/labels": ds.y_test, "test/layer/conv_relu": conv_te, "test/layer/hidden": h_te, "test/scores": f_te}  # fmt: skip
    np.savez(tmp_path / "features.npz", **arrays)
    res = _invoke(tmp_path / "features.npz", "--out", tmp_path / "m" / "npz", "--pool", pool)
    assert res.exit_code == 0, res.output

    by_model, by_npz = nc_rows(tmp_path / "m" / "model")[0], nc_rows(tmp_path / "m" / "npz")[0]
    assert by_model.keys() == by_npz.keys()
    for key, value in by_model.items():
        np.testing.assert_allclose(by_npz[key], value, rtol=1e-6, atol=1e-12, err_msg=key)
    layers_model, layers_npz = layer_rows(tmp_path / "m" / "model"), layer_rows(tmp_path / "m" / "npz")
    common = layers_model.keys() & layers_npz.keys()
    # Everything but the rows an archive cannot have: the head's outputs as a layer, conv_relu's alignment.
    assert layers_npz.keys() - common == set()
    assert {(s, layer) for s, layer, _ in layers_model.keys() - common} <= {("train", "head"), ("test", "head"), ("train", "conv_relu")}
    assert ("train", "hidden", "alignment") in common
    for key in common:
        np.testing.assert_allclose(layers_npz[key], layers_model[key], rtol=1e-6, atol=1e-12, err_msg=str(key))
    spectra = [r for r in read_rows(tmp_path / "m" / "npz" / "spectra.csv")]
    sv = np.linalg.svd(np.asarray(head.kernel, dtype=np.float64), compute_uv=False)
    np.testing.assert_allclose([float(r["singular_value"]) for r in spectra], sv, rtol=1e-9)


@pytest.mark.parametrize(
    "arrays, extra, message",
    [
        ({"layer/h": "H"}, [], "no 'labels' array"),
        ({"labels": "Y"}, [], "no layer/<name> arrays"),
        ({"labels": "Y", "layer/h": "H5"}, [], "layer/h has 5 rows but labels has 6"),
        ({"labels": "Y", "layer/h": "H", "classifier/weight": "W3"}, [], "classifier/weight must be (C, p) with p = 4"),
        ({"labels": "Y", "layer/h": "H", "classifier/weight": "W", "scores": "S5"}, [], "scores must be (N, C) = (6, 3)"),
        ({"labels": "YF", "layer/h": "H"}, [], "labels must be (N,) integers"),
        ({"labels": "Y", "layer/h": "H", "test/labels": "Y"}, [], "test/labels but no test/layer/h"),
        ({"labels": "Y", "layer/h": "H"}, ["--feature-layer", "g"], "--feature-layer: features.npz has no array layer/g"),
        ({"labels": "Y", "layer/h": "H"}, ["CONFIG"], "CONFIG: a features archive"),
        ({"labels": "Y", "layer/h": "H"}, ["--preprocess", "raw"], "--preprocess: a features archive (.npz) holds representations, not pixels"),
        ("not a zip", [], "not a readable .npz archive"),
    ],
)
def test_bad_archives_one_line_exit_2_nothing_written(tmp_path, arrays, extra, message):
    rng = np.random.default_rng(0)
    values = {"Y": np.array([0, 1, 2, 0, 1, 2]), "YF": np.array([0.0, 1, 2, 0, 1, 2]), "H": rng.normal(size=(6, 4)), "H5": rng.normal(size=(5, 4)),
              "W": rng.normal(size=(3, 4)), "W3": rng.normal(size=(3, 5)), "S5": rng.normal(size=(6, 5))}  # fmt: skip
    path = tmp_path / "features.npz"
    if isinstance(arrays, str):
        path.write_text(arrays)
    else:
        np.savez(path, **{k: values[v] for k, v in arrays.items()})
    extra = [str(write_config(tmp_path / "d.yaml", SYNTHETIC_DATA)) if e == "CONFIG" else e for e in extra]
    if extra and extra[0].endswith(".yaml"):
        res = _invoke(path, extra[0], "--out", tmp_path / "out")
    else:
        res = _invoke(path, "--out", tmp_path / "out", *extra)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- README, backends


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Track collapse in your own training", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_keras_example_runs_as_written(tmp_path, monkeypatch):
    from sqloss_nc.monitor import measured_epochs

    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    epochs = len(scope["history"].history["loss"])
    rows = nc_rows(tmp_path / "runs" / "mine")
    assert sorted(rows) == measured_epochs(2, epochs)
    assert {"nc1", "val_nc1", "nc4"} <= scope["history"].history.keys()
    assert [int(r["epoch"]) for r in read_rows(tmp_path / "runs" / "mine" / "nc_layers.csv") if r["layer"] == "dense_1" and r["measure"] == "cdnv" and r["split"] == "train"] == sorted(rows)


def test_the_readme_pytorch_export_measures_as_brute_force(tmp_path, monkeypatch):
    """The README's forward-hook export, run on a tiny torchvision-shaped net, then `sqnc measure`
    of its archive against the brute force on features computed here without hooks."""
    torch = pytest.importorskip("torch")
    text = (ROOT / "README.md").read_text().split("## Track collapse in your own training", 1)[1].split("\n## ", 1)[0]
    snippet = re.findall(r"```python\n(.*?)```", text, re.S)[1]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer4 = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
            self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.avgpool(self.layer4(x)), 1))

    torch.manual_seed(0)
    ds = load_data(write_config(tmp_path / "data.yaml", SYNTHETIC_DATA))
    x, y = torch.tensor(ds.x_train).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.y_train)
    model = Net()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {"model": model, "loader": loader})  # noqa: S102
    res = _invoke("features.npz", "--out", "measured")
    assert res.exit_code == 0, res.output
    with torch.no_grad():
        maps = model.layer4(x)
        h, f = torch.flatten(model.avgpool(maps), 1).double().numpy(), model(x).double().numpy()
    w, b = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    ref, got = reference(h, ds.y_train, 3, w=w, b=b, scores=f), nc_rows(tmp_path / "measured")[0]
    for key in NC_KEYS:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-9, err_msg=key)
    maps_ref = reference(maps.flatten(1).double().numpy(), ds.y_train, 3)
    np.testing.assert_allclose(layer_rows(tmp_path / "measured")[("train", "layer4", "cdnv")], maps_ref["cdnv"], rtol=1e-5)


OTHER = {"tensorflow": "jax", "jax": "tensorflow"}[backend.NAME]


@pytest.mark.skipif(importlib.util.find_spec(OTHER) is None, reason=f"the {OTHER} backend is not installed")
def test_the_monitor_on_the_other_backend():
    env = {**os.environ, "KERAS_BACKEND": OTHER, "TF_CPP_MIN_LOG_LEVEL": "3"}
    test = "tests/test_monitor.py::test_fit_with_the_monitor_against_brute_force_and_sqnc_measure"
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]

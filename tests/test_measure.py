"""`sqnc measure` (SPEC §12): a plain functional Keras model, a keras-hub ResNet backbone built from
a config (saved as a local preset and loaded through `Backbone.from_preset`), and a model made by
`sqnc run`, each against a direct float64 computation from features taken out of the model here
(a sub-model's `predict`, all N x p in memory: what the command must never need), not through the
engine. Bad inputs go through the CLI in a subprocess: one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import SIXTEEN_STEP_CONVNET

ROOT = Path(__file__).resolve().parent.parent

SYNTHETIC_DATA = {
    "source": "synthetic",
    "classes": [0, 1, 2],
    "train_per_class": 40,
    "test_per_class": 20,
    "input_norm": "none",
    "synthetic": {"shape": [8, 8, 3], "separation": 3.0, "noise": 1.0},
}


# ----------------------------------------------------------------------------- the reference


def reference(h, y, C, w=None, b=None, scores=None, decomposition=True) -> dict:
    """SPEC §5/§9/§12 by brute force on the full (N, p) matrix, float64: eigh of Σ_B, explicit
    Σ_W, pairwise distances, a dense least-squares solve."""
    h = np.asarray(h, dtype=np.float64).reshape(len(h), -1)
    y = np.asarray(y)
    N = len(h)
    mu = np.stack([h[y == c].mean(axis=0) for c in range(C)])
    mu_g = mu.mean(axis=0)
    M = mu - mu_g
    D = h - mu[y]
    sw = D.T @ D / N
    sb = M.T @ M / C
    lam, V = np.linalg.eigh(sb)
    V, lam = V[:, -(C - 1) :], lam[-(C - 1) :]
    out = {"nc1": float(np.trace(V.T @ sw @ V @ np.diag(1.0 / lam)) / C)}
    dist = np.stack([np.sum((h - mu[c]) ** 2, axis=1) for c in range(C)], axis=1)
    nearest = np.argmin(dist, axis=1)
    out["ncc_accuracy"] = float(np.mean(nearest == y))
    out["sigma_w_fro"] = float(np.linalg.norm(sw))
    out["trace_ratio"] = float(np.trace(sw) / np.trace(sb))
    var = np.array([np.mean(np.sum((h[y == c] - mu[c]) ** 2, axis=1)) for c in range(C)])
    out["cdnv"] = float(np.mean([(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i in range(C) for j in range(i + 1, C)]))

    def geometry(rows):
        norms = np.linalg.norm(rows, axis=1)
        cos = (rows @ rows.T) / np.outer(norms, norms)
        off = cos[~np.eye(C, dtype=bool)]
        return np.std(norms, ddof=1) / np.mean(norms), (np.std(off, ddof=1) if C > 2 else np.nan), np.mean(np.abs(off + 1 / (C - 1)))

    out["nc2_equinorm_means"], out["nc2_equiangular_means"], out["nc2_maxangle_means"] = geometry(M)
    unit = M / np.linalg.norm(M, axis=1, keepdims=True)
    out["gram"] = unit @ unit.T
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        out["nc4"] = float(np.mean(nearest != np.argmax(scores, axis=1)))
        out["eps_gap"] = float(1 - np.mean(scores[np.arange(N), y]))
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        out["nc2_equinorm_weights"], out["nc2_equiangular_weights"], out["nc2_maxangle_weights"] = geometry(w)
        out["nc3"] = float(np.sum((w / np.linalg.norm(w) - M / np.linalg.norm(M)) ** 2))
        wc = w - w.mean(axis=0)
        out["nc3_centered"] = float(np.sum((wc / np.linalg.norm(wc) - M / np.linalg.norm(M)) ** 2))
        out["cos_w_mu"] = float(np.mean(np.sum(w * M, axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(M, axis=1))))
        out["w_dot_muG"] = float(np.mean(w @ mu_g))
        out["w_norm_sq_mean"] = float(np.mean(np.sum(w * w, axis=1)))
    if w is not None and decomposition:
        # The MSE decomposition without weight decay (SPEC §9), the bias as a constant feature.
        ha, wa = (np.hstack([h, np.ones((N, 1))]), np.hstack([w, np.asarray(b, dtype=np.float64)[:, None]])) if b is not None else (h, w)
        E = np.eye(C)[y]
        st = ha.T @ ha / N
        w_ls = np.linalg.solve(st, (E.T @ ha / N).T).T
        da = ha - np.stack([ha[y == c].mean(axis=0) for c in range(C)])[y]
        mua = np.stack([ha[y == c].mean(axis=0) for c in range(C)])
        pc = np.bincount(y, minlength=C) / N
        out["mse_nc1"] = float(np.trace(w_ls @ (da.T @ da / N) @ w_ls.T) / C)
        out["mse_nc23"] = float(sum(pc[c] * np.sum((w_ls @ mua[c] - np.eye(C)[c]) ** 2) for c in range(C)) / C)
        out["mse_perp"] = float(np.trace((wa - w_ls) @ st @ (wa - w_ls).T) / C)
        out["mse_total"] = float(np.sum((ha @ wa.T - E) ** 2) / (N * C))
        out["ls_distance"] = float(np.linalg.norm(wa - w_ls) / np.linalg.norm(wa))
    return out


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def nc_row(out: Path) -> dict:
    (row,) = read_rows(out / "nc.csv")
    return {k: float(v) if v != "" else float("nan") for k, v in row.items()}


def layer_values(out: Path) -> dict:
    return {(r["split"], r["layer"], r["measure"]): float(r["value"]) if r["value"] != "" else float("nan") for r in read_rows(out / "nc_layers.csv")}


def close(a, b, rtol=1e-6, atol=1e-10):
    return np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump({"name": "measured", "data": data}))
    return path


def load_data(cfg_path: Path):
    from sqloss_nc.config import load_config
    from sqloss_nc.data import load_dataset

    return load_dataset(load_config(cfg_path))


# ----------------------------------------------------------------------------- (1) a plain Keras model


def plain_model(num_classes: int = 3):
    import keras

    keras.utils.set_random_seed(7)
    x_in = keras.Input((8, 8, 3), name="image")
    z = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x_in)
    z = keras.layers.ReLU(name="conv_relu")(z)
    z = keras.layers.Flatten(name="flat")(z)
    z = keras.layers.Dense(16, activation="tanh", name="hidden")(z)  # no dead units: Σ_T invertible at λ = 0
    out = keras.layers.Dense(num_classes, name="head")(z)
    return keras.Model(x_in, out)


@pytest.mark.parametrize("pool", ["avg", "flatten"])
def test_plain_functional_model_against_brute_force(tmp_path, pool):
    import keras
    from typer.testing import CliRunner

    from cli.main import app

    model = plain_model()
    model.save(tmp_path / "plain.keras")
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    out = tmp_path / "measured"
    res = CliRunner().invoke(
        app, ["measure", str(tmp_path / "plain.keras"), str(cfg), "--out", str(out), "--layers", "conv_relu", "--pool", pool, "--no-progress", "--batch-size", "32"]
    )
    assert res.exit_code == 0, res.output

    ds = load_data(cfg)
    sub = keras.Model(model.inputs, [model.get_layer("conv_relu").output, model.get_layer("hidden").output, model.output])
    conv, h, f = sub.predict(ds.x_train, verbose=0)
    conv_te, h_te, f_te = sub.predict(ds.x_test, verbose=0)
    head = model.get_layer("head")
    w, b = np.asarray(head.kernel).T, np.asarray(head.bias)
    ref = reference(h, ds.y_train, 3, w=w, b=b, scores=f)
    got = nc_row(out)
    for key in ("nc1", "nc2_equinorm_means", "nc2_equiangular_means", "nc2_maxangle_means", "nc2_equinorm_weights", "nc2_equiangular_weights", "nc3", "nc3_centered",
                "nc4", "eps_gap", "cos_w_mu", "w_dot_muG", "w_norm_sq_mean", "trace_ratio", "cdnv", "sigma_w_fro",
                "mse_nc1", "mse_nc23", "mse_perp", "mse_total", "ls_distance"):  # fmt: skip
        close(got[key], ref[key], rtol=1e-5)
    # No training objective is known for a foreign model: Eq. 34's prediction is not written.
    assert np.isnan(got["w_norm_sq_eq34"])
    # The test split: its own NC metrics and Σ_W about the train means.
    ref_te = reference(h_te, ds.y_test, 3, w=w, b=b, scores=f_te)
    close(got["test_nc1"], ref_te["nc1"], rtol=1e-5)
    close(got["test_nc4"], ref_te["nc4"])
    mu_train = np.stack([h[ds.y_train == c].astype(np.float64).mean(axis=0) for c in range(3)])
    d_te = h_te.astype(np.float64) - mu_train[ds.y_test]
    close(got["sigma_w_fro_test"], np.linalg.norm(d_te.T @ d_te / len(d_te)), rtol=1e-5)

    # Layer-wise: the conv map pooled as asked, the features, the head's outputs.
    conv64 = conv.astype(np.float64)
    rep = conv64.mean(axis=(1, 2)) if pool == "avg" else conv64.reshape(len(conv64), -1)
    rep_te = conv_te.astype(np.float64)
    rep_te = rep_te.mean(axis=(1, 2)) if pool == "avg" else rep_te.reshape(len(rep_te), -1)
    layers = layer_values(out)
    ref_conv = reference(rep, ds.y_train, 3)
    for measure in ("trace_ratio", "cdnv", "ncc_accuracy"):
        close(layers[("train", "conv_relu", measure)], ref_conv[measure], rtol=1e-5)
        close(layers[("train", "hidden", measure)], ref[measure], rtol=1e-5)
    means_conv = np.stack([rep[ds.y_train == c].mean(axis=0) for c in range(3)])
    ncc_te = np.mean(np.argmin(((rep_te[:, None, :] - means_conv[None]) ** 2).sum(-1), axis=1) == ds.y_test)
    close(layers[("test", "conv_relu", "ncc_accuracy")], ncc_te)
    close(layers[("train", "head", "ncc_accuracy")], reference(f, ds.y_train, 3)["ncc_accuracy"])
    # The class Gram of the features.
    gram = {(int(r["i"]), int(r["j"])): float(r["value"]) for r in read_rows(out / "class_gram.csv") if r["split"] == "train"}
    close(np.array([[gram[i, j] for j in range(3)] for i in range(3)]), ref["gram"], rtol=1e-7)
    # Spectra of every kernel, from a direct SVD (conv kernel as out x fan_in).
    spectra = read_rows(out / "spectra.csv")
    kernel = np.asarray(model.get_layer("conv").kernel, dtype=np.float64)
    sv = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]).T, compute_uv=False)
    got_sv = [float(r["singular_value"]) for r in spectra if r["layer"] == "conv"]
    close(np.array(got_sv), sv, rtol=1e-6, atol=1e-12)
    assert {int(r["rank"]) for r in spectra if r["layer"] == "conv"} == {int(np.sum(sv / np.linalg.norm(sv) > 1e-3))}
    assert {r["layer"] for r in spectra} == {"conv", "hidden", "head"}

    info = json.loads((out / "measure.json").read_text())
    import hashlib

    assert info["model"]["sha256"] == hashlib.sha256((tmp_path / "plain.keras").read_bytes()).hexdigest()
    assert info["model"]["kind"] == "keras"
    assert (info["features"], info["classifier"]) == ("hidden", "head")
    expected_dim = 4 if pool == "avg" else 256
    assert info["layers"][0] == {"name": "conv_relu", "shape": [8, 8, 4], "pool": pool, "dim": expected_dim}
    assert info["splits"] == {"train": 120, "test": 60}
    assert info["data"]["classes"] == [0, 1, 2]


def test_sequential_model_defaults(tmp_path):
    """A Sequential model: the features default to the last Dense layer's input."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(name="flat"), keras.layers.Dense(8, activation="tanh", name="d1"), keras.layers.Dense(3, name="d2")])
    model.save(tmp_path / "seq.keras")
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    from sqloss_nc.measure import measure

    r = measure(tmp_path / "seq.keras", cfg, tmp_path / "out", splits=["train"])
    ds = load_data(cfg)
    sub = keras.Model(model.inputs, [model.get_layer("d1").output, model.get_layer("d2").output])
    h, f = sub.predict(ds.x_train, verbose=0)
    ref = reference(h, ds.y_train, 3, w=np.asarray(model.get_layer("d2").kernel).T, b=np.asarray(model.get_layer("d2").bias), scores=f)
    assert (r.info["features"], r.info["classifier"]) == ("d1", "d2")
    for key in ("nc1", "nc3", "nc4", "mse_total", "mse_perp"):
        close(r.nc[key], ref[key], rtol=1e-5)
    assert "test_nc1" not in nc_row(tmp_path / "out")


# ----------------------------------------------------------------------------- (2) keras-hub


def test_keras_hub_resnet_backbone_from_a_local_preset(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    keras.utils.set_random_seed(11)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
    )  # image_shape (None, None, 3), as the published presets: the spatial sizes come from the data
    preset = tmp_path / "resnet_preset"
    backbone.save_to_preset(str(preset))
    data = dict(SYNTHETIC_DATA, synthetic={"shape": [16, 16, 3], "separation": 3.0, "noise": 1.0})
    cfg = write_config(tmp_path / "data.yaml", data)
    from sqloss_nc.measure import measure

    r = measure(preset, cfg, tmp_path / "out", layers=["stack0_block0_out"], pool="avg", batch_size=50)
    assert r.info["model"]["kind"] == "keras-hub" and r.info["model"]["sha256"]
    assert r.info["classifier"] is None
    assert [d["pool"] for d in r.info["layers"]] == ["avg", "avg"]

    ds = load_data(cfg)
    sub = keras.Model(backbone.inputs, [backbone.get_layer("stack0_block0_out").output, backbone.output])
    block, feat = sub.predict(ds.x_train, verbose=0)
    h = feat.astype(np.float64).mean(axis=(1, 2))
    ref = reference(h, ds.y_train, 3)
    got = nc_row(tmp_path / "out")
    for key in ("nc1", "nc2_equinorm_means", "nc2_equiangular_means", "nc2_maxangle_means", "trace_ratio", "cdnv", "sigma_w_fro"):
        close(got[key], ref[key], rtol=1e-5)
    # No classifier: the weight measures, NC4, the ε-gap and the decomposition are NaN.
    for key in ("nc3", "nc4", "eps_gap", "nc2_equinorm_weights", "mse_total", "w_norm_sq_eq34"):
        assert np.isnan(got[key]), key
    layers = layer_values(tmp_path / "out")
    ref_block = reference(block.astype(np.float64).mean(axis=(1, 2)), ds.y_train, 3)
    close(layers[("train", "stack0_block0_out", "ncc_accuracy")], ref_block["ncc_accuracy"])
    close(layers[("train", "stack0_block0_out", "cdnv")], ref_block["cdnv"], rtol=1e-5)


# ----------------------------------------------------------------------------- (3) a model of `sqnc run`


def test_model_of_sqnc_run_equals_its_last_nc_epoch(tmp_path):
    import keras

    from sqloss_nc.config import load_config
    from sqloss_nc.experiment import train_and_evaluate
    from sqloss_nc.measure import measure

    overrides = [*SIXTEEN_STEP_CONVNET, "data.classes=[0,1,2]", "optim.epochs=2", "track.nc_epochs=[2]", "optim.weight_decay=0.005"]
    rundir = tmp_path / "runs" / "seed=0"
    res = train_and_evaluate(load_config(None, overrides), rundir)
    assert res["state"] == "done"
    out = tmp_path / "measured"
    r = measure(rundir / "model.keras", None, out, splits=["train", "test"])  # the config.yaml beside the model
    assert r.info["model"]["kind"] == "sqnc" and r.info["objective"]["weight_decay"] == 0.005

    run_nc = read_rows(rundir / "nc.csv")[-1]
    got = nc_row(out)
    assert int(float(run_nc["epoch"])) == 2
    for key, value in run_nc.items():
        if key == "epoch" or value == "":
            continue
        close(got[key], float(value), rtol=1e-6, atol=1e-12)
    # Every train row of nc_layers.csv (trace ratio, CDNV, NCC, both alignments) and the test NCC.
    mine = layer_values(out)
    run_rows = [r for r in read_rows(rundir / "nc_layers.csv") if r["epoch"] == "2"]
    assert run_rows
    for row in run_rows:
        if row["split"] == "test" and row["measure"] != "ncc_accuracy":
            continue
        want = float(row["value"]) if row["value"] != "" else float("nan")
        close(mine[(row["split"], row["layer"], row["measure"])], want, rtol=1e-6, atol=1e-12)
    run_gram = [float(r["value"]) for r in read_rows(rundir / "class_gram.csv") if r["epoch"] == "2" and r["split"] == "train"]
    close([float(r["value"]) for r in read_rows(out / "class_gram.csv") if r["split"] == "train"], run_gram, rtol=1e-9, atol=1e-12)
    run_spectra = [r for r in read_rows(rundir / "spectra.csv") if r["epoch"] == "2"]
    my_spectra = read_rows(out / "spectra.csv")
    assert [(r["layer"], r.get("index")) for r in my_spectra] == [(r["layer"], r.get("index")) for r in run_spectra]
    numeric = [c for c in run_spectra[0] if c not in ("epoch", "layer")]
    for a, b in zip(my_spectra, run_spectra):
        for c in numeric:
            if b[c] != "":
                close(float(a[c]), float(b[c]), rtol=1e-9, atol=1e-15)

    # With a config that only names the data, the training objective is unknown: the same
    # features and NC, but the decomposition of the plain square loss without weight decay.
    data_only = write_config(tmp_path / "data_only.yaml", yaml.safe_load((rundir / "config.yaml").read_text())["data"])
    plain = measure(rundir / "model.keras", data_only, tmp_path / "plain", splits=["train"])
    assert plain.info["model"]["kind"] == "keras" and plain.info["objective"]["weight_decay"] == 0.0
    assert (plain.info["features"], plain.info["classifier"]) == ("features", "classifier")
    close(plain.nc["nc1"], got["nc1"], rtol=1e-12)
    assert np.isnan(plain.nc["w_norm_sq_eq34"]) and plain.nc["mse_total"] < got["mse_total"]

    # And against the brute force, from the features of the saved model.
    model = keras.saving.load_model(rundir / "model.keras")
    ds = load_data_from_run(rundir)
    sub = keras.Model(model.inputs, [model.get_layer("features").output, model.output])
    h, f = sub.predict(ds.x_train, verbose=0)
    ref = reference(h, ds.y_train, 3, w=np.asarray(model.get_layer("classifier").kernel).T, scores=f, decomposition=False)
    for key in ("nc1", "nc3", "nc4", "cdnv", "sigma_w_fro"):
        close(got[key], ref[key], rtol=1e-5)


def load_data_from_run(rundir: Path):
    from sqloss_nc.config import Config
    from sqloss_nc.data import load_dataset

    return load_dataset(Config.model_validate(yaml.safe_load((rundir / "config.yaml").read_text())))


# ----------------------------------------------------------------------------- bad input


def _sqnc(*args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cli.main", "measure", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_bad_inputs_one_line_exit_2_nothing_written(tmp_path):
    import keras
    from typer.testing import CliRunner

    from cli.main import app

    plain_model().save(tmp_path / "plain.keras")
    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    keras.Model(x_in, keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.Conv2D(3, 3, name="conv")(x_in))).save(tmp_path / "headless.keras")
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    two = write_config(tmp_path / "two.yaml", dict(SYNTHETIC_DATA, classes=[0, 1]))
    # In a fresh process (the backend's import noise must not reach stderr), then in this one.
    in_subprocess = [
        (["missing.keras", cfg], "does not exist"),
        ([tmp_path / "plain.keras", cfg, "--layers", "conv_rel"], "did you mean conv_relu"),
    ]
    in_process = [
        ([tmp_path / "headless.keras", cfg], "no Dense layer"),
        ([tmp_path / "plain.keras", two], "3 outputs but the data have 2 classes"),
    ]
    for k, (args, message) in enumerate(in_subprocess + in_process):
        out = tmp_path / f"out{k}"
        if k < len(in_subprocess):
            res = _sqnc(*args, "--out", out, cwd=tmp_path)
            code, stdout, stderr = res.returncode, res.stdout, res.stderr
        else:
            res = CliRunner().invoke(app, ["measure", *map(str, args), "--out", str(out)])
            code, stdout, stderr = res.exit_code, res.stdout, res.stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, (args, stderr)
        assert len(lines) == 1 and message in lines[0], (args, stderr)
        assert "Traceback" not in stderr + stdout
        assert not out.exists(), args


def test_bad_options_raise_before_loading(tmp_path):
    from sqloss_nc.measure import MeasureError, measure

    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    for kwargs, message in (({"pool": "max"}, "--pool"), ({"splits": ["test"]}, "must include train"), ({"splits": ["train", "val"]}, "unknown split")):
        with pytest.raises(MeasureError, match=message):
            measure(tmp_path / "missing.keras", cfg, tmp_path / "out", **kwargs)
    plain_model().save(tmp_path / "m.keras")
    with pytest.raises(MeasureError, match="no config.yaml beside the model"):
        measure(tmp_path / "m.keras", None, tmp_path / "out")
    with pytest.raises(MeasureError, match="'conv_relu' gives 256 values .flatten., the classifier 'head' reads 16"):
        measure(tmp_path / "m.keras", cfg, tmp_path / "out", feature_layer="conv_relu")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text("epoch\n0\n")
    with pytest.raises(MeasureError, match="is a run directory"):
        measure(tmp_path / "m.keras", cfg, tmp_path / "run", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.csv"]
    big = write_config(tmp_path / "big.yaml", dict(SYNTHETIC_DATA, synthetic={"shape": [16, 16, 3]}))
    with pytest.raises(MeasureError, match=r"inputs of shape \(8, 8, 3\), the data have \(16, 16, 3\)"):
        measure(tmp_path / "m.keras", big, tmp_path / "out")
    assert not (tmp_path / "out").exists()

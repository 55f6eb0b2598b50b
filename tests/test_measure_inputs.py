"""`sqnc measure`'s inputs (issue 28): the preprocessing is an explicit, printed, recorded choice
(`--preprocess run|raw|scaled|hub`, `auto`), `--layers` are measured in the network's order, and
the messages for a run folder, a `.keras` that is not one, and a keras-hub preset that cannot be
fetched. Each against features computed here from the images by hand (not through `measure`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.test_measure import SYNTHETIC_DATA, close, nc_row, plain_model, reference, write_config

# The shipped CIFAR-10 sample, two classes, few images: pixels to preprocess, and fast.
SAMPLE = {"source": "sample", "classes": [1, 2], "train_per_class": 12, "test_per_class": 4}


def cifar_model():
    import keras

    keras.utils.set_random_seed(5)
    x_in = keras.Input((32, 32, 3))
    z = keras.layers.Conv2D(4, 3, strides=4, name="conv")(x_in)
    z = keras.layers.Flatten(name="flat")(z)
    z = keras.layers.Dense(6, name="hidden")(z)  # linear: 0..255 inputs would saturate a tanh
    return keras.Model(x_in, keras.layers.Dense(2, name="head")(z))


def pixels(cfg_path):
    """The selected sample images as stored (uint8) and their labels, read without `measure`."""
    from sqloss_nc.config import load_config
    from sqloss_nc.data import load_images

    x_tr, y_tr, *_ = load_images(load_config(cfg_path))
    return x_tr, y_tr


@pytest.mark.parametrize("mode, scale", [("raw", 1.0), ("scaled", 1 / 255)])
def test_raw_and_scaled_pixels_reach_the_model_unchanged(tmp_path, mode, scale):
    import keras
    from typer.testing import CliRunner

    from cli.main import app

    model = cifar_model()
    model.save(tmp_path / "m.keras")
    cfg = write_config(tmp_path / "data.yaml", SAMPLE)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["measure", str(tmp_path / "m.keras"), str(cfg), "--out", str(out), "--split", "train", "--no-progress", "--preprocess", mode])
    assert res.exit_code == 0, res.output
    assert f"preprocessing: {mode} (--preprocess)" in res.stdout
    x, y = pixels(cfg)
    sub = keras.Model(model.inputs, [model.get_layer("hidden").output, model.output])
    h, f = sub.predict(x.astype(np.float32) * np.float32(scale), verbose=0)
    ref = reference(h, y, 2, w=np.asarray(model.get_layer("head").kernel).T, b=np.asarray(model.get_layer("head").bias), scores=f, decomposition=False)
    got = nc_row(out)
    for key in ("nc1", "nc3", "nc4", "eps_gap", "sigma_w_fro"):
        close(got[key], ref[key], rtol=1e-5)
    info = json.loads((out / "measure.json").read_text())
    assert info["preprocess"]["mode"] == mode and info["preprocess"]["chosen"] == "--preprocess"


def test_auto_on_a_foreign_model_is_the_config_pipeline_printed_with_the_alternatives(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from sqloss_nc.config import load_config
    from sqloss_nc.data import load_dataset

    cifar_model().save(tmp_path / "m.keras")
    cfg = write_config(tmp_path / "data.yaml", SAMPLE)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["measure", str(tmp_path / "m.keras"), str(cfg), "--out", str(out), "--split", "train", "--no-progress"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("preprocessing:"))
    assert line.startswith("preprocessing: run (auto: the config's data pipeline)") and "--preprocess raw" in line
    info = json.loads((out / "measure.json").read_text())
    assert info["preprocess"]["mode"] == "run"
    # `run` is the project's inputs: standardized, then unit norm per image (the sample's default).
    x = load_dataset(load_config(cfg)).x_train
    np.testing.assert_allclose(np.linalg.norm(x.reshape(len(x), -1), axis=1), 1, rtol=1e-5)


def test_a_keras_hub_preset_gets_its_own_image_converter(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    from sqloss_nc.measure import measure

    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64], stackwise_num_blocks=[1],
        stackwise_num_strides=[1], block_type="basic_block", use_pre_activation=False,
    )  # fmt: skip
    preset = tmp_path / "preset"
    backbone.save_to_preset(str(preset))
    # A converter unlike the project's preprocessing: resize 32 -> 16, x/127.5 - 1.
    converter = keras_hub.layers.ResNetImageConverter(image_size=(16, 16), scale=1 / 127.5, offset=-1.0)
    converter.save_to_preset(str(preset))
    cfg = write_config(tmp_path / "data.yaml", SAMPLE)
    r = measure(preset, cfg, tmp_path / "out", splits=["train"], pool="avg")
    assert r.info["preprocess"]["mode"] == "hub" and r.info["preprocess"]["chosen"] == "auto: the preset's own"
    x, y = pixels(cfg)
    converted = np.asarray(converter(x.astype(np.float32)))
    assert converted.shape[1:] == (16, 16, 3)
    h = backbone.predict(converted, verbose=0).astype(np.float64).mean(axis=(1, 2))
    ref = reference(h, y, 2)
    for key in ("nc1", "trace_ratio", "cdnv", "sigma_w_fro"):
        close(r.nc[key], ref[key], rtol=1e-5)
    from sqloss_nc.measure import MeasureError

    with pytest.raises(MeasureError, match="--preprocess hub: MODEL is not a keras-hub preset"):
        cifar_model().save(tmp_path / "m.keras")
        measure(tmp_path / "m.keras", cfg, tmp_path / "out2", preprocess="hub")
    with pytest.raises(MeasureError, match="--preprocess raw: data.source 'synthetic' has no pixels"):
        measure(tmp_path / "m.keras", write_config(tmp_path / "syn.yaml", dict(SYNTHETIC_DATA, classes=[0, 1])), tmp_path / "out3", preprocess="raw")
    with pytest.raises(MeasureError, match="--preprocess: 'imagenet' is not one of auto, run, raw, scaled, hub"):
        measure(tmp_path / "m.keras", cfg, tmp_path / "out4", preprocess="imagenet")


def test_layers_are_measured_in_the_networks_order(tmp_path):
    from sqloss_nc.measure import measure

    plain_model().save(tmp_path / "plain.keras")
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    r = measure(tmp_path / "plain.keras", cfg, tmp_path / "out", layers=["flat", "conv_relu"], splits=["train"])
    assert [d["name"] for d in r.info["layers"]] == ["conv_relu", "flat", "hidden", "head"]
    rows = [ln.split(",")[2] for ln in (tmp_path / "out" / "nc_layers.csv").read_text().splitlines()[1:]]
    assert list(dict.fromkeys(rows)) == ["conv_relu", "flat", "hidden", "head"]


def test_a_run_folder_stands_for_its_model_and_config(tmp_path):
    from sqloss_nc.measure import measure

    run = tmp_path / "runs" / "seed=0"
    run.mkdir(parents=True)
    plain_model().save(run / "model.keras")
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "x", "data": SYNTHETIC_DATA}))
    r = measure(run, None, tmp_path / "out", splits=["train"])
    assert r.info["model"]["path"] == str((run / "model.keras").resolve()) and r.info["config"] == str(run / "config.yaml")


def test_a_keras_file_that_is_no_zip_is_named_as_such(tmp_path):
    from sqloss_nc.measure import MeasureError, measure

    (tmp_path / "bad.keras").write_bytes(b"not a zip archive")
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    with pytest.raises(MeasureError) as err:
        measure(tmp_path / "bad.keras", cfg, tmp_path / "out")
    assert "is not a Keras 3 .keras file (a .keras file is a zip archive" in str(err.value)
    assert "not found" not in str(err.value).lower()


def test_an_unreachable_preset_is_cut_at_a_word_and_points_at_a_local_folder(tmp_path, monkeypatch):
    keras_hub = pytest.importorskip("keras_hub")
    from sqloss_nc.measure import MeasureError, measure

    words = " ".join(f"word{i:03d}" for i in range(60))  # 479 characters

    def offline(preset, **kwargs):
        raise ConnectionError(f"Could not reach kaggle.com: {words}")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(MeasureError) as err:
        measure("resnet_18_imagenet", write_config(tmp_path / "data.yaml", SYNTHETIC_DATA), tmp_path / "out")
    msg = str(err.value)
    shown = msg.split("(ConnectionError: ")[1].split(")")[0]
    assert shown.endswith(" …") and all(w in words.split() for w in shown[: -len(" …")].split()[4:]), shown
    assert "give its local folder" in msg and "\n" not in msg


def test_the_engines_nan_notice_is_one_line_and_kept_in_measure_json(tmp_path):
    """Features that are all zero: coinciding class means, NC1 NaN with the engine's notice."""
    import keras
    from typer.testing import CliRunner

    from cli.main import app

    x_in = keras.Input((8, 8, 3))
    z = keras.layers.Dense(2, kernel_initializer="zeros", name="hidden")(keras.layers.Flatten()(x_in))
    keras.Model(x_in, keras.layers.Dense(3, name="head")(z)).save(tmp_path / "dead.keras")
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "data.yaml", SYNTHETIC_DATA)
    res = CliRunner().invoke(app, ["measure", str(tmp_path / "dead.keras"), str(cfg), "--out", str(out), "--split", "train", "--no-progress"])
    assert res.exit_code == 0, res.output
    notes = [ln for ln in res.stdout.splitlines() if ln.startswith("warning: nc1 is NaN")]
    assert len(notes) == 1 and "RuntimeWarning" not in res.output, res.output
    info = json.loads((out / "measure.json").read_text())
    assert any(w.startswith("nc1 is NaN") for w in info["warnings"]) and np.isnan(nc_row(out)["nc1"])

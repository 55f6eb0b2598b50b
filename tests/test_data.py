import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from sqloss_nc.config import ConfigError, load_config
from sqloss_nc.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataError,
    apply_label_noise,
    load_dataset,
    normalize_inputs,
    sample_path,
    select_per_class,
    standardize_images,
)


def make_folder(root, classes=("a", "b", "c"), n_train=5, n_test=2, size=8, fmt="png"):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                # Encode the class and the index in the pixels so the loader's choice is checkable.
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                arr[0, 0] = (ci * 40, i * 20, 7)
                Image.fromarray(arr).save(d / f"{i:04d}.{fmt}")
    return root


def folder_cfg(path, *extra):
    return load_config(None, ["data.source=folder", f"data.path={path}", *extra])


def test_folder_loader_selects_relabels_and_takes_first_files(tmp_path):
    root = make_folder(tmp_path / "imgs")
    ds = load_dataset(folder_cfg(root, "data.classes=[2, 0]", "data.train_per_class=3", "data.test_per_class=2", "data.input_norm=none"))
    assert ds.class_names == ["c", "a"]
    assert ds.x_train.shape == (6, 8, 8, 3) and list(ds.y_train) == [0, 0, 0, 1, 1, 1]
    # First pixel of image i of class ci was (40ci, 20i, 7): undo the standardization to read it.
    pix = np.round((ds.x_train[:, 0, 0] * CIFAR10_STD + CIFAR10_MEAN) * 255)
    assert pix[:, 0].tolist() == [80, 80, 80, 0, 0, 0] and pix[:, 1].tolist() == [0, 20, 40, 0, 20, 40]


def test_folder_loader_reads_a_zip_with_a_wrapping_folder(tmp_path):
    root = make_folder(tmp_path / "imgs", fmt="jpg")
    z = tmp_path / "data.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in root.rglob("*.jpg"):
            zf.write(f, "cifar10/" + str(f.relative_to(root)))
    a = load_dataset(folder_cfg(root, "data.classes=[0,1]", "data.train_per_class=null", "data.test_per_class=null"))
    b = load_dataset(folder_cfg(z, "data.classes=[0,1]", "data.train_per_class=null", "data.test_per_class=null"))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


@pytest.mark.parametrize(
    "setup, extra, field",
    [
        (lambda r: None, [], "data.path"),  # missing folder
        (lambda r: make_folder(r), ["data.classes=[0,5]"], "data.classes"),
        (lambda r: make_folder(r), ["data.train_per_class=50"], "data.train_per_class"),
        (lambda r: (make_folder(r), __import__("shutil").rmtree(r / "test")), [], "data.path"),
        (lambda r: (make_folder(r), (r / "train" / "a" / "0000.png").write_bytes(b"not an image")), [], "data"),
        (lambda r: (make_folder(r), [f.unlink() for f in (r / "test" / "b").iterdir()]), [], "data.path"),
    ],
    ids=["missing-folder", "class-out-of-range", "too-few-images", "no-test-split", "corrupt-image", "empty-class"],
)
def test_folder_errors_are_one_line_naming_the_field(tmp_path, setup, extra, field):
    root = tmp_path / "imgs"
    setup(root)
    with pytest.raises(DataError) as err:
        load_dataset(folder_cfg(root, "data.classes=[0,1]", "data.train_per_class=null", "data.test_per_class=null", *extra))
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_shipped_sample_is_real_cifar10_with_enough_images():
    assert sample_path().stat().st_size < 5 * 2**20
    ds = load_dataset(
        load_config(
            None, ["data.classes=[0,1,2,3,4,5,6,7,8,9]", "data.train_per_class=200", "data.test_per_class=50", "data.input_norm=none"]
        )
    )
    assert ds.class_names[:3] == ["airplane", "automobile", "bird"] and len(ds.class_names) == 10
    assert ds.x_train.shape == (2000, 32, 32, 3) and ds.x_test.shape == (500, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [200] * 10
    # Standardized CIFAR pixels: roughly zero mean, unit std per channel over many images.
    assert np.all(np.abs(ds.x_train.mean(axis=(0, 1, 2))) < 0.3) and np.all(np.abs(ds.x_train.std(axis=(0, 1, 2)) - 1) < 0.3)


def test_standardize_uses_cifar_channel_stats():
    x = np.full((1, 2, 2, 3), 255, dtype=np.uint8)
    np.testing.assert_allclose(
        standardize_images(x)[0, 0, 0], (1 - np.array([0.4914, 0.4822, 0.4465])) / np.array([0.2470, 0.2435, 0.2616]), rtol=1e-6
    )


def test_input_norms():
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(10, 4, 4, 3)).astype(np.float32), rng.normal(size=(5, 4, 4, 3)).astype(np.float32)
    u_tr, u_te = normalize_inputs(xtr, xte, "unit")
    np.testing.assert_allclose(np.linalg.norm(u_tr.reshape(10, -1), axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(u_te.reshape(5, -1), axis=1), 1, rtol=1e-6)
    m_tr, m_te = normalize_inputs(xtr, xte, "max")
    biggest = np.linalg.norm(xtr.reshape(10, -1), axis=1).max()
    np.testing.assert_allclose(m_tr, xtr / biggest, rtol=1e-6)
    np.testing.assert_allclose(m_te, xte / biggest, rtol=1e-6)  # the *training* maximum
    assert np.linalg.norm(m_tr.reshape(10, -1), axis=1).max() == pytest.approx(1.0, rel=1e-6)


def test_label_noise_counts_and_reports_the_realised_fraction():
    y = np.repeat(np.arange(2), 500).astype(np.int32)
    noisy, realised = apply_label_noise(y, 0.4, 2, seed=3)
    touched_max = round(0.4 * len(y))
    assert realised == pytest.approx(np.mean(noisy != y))
    # 400 relabelled uniformly over 2 classes: about half change (binomial(400, 1/2): ±4 sd ~ ±40).
    assert 160 <= realised * len(y) <= 240 and realised * len(y) <= touched_max
    again, _ = apply_label_noise(y, 0.4, 2, seed=3)
    other, _ = apply_label_noise(y, 0.4, 2, seed=4)
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
    assert apply_label_noise(y, 0.0, 2, seed=3)[1] == 0.0


def test_label_noise_never_touches_test_labels(synthetic_overrides):
    clean = load_dataset(load_config(None, synthetic_overrides))
    noisy = load_dataset(load_config(None, [*synthetic_overrides, "data.label_noise=1.0"]))
    assert np.array_equal(clean.y_test, noisy.y_test) and not np.array_equal(clean.y_train, noisy.y_train)
    assert noisy.label_noise_realised == pytest.approx(np.mean(noisy.y_train != clean.y_train))


# ----------------------------------------------------------------------------- TFDS

# The standard channel statistics, typed here from their sources (see sqloss_nc/datasets.py).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "svhn_cropped": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
}
NATIVE = {"cifar10": (32, 32, 3), "cifar100": (32, 32, 3), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "svhn_cropped": (32, 32, 3), "stl10": (96, 96, 3)}
NUM_CLASSES = {"cifar100": 100}


def raw_split(tfds, name, split):
    """The split as TFDS gives it (uint8 images, int labels), read without the loader."""
    ds = tfds.load(name, split=split, as_supervised=True)
    xs, ys = zip(*tfds.as_numpy(ds.batch(1000)))
    return np.concatenate(xs), np.concatenate(ys)


def tfds_cfg(name, classes, *extra):
    return load_config(None, ["data.source=tfds", f"data.name={name}", f"data.classes={classes}", *extra])


@pytest.mark.parametrize("name", list(STATS))
def test_tfds_loader_on_mock_data(name):
    """The real TFDS code path, on examples TFDS' mock builds from the dataset's feature spec."""
    tfds = pytest.importorskip("tensorflow_datasets")
    c = NUM_CLASSES.get(name, 10)
    classes = [c - 1, 0, 3]  # the top label, to show the range is the dataset's own
    with tfds.testing.mock_data(num_examples=2000 if c == 100 else 150):
        ds = load_dataset(tfds_cfg(name, classes, "data.train_per_class=3", "data.test_per_class=2", "data.input_norm=none"))
        every = load_dataset(tfds_cfg(name, classes, "data.train_per_class=null", "data.test_per_class=null", "data.input_norm=unit"))
        raw = {split: raw_split(tfds, name, split) for split in ("train", "test")}
        names = tfds.builder(name).info.features["label"].names
    mean, std = (np.array(v, dtype=np.float64) for v in STATS[name])
    for x, y, split, k in ((ds.x_train, ds.y_train, "train", 3), (ds.x_test, ds.y_test, "test", 2)):
        assert x.shape == (3 * k, *NATIVE[name]) and x.dtype == np.float32 and y.dtype == np.int32
        assert y.tolist() == [0] * k + [1] * k + [2] * k
        # The first k images of each class in TFDS order, standardized with the dataset's stats.
        rx, ry = raw[split]
        idx = np.concatenate([np.flatnonzero(ry == cls)[:k] for cls in classes])
        np.testing.assert_allclose(x, (rx[idx] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    # null takes every image of each chosen class; unit input norm.
    for y, split in ((every.y_train, "train"), (every.y_test, "test")):
        assert np.bincount(y, minlength=3).tolist() == [int(np.sum(raw[split][1] == cls)) for cls in classes]
    np.testing.assert_allclose(np.linalg.norm(every.x_train.reshape(len(every.x_train), -1), axis=1), 1, rtol=1e-5)
    assert ds.class_names == [names[cls] for cls in classes] and ds.num_classes == 3


def test_tfds_class_range_is_the_datasets_own():
    assert load_config(None, ["data.source=tfds", "data.name=cifar100", "data.classes=[0,50,99]"]).data.classes == [0, 50, 99]
    for name, bad, top in (("cifar100", 100, 99), ("cifar10", 10, 9), ("stl10", 12, 9)):
        with pytest.raises(ConfigError) as err:
            tfds_cfg(name, [0, bad])
        assert str(err.value) == f"data.classes: class index {bad} out of range 0..{top}"
    with pytest.raises(ConfigError, match="^data.name: the shipped sample is cifar10"):
        load_config(None, ["data.name=mnist"])
    with pytest.raises(ConfigError, match="^data.name: Input should be 'cifar10'"):
        load_config(None, ["data.source=tfds", "data.name=imagenet"])
    # A folder's class count is only known when it is read: the config lets index 50 through.
    assert load_config(None, ["data.source=folder", "data.classes=[0,50]"]).data.classes == [0, 50]


def test_tfds_too_few_images_names_the_field():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=30):
        with pytest.raises(DataError, match=r"^data.train_per_class: asked for 25 images but class 1 has only \d+ in 'train'$"):
            load_dataset(tfds_cfg("mnist", [1, 2], "data.train_per_class=25"))


@pytest.mark.parametrize("missing", ["tensorflow_datasets", "tensorflow"])
def test_tfds_without_tensorflow_datasets_is_one_clear_line(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    with pytest.raises(DataError) as err:
        load_dataset(tfds_cfg("cifar10", [1, 2]))
    assert str(err.value) == "data.source: 'tfds' needs TensorFlow Datasets (pip install tensorflow-datasets tensorflow)"


def test_tfds_missing_through_the_cli(monkeypatch, tmp_path):
    """README bad-input row `tfds-not-installed`: exit 2, one line, nothing written."""
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    res = CliRunner().invoke(app, ["run", "--no-progress", "--set", "data.source=tfds", "--out", str(tmp_path / "out")])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and lines == ["error: data.source: 'tfds' needs TensorFlow Datasets (pip install tensorflow-datasets tensorflow)"]
    assert not (tmp_path / "out").exists()


def test_select_per_class_stops_reading_once_every_class_is_full():
    read = []

    def batches():
        for b in range(100):
            read.append(b)
            yield np.arange(10 * b, 10 * b + 10), np.arange(10) % 5  # labels 0..4, twice a batch
        raise AssertionError("read past the end")

    x, y = select_per_class(batches(), [4, 1], 3, "data.train_per_class", "train")
    assert x.tolist() == [4, 9, 14, 1, 6, 11] and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert read == [0, 1]  # 2 per class and batch: the second batch fills both classes
    with pytest.raises(DataError, match="^data.test_per_class: asked for all images but class 7 has only 0 in 'test'$"):
        select_per_class([(np.arange(4), np.arange(4))], [1, 7], None, "data.test_per_class", "test")


def test_standardize_uses_each_datasets_channel_stats():
    for name, (mean, std) in STATS.items():
        channels = NATIVE[name][-1]
        x = np.full((1, 2, 2, channels), 51, dtype=np.uint8)
        np.testing.assert_allclose(standardize_images(x, name)[0, 0, 0], (0.2 - np.array(mean)) / np.array(std), rtol=1e-6)


def test_folder_read_as_a_grayscale_dataset_has_one_channel(tmp_path):
    root = make_folder(tmp_path / "imgs", size=6)
    ds = load_dataset(folder_cfg(root, "data.name=mnist", "data.classes=[0,1]", "data.train_per_class=2", "data.test_per_class=1", "data.input_norm=none"))
    assert ds.x_train.shape == (4, 6, 6, 1)
    # First pixel of image 1 of class 0 was RGB (0, 20, 7): PIL's luma L = (299 R + 587 G + 114 B) / 1000.
    luma = round((299 * 0 + 587 * 20 + 114 * 7) / 1000)
    assert round(float(ds.x_train[1, 0, 0, 0]) * 0.3081 * 255 + 0.1307 * 255) == luma

import zipfile

import numpy as np
import pytest
from PIL import Image

from sqloss_nc.config import load_config
from sqloss_nc.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataError,
    apply_label_noise,
    load_dataset,
    normalize_inputs,
    sample_path,
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


def test_tfds_loader_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=200):
        try:
            ds = load_dataset(
                load_config(None, ["data.source=tfds", "data.classes=[1,2]", "data.train_per_class=1", "data.test_per_class=1"])
            )
        except Exception as err:  # pragma: no cover - mock needs the dataset's metadata
            pytest.skip(f"tfds mock unavailable offline: {err}")
    assert ds.class_names == ["automobile", "bird"] and ds.x_train.shape[1:] == (32, 32, 3)
    assert ds.y_train.tolist() == [0, 1]
    np.testing.assert_allclose(np.linalg.norm(ds.x_train.reshape(2, -1), axis=1), 1, rtol=1e-5)

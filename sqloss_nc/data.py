"""Data: the four sources, class selection, preprocessing and label noise (SPEC §2).

Sources (`data.source`):

- `sample`: a real CIFAR-10 sample shipped in the package (all 10 classes, the first 300 train and
  50 test images per class of the JPEG archive, in sorted file order). The offline default.
- `folder`: an image folder `ROOT/{train,test}/<class_name>/*.{jpg,jpeg,png}`, or a `.zip` of one
  (a single top-level folder such as `cifar10/` is looked through). Class folders are sorted by
  name and `data.classes` indexes that sorted list, which for CIFAR-10 is the standard order.
- `tfds`: TensorFlow Datasets `data.name` (`cifar10`, `cifar100`, `mnist`, `fashion_mnist`,
  `svhn_cropped`, `stl10`; `datasets.DATASETS`), at its native size and channels (28×28×1 for the
  MNISTs, 96×96×3 for STL-10), splits `train` and `test` (SVHN's `extra` and STL-10's `unlabelled`
  are not used), class names from TFDS. Downloads on first use (needs internet), into TFDS'
  `data_dir`: `--data-dir` or `data.path` when given, else `~/tensorflow_datasets`. Needs `tensorflow-datasets` and `tensorflow` (a one-line error says so otherwise);
  both are imported only here, so the rest of the package runs without them.
- `synthetic`: a Gaussian mixture (see `SyntheticConfig`), for tests and toy models.

Preprocessing (`data.input_norm`), applied identically to train and test:
images are scaled to [0, 1], standardized with the channel means/stds of `data.name`
(`datasets.py` says where each comes from; CIFAR-10's for the sample and by default for folders;
grayscale datasets have one channel, and a folder read as `mnist`/`fashion_mnist` is decoded to
one channel; synthetic inputs are already centred), then
`unit`: every image divided by its own L2 norm (||x_n|| = 1, section 7 of the paper);
`max`: every image divided by the largest *training* norm; `none`: nothing more.

Per-class counts take the first `train_per_class` / `test_per_class` images of each class in
source order (sorted file names for folders), so the subset does not depend on the run seed;
asking for more images than a class has is an error, `null` takes all.

Label noise (`data.label_noise = r`): round(r·N) training indices are drawn without replacement
with the run seed and each gets a label drawn uniformly from the C classes (so about r/C of them
keep their label). Test labels never change. `Dataset.label_noise_realised` is the fraction of
training labels that actually changed.

Example:

```python
from sqloss_nc.config import load_config
ds = load_dataset(load_config(None, ["data.source=synthetic", "data.train_per_class=50"]))
ds.x_train.shape, ds.y_train[:5], ds.class_names
```
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from .config import Config
from .datasets import DATASETS
from .errors import UserError, first_words

CIFAR10_MEAN = np.array(DATASETS["cifar10"].mean, dtype=np.float32)
CIFAR10_STD = np.array(DATASETS["cifar10"].std, dtype=np.float32)
TFDS_MISSING = "data.source: 'tfds' needs TensorFlow Datasets (pip install tensorflow-datasets tensorflow)"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Label-noise draws use their own stream so that adding noise does not shift any other draw.
_LABEL_NOISE_STREAM = 0x1AB


class DataError(UserError):
    """A user-side data problem (missing folder, class out of range, corrupt image): one line."""


@dataclass
class Dataset:
    """Preprocessed arrays, labels relabelled 0..C-1 in the order of `data.classes`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    y_train_clean: np.ndarray = field(repr=False, default=None)
    label_noise_realised: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict:
        return {
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "input_shape": list(self.x_train.shape[1:]),
            "class_names": self.class_names,
            "label_noise_realised": float(self.label_noise_realised),
        }


# ----------------------------------------------------------------------------- sources


def _decode(data: bytes, where: str, channels: int = 3) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.uint8).reshape(im.height, im.width, channels)
    except UnidentifiedImageError:
        raise DataError(f"data: cannot decode image {where}: not a valid image file") from None
    except (OSError, ValueError) as err:
        raise DataError(f"data: cannot decode image {where}: {err}") from None


class _ImageTree:
    """Uniform read access to an image folder on disk or inside a zip archive."""

    def __init__(self, root: Path | zipfile.Path, label: str, channels: int = 3):
        self.root, self.label, self.channels = root, label, channels

    @classmethod
    def open(cls, path: str | Path, channels: int = 3) -> "_ImageTree":
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"data.path: {p} does not exist")
        if p.is_file():
            if not zipfile.is_zipfile(p):
                raise DataError(f"data.path: {p} is neither a folder nor a zip archive")
            root: Path | zipfile.Path = zipfile.Path(zipfile.ZipFile(p))
        else:
            root = p
        # Look through one wrapping folder (`cifar10/train/...`).
        if not (root / "train").is_dir():
            subs = [c for c in root.iterdir() if c.is_dir()]
            if len(subs) == 1 and (subs[0] / "train").is_dir():
                root = subs[0]
        for split in ("train", "test"):
            if not (root / split).is_dir():
                raise DataError(f"data.path: {p} has no '{split}/' folder (expected ROOT/{{train,test}}/<class>/*.jpg)")
        return cls(root, str(p), channels)

    def class_names(self, split: str) -> list[str]:
        return sorted(c.name for c in (self.root / split).iterdir() if c.is_dir())

    def read_class(self, split: str, name: str, limit: int | None, field_name: str) -> np.ndarray:
        folder = self.root / split / name
        if not folder.is_dir():
            raise DataError(f"data.path: class folder '{split}/{name}' is missing in {self.label}")
        files = sorted((f for f in folder.iterdir() if PurePosixPath(f.name).suffix.lower() in IMAGE_SUFFIXES), key=lambda f: f.name)
        if not files:
            raise DataError(f"data.path: class folder '{split}/{name}' holds no images in {self.label}")
        if limit is not None:
            if len(files) < limit:
                raise DataError(f"{field_name}: asked for {limit} images but '{split}/{name}' has only {len(files)}")
            files = files[:limit]
        images = [_decode(f.read_bytes(), f"{split}/{name}/{f.name}", self.channels) for f in files]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise DataError(f"data: images in '{split}/{name}' have different sizes {sorted(shapes)[:3]}")
        return np.stack(images)


def _load_tree(tree: _ImageTree, cfg: Config) -> tuple:
    d = cfg.data
    names = tree.class_names("train")
    bad = [c for c in d.classes if c >= len(names)]
    if bad:
        raise DataError(f"data.classes: class index {bad[0]} out of range (the data has {len(names)} classes)")
    chosen = [names[c] for c in d.classes]
    out = []
    for split, limit, fname in (("train", d.train_per_class, "data.train_per_class"), ("test", d.test_per_class, "data.test_per_class")):
        xs, ys = [], []
        for label, name in enumerate(chosen):
            x = tree.read_class(split, name, limit, fname)
            xs.append(x)
            ys.append(np.full(len(x), label, dtype=np.int32))
        shapes = {x.shape[1:] for x in xs}
        if len(shapes) != 1:
            raise DataError(f"data: classes have different image sizes {sorted(shapes)}")
        out += [np.concatenate(xs), np.concatenate(ys)]
    return (*out, chosen)


def sample_path() -> Path:
    """Where the shipped CIFAR-10 sample lives (a zip in image-folder layout)."""
    return Path(str(resources.files("sqloss_nc") / "assets" / "cifar10_sample.zip"))


def select_per_class(batches, classes: list[int], limit: int | None, field_name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` examples (all with `None`) of each of `classes`, in source order,
    concatenated class by class and relabelled 0..len(classes)-1.

    Only the chosen examples are kept, and iteration stops once every class is full, so a
    100-image subset of a large split reads only as far as it must.

    Args:
        batches: iterable of (images, labels) numpy batches.
        classes: source label of each output class, in output order.
        limit: examples per class, or None for all.
        field_name: config key named in the error (`data.train_per_class` / `data.test_per_class`).
        split: split name for the error.

    Raises:
        DataError: a class has fewer than `limit` examples.

    Example:

    ```python
    x, y = select_per_class([(np.arange(6), np.array([0, 1, 0, 1, 2, 0]))], [2, 0], 1, "k", "train")
    x.tolist(), y.tolist()  # [4, 0], [0, 1]
    ```
    """
    taken: dict[int, list] = {c: [] for c in classes}
    counts = dict.fromkeys(classes, 0)
    for xb, yb in batches:
        yb = np.asarray(yb)
        for c in classes:
            idx = np.flatnonzero(yb == c)
            if limit is not None:
                idx = idx[: limit - counts[c]]
            if len(idx):
                taken[c].append(xb[idx])
                counts[c] += len(idx)
        if limit is not None and all(n >= limit for n in counts.values()):
            break
    short = [c for c in classes if counts[c] == 0 or (limit is not None and counts[c] < limit)]
    if short:
        raise DataError(f"{field_name}: asked for {limit or 'all'} images but class {short[0]} has only {counts[short[0]]} in '{split}'")
    x = np.concatenate([a for c in classes for a in taken[c]])
    y = np.concatenate([np.full(counts[c], label, dtype=np.int32) for label, c in enumerate(classes)])
    return x, y


def load_tfds(cfg: Config, data_dir: str | None = None) -> tuple:
    """TFDS `data.name`, splits `train`/`test` as uint8 (N, H, W, C), `data.classes` selected.

    Args:
        cfg: the run config (`data.name`, `data.classes`, the per-class counts, `data.path` as
            the TFDS data_dir).
        data_dir: TFDS' `data_dir` (downloads and prepared files), overriding `data.path` (the
            CLI's `--data-dir`); neither: TFDS' default, `~/tensorflow_datasets`.

    Returns:
        (x_train, y_train, x_test, y_test, class_names), labels relabelled 0..len(classes)-1.

    Example:

    ```python
    x_tr, y_tr, x_te, y_te, names = load_tfds(load_config(None, ["data.source=tfds", "data.name=mnist"]), "/data/tfds")
    ```

    Raises:
        DataError: TFDS (or TensorFlow, or a module TFDS imports) is not installed, the dataset
            cannot be downloaded (offline) or loaded, or a class has too few images.
    """
    try:
        import tensorflow  # noqa: F401  (TFDS' loader is a tf.data pipeline)
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(TFDS_MISSING) from None

    d = cfg.data
    where = data_dir or d.path
    out, names = [], None
    for split, limit, fname in (("train", d.train_per_class, "data.train_per_class"), ("test", d.test_per_class, "data.test_per_class")):
        try:
            ds, info = tfds.load(d.name, split=split, as_supervised=True, data_dir=where, with_info=True)
            names = info.features["label"].names
            # Batched iteration rather than `batch_size=-1`, which aborts the process on some
            # TF/TFDS pairs (TF 2.21 + TFDS 4.9.10: std::length_error in the generator op).
            x, y = select_per_class(tfds.as_numpy(ds.batch(4096)), d.classes, limit, fname, split)
        except DataError:
            raise
        except ImportError as err:
            # TFDS imports some modules lazily, inside `load` (4.9.x: importlib_resources).
            raise DataError(f"data.source: TFDS needs the module {err.name!r}, which is not installed (pip install {err.name})") from None
        except Exception as err:  # noqa: BLE001 - TFDS raises many types for "not downloaded / offline"
            raise DataError(_tfds_error(d.name, where, err)) from None
        out += [x, y]
    return (*out, [names[c] for c in d.classes])


def _tfds_error(name: str, data_dir: str | None, err: Exception) -> str:
    """One line for a failed `tfds.load`: a failed download (offline) says where TFDS looked."""
    detail = f"{type(err).__name__}: {first_words(err, 160)}"
    # tfds' DownloadError, or the HTTP client's own (requests / urllib3) when its retries end.
    offline = type(err).__name__ == "DownloadError" or type(err).__module__.split(".")[0] in ("requests", "urllib3")
    if offline or isinstance(err, (ConnectionError, TimeoutError)):
        folder = data_dir or "~/tensorflow_datasets"
        return f"data.source: TFDS could not download {name} ({detail}); it needs internet once, or the prepared dataset in {folder} (--data-dir)"
    return f"data.source: TFDS could not load {name} ({detail})"


def load_synthetic(cfg: Config) -> tuple:
    """Gaussian mixture over the 10 potential classes; `data.classes` picks among them."""
    d, s = cfg.data, cfg.data.synthetic
    dim = int(np.prod(s.shape))
    rng = np.random.default_rng([s.seed, 0x5EED])
    means = rng.standard_normal((10, dim)) * (s.separation / np.sqrt(dim))
    out = []
    for split, limit in ((0, d.train_per_class), (1, d.test_per_class)):
        n = limit if limit is not None else 500
        r = np.random.default_rng([s.seed, 0xDA7A, split])
        xs, ys = [], []
        for label, c in enumerate(d.classes):
            xs.append(means[c] + r.standard_normal((n, dim)) * (s.noise / np.sqrt(dim)))
            ys.append(np.full(n, label, dtype=np.int32))
        out += [np.concatenate(xs).reshape(-1, *s.shape).astype(np.float32), np.concatenate(ys)]
    return (*out, [f"class{c}" for c in d.classes])


# ----------------------------------------------------------------------------- preprocessing


def standardize_images(x_uint8: np.ndarray, name: str = "cifar10") -> np.ndarray:
    """Pixels / 255, minus the channel means of dataset `name`, over its channel stds (float32).

    Example: `standardize_images(np.zeros((1, 28, 28, 1), np.uint8), "mnist")` is -0.1307/0.3081 everywhere.
    """
    spec = DATASETS[name]
    mean, std = np.array(spec.mean, dtype=np.float32), np.array(spec.std, dtype=np.float32)
    return ((x_uint8.astype(np.float32) / 255.0) - mean) / std


def normalize_inputs(x_train: np.ndarray, x_test: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """`unit`: each image to L2 norm 1; `max`: all divided by the largest training norm."""
    if mode == "none":
        return x_train, x_test

    def norms(x: np.ndarray) -> np.ndarray:
        # float64 accumulation: the norm is a measurement input for every margin and rho.
        return np.sqrt(np.sum(np.square(x.reshape(len(x), -1), dtype=np.float64), axis=1))

    if mode == "unit":
        scale = lambda x: (x / np.maximum(norms(x), 1e-12).reshape(-1, *[1] * (x.ndim - 1))).astype(np.float32)  # noqa: E731
        return scale(x_train), scale(x_test)
    if mode == "max":
        m = float(norms(x_train).max())
        return (x_train / m).astype(np.float32), (x_test / m).astype(np.float32)
    raise ValueError(f"unknown input_norm {mode!r}")


def apply_label_noise(y: np.ndarray, rate: float, num_classes: int, seed: int) -> tuple[np.ndarray, float]:
    """Relabel round(rate·N) random samples uniformly; returns (labels, realised changed fraction)."""
    if rate <= 0:
        return y.copy(), 0.0
    rng = np.random.default_rng([seed, _LABEL_NOISE_STREAM])
    n = len(y)
    idx = rng.choice(n, size=int(round(rate * n)), replace=False)
    noisy = y.copy()
    noisy[idx] = rng.integers(0, num_classes, size=len(idx)).astype(y.dtype)
    return noisy, float(np.mean(noisy != y))


# ----------------------------------------------------------------------------- entry point


def load_dataset(cfg: Config, data_dir: str | None = None) -> Dataset:
    """Load, select, preprocess and (optionally) corrupt labels as `cfg.data` says.

    Args:
        cfg: the run config (`cfg.data`, and `cfg.seed` for the label noise).
        data_dir: overrides `cfg.data.path` (the CLI's `--data-dir`).

    Raises:
        DataError: a one-line description of what is wrong with the data or its path.
    """
    return with_label_noise(load_clean_dataset(cfg, data_dir), cfg.data.label_noise, cfg.seed)


def data_key(config: Config) -> str:
    """The clean dataset of a run: its `data` section without `label_noise` (applied per run,
    with the run's seed). Runs with equal keys share one loaded dataset.

    Example: `data_key(load_config(None, ["seed=1"])) == data_key(load_config(None, ["data.label_noise=0.1"]))`.
    """
    d = config.data.model_dump(mode="json")
    d.pop("label_noise")
    return json.dumps(d, sort_keys=True)


def load_images(cfg: Config, data_dir: str | None = None) -> tuple:
    """The selected images of an image source as stored, before any preprocessing.

    Args:
        cfg: the run config (`cfg.data`: source `sample`, `folder` or `tfds`).
        data_dir: overrides `cfg.data.path` (the CLI's `--data-dir`).

    Returns:
        (x_train, y_train, x_test, y_test, class_names), images uint8 (N, H, W, c), labels
        relabelled 0..C-1 in the order of `data.classes`.

    Raises:
        DataError: the source holds no images (`synthetic`), or the data cannot be read.

    Example: `x_tr, y_tr, x_te, y_te, names = load_images(load_config(None))` (the shipped sample).
    """
    d = cfg.data
    path = data_dir or d.path
    if d.source == "folder":
        if not path:
            raise DataError("data.path: source 'folder' needs a path (data.path or --data-dir)")
        return _load_tree(_ImageTree.open(path, DATASETS[d.name].channels), cfg)
    if d.source == "sample":
        return _load_tree(_ImageTree.open(sample_path()), cfg)
    if d.source == "tfds":
        return load_tfds(cfg, path)
    raise DataError(f"data.source: {d.source!r} holds no images (its inputs are generated already preprocessed)")


def check_data_path(cfg: Config, data_dir: str | None = None) -> None:
    """Check, without reading any image, that a `folder` source's path (`data_dir` or
    `data.path`) is an image folder or zip with `train/` and `test/` (`sqnc run --dry-run`).

    Raises:
        DataError: the path is missing, does not exist, or is no image folder.

    Example: `check_data_path(load_config(None, ["data.source=folder"]), "nope")` raises `DataError`.
    """
    if cfg.data.source != "folder":
        return
    path = data_dir or cfg.data.path
    if not path:
        raise DataError("data.path: source 'folder' needs a path (data.path or --data-dir)")
    _ImageTree.open(path, DATASETS[cfg.data.name].channels)


def load_clean_dataset(cfg: Config, data_dir: str | None = None) -> Dataset:
    """`load_dataset` without label noise: depends on `cfg.data` only, so sweeps can share it."""
    d = cfg.data
    if d.source == "synthetic":
        x_tr, y_tr, x_te, y_te, names = load_synthetic(cfg)
    else:
        x_tr, y_tr, x_te, y_te, names = load_images(cfg, data_dir)
        x_tr, x_te = standardize_images(x_tr, d.name), standardize_images(x_te, d.name)
    x_tr, x_te = normalize_inputs(x_tr, x_te, d.input_norm)
    return Dataset(x_tr, y_tr, x_te, y_te, list(names), y_train_clean=y_tr, label_noise_realised=0.0)


def load_pixels(cfg: Config, data_dir: str | None = None, scale: float = 1.0) -> Dataset:
    """The selected images as float32 pixel values times `scale` (0..255 with 1, 0..1 with
    1/255), without this project's preprocessing, with the run's label noise: the inputs of a
    network trained on raw or x/255 pixels (`sqnc measure --preprocess raw|scaled`).

    Example: `load_pixels(load_config(None), scale=1 / 255).x_train.max() <= 1`.
    """
    x_tr, y_tr, x_te, y_te, names = load_images(cfg, data_dir)
    clean = Dataset(x_tr.astype(np.float32) * np.float32(scale), y_tr, x_te.astype(np.float32) * np.float32(scale), y_te, list(names), y_train_clean=y_tr)
    return with_label_noise(clean, cfg.data.label_noise, cfg.seed)


def with_label_noise(ds: Dataset, rate: float, seed: int) -> Dataset:
    """A copy of `ds` whose training labels carry `rate` label noise drawn with `seed`."""
    y_noisy, realised = apply_label_noise(ds.y_train_clean, rate, ds.num_classes, seed)
    return Dataset(ds.x_train, y_noisy, ds.x_test, ds.y_test, ds.class_names, y_train_clean=ds.y_train_clean, label_noise_realised=realised)

"""Data: the four sources, class selection, preprocessing and label noise (SPEC §2).

Sources (`data.source`):

- `sample`: a real CIFAR-10 sample shipped in the package (all 10 classes, the first 300 train and
  50 test images per class of the JPEG archive, in sorted file order). The offline default.
- `folder`: an image folder `ROOT/{train,test}/<class_name>/*.{jpg,jpeg,png}`, or a `.zip` of one
  (a single top-level folder such as `cifar10/` is looked through). Class folders are sorted by
  name and `data.classes` indexes that sorted list, which for CIFAR-10 is the standard order.
- `tfds`: TensorFlow Datasets `cifar10` (downloads on first use; needs internet).
- `synthetic`: a Gaussian mixture (see `SyntheticConfig`), for tests and toy models.

Preprocessing (`data.input_norm`), applied identically to train and test:
images are scaled to [0, 1], standardized with the CIFAR-10 channel means/stds (image sources
only; synthetic inputs are already centred), then
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
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from .config import Config
from .errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
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


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(f"data: cannot decode image {where}: not a valid image file") from None
    except (OSError, ValueError) as err:
        raise DataError(f"data: cannot decode image {where}: {err}") from None


class _ImageTree:
    """Uniform read access to an image folder on disk or inside a zip archive."""

    def __init__(self, root: Path | zipfile.Path, label: str):
        self.root, self.label = root, label

    @classmethod
    def open(cls, path: str | Path) -> "_ImageTree":
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
        return cls(root, str(p))

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
        images = [_decode(f.read_bytes(), f"{split}/{name}/{f.name}") for f in files]
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


def load_tfds(cfg: Config) -> tuple:
    """TFDS `cifar10` (real loader, needs the dataset downloaded or internet access)."""
    import tensorflow_datasets as tfds

    d = cfg.data
    out = []
    for split, limit, fname in (("train", d.train_per_class, "data.train_per_class"), ("test", d.test_per_class, "data.test_per_class")):
        try:
            # Batched iteration rather than `batch_size=-1`, which aborts the process on some
            # TF/TFDS pairs (TF 2.21 + TFDS 4.9.10: std::length_error in the generator op).
            ds = tfds.load("cifar10", split=split, as_supervised=True, data_dir=d.path)
            xs_all, ys_all = zip(*tfds.as_numpy(ds.batch(4096)))
            x, y = np.concatenate(xs_all), np.concatenate(ys_all)
        except Exception as err:  # noqa: BLE001 - TFDS raises many types for "not downloaded / offline"
            raise DataError(f"data.source: TFDS could not load cifar10 ({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
        xs, ys = [], []
        for label, c in enumerate(d.classes):
            idx = np.flatnonzero(y == c)
            if limit is not None:
                if len(idx) < limit:
                    raise DataError(f"{fname}: asked for {limit} images but class {c} has only {len(idx)} in '{split}'")
                idx = idx[:limit]
            xs.append(x[idx])
            ys.append(np.full(len(idx), label, dtype=np.int32))
        out += [np.concatenate(xs), np.concatenate(ys)]
    return (*out, [CIFAR10_CLASSES[c] for c in d.classes])


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


def standardize_images(x_uint8: np.ndarray) -> np.ndarray:
    """Pixels / 255, minus the CIFAR-10 channel means, over the channel stds (float32)."""
    return ((x_uint8.astype(np.float32) / 255.0) - CIFAR10_MEAN) / CIFAR10_STD


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


def load_clean_dataset(cfg: Config, data_dir: str | None = None) -> Dataset:
    """`load_dataset` without label noise: depends on `cfg.data` only, so sweeps can share it."""
    d = cfg.data
    path = data_dir or d.path
    if d.source == "synthetic":
        x_tr, y_tr, x_te, y_te, names = load_synthetic(cfg)
    else:
        if d.source == "folder":
            if not path:
                raise DataError("data.path: source 'folder' needs a path (data.path or --data-dir)")
            x_tr, y_tr, x_te, y_te, names = _load_tree(_ImageTree.open(path), cfg)
        elif d.source == "sample":
            x_tr, y_tr, x_te, y_te, names = _load_tree(_ImageTree.open(sample_path()), cfg)
        elif d.source == "tfds":
            x_tr, y_tr, x_te, y_te, names = load_tfds(cfg)
        else:  # pragma: no cover - the schema forbids it
            raise DataError(f"data.source: unknown source {d.source!r}")
        x_tr, x_te = standardize_images(x_tr), standardize_images(x_te)
    x_tr, x_te = normalize_inputs(x_tr, x_te, d.input_norm)
    return Dataset(x_tr, y_tr, x_te, y_te, list(names), y_train_clean=y_tr, label_noise_realised=0.0)


def with_label_noise(ds: Dataset, rate: float, seed: int) -> Dataset:
    """A copy of `ds` whose training labels carry `rate` label noise drawn with `seed`."""
    y_noisy, realised = apply_label_noise(ds.y_train_clean, rate, ds.num_classes, seed)
    return Dataset(ds.x_train, y_noisy, ds.x_test, ds.y_test, ds.class_names, y_train_clean=ds.y_train_clean, label_noise_realised=realised)

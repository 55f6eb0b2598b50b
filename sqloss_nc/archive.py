"""Features archives: `sqnc measure FEATURES.npz` measures arrays exported from any framework.

A features archive is a batch source for the measurement engine (`engine.measure_collapse`)
beside the model sources of `measure.py`: the representations come from the archive instead of a
compiled Keras model, and everything after that is `sqnc measure`'s (the engine call,
`measure.engine_collapse`; the files, `measure._write`), so the same features give the same
numbers either way (tested to 1e-6). Importing it loads numpy only: no Keras, TensorFlow or JAX.

The layout (a `numpy.savez` archive, names as keys, order kept):

=========================  ==============  ===================================================
key                        shape           what
=========================  ==============  ===================================================
``labels``                 (N,) ints       class indices 0..C−1 of the train split (required)
``layer/<name>``           (N, ...)        one per measured representation (at least one); the
                                           last one (or ``--feature-layer``) is the features h
``scores``                 (N, C)          the network's outputs (NC4, ``eps_gap``; else NaN)
``classifier/weight``      (C, p)          the last linear layer's rows w_c (torch's
                                           ``fc.weight``; NC2 of the weights, NC3, the MSE
                                           decomposition; else NaN)
``classifier/bias``        (C,)            its bias (in the decomposition)
``test/labels``            (N_test,)       the test split: NCC accuracy by the train means,
``test/layer/<name>``      (N_test, ...)   its own NC metrics (``test_*``), ``sigma_w_fro_test``
``test/scores``            (N_test, C)
=========================  ==============  ===================================================

C is the classifier's rows, else the scores' columns, else the largest label + 1. A conv map is
(N, H, W, c), channels last (PyTorch's (N, c, H, W) permuted), measured flattened or pooled as
``--pool`` says. The decomposition is that of the plain one-hot square loss without weight decay
and Eq. 34's ``w_norm_sq_eq34`` is not written (no training loss is known), as for a Keras model
`sqnc measure` did not train. The archive's arrays are read into memory once (the engine's
accumulators stay O(C·p) per layer).

Example:

```python
np.savez("features.npz", labels=y, **{"layer/penultimate": h, "scores": logits, "classifier/weight": W})
measure_archive("features.npz", out="measured/torch").nc["nc1"]
```
"""

from __future__ import annotations

import difflib
import time
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .measure import POOLS, SPLITS, MeasureError, MeasureResult, _check_out, _sha256_file, _write, engine_collapse

LAYER, TEST = "layer/", "test/"
LABELS, SCORES, WEIGHT, BIAS = "labels", "scores", "classifier/weight", "classifier/bias"
CLASSIFIER = "classifier"  # the head's name in spectra.csv and measure.json


def _fail(path: Path, text: str) -> MeasureError:
    return MeasureError(f"FEATURES: {path.name}: {text}")


def _load(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, by key, in the archive's order."""
    if not path.is_file():
        raise MeasureError(f"FEATURES: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        first = str(err).splitlines()[0][:160] if str(err) else ""
        raise MeasureError(f"FEATURES: {path} is not a readable .npz archive of plain arrays ({type(err).__name__}: {first})") from None


def _labels(path: Path, arrays: dict, key: str) -> np.ndarray:
    if key not in arrays:
        raise _fail(path, f"no {key!r} array: the archive needs {key} (N,) integer class indices")
    y = arrays[key]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise _fail(path, f"{key} must be (N,) integers, got shape {y.shape} dtype {y.dtype}")
    if len(y) == 0:
        raise _fail(path, f"{key} is empty")
    if y.min() < 0:
        raise _fail(path, f"{key} holds the negative label {int(y.min())}; labels are class indices 0..C-1")
    return y.astype(np.int64)


def _rep(path: Path, arrays: dict, key: str, n: int, labels_key: str) -> np.ndarray:
    a = arrays[key]
    if a.ndim < 2 or a.dtype.kind not in "fiu":
        raise _fail(path, f"{key} must be a numeric (N, ...) array, got shape {a.shape} dtype {a.dtype}")
    if len(a) != n:
        raise _fail(path, f"{key} has {len(a)} rows but {labels_key} has {n}")
    return a


def _pool_of(shape: tuple, pool: str) -> str:
    """The pooling of a per-sample shape, as `measure._set_shapes` decides it."""
    return pool if len(shape) == 3 else "flatten" if len(shape) > 1 else "none"


def _dim(shape: tuple, pool: str) -> int:
    return int(shape[-1]) if _pool_of(shape, pool) == "avg" else int(np.prod(shape))


def _source(reps: list, labels: np.ndarray, scores, pools: list, batch_size: int):
    """The engine's batch source over in-memory arrays: fresh (pooled reps, labels, scores) batches."""
    from .engine import pool_representation

    def batches():
        for i in range(0, len(labels), batch_size):
            sl = slice(i, i + batch_size)
            pooled = [pool_representation(r[sl], p) if p in ("flatten", "avg") else r[sl] for r, p in zip(reps, pools)]
            yield pooled, labels[sl], None if scores is None else scores[sl]

    return batches


def is_archive(model) -> bool:
    """Whether `sqnc measure`'s MODEL is a features archive (a `.npz` file name)."""
    return str(model).lower().endswith(".npz")


def measure_archive(
    path: str | Path,
    data_config=None,
    out: str | Path | None = None,
    layers: Sequence[str] | None = None,
    feature_layer: str | None = None,
    classifier_layer: str | None = None,
    pool: str = "flatten",
    splits: Sequence[str] = SPLITS,
    batch_size: int | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = False,
    console=None,
    preprocess: str = "auto",
) -> MeasureResult:
    """Measure neural collapse of the arrays of a features archive (module docstring: layout).

    It takes `measure.measure`'s arguments, so `sqnc measure` calls either with the same ones
    (`is_archive` decides); those that describe a model's data (`data_config`, `data_dir`,
    `overrides`, `classifier_layer`) are refused: the archive holds its labels and its head.
    Every mistake raises `MeasureError` (one line) before anything is written.

    Args:
        path: the `.npz` archive.
        data_config, data_dir, overrides, classifier_layer: must be empty.
        out: the output folder (`nc.csv`, `nc_layers.csv`, `class_gram.csv`, `spectra.csv`,
            `measure.json`, as for a model).
        layers: the `layer/<name>` arrays to measure besides the features (default: all).
        feature_layer: the layer that is the features h (default: the archive's last layer).
        pool: how a conv map (N, H, W, c) becomes a vector: `flatten` or `avg`.
        splits: `train`, and `test` when the archive holds `test/labels`.
        batch_size: how many rows the engine reads at a time (default 1000; memory only).
        overwrite: replace an earlier measurement in `out`.
        progress, console: unused (an archive is measured in memory, at once).
        preprocess: must stay `auto`: an archive holds representations, not pixels, so there is
            nothing to preprocess (`measure`'s `--preprocess` is refused, not ignored).

    Returns:
        a `measure.MeasureResult`.

    Example: `measure_archive("features.npz", out="measured/torch", feature_layer="avgpool").nc["nc1"]`.
    """
    model_only = (
        ("CONFIG", data_config),
        ("--data-dir", data_dir),
        ("--set", list(overrides)),
        ("--classifier-layer", classifier_layer),
        ("--preprocess", preprocess if preprocess != "auto" else None),
    )
    given = [option for option, value in model_only if value]
    if given:
        held = "representations, not pixels" if given[0] == "--preprocess" else "its own labels and classifier/weight"
        raise MeasureError(f"{given[0]}: a features archive (.npz) holds {held}; give no {given[0]}")
    if out is None:
        raise MeasureError("--out: give the output folder")
    for option, ok, wanted in (
        ("--pool", pool in POOLS, f"one of {', '.join(POOLS)}"),
        ("--split", "train" in splits and set(splits) <= set(SPLITS), "train or train,test"),
        ("--batch-size", batch_size is None or batch_size > 0, "a positive number"),
    ):
        if not ok:
            raise MeasureError(f"{option}: must be {wanted}")
    t0 = time.perf_counter()
    path, out = Path(path).expanduser(), Path(out)
    batch_size = int(batch_size or 1000)
    arrays = _load(path)
    y = _labels(path, arrays, LABELS)
    names = [k[len(LAYER) :] for k in arrays if k.startswith(LAYER)]
    if not names:
        raise _fail(path, f"no {LAYER}<name> arrays: save each representation as {LAYER}<name> (N, ...), the features last")
    for name, option in ((feature_layer, "--feature-layer"), *((n, "--layers") for n in layers or ())):
        if name is not None and name not in names:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"the archive's layers: {', '.join(names[:12])}"
            raise MeasureError(f"{option}: {path.name} has no array {LAYER}{name}; {hint}")
    features = feature_layer or names[-1]
    if layers is not None:
        names = [n for n in names if n in layers or n == features]
    reps = [_rep(path, arrays, LAYER + n, len(y), LABELS) for n in names]
    shapes = {n: tuple(int(d) for d in r.shape[1:]) for n, r in zip(names, reps)}
    pools = [_pool_of(shapes[n], pool) for n in names]
    p = _dim(shapes[features], pool)

    # The head: the classifier's rows, the scores, or the labels say how many classes.
    w = arrays.get(WEIGHT)
    b = arrays.get(BIAS)
    scores = arrays.get(SCORES)
    if b is not None and w is None:
        raise _fail(path, f"{BIAS} without {WEIGHT}")
    if w is not None and (w.ndim != 2 or w.shape[1] != p):
        raise _fail(path, f"{WEIGHT} must be (C, p) with p = {p} (the features {features!r}, {pools[names.index(features)]}), got {w.shape}")
    C = int(w.shape[0]) if w is not None else int(scores.shape[-1]) if scores is not None and scores.ndim == 2 else int(y.max()) + 1
    if b is not None and b.shape != (C,):
        raise _fail(path, f"{BIAS} must be ({C},), got {b.shape}")
    if scores is not None and scores.shape != (len(y), C):
        raise _fail(path, f"{SCORES} must be (N, C) = ({len(y)}, {C}), got {scores.shape}")
    if C < 2:
        raise _fail(path, f"{C} class: measuring collapse needs at least 2 classes")
    if y.max() >= C:
        raise _fail(path, f"{LABELS} holds the label {int(y.max())} but the classifier has {C} classes (labels 0..{C - 1})")

    test = None
    test_keys = [k for k in arrays if k.startswith(TEST)]
    if "test" in splits and test_keys:
        y_te = _labels(path, arrays, TEST + LABELS)
        missing = [n for n in names if TEST + LAYER + n not in arrays]
        if missing:
            raise _fail(path, f"{TEST}{LABELS} but no {TEST}{LAYER}{missing[0]}: the test split needs every measured layer")
        reps_te = [_rep(path, arrays, TEST + LAYER + n, len(y_te), TEST + LABELS) for n in names]
        for n, r in zip(names, reps_te):
            if tuple(r.shape[1:]) != shapes[n]:
                raise _fail(path, f"{TEST}{LAYER}{n} has samples of shape {tuple(r.shape[1:])}, {LAYER}{n} {shapes[n]}")
        scores_te = arrays.get(TEST + SCORES)
        if scores_te is not None and scores_te.shape != (len(y_te), C):
            raise _fail(path, f"{TEST}{SCORES} must be (N_test, C) = ({len(y_te)}, {C}), got {scores_te.shape}")
        if y_te.max() >= C:
            raise _fail(path, f"{TEST}{LABELS} holds the label {int(y_te.max())} but there are {C} classes")
        test = _source(reps_te, y_te, scores_te, pools, batch_size)
    _check_out(out, overwrite)

    objective = {"decomposition": w is not None, "weight_decay": 0.0, "decay_bias": False, "loss_k": 1.0, "loss_M": 1.0,
                 "source": "plain square loss, no weight decay" if w is not None else "none (no classifier/weight)"}  # fmt: skip
    kernel = None if w is None else np.asarray(w, dtype=np.float64).T  # a Dense kernel (p, C)
    next_kernels = {} if kernel is None else {features: kernel}
    result = engine_collapse(_source(reps, y, scores, pools, batch_size), test, C, names, features, w, b, objective, next_kernels)
    nc = dict(result.nc)
    for prefix in ("", "test_"):  # no training loss known: Eq. 34 is not written (as measure's)
        if f"{prefix}eps_gap" in nc:
            nc[f"{prefix}w_norm_sq_eq34"] = float("nan")
    from .engine import DEFAULT_RANK_TOL, spectra_rows

    spectra = [] if kernel is None else spectra_rows(0, {CLASSIFIER: kernel}, DEFAULT_RANK_TOL)
    import platform

    from . import __version__

    info = {
        "model": {"source": str(path), "path": str(path.resolve()), "kind": "features", "sha256": _sha256_file(path), "class": "npz"},
        "config": None,
        "overrides": [],
        "features": features,
        "classifier": CLASSIFIER if w is not None else None,
        "scalar_head": False,
        "layers": [{"name": n, "shape": list(shapes[n]), "pool": pl, "dim": _dim(shapes[n], pool)} for n, pl in zip(names, pools)],
        "objective": objective,
        "data": {"source": "npz", "path": str(path.resolve()), "classes": list(range(C))},
        "data_dir": None,
        "class_names": [str(c) for c in range(C)],
        "splits": {"train": int(len(y)), **({"test": int(len(arrays[TEST + LABELS]))} if test is not None else {})},
        "batch_size": batch_size,
        "rank_tol": DEFAULT_RANK_TOL,
        "epoch": 0,
        "seconds": round(time.perf_counter() - t0, 3),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"sqloss_nc": __version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    files = _write(out, nc, result, spectra, info, test is not None)
    return MeasureResult(out, nc, list(result.layers), info, files)

"""`sqnc measure`: neural collapse of a trained network that this tool did not train (SPEC §12).

`measure(model, config, out)` loads a network, streams a data split through one compiled
inference model that returns every probed representation and the classifier's outputs, and feeds
the batches to the measurement engine (`sqloss_nc.engine.measure_collapse`: float64, two streaming
passes, O(C·p) memory per layer plus the features' p x p second moment for the MSE
decomposition; nothing N x p is ever held). It writes what a run writes for one NC epoch
(`nc.csv`, `nc_layers.csv`, `class_gram.csv`, `spectra.csv`, epoch 0, the columns of
`sqloss_nc.schema`) and `measure.json` (what was measured, how, on what data).

What MODEL can be:

- a `model.keras` written by `sqnc run`: its `features` and `classifier` layers, the layers the
  run's tracker probes, and the run's objective (weight decay λ, loss k and M, from the config)
  for the MSE decomposition, so the numbers equal the run's last NC epoch when the config is the
  run's (the `config.yaml` beside the model is used when no config is given). With a config whose
  `model:` section does not build this network (other layers or weight shapes), it is measured
  as any other Keras model;
- any Keras 3 model file (functional or sequential): by default the features are the input of
  the last `Dense` layer and the classifier is that layer (`feature_layer`, `classifier_layer`
  name others); the decomposition is that of the plain square loss with λ = 0;
- a keras-hub backbone: a preset name, a Kaggle/Hugging Face handle or a local preset folder
  (`keras_hub.models.Backbone.from_preset`, `pip install -e ".[hub]"`); its output, pooled by
  `pool`, is the feature vector. A backbone has no classifier: the classifier-geometry measures
  (NC2 of the weights, NC3, NC4, ε-gap) are NaN and there is no decomposition.

Pooling: a conv map (b, H, W, c) is measured flattened (`flatten`, p = H·W·c, as a run measures
it) or globally average-pooled (`avg`, p = c, as the layer-wise NC papers do); measure.json names
the pooling of every layer.

Example:

```python
from sqloss_nc.measure import measure
result = measure("outputs/quickstart/seed=0/model.keras", None, "measured/quickstart")
result.nc["nc1"], [r for r in result.layers if r["measure"] == "ncc_accuracy"]
```
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import platform
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import schema
from .config import Config, load_config
from .errors import UserError, first_words

POOLS = ("flatten", "avg")
SPLITS = ("train", "test")
# How the images become the network's inputs (`--preprocess`); `auto` picks one (see `_preprocessing`).
PREPROCESS = {
    "run": "this project's (as sqnc run trains): pixels/255 standardized with data.name's channel mean/std, then data.input_norm",
    "raw": "pixel values 0..255, nothing else (a network that rescales its inputs itself)",
    "scaled": "pixel values / 255, in 0..1, nothing else",
    "hub": "the keras-hub preset's own image converter (its resizing, scale and offset) on the 0..255 pixels",
}
# keras-hub's remote preset handles (a local preset is a folder holding config.json).
_PRESET_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")


class MeasureError(UserError):
    """A user mistake in what `sqnc measure` was asked to measure: one line, raised before
    anything is written.

    Example: `measure("missing.keras", "data.yaml", "out")` raises
    `MeasureError("MODEL: missing.keras does not exist")`.
    """


@dataclass
class MeasureResult:
    """What `measure` computed and wrote.

    Attributes:
        out: the output folder.
        nc: the `nc.csv` row (without `epoch`).
        layers: the `nc_layers.csv` rows (without `epoch`).
        info: the content of `measure.json`.
        files: the files written, by name.

    Example:

    ```python
    r = measure("model.keras", "data.yaml", "measured")
    r.nc["nc1"], r.info["layers"][0]["pool"], r.files  # (..., 'flatten', ['nc.csv', ...])
    ```
    """

    out: Path
    nc: dict
    layers: list[dict]
    info: dict
    files: list[str] = field(default_factory=list)


@dataclass
class _Model:
    """A loaded network and where it came from."""

    network: Any
    kind: str  # "sqnc", "keras" or "keras-hub"
    source: str  # as given
    sha256: str | None  # of the file, or over a preset folder's files; None for a remote preset
    path: str | None = None  # the absolute path of a file or a local preset


@dataclass
class _Plan:
    """Which tensors are read, under which names, and what the engine gets besides."""

    names: list[str]  # representation names in the engine's order
    tensors: list  # the KerasTensors, same order
    features: str
    classifier: Any  # the Dense layer, or None
    scalar_head: bool
    pools: dict[str, str]  # name -> "flatten" | "avg" | "none"
    dims: dict[str, int]  # name -> p after pooling
    shapes: dict[str, list]  # name -> per-sample shape before pooling
    next_kernels: dict[str, Any]  # name -> the next weight layer's kernel (numpy) or None


# ----------------------------------------------------------------------------- the model


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_folder(path: Path) -> str:
    """One hash over a folder's files (relative names and contents, in sorted order)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        h.update(_sha256_file(f).encode())
    return h.hexdigest()


def _is_preset_name(text: str) -> bool:
    """A keras-hub preset handle or built-in name rather than a file path."""
    if text.startswith(_PRESET_SCHEMES):
        return True
    return "/" not in text and "\\" not in text and not text.endswith((".keras", ".h5")) and not Path(text).exists()


def _import_keras_hub(preset: str):
    try:
        import keras_hub
    except ImportError:
        raise MeasureError(f'MODEL: {preset} is no file or folder; as a keras-hub preset it needs keras-hub: pip install -e ".[hub]"') from None
    return keras_hub


def load_network(model: str | Path) -> _Model:
    """Load MODEL: a `.keras` file (this tool's or any Keras 3 model) or a keras-hub preset.

    Args:
        model: a `.keras` file, a local keras-hub preset folder, or a keras-hub preset name or
            handle (`resnet_18_imagenet`, `kaggle://keras/resnetv1/keras/resnet_18_imagenet`).

    Raises:
        MeasureError: the file is missing or not a Keras model, or the preset cannot be loaded.
    """
    text = str(model)
    path = _run_model(Path(text).expanduser())
    if path.is_dir():
        if not (path / "config.json").exists():
            raise MeasureError(f"MODEL: {path} is a folder but not a keras-hub preset (no config.json); give a .keras file or a preset")
        return _load_preset(str(path), _sha256_folder(path), str(path.resolve()))
    if path.is_file():
        return _load_keras_file(path)
    if _is_preset_name(text):
        return _load_preset(text, None, None)
    raise MeasureError(f"MODEL: {path} does not exist")


def _run_model(path: Path) -> Path:
    """A run folder of `sqnc run` (its model.keras beside its config.yaml) stands for its model."""
    if path.is_dir() and not (path / "config.json").exists() and (path / "model.keras").is_file():
        return path / "model.keras"
    return path


def _load_keras_file(path: Path) -> _Model:
    import sqloss_nc

    loader = getattr(sqloss_nc, "load_model", None)
    if loader is None:  # an older package layout: importing the Keras modules registers the objects
        import keras

        from . import initializers, normalization, optimizers, training  # noqa: F401

        loader = keras.saving.load_model
    if path.suffix not in (".keras", ".h5"):
        raise MeasureError(f"MODEL: {path} is not a Keras model file (.keras); a keras-hub preset is a folder")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        # Keras' own message for this case is "File not found", which sends the user looking for a path.
        raise MeasureError(f"MODEL: {path} is not a Keras 3 .keras file (a .keras file is a zip archive; this one is not: truncated, or saved in another format?)")
    try:
        network = loader(str(path), compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for an unreadable file
        raise MeasureError(f"MODEL: cannot load {path} ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})") from None
    names = {layer.name for layer in getattr(network, "layers", [])}
    kind = "sqnc" if {"features", "classifier"} <= names else "keras"
    return _Model(network, kind, str(path), _sha256_file(path), str(path.resolve()))


def _load_preset(preset: str, sha256: str | None, path: str | None) -> _Model:
    keras_hub = _import_keras_hub(preset)
    try:
        network = keras_hub.models.Backbone.from_preset(preset)
    except Exception as err:  # noqa: BLE001 - missing preset, offline, not a backbone, ...
        hint = "" if path else "; offline, or a private handle? download the preset once and give its local folder (keras_hub.models.Backbone.from_preset(...).save_to_preset(DIR))"
        raise MeasureError(f"MODEL: cannot load keras-hub preset {preset!r} ({type(err).__name__}: {first_words(err)}){hint}") from None
    return _Model(network, "keras-hub", preset, sha256, path)



# ----------------------------------------------------------------------------- layers


def _layer(network, name: str, option: str):
    try:
        return network.get_layer(name)
    except ValueError:
        names = [layer.name for layer in network.layers]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; the model's layers: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}"
        raise MeasureError(f"{option}: the model has no layer {name!r}{hint}") from None


def _output(layer, option: str):
    try:
        return layer.output
    except (AttributeError, ValueError):  # a layer called several times has no single output
        raise MeasureError(f"{option}: layer {layer.name!r} has no single output (is it shared?); pick another layer") from None


def _is_dense(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Dense) or (
        getattr(layer, "kernel", None) is not None and len(getattr(layer.kernel, "shape", ())) == 2
    )


def _built_by(cfg: Config, network, num_classes: int) -> bool:
    """Whether `cfg.model` builds this network (same layer types, same weight shapes in order):
    only then does the config's training section describe how it was trained."""
    from .models import build_network

    input_shape = tuple(network.inputs[0].shape[1:])
    try:
        twin = build_network(cfg.model, input_shape, 1 if cfg.model.output == "scalar" else num_classes, seed=cfg.seed)
    except Exception:  # noqa: BLE001 - a config that cannot build a net of this input describes another net
        return False

    def signature(net):
        return [type(layer).__name__ for layer in net.layers], [tuple(w.shape) for w in net.weights]

    return signature(twin) == signature(network)


def _producer(network, tensor) -> str:
    """The name of the layer that outputs `tensor` (the features' name in the output files)."""
    history = getattr(tensor, "_keras_history", None)
    if history is not None:
        return history[0].name
    for layer in network.layers:  # pragma: no cover - every functional KerasTensor has a history
        if getattr(layer, "output", None) is tensor:
            return layer.name
    return "features"


def _plan(m: _Model, layers: Sequence[str] | None, feature_layer: str | None, classifier_layer: str | None, pool: str, num_classes: int) -> _Plan:
    """Resolve the layer names against the network (every mistake a `MeasureError`)."""
    from .models import probed_layers, weight_layers
    from .normalization import effective_kernel

    net = m.network
    if not getattr(net, "inputs", None) or not hasattr(net, "layers"):
        raise MeasureError("MODEL: not a functional or sequential Keras model (a subclassed model has no layer graph to probe)")
    if len(net.inputs) != 1:
        raise MeasureError(f"MODEL: takes {len(net.inputs)} inputs; sqnc measure feeds one input (images or vectors)")
    # The classifier: named, or the last Dense layer (none for a keras-hub backbone).
    if classifier_layer is not None:
        classifier = _layer(net, classifier_layer, "--classifier-layer")
        if not _is_dense(classifier):
            raise MeasureError(f"--classifier-layer: {classifier_layer!r} is a {type(classifier).__name__}, not a Dense layer")
    elif m.kind == "sqnc":
        classifier = net.get_layer("classifier")
    elif m.kind == "keras":
        dense = [layer for layer in net.layers if _is_dense(layer)]
        if not dense:
            raise MeasureError("MODEL: has no Dense layer to serve as the classifier; name the features with --feature-layer (and measure without a head) or give --classifier-layer")
        classifier = dense[-1]
    else:
        classifier = None
    # The features: named, or what the classifier reads, or (a backbone) the network's output.
    if feature_layer is not None:
        feat_tensor = _output(_layer(net, feature_layer, "--feature-layer"), "--feature-layer")
        feat_name = feature_layer
    elif m.kind == "sqnc":
        feat_name, feat_tensor = "features", net.get_layer("features").output
    elif classifier is not None:
        feat_tensor = classifier.input
        feat_name = _producer(net, feat_tensor)
    else:
        if len(net.outputs) != 1:
            raise MeasureError(f"MODEL: has {len(net.outputs)} outputs; name the features with --feature-layer")
        feat_tensor = net.outputs[0]
        feat_name = _producer(net, feat_tensor)
    scalar = False
    if classifier is not None:
        width = int(classifier.kernel.shape[-1])
        # num_classes None: the head decides (CollapseMonitor checks the labels against it).
        scalar = width == 1 and num_classes in (2, None)
        if num_classes is not None and width != num_classes and not scalar:
            raise MeasureError(
                f"data: the classifier {classifier.name!r} has {width} outputs but the data have {num_classes} classes "
                f"(labels 0..{num_classes - 1}); set data.classes to the model's {width} classes"
            )
    # The probed layers: named, or (a sqnc model) the run's; then the features and the outputs.
    hidden = list(layers) if layers is not None else (probed_layers(net) if m.kind == "sqnc" else [])
    cls_name = classifier.name if classifier is not None else None
    names, tensors = [], []
    # The network's order, not the typed one: nc_layers.csv and the layer-wise figure read by depth.
    order = [layer.name for layer in net.layers]
    for name in sorted(dict.fromkeys(hidden), key=lambda n: order.index(_layer(net, n, "--layers").name)):
        if name in (feat_name, cls_name):
            continue
        names.append(name)
        tensors.append(_output(_layer(net, name, "--layers"), "--layers"))
    names.append(feat_name)
    tensors.append(feat_tensor)
    if classifier is not None:
        names.append(cls_name)
        tensors.append(_output(classifier, "--classifier-layer"))
    # Alignment: the first weight layer after each hidden representation (as a run's tracker).
    weighted = {layer.name for layer in weight_layers(net)}
    next_kernels = {}
    for name in names:
        if name == cls_name:
            continue
        producer = name if name in order else _producer(net, tensors[names.index(name)])
        later = net.layers[order.index(producer) + 1 :] if producer in order else []
        nxt = next((layer for layer in later if layer.name in weighted), None)
        next_kernels[name] = None if nxt is None else np.asarray(effective_kernel(nxt))
    return _Plan(names, tensors, feat_name, classifier, scalar, {}, {}, {}, next_kernels)


def _set_shapes(plan: _Plan, probe, x_shape: tuple, pool: str) -> None:
    """Each representation's per-sample shape at the data's input shape (a backbone built for
    any image size has no spatial size of its own), its pooling and its p; the classifier must
    read exactly the features' p values."""
    import keras

    specs = probe.compute_output_spec(keras.KerasTensor((None, *x_shape)))
    specs = specs if isinstance(specs, (list, tuple)) else [specs]
    plan.shapes = {n: [int(d) for d in s.shape[1:]] for n, s in zip(plan.names, specs)}
    plan.pools = {n: (pool if len(s) == 3 else "flatten" if len(s) > 1 else "none") for n, s in plan.shapes.items()}
    plan.dims = {n: (s[-1] if plan.pools[n] == "avg" else int(np.prod(s))) for n, s in plan.shapes.items()}
    clf = plan.classifier
    if clf is not None and int(clf.kernel.shape[0]) != plan.dims[plan.features]:
        raise MeasureError(
            f"--feature-layer: {plan.features!r} gives {plan.dims[plan.features]} values ({plan.pools[plan.features]}), "
            f"the classifier {clf.name!r} reads {int(clf.kernel.shape[0])}; name the layer whose output the classifier reads (or change --pool)"
        )


# ----------------------------------------------------------------------------- data and config


def _resolve_config(model: str | Path, data_config, overrides: Sequence[str]) -> tuple[Config, str | None]:
    """The config whose `data:` section says what to measure on (and, for a model of this tool,
    its training objective), and where it came from."""
    if isinstance(data_config, Config):
        return data_config, None
    if data_config is None:
        model_file = _run_model(Path(str(model)).expanduser())
        beside = model_file.parent / "config.yaml"
        if not model_file.is_file() or not beside.exists():
            raise MeasureError("CONFIG: give a config whose data: section names the data (no config.yaml beside the model)")
        data_config = beside
    cfg = load_config(data_config, list(overrides))
    if cfg.sweep:
        raise MeasureError(f"CONFIG: {data_config} has a sweep: block; sqnc measure takes one data section (pick one point with --set)")
    return cfg, str(data_config)


def _preprocessing(m: _Model, cfg: Config, preprocess: str) -> dict:
    """Which preprocessing turns the data's images into the network's inputs, and why.

    `auto` (the default): `hub` for a keras-hub preset (the inputs its weights were trained on),
    `run` otherwise: a model of `sqnc run` was trained on exactly those inputs, and for any other
    Keras model it is the config's own data pipeline; the console line names the alternatives,
    since only the user knows what such a model was trained on. A synthetic source has no pixels:
    its generated inputs are used as they are (`run`)."""
    images = cfg.data.source != "synthetic"
    if preprocess == "auto":
        mode = "hub" if m.kind == "keras-hub" and images else "run"
        why = {"sqnc": "auto: the run's own", "keras-hub": "auto: the preset's own", "keras": "auto: the config's data pipeline"}[m.kind]
        if not images:
            why = "auto: synthetic inputs have no pixels"
    else:
        mode, why = preprocess, "--preprocess"
    if mode in ("raw", "scaled", "hub") and not images:
        raise MeasureError(f"--preprocess {mode}: data.source 'synthetic' has no pixels; use --preprocess run")
    if mode == "hub" and m.kind != "keras-hub":
        raise MeasureError("--preprocess hub: MODEL is not a keras-hub preset; use run, raw or scaled")
    note = ""
    if mode == "run" and m.kind == "keras" and images:
        note = "if MODEL was trained on other inputs, say so with --preprocess raw (0..255) or scaled (x/255)"
    return {"mode": mode, "chosen": why, "description": PREPROCESS[mode], "note": note}


def _inputs(m: _Model, cfg: Config, prep: dict, data_dir: str | None):
    """The dataset as the network's inputs, and the keras-hub converter to put in front of the
    network (`hub`: it resizes, so it runs batch by batch inside the compiled probe)."""
    from .data import load_dataset, load_pixels

    mode = prep["mode"]
    if mode == "run":
        return load_dataset(cfg, data_dir), None
    data = load_pixels(cfg, data_dir, 1 / 255 if mode == "scaled" else 1.0)
    if mode != "hub":
        return data, None
    keras_hub = _import_keras_hub(m.source)
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(m.path or m.source)
    except Exception as err:  # noqa: BLE001 - a preset without an image converter, offline, ...
        raise MeasureError(
            f"--preprocess hub: the preset {m.source!r} has no image converter ({type(err).__name__}: {first_words(err, 120)}); use raw or scaled"
        ) from None
    return data, converter


def _check_input(network, x_shape: tuple) -> None:
    expected = tuple(network.inputs[0].shape[1:])
    if len(expected) != len(x_shape) or any(e is not None and int(e) != int(a) for e, a in zip(expected, x_shape)):
        raise MeasureError(f"data: the model takes inputs of shape {tuple(expected)}, the data have {tuple(x_shape)}")


def _check_out(out: Path, overwrite: bool) -> None:
    from .experiment import check_writable

    if out.exists() and not out.is_dir():
        raise MeasureError(f"--out: {out} exists and is not a folder")
    if any((out / name).exists() for name in (schema.METRICS_CSV, schema.STATUS_JSON)):
        # Never, not even with --overwrite: the run's own nc.csv etc. would be replaced.
        raise MeasureError(f"--out: {out} is a run directory of sqnc run; measure into another folder")
    held = [name for name in schema.MEASURE_FILES if (out / name).exists()]
    if held and not overwrite:
        raise MeasureError(f"--out: {out} already holds a measurement ({held[0]}); choose another --out or pass --overwrite")
    check_writable(out)


# ----------------------------------------------------------------------------- feeding


class _Feeder:
    """Fresh iterators of (representations, labels, scores) batches over one split, with a
    progress bar that grows by one pass each time the engine starts a pass."""

    def __init__(self, run, plan: _Plan, x, y, batch_size: int, progress=None, label: str = ""):
        self.run, self.plan, self.x, self.y, self.batch_size = run, plan, x, y, batch_size
        self.progress, self.label, self.task, self.passes, self.total = progress, label, None, 0, 0

    def _pooled(self, reps) -> list:
        from .engine import pool_representation

        out = []
        for name, r in zip(self.plan.names, reps):
            mode = self.plan.pools[name]
            out.append(pool_representation(r, mode) if mode in POOLS and r.ndim == 4 else r.reshape(len(r), -1))
        return out

    def __call__(self) -> Iterable:
        self.passes += 1
        n_batches = -(-len(self.x) // self.batch_size)
        self.total += n_batches
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task(self.label, total=self.total)
            self.progress.update(self.task, total=self.total, description=f"{self.label} pass {self.passes}")
        return self._iterate()

    def _inputs(self) -> Iterable:
        """The split's (x, y) batches (`monitor` reads them from a `fit` data source instead)."""
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]

    def _iterate(self):
        has_head = self.plan.classifier is not None
        for xb, yb in self._inputs():
            outs = self.run(xb)
            scores = None
            if has_head:
                f = np.asarray(outs[-1])
                scores = np.concatenate([-f, f], axis=1) if self.plan.scalar_head else f
            yield self._pooled(outs), yb[: len(outs[0])], scores
            if self.progress is not None:
                self.progress.advance(self.task)


# ----------------------------------------------------------------------------- writing


def _csv_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    from .rundir import _csv_value

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(columns))
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise KeyError(f"unknown columns {sorted(unknown)}")
        writer.writerow([_csv_value(row.get(c)) for c in columns])
    return buf.getvalue()


def _versions(kind: str) -> dict:
    import keras

    from . import __version__, backend

    out = {"sqloss_nc": __version__, "keras": keras.__version__, "backend": backend.NAME, **backend.versions(), "numpy": np.__version__}
    if kind == "keras-hub":
        import keras_hub

        out["keras_hub"] = keras_hub.__version__
    out["python"] = platform.python_version()
    return out


# ----------------------------------------------------------------------------- the command


def _objective(m: _Model, plan: _Plan, cfg: Config) -> dict:
    """The loss the MSE decomposition describes: the run's own for a model of this tool, the
    plain one-hot square loss without weight decay otherwise."""
    clf = plan.classifier
    head = clf is not None and not plan.scalar_head
    if m.kind != "sqnc":
        source = "plain square loss, no weight decay" if head else "none (no Dense head)"
        return {"decomposition": head, "weight_decay": 0.0, "decay_bias": False, "loss_k": 1.0, "loss_M": 1.0, "source": source}
    from .normalization import decayed_variables

    decayed = decayed_variables(m.network, cfg.model.normalization)
    bias = getattr(clf, "bias", None)
    rescaled = cfg.loss.kind == "square_rescaled"
    return {
        "decomposition": head and bool(cfg.track.mse_decomposition),
        "weight_decay": float(cfg.optim.weight_decay) if any(v is clf.kernel for v in decayed) else 0.0,
        "decay_bias": bias is not None and any(v is bias for v in decayed),
        "loss_k": float(cfg.loss.k) if rescaled else 1.0,
        "loss_M": float(cfg.loss.M) if rescaled else 1.0,
        "source": "the config's optim.weight_decay and loss",
    }


def measure(
    model: str | Path,
    data_config: str | Path | Config | None,
    out: str | Path,
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
    """Measure neural collapse of a trained network on a dataset, without training it.

    Every user mistake raises `MeasureError` (or another `UserError`: config, data) before
    anything is written; the files are written only once everything is computed.

    Args:
        model: a `.keras` file (this tool's or any Keras 3 functional/sequential model), a local
            keras-hub preset folder, or a keras-hub preset name or handle.
        data_config: a YAML config (or `Config`) whose `data:` section gives the data, as for
            `sqnc run`; None: the `config.yaml` beside the model (a run directory's).
        out: the output folder.
        layers: extra representations to measure layer-wise, by layer name (default: none for a
            foreign model, the run's probed layers for a model of this tool).
        feature_layer: the layer whose output is the feature vector h (default: the input of the
            classifier; a backbone's output).
        classifier_layer: the Dense head acting on h (default: the last Dense layer).
        pool: how a conv map (b, H, W, c) becomes a vector: `flatten` or `avg` (global average).
        splits: `train` (required: it gives the class means) and optionally `test` (NCC accuracy
            by the train means and the full NC metrics of the test split, `test_*` columns).
        batch_size: inference batch size (default `compute.inference_batch`); results do not
            depend on it beyond float32 rounding of the network.
        data_dir: overrides `data.path` (the CLI's `--data-dir`).
        overrides: `key=value` config overrides (the CLI's `--set`).
        overwrite: replace an earlier measurement in `out`.
        progress: show a rich progress bar over the batches.
        console: the rich console for the bar and the preprocessing line.
        preprocess: how the images become the network's inputs: `run` (this project's:
            standardized, then `data.input_norm`), `raw` (0..255), `scaled` (x/255), `hub` (the
            keras-hub preset's image converter) or `auto` (`hub` for a keras-hub preset, `run`
            otherwise; see `_preprocessing`). Printed on `console`, kept in measure.json.

    Returns:
        a `MeasureResult`.

    Example:

    ```python
    r = measure("model.keras", "configs/quickstart.yaml", "measured", layers=["relu1"], pool="avg")
    r.nc["nc1"], r.info["layers"]
    ```
    """
    t0 = time.perf_counter()
    if pool not in POOLS:
        raise MeasureError(f"--pool: {pool!r} is not one of {', '.join(POOLS)}")
    splits = list(dict.fromkeys(splits))
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise MeasureError(f"--split: unknown split {bad[0]!r}; known: train, test")
    if "train" not in splits:
        raise MeasureError("--split: must include train (the class means come from the train split)")
    if batch_size is not None and batch_size <= 0:
        raise MeasureError(f"--batch-size: must be positive, got {batch_size}")
    if preprocess != "auto" and preprocess not in PREPROCESS:
        raise MeasureError(f"--preprocess: {preprocess!r} is not one of auto, {', '.join(PREPROCESS)}")
    out = Path(out)
    if not _is_preset_name(str(model)) and not Path(str(model)).expanduser().exists():
        raise MeasureError(f"MODEL: {model} does not exist")
    cfg, config_source = _resolve_config(model, data_config, overrides)
    clock = {"start": time.perf_counter()}
    m = load_network(model)
    clock["model"] = time.perf_counter()
    num_classes = len(cfg.data.classes)
    if m.kind == "sqnc" and not _built_by(cfg, m.network, num_classes):
        m.kind = "keras"  # named like a network of `sqnc run`, but not the one this config describes
    plan = _plan(m, layers, feature_layer, classifier_layer, pool, num_classes)
    prep = _preprocessing(m, cfg, preprocess)
    data, converter = _inputs(m, cfg, prep, data_dir)  # labels 0..C-1 in the order of data.classes
    clock["data"] = time.perf_counter()
    if console is not None:
        note = f"; {prep['note']}" if prep["note"] else ""
        console.print(f"preprocessing: {prep['mode']} ({prep['chosen']}): {prep['description']}{note}", highlight=False, soft_wrap=True)
    net_shape = data.x_train.shape[1:] if converter is None else tuple(np.asarray(converter(data.x_train[:1])).shape[1:])
    _check_input(m.network, net_shape)
    batch_size = int(batch_size or cfg.compute.inference_batch)
    objective = _objective(m, plan, cfg)

    import keras

    from . import backend

    probe = keras.Model(m.network.inputs, plan.tensors)
    if converter is not None:
        pixels = keras.Input(data.x_train.shape[1:], name="pixels")
        probe = keras.Model(pixels, probe(converter(pixels)))
    _set_shapes(plan, probe, data.x_train.shape[1:], pool)
    _check_out(out, overwrite)
    run = backend.compile_inference(probe, jit_compile=cfg.compute.jit_compile)
    from .notices import runtime_notices

    with runtime_notices() as notes:  # the engine's NaN notices: one line each, kept in measure.json
        result = _collapse(run, plan, data, "test" in splits, batch_size, objective, num_classes, progress, console)
    for note in notes if console is not None else ():
        console.print(f"warning: {note}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    clock["measure"] = time.perf_counter()
    nc = dict(result.nc)
    _add_theory(nc, m, cfg, objective, num_classes)
    spectra = _spectra(m.network, cfg.track.rank_tol)
    clf = plan.classifier
    info = {
        "model": {"source": m.source, "path": m.path, "kind": m.kind, "sha256": m.sha256, "class": type(m.network).__name__},
        "config": config_source,
        "overrides": list(overrides),
        "features": plan.features,
        "classifier": clf.name if clf is not None else None,
        "scalar_head": plan.scalar_head,
        "layers": [{"name": n, "shape": plan.shapes[n], "pool": plan.pools[n], "dim": plan.dims[n]} for n in plan.names],
        "objective": objective,
        "data": cfg.data.model_dump(mode="json"),
        "data_dir": data_dir,
        "preprocess": {k: prep[k] for k in ("mode", "chosen", "description")},
        "warnings": notes,
        "class_names": list(data.class_names),
        "splits": {s: int(len(data.y_train if s == "train" else data.y_test)) for s in splits},
        "batch_size": batch_size,
        "rank_tol": cfg.track.rank_tol,
        "epoch": 0,
        "seconds": round(time.perf_counter() - t0, 3),
        # where they went: loading the model (Keras' import included), the data, the passes + engine
        "seconds_by_step": {
            "load_model": round(clock["model"] - clock["start"], 3),
            "load_data": round(clock["data"] - clock["model"], 3),
            "measure": round(clock["measure"] - clock["data"], 3),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(m.kind),
    }
    files = _write(out, nc, result, spectra, info, "test" in splits)
    return MeasureResult(out, nc, list(result.layers), info, files)


def _collapse(run, plan: _Plan, data, with_test: bool, batch_size: int, objective: dict, num_classes: int, progress: bool, console):
    """The engine fed from the compiled probe: two passes over train, one or two over test."""
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    train = _Feeder(run, plan, data.x_train, data.y_train, batch_size, bar, "train")
    test = _Feeder(run, plan, data.x_test, data.y_test, batch_size, bar, "test") if with_test else None
    if bar is not None:
        bar.start()
    try:
        return plan_collapse(train, test, plan, objective, num_classes)
    finally:
        if bar is not None:
            bar.stop()


def plan_collapse(train, test, plan: _Plan, objective: dict, num_classes: int):
    """The engine on a model's batch sources (`_Feeder`s: `measure`'s arrays, `monitor`'s `fit`
    data) with the plan's classifier and the `_objective`; `test` None: the train split only."""
    clf = plan.classifier
    w = np.asarray(clf.kernel).T if clf is not None and not plan.scalar_head else None
    b = None if w is None or getattr(clf, "bias", None) is None else np.asarray(clf.bias)
    return engine_collapse(train, test, num_classes, plan.names, plan.features, w, b, objective, plan.next_kernels)


def engine_collapse(train, test, num_classes: int, names: Sequence[str], features: str, w, b, objective: dict, next_kernels: dict):
    """`engine.measure_collapse` with a head (w (C, p) rows, bias b, or None) and an `_objective`
    dict: the one call a model (`plan_collapse`) and a features archive (`archive`) both make."""
    from .engine import measure_collapse

    return measure_collapse(
        train,
        num_classes=num_classes,
        layers=list(names),
        test=test,
        features=features,
        classifier_weights=w,
        classifier_bias=b,
        weight_decay=objective["weight_decay"],
        decay_bias=objective["decay_bias"],
        loss_k=objective["loss_k"],
        loss_M=objective["loss_M"],
        decomposition=objective["decomposition"] and w is not None,
        next_kernels=next_kernels,
        nc_test=test is not None,
    )


def _spectra(network, rank_tol: float) -> list[dict]:
    """spectra.csv rows (epoch 0) of every weight tensor as the layer computes with it, as a run
    writes them (a NaN row for a non-finite tensor: a diverged net has no spectrum)."""
    from .engine import spectra_rows
    from .models import weight_layers
    from .normalization import effective_kernel

    kernels = {layer.name: np.asarray(effective_kernel(layer)) for layer in weight_layers(network)}
    finite = {k: v for k, v in kernels.items() if np.isfinite(v).all()}
    return spectra_rows(0, finite, rank_tol) + [{"epoch": 0, "layer": k, "index": 0} for k in kernels if k not in finite]


def _add_theory(nc: dict, m: _Model, cfg: Config, objective: dict, num_classes: int) -> None:
    """`eps_gap` relative to the target M and Eq. 34's prediction, as a run writes them, for a
    model of this tool trained with a square loss; NaN otherwise (no known training loss)."""
    from .theory import predicted_w_norm_sq

    for prefix in ("", "test_"):
        key = f"{prefix}eps_gap"
        if key not in nc:
            continue
        target = objective["loss_M"]
        if m.kind == "sqnc" and target != 1.0:
            nc[key] = 1.0 - (1.0 - nc[key]) / target
        known = m.kind == "sqnc" and cfg.loss.kind in ("square", "square_rescaled")
        nc[f"{prefix}w_norm_sq_eq34"] = (
            predicted_w_norm_sq(nc[key], cfg.optim.weight_decay, num_classes, k=objective["loss_k"], M=target) if known else float("nan")
        )


def _write(out: Path, nc: dict, result, spectra: list[dict], info: dict, nc_test: bool) -> list[str]:
    """Write the four CSVs (epoch 0) and measure.json, each atomically."""
    from .rundir import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    columns = schema.nc_columns(nc_test)
    row = {k: v for k, v in {"epoch": 0, **nc}.items() if k in columns}
    texts = {
        schema.NC_CSV: _csv_text(columns, [row]),
        schema.NC_LAYERS_CSV: _csv_text(schema.NC_LAYERS, ({"epoch": 0, **r} for r in result.layers)),
        schema.CLASS_GRAM_CSV: _csv_text(schema.CLASS_GRAM, ({"epoch": 0, **r} for r in result.gram)),
        schema.SPECTRA_CSV: _csv_text(schema.SPECTRA, spectra),
    }
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    atomic_write_text(out / schema.MEASURE_JSON, json.dumps(info, indent=2, default=str) + "\n")
    return [*texts, schema.MEASURE_JSON]

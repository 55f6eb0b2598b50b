"""The run configuration: schema, validation, YAML loading, `--set` overrides, sweep expansion.

The dotted key names (`optim.lr`, `model.init_scale`, ...) are an interface shared by YAML
files, `sqnc run --set key=value` and `sweep:` blocks (SPEC §7). Every user mistake surfaces as a
`ConfigError` whose message is one line naming the offending field, so the CLI can print it and
exit 2 before anything is written.

Example:

```python
cfg = load_config("configs/quickstart.yaml", overrides=["optim.epochs=5", "seed=3"])
for run in expand_sweep(cfg):
    print(run.run_id, run.config.optim.lr)
```
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .datasets import DATASETS, DatasetName
from .errors import UserError


class ConfigError(UserError):
    """A user mistake in a config file, an override or a sweep (one line, names the field)."""


class _Strict(BaseModel):
    # Unknown keys are errors (a typo must never silently fall back to a default), and
    # assignments are validated too, so `--set` cannot smuggle in a bad value.
    # inf and NaN are never meaningful settings (an lr of inf would write a whole diverged run),
    # and each field's docstring is its `description`, listed by `sqnc config show`.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, use_attribute_docstrings=True)


class SyntheticConfig(_Strict):
    """A Gaussian mixture in `shape`-shaped inputs: class means ~ N(0, separation²·I/d),
    samples = mean + noise·N(0, I/d). The means depend only on `seed` (not the run seed) so
    that runs with different seeds see the same data."""

    shape: list[int] = Field(default_factory=lambda: [32, 32, 3], min_length=1)
    """Input shape of each sample, e.g. [32, 32, 3] (images) or [12] (vectors)."""
    separation: float = Field(1.0, gt=0)
    """Scale of the class means: mean ~ N(0, separation²·I/d)."""
    noise: float = Field(0.5, ge=0)
    """Within-class noise: sample = mean + noise·N(0, I/d)."""
    seed: int = 0
    """Seed of the class means (not the run seed: every run sees the same data)."""


class DataConfig(_Strict):
    """`data:` (SPEC §2). `name` picks the TFDS dataset for `source: tfds` and the channel
    statistics for `folder` (default cifar10, right for the shared CIFAR-10 folder); the shipped
    `sample` is CIFAR-10. `classes` index the dataset's labels 0..C-1 (C from `datasets.DATASETS`
    for tfds, 10 for sample and synthetic; a folder's C is only known when it is read)."""

    source: Literal["sample", "folder", "tfds", "synthetic"] = "sample"
    """Where the images come from: sample (the shipped CIFAR-10 sample, 300 train + 50 test per
    class), folder (an image folder or .zip: data.path or --data-dir), tfds (TensorFlow Datasets
    data.name), synthetic (a Gaussian mixture)."""
    path: Optional[str] = None
    """The image folder (or .zip) of source folder; TFDS' data_dir for source tfds. --data-dir overrides it."""
    name: DatasetName = "cifar10"
    """Dataset: the TFDS dataset of source tfds, and whose channel mean/std standardize the images."""
    classes: list[int] = Field(default_factory=lambda: [1, 2])
    """Label indices 0..C-1 to train on, relabelled 0..K-1 in this order (CIFAR-10: 1 = automobile, 2 = bird)."""
    train_per_class: Optional[int] = Field(5000, gt=0)
    """Training images per class (the first ones); null = all. Default: all for the sample, 5000 otherwise."""
    test_per_class: Optional[int] = Field(1000, gt=0)
    """Test images per class; null = all. Default: all for the sample, 1000 otherwise."""
    input_norm: Literal["unit", "max", "none"] = "unit"
    """Input scaling after standardization: unit (each image to L2 norm 1), max (all divided by the largest training norm), none."""
    label_noise: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of training labels replaced by a random class (drawn with the run seed)."""
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    """The Gaussian mixture of source synthetic."""

    @model_validator(mode="before")
    @classmethod
    def _sample_counts(cls, data):
        # The shipped sample holds 300 train + 50 test images per class, fewer than the per-class
        # defaults (5000, 1000, CIFAR-10's folder): unset counts mean all of the sample, so an
        # empty config trains instead of failing on its own defaults.
        if isinstance(data, dict) and data.get("source", "sample") == "sample":
            data = {"train_per_class": None, "test_per_class": None, **data}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("source") == "sample" and v != "cifar10":
            raise ValueError(f"the shipped sample is cifar10; {v!r} needs data.source tfds (or folder)")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[int], info: ValidationInfo) -> list[int]:
        if len(v) < 2:
            raise ValueError("need at least 2 classes")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate class in {v}")
        source = info.data.get("source")
        # A folder's class count is only known once it is read (data.py checks it there).
        n = None if source == "folder" else DATASETS[info.data.get("name", "cifar10")].num_classes if source == "tfds" else 10
        bad = [c for c in v if c < 0 or (n is not None and c >= n)]
        if bad:
            raise ValueError(f"class index {bad[0]} out of range 0..{n - 1 if n else 'C-1'}")
        return v


class ModelConfig(_Strict):
    """`model:` (SPEC §3). `widths` are the convnet/mlp hidden widths (ignored by resnet18/vgg11,
    whose stage widths are fixed); `width` multiplies every hidden width of every arch (rounded,
    at least 1); `bias: true` adds the standard biases (see `sqloss_nc/models`)."""

    arch: Literal["convnet", "mlp", "resnet18", "vgg11"] = "convnet"
    """Network: convnet (the paper's), mlp, resnet18, vgg11."""
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    """Hidden widths of the convnet/mlp layers (resnet18 and vgg11 have fixed stage widths)."""
    width: float = Field(1.0, gt=0)
    """Multiplier of every hidden width (rounded, at least 1)."""
    normalization: Literal["none", "batchnorm", "lagrange", "weightnorm"] = "batchnorm"
    """none, batchnorm, lagrange (layers compute with V/||V||, paper Eq. 5), weightnorm (W = g·V/||V||)."""
    bias: bool = False
    """Add the standard biases (default: bias-free layers, as in the paper)."""
    # SPEC §12: `frobenius` (the paper's, §3), `torch` (PyTorch's Conv2d/Linear default,
    # U(±1/√fan_in) for kernels and biases), `torchvision` (kaiming-normal fan-out convs, the
    # classifier as `torch`); see `sqloss_nc/models`. init_scale is the Frobenius norm only:
    # null (filled with 0.01) for frobenius, refused with the others.
    init: Literal["frobenius", "torch", "torchvision"] = "frobenius"
    """Initialization: frobenius (the paper's: each layer's weights scaled to Frobenius norm init_scale), torch, torchvision."""
    init_scale: Optional[float] = Field(None, gt=0)
    """model.init frobenius: the Frobenius norm of each layer's initial weights (default 0.01)."""
    output: Literal["onehot", "scalar"] = "onehot"
    """onehot (one output per class) or scalar (one output, binary, y in {-1, +1})."""
    # lagrange/weightnorm: normalize each layer (Frobenius) or each unit (row), appendix H.2.
    lagrange_mode: Literal["layer", "unit"] = "layer"
    """lagrange/weightnorm: normalize each layer (Frobenius) or each unit (row), appendix H.2."""

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError(f"every width must be positive, got {v}")
        return v

    @field_validator("normalization")
    @classmethod
    def _normalization(cls, v: str, info: ValidationInfo) -> str:
        # Not built for the deep archs: under lagrange rho(0) = init_scale^L (L = 9 or 21
        # kernels) leaves float32's range, and the NC literature these archs serve uses BN or none.
        arch = info.data.get("arch")
        if arch in ("resnet18", "vgg11") and v in ("lagrange", "weightnorm"):
            raise ValueError(f"{v!r} is only for convnet and mlp; {arch} takes 'none' or 'batchnorm'")
        return v

    @field_validator("bias")
    @classmethod
    def _bias(cls, v: bool, info: ValidationInfo) -> bool:
        norm = info.data.get("normalization")
        if v and norm in ("lagrange", "weightnorm"):
            raise ValueError(f"the {norm!r} layers are bias-free; use model.bias=false")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_init_scale(cls, data):
        # The Frobenius default (0.01) is filled in here, not as the field default, so that an
        # init_scale given with another `init` can be told from one nobody set.
        if isinstance(data, dict) and data.get("init", "frobenius") == "frobenius" and data.get("init_scale") is None:
            data = {**data, "init_scale": 0.01}
        return data

    @field_validator("init")
    @classmethod
    def _init(cls, v: str, info: ValidationInfo) -> str:
        norm = info.data.get("normalization")
        if v != "frobenius" and norm in ("lagrange", "weightnorm"):
            raise ValueError(f"{v!r} is for normalization 'none' or 'batchnorm'; the {norm!r} layers start at unit norm (use 'frobenius')")
        return v

    @field_validator("init_scale")
    @classmethod
    def _init_scale(cls, v: Optional[float], info: ValidationInfo) -> Optional[float]:
        init = info.data.get("init", "frobenius")
        if v is not None and init != "frobenius":
            raise ValueError(f"unused with model.init {init!r} (the Frobenius norm applies to model.init 'frobenius' only); remove it")
        return v


class LossConfig(_Strict):
    """`square_rescaled` (SPEC §9, Hui & Belkin): 1/(N·C) Σ_n [k·(f_y − M)² + Σ_{c≠y} f_c²]."""

    kind: Literal["square", "square_rescaled", "cross_entropy", "exponential"] = "square"
    """square, square_rescaled (k·(f_y − M)² + Σ_{c≠y} f_c²), cross_entropy, exponential (scalar output)."""
    finite_step_correction: bool = False
    """Minimize L + (η/4)·||∇L||², gradient descent's finite-step correction (double backprop)."""
    k: float = Field(1.0, gt=0)  # square_rescaled: weight of the true class
    """square_rescaled: weight of the true class."""
    M: float = Field(1.0, gt=0)  # square_rescaled: target of the true class
    """square_rescaled: target of the true class."""


class OptimConfig(_Strict):
    """`optim:` (SPEC §4). `full_batch: true` is full-batch gradient descent: one step per epoch
    on all N training samples (BatchNorm's batch statistics over all N, the epoch's order still
    the (seed, epoch) permutation, which a full-batch step does not depend on beyond float32
    summation order). `batch_size` is then ignored and written as null in the resolved
    config, so a sweep over `optim.full_batch: [false, true]` compares SGD with GD directly
    (`batches.train_batch_size` gives the batch a run uses)."""

    lr: float = Field(0.01, gt=0)
    """Learning rate of SGD with momentum (PyTorch's update)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum."""
    weight_decay: float = Field(0.01, ge=0)
    """λ of the coupled penalty λ/2·Σ||W||² (PyTorch's SGD weight_decay)."""
    batch_size: Optional[int] = Field(128, gt=0)
    """Minibatch size (null with full_batch)."""
    full_batch: bool = False
    """Full-batch gradient descent: one step per epoch on all N training samples."""
    epochs: int = Field(1000, gt=0)
    """Training epochs."""
    schedule: Literal["constant", "step"] = "constant"
    """Learning-rate schedule: constant, or step (lr multiplied by gamma at each milestone)."""
    milestones: list[int] = Field(default_factory=list)
    """schedule step: the epochs at which lr is multiplied by gamma (each <= epochs)."""
    gamma: float = Field(0.1, gt=0)
    """schedule step: the factor."""

    @model_validator(mode="before")
    @classmethod
    def _full_batch(cls, data):
        # Normalized before validation so config.yaml says what ran (no batch size) and a run
        # resumed or compared through the schema sees the same dict.
        if isinstance(data, dict) and data.get("full_batch") is True:
            data = {**data, "batch_size": None}
        return data

    @model_validator(mode="after")
    def _milestones(self) -> "OptimConfig":
        if self.batch_size is None and not self.full_batch:
            raise ValueError("optim.batch_size: null needs optim.full_batch true (full-batch gradient descent)")
        if self.schedule == "step":
            if not self.milestones:
                raise ValueError("schedule 'step' needs optim.milestones (epochs where lr *= gamma)")
            if sorted(set(self.milestones)) != self.milestones or self.milestones[0] <= 0:
                raise ValueError(f"optim.milestones must be increasing positive epochs, got {self.milestones}")
        return self


EpochSpec = Union[Literal["log", "all", "none"], list[int]]


class TrackConfig(_Strict):
    margin_epochs: EpochSpec = "log"
    """Epochs at which margins.csv records every sample's margin: log (about log_points log-spaced), all, none, or a list."""
    nc_epochs: EpochSpec = "log"
    """Epochs at which neural collapse (nc.csv, nc_layers.csv, spectra.csv) is measured: log, all, none, or a list."""
    nc_test: bool = False  # also measure neural collapse on the test set (test_* columns)
    """Also measure neural collapse on the test set (test_* columns)."""
    # Per-step tracking of the first iterations (paper Fig. 5): 0 = off.
    step_margins_until: int = Field(0, ge=0)
    """Record ρ and margins every step_margins_every steps up to this step (Fig. 5); 0 = off."""
    step_margins_every: int = Field(10, gt=0)
    """The step interval of step_margins_until."""
    log_points: int = Field(20, gt=0)
    """How many log-spaced epochs `log` records."""
    # Beyond SPEC §7, on NC epochs (issues 13, 14): the threshold of spectra.csv's `rank` on the
    # singular values of W/||W||_F, and the MSE decomposition columns of nc.csv (the p x p
    # second moment of the features; NaN for a scalar head or when off).
    rank_tol: float = Field(1e-3, ge=0, lt=1)
    """spectra.csv's rank counts singular values of W/||W||_F above this."""
    mse_decomposition: bool = True
    """Write the MSE decomposition columns of nc.csv."""

    @field_validator("margin_epochs", "nc_epochs")
    @classmethod
    def _epochs(cls, v: EpochSpec) -> EpochSpec:
        if isinstance(v, list) and any(e < 0 for e in v):
            raise ValueError(f"epochs must be >= 0, got {v}")
        return v


class ComputeConfig(_Strict):
    """How a run is computed, not what it computes (beyond SPEC §7).

    Every setting here leaves the computed quantities equal up to float32 summation order
    (`tests/test_compute.py` trains both ways and compares every column after 16 steps), so a run
    may be resumed with other values and these keys are not part of a run's identity. Over many
    steps SGD amplifies such rounding differences (as between thread counts), so bit-identical
    reruns need the same settings.

    - `jit_compile`: compile the train step and the tracking passes with XLA. On CPU it measured
      no faster (`sqnc bench --variants xla`); on a GPU it can fuse the small kernels of this net
      (not measured here).
    - `steps_per_execution`: optimizer steps per call of the compiled train function, `1` or
      `epoch` (the whole epoch in one call, no Python between steps), or a divisor of the steps
      per epoch; Keras would otherwise run a whole last group past the epoch's end. Per-step
      tracking (`track.step_margins_until`) needs 1.
    - `inference_batch`: batch size of the inference passes that measure the network (memory
      and speed only).
    - `stack`: train up to K sweep points that differ only in shape-free values (seed, init
      scale, lr, weight decay, label noise, lr schedule) as one `jax.vmap`-ed step over K stacked
      parameter sets (`sqloss_nc/stacking.py`; JAX backend only). `auto` (default): 1 on a CPU,
      where stacking measured slower, and on a GPU the K that fits its free memory (cap 64).
    - `stack_checkpoint_s`: a stack writes its runs' checkpoints and `status.json` (and syncs)
      at most every this many wall seconds, at its last epoch and when interrupted (Ctrl-C,
      SIGTERM), not after every epoch: K checkpoints cost ~2 ms each, as much as a stacked
      epoch of K small runs. Rows are written every epoch; a run killed outright (SIGKILL, power
      cut) resumes from its last checkpoint, its later rows cut, to the same numbers. 0: every
      epoch; at most 900 (the run lock's heartbeat goes with the checkpoint, and another host
      takes a lock over after 30 minutes without one). An unstacked run checkpoints every epoch.
    - `stack_mode`: how a stack maps its step over its K runs (`backend.jax.map_runs`): `vmap`
      (one batched computation), `map` (`lax.map`, a loop over the runs inside one program) or
      `unroll` (the K runs side by side, compile time growing with K). `auto` (default): `vmap`
      for networks without convolutions; with convolutions the stack compiles `vmap` and `map`,
      times two steps of each (alternating) once and keeps the faster (on this 2-core CPU, the
      paper's convnet at K = 60: `map`). The mode chosen is printed with the stack and recorded in each run's
      `status.json` (`stack_mode`). Numbers are equal either way up to float32 rounding.
    """

    jit_compile: bool = False
    """XLA-compile the train step and the tracking passes (TensorFlow; JAX always compiles)."""
    steps_per_execution: Union[Literal["epoch"], int] = 1
    """Optimizer steps per call of the compiled train function: 1, epoch, or a divisor of the epoch's steps."""
    inference_batch: int = Field(1000, gt=0)
    """Batch size of the measuring passes (memory and speed only)."""
    stack: Union[Literal["auto"], int] = "auto"
    """Train up to K stackable sweep points as one vmapped step (JAX); auto = 1 on a CPU."""
    stack_checkpoint_s: float = Field(60.0, ge=0, le=900)
    """Stacked runs: least wall seconds between two checkpoints (and status.json); 0 = every epoch."""
    stack_mode: Literal["auto", "vmap", "map", "unroll"] = "auto"
    """How a stack maps its step over the runs (JAX): vmap, map (lax.map), unroll; auto = timed once per stack."""

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _spe(cls, v):
        # Checked here, before the Union: pydantic would read `true` as 1 and name its Literal
        # branch in the error.
        if v == "epoch" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"must be an integer >= 1 or 'epoch', got {v!r}")

    @field_validator("stack", mode="before")
    @classmethod
    def _stack(cls, v):
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"must be an integer >= 1 or 'auto', got {v!r}")


def resolve_steps_per_execution(compute: ComputeConfig, steps_per_epoch: int) -> int:
    """The integer `steps_per_execution` for an epoch of `steps_per_epoch` steps (`epoch` -> all
    of them); raises `ConfigError` when it does not divide the epoch.

    Example: `resolve_steps_per_execution(ComputeConfig(steps_per_execution="epoch"), 79)` == 79.
    """
    k = compute.steps_per_execution
    if k == "epoch":
        return steps_per_epoch
    if steps_per_epoch % k:
        raise ConfigError(
            f"compute.steps_per_execution: {k} does not divide the {steps_per_epoch} steps of an epoch (use 1, 'epoch', or a divisor)"
        )
    return k


class Config(_Strict):
    """The fully resolved configuration of one run (or of a sweep, before expansion)."""

    name: str = "quickstart"
    """Experiment name: runs are written to OUT/<name>/<run_id>/."""
    seed: int = Field(0, ge=0)
    """Run seed: initial weights, data order, label noise."""
    data: DataConfig = Field(default_factory=DataConfig)
    """What to train on."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """The network."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """The training loss."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """The optimizer and its schedule."""
    track: TrackConfig = Field(default_factory=TrackConfig)
    """What is measured, and when."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    """How the numbers are computed (speed, not results; not part of a run's identity)."""
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    """Dotted key -> list of values, crossed into one run per combination."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError(f"must be a plain folder name, got {v!r}")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> "Config":
        m, loss = self.model, self.loss
        if m.output == "scalar" and len(self.data.classes) != 2:
            raise ValueError("model.output: 'scalar' needs exactly 2 classes")
        if self.track.step_margins_until > 0 and self.compute.steps_per_execution != 1:
            raise ValueError("compute.steps_per_execution: per-step tracking (track.step_margins_until) needs 1")
        if self.track.step_margins_until > 0 and self.compute.stack not in (1, "auto"):
            raise ValueError("compute.stack: per-step tracking (track.step_margins_until) needs unstacked runs (compute.stack 1)")
        if loss.kind == "exponential" and m.output != "scalar":
            raise ValueError("loss.kind: 'exponential' needs model.output 'scalar' (binary)")
        if loss.kind in ("cross_entropy", "square_rescaled") and m.output == "scalar":
            raise ValueError(f"loss.kind: '{loss.kind}' needs model.output 'onehot'")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------- loading


def _format_error(err: ValidationError) -> str:
    """One line naming the first bad field, with a did-you-mean for unknown keys."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        parent = ".".join(str(p) for p in e["loc"][:-1])
        hint = _did_you_mean(str(e["loc"][-1]), parent)
        return f"{loc}: unknown key{hint}"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] not in ("value_error", "missing") and "input" in e and not isinstance(e["input"], dict):
        msg += f" (got {e['input']!r})"
    # Cross-field checks name their fields in the message itself.
    return f"{loc}: {msg}" if loc else msg


# Names other tools give these keys: spelling similarity cannot see that `learning_rate` is `lr`.
KEY_ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "wd": "weight_decay",
    "decay": "weight_decay",
    "l2": "weight_decay",
    "bs": "batch_size",
    "batch": "batch_size",
    "epoch": "epochs",
    "n_epochs": "epochs",
    "num_epochs": "epochs",
    "max_epochs": "epochs",
    "scheduler": "schedule",
    "lr_schedule": "schedule",
    "lr_decay": "gamma",
    "architecture": "arch",
    "norm": "normalization",
    "dataset": "name",
    "loss": "kind",
    "loss_type": "kind",
    "noise": "label_noise",
    "scale": "init_scale",
}


def _section(parent: str) -> type[BaseModel] | None:
    """The schema class of the section `parent` (`""` = the top level), None if it is no section."""
    model: type[BaseModel] = Config
    for part in [p for p in parent.split(".") if p]:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def _did_you_mean(key: str, parent: str) -> str:
    """` (did you mean 'optim.lr'?)` for an unknown `key` in section `parent`: a known alias,
    a similar name in the same section, or the same name in another section; else ""."""
    model = _section(parent)
    if model is None:
        return ""
    names, alias = list(model.model_fields), KEY_ALIASES.get(key.lower())
    close = [alias] if alias in names else difflib.get_close_matches(key, names, n=1)
    if close:
        return f" (did you mean {(parent + '.' if parent else '') + close[0]!r}?)"
    elsewhere = [k for k, _ in _walk(Config) if k.split(".")[-1] in (key, alias)]
    return f" (did you mean {elsewhere[0]!r}?)" if elsewhere else ""


def did_you_mean(key: str) -> str:
    """` (did you mean 'optim.lr'?)` for an unknown dotted `key`, or "".

    Example: `did_you_mean("optim.learning_rate")` is `" (did you mean 'optim.lr'?)"`.
    """
    parent, _, last = key.rpartition(".")
    return _did_you_mean(last, parent)


def _walk(model: type[BaseModel], prefix: str = ""):
    """(dotted key, pydantic field) of every key of `model`, sections before their keys."""
    for name, field in model.model_fields.items():
        yield prefix + name, field
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _walk(ann, f"{prefix}{name}.")


def _type_text(annotation: Any) -> str:
    """`sample | folder | tfds | synthetic`, `int or null`, `list[int]`: a key's type, readable."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is Union:
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and not args:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@dataclass(frozen=True)
class KeyInfo:
    """One config key as `sqnc config show` lists it.

    Args:
        key: the dotted name (`optim.lr`).
        default: its default in an empty config (resolved: the sample's counts are null), as YAML text.
        type: what values it takes (`float`, `constant | step`, `int or null`, `section`).
        description: what it means (the field's docstring in this module).
    """

    key: str
    default: str
    type: str
    description: str


def config_keys() -> list[KeyInfo]:
    """Every config key with its default, type and meaning, in schema order.

    Example: `[k for k in config_keys() if k.key == "optim.lr"][0].default` is `'0.01'`.
    """
    defaults = Config().to_dict()
    out = []
    for key, field in _walk(Config):
        value = get_dotted(defaults, key)
        section = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        default = "" if section else yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()
        out.append(KeyInfo(key, default, _type_text(field.annotation), " ".join((field.description or "").split())))
    return out


def config_warnings(config: Config) -> list[str]:
    """Settings that are valid but almost surely not what was meant, one line each (the run goes
    on; `sqnc run` prints them once and each run's `status.json` keeps them under `warnings`).

    Example: 8 epochs with `optim.milestones: [30, 45]` warn that the learning rate never decays.
    """
    o, out = config.optim, []
    late = [m for m in o.milestones if m >= o.epochs]
    if o.schedule == "step" and late:
        # Milestone m multiplies the lr from epoch m + 1 on: m >= epochs never takes effect.
        effect = "never decays" if len(late) == len(o.milestones) else f"decays only at {[m for m in o.milestones if m < o.epochs]}"
        out.append(f"optim.milestones: {late} at or beyond optim.epochs {o.epochs}: the learning rate {effect}")
    return out


def validate(raw: dict) -> Config:
    """Validate a nested dict into a `Config`, raising a one-line `ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping: YAML itself keeps the last
    value without a word, so a config with two `lr:` lines would train with one of them silently."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges are YAML's way of overriding on purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first != line:
                raise _DuplicateKey(f"line {line}: key {key!r} is given twice (first on line {first})")
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(f"config: {path} is not a UTF-8 text file (byte {err.start} is 0x{err.object[err.start]:02x})") from None
    except _DuplicateKey as err:
        raise ConfigError(f"config: {path} {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config: YAML syntax error in {path}{where}: {problem}") from None
    return raw if raw is not None else {}


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set `a.b.c = value` in a nested dict, creating intermediate mappings."""
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(raw: dict, key: str) -> Any:
    node: Any = raw
    for p in key.split("."):
        node = node[p]
    return node


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (`optim.lr=1e-3`, `data.classes=[3,5]`)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return key, value
    if isinstance(parsed, str):
        # YAML 1.1 reads `1e-3` as a string; on the command line it is meant as a number.
        try:
            return key, float(parsed)
        except ValueError:
            pass
    return key, parsed


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None), apply `key=value` overrides,
    validate. Raises `ConfigError` with a one-line message on any user mistake."""
    raw = read_yaml(path) if path is not None else {}
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    return validate(raw)


# ----------------------------------------------------------------------------- sweeps

# Short, readable names for the run id; other keys use their last dotted component.
SHORT_NAMES = {
    "model.init_scale": "init",
    "optim.weight_decay": "wd",
    "data.label_noise": "noise",
    "optim.lr": "lr",
    "model.normalization": "norm",
    "loss.kind": "loss",
}


@dataclass(frozen=True)
class RunSpec:
    """One run of a (possibly swept) experiment: its id and fully resolved config."""

    run_id: str
    config: Config


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt(v) for v in value)
    return str(value)


def run_id_for(config: Config, keys: list[str]) -> str:
    """`init=0.01_wd=0.01_seed=0`: the swept keys (plus the seed, always) in sweep order."""
    raw = config.to_dict()
    keys = [k for k in keys if k != "seed"] + ["seed"]
    parts = [f"{SHORT_NAMES.get(k, k.split('.')[-1])}={_fmt(get_dotted(raw, k))}" for k in keys]
    return "_".join(parts).replace("/", "-")


def expand_sweep(config: Config) -> list[RunSpec]:
    """Cross the `sweep:` values into one `RunSpec` per combination (sweep emptied in each)."""
    base = config.to_dict()
    sweep = base.pop("sweep")
    base["sweep"] = {}
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key}: expected a non-empty list of values")
        try:
            get_dotted(base, key)
        except (KeyError, TypeError):
            raise ConfigError(f"sweep.{key}: unknown key{_did_you_mean(key.split('.')[-1], '.'.join(key.split('.')[:-1]))}") from None
    keys = list(sweep)
    runs = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        raw = copy.deepcopy(base)
        for k, v in zip(keys, combo):
            set_dotted(raw, k, v)
        try:
            cfg = Config.model_validate(raw)
        except ValidationError as err:
            where = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, combo))
            raise ConfigError(f"{_format_error(err)} [in sweep point {where}]") from None
        runs.append(RunSpec(run_id_for(cfg, keys), cfg))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"sweep: two points share the run id {dup!r} (repeated values?)")
    return runs


def epoch_schedule(spec: EpochSpec, epochs: int, points: int = 20) -> list[int]:
    """Epochs at which to record: `log` = epoch 0, about `points` log-spaced epochs in
    1..epochs, and the last; `all` = 0..epochs; `none` = []; a list is clipped to 0..epochs."""
    if spec == "none":
        return []
    if spec == "all":
        return list(range(epochs + 1))
    if spec == "log":
        out = {0, epochs}
        for i in range(points):
            out.add(int(round(math.exp(math.log(epochs) * i / max(points - 1, 1)))))
        return sorted(e for e in out if 0 <= e <= epochs)
    return sorted({e for e in spec if 0 <= e <= epochs})

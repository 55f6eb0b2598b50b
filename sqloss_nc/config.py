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
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """A Gaussian mixture in `shape`-shaped inputs: class means ~ N(0, separation²·I/d),
    samples = mean + noise·N(0, I/d). The means depend only on `seed` (not the run seed) so
    that runs with different seeds see the same data."""

    shape: list[int] = Field(default_factory=lambda: [32, 32, 3], min_length=1)
    separation: float = Field(1.0, gt=0)
    noise: float = Field(0.5, ge=0)
    seed: int = 0


class DataConfig(_Strict):
    """`data:` (SPEC §2). `name` picks the TFDS dataset for `source: tfds` and the channel
    statistics for `folder` (default cifar10, right for the shared CIFAR-10 folder); the shipped
    `sample` is CIFAR-10. `classes` index the dataset's labels 0..C-1 (C from `datasets.DATASETS`
    for tfds, 10 for sample and synthetic; a folder's C is only known when it is read)."""

    source: Literal["sample", "folder", "tfds", "synthetic"] = "sample"
    path: Optional[str] = None
    name: DatasetName = "cifar10"
    classes: list[int] = Field(default_factory=lambda: [1, 2])
    train_per_class: Optional[int] = Field(5000, gt=0)
    test_per_class: Optional[int] = Field(1000, gt=0)
    input_norm: Literal["unit", "max", "none"] = "unit"
    label_noise: float = Field(0.0, ge=0.0, le=1.0)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

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
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    width: float = Field(1.0, gt=0)
    normalization: Literal["none", "batchnorm", "lagrange", "weightnorm"] = "batchnorm"
    bias: bool = False
    init_scale: float = Field(0.01, gt=0)
    output: Literal["onehot", "scalar"] = "onehot"
    # lagrange/weightnorm: normalize each layer (Frobenius) or each unit (row), appendix H.2.
    lagrange_mode: Literal["layer", "unit"] = "layer"

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


class LossConfig(_Strict):
    """`square_rescaled` (SPEC §9, Hui & Belkin): 1/(N·C) Σ_n [k·(f_y − M)² + Σ_{c≠y} f_c²]."""

    kind: Literal["square", "square_rescaled", "cross_entropy", "exponential"] = "square"
    finite_step_correction: bool = False
    k: float = Field(1.0, gt=0)  # square_rescaled: weight of the true class
    M: float = Field(1.0, gt=0)  # square_rescaled: target of the true class


class OptimConfig(_Strict):
    """`optim:` (SPEC §4). `full_batch: true` is full-batch gradient descent: one step per epoch
    on all N training samples (BatchNorm's batch statistics over all N, the epoch's order still
    the (seed, epoch) permutation, which a full-batch step does not depend on beyond float32
    summation order). `batch_size` is then ignored and written as null in the resolved
    config, so a sweep over `optim.full_batch: [false, true]` compares SGD with GD directly
    (`batches.train_batch_size` gives the batch a run uses)."""

    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    batch_size: Optional[int] = Field(128, gt=0)
    full_batch: bool = False
    epochs: int = Field(1000, gt=0)
    schedule: Literal["constant", "step"] = "constant"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)

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
    nc_epochs: EpochSpec = "log"
    nc_test: bool = False  # also measure neural collapse on the test set (test_* columns)
    # Per-step tracking of the first iterations (paper Fig. 5): 0 = off.
    step_margins_until: int = Field(0, ge=0)
    step_margins_every: int = Field(10, gt=0)
    log_points: int = Field(20, gt=0)
    # Beyond SPEC §7, on NC epochs (issues 13, 14): the threshold of spectra.csv's `rank` on the
    # singular values of W/||W||_F, and the MSE decomposition columns of nc.csv (the p x p
    # second moment of the features; NaN for a scalar head or when off).
    rank_tol: float = Field(1e-3, ge=0, lt=1)
    mse_decomposition: bool = True

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
    """

    jit_compile: bool = False
    steps_per_execution: Union[Literal["epoch"], int] = 1
    inference_batch: int = Field(1000, gt=0)
    stack: Union[Literal["auto"], int] = "auto"

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
    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)

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


def _did_you_mean(key: str, parent: str) -> str:
    model: type[BaseModel] = Config
    for part in [p for p in parent.split(".") if p]:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        model = ann
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    return f" (did you mean {(parent + '.' if parent else '') + close[0]!r}?)" if close else ""


def validate(raw: dict) -> Config:
    """Validate a nested dict into a `Config`, raising a one-line `ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
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

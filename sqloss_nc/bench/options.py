"""What `sqnc bench` measures (`BenchOptions`), checked before any process starts. No framework.

Example:

```python
from sqloss_nc.bench.options import BenchOptions
opts = BenchOptions(n=2000, reps=2, backends=("jax",), torch=False, stack=(1, 2, 4), stack_modes=("auto", "map"))
opts.check()
```
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, fields

from ..errors import UserError

DEFAULT_SIZES = (1000, 2000, 5000, 10000, 20000, 50000)
DEFAULT_NC_DIMS = (256, 1024, 2048, 4096)
KERAS_BACKENDS = ("tensorflow", "jax")


class BenchError(UserError):
    """A bad `sqnc bench` request (sizes, missing framework, data): one line, exit code 2."""


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (the bench's parent stays framework-free)."""
    return importlib.util.find_spec(module) is not None


@dataclass
class BenchOptions:
    """What `run_bench` measures.

    Args:
        n: training images per epoch.
        n_test: test images (the tracking arms measure the test set too; the paper's binary task
            has 2,000).
        reps: timed rounds (one epoch of every arm each).
        epochs_warmup: untimed rounds first (tracing, compilation, allocator warm-up).
        batch_size: minibatch size.
        data_dir: CIFAR-10 image folder or zip (classes 1, 2 = automobile, bird); synthetic
            unit-norm random images when None.
        backends: Keras backends whose arms (a), (b), (c) run, each in its own processes
            (empty: every one installed, TensorFlow first).
        torch: also time the PyTorch reference and it with tracking (None: when torch is installed).
        variants: extra (b) rows of the first backend with other `compute` settings: "xla",
            "spe<N>" (N steps per execution, a divisor of the epoch's steps), "epoch" (one call per
            epoch), joined by "+".
        stack: K values of stacked-runs arms (`stack<K>`: K runs trained as one stacked step,
            `sqloss_nc.stacking`) on `stack_backend`.
        stack_backend: the Keras backend of the stacked arms.
        stack_modes: `compute.stack_mode` of the stacked arms, one arm per K and mode: `auto`
            is arm `stack<K>` (the mode the stack chooses), any other `stack<K>+<mode>`.
        alone: arm keys (e.g. "torch/b") timed once more afterwards, alone in a fresh process in a
            plain loop of `epochs_warmup + reps` epochs, to check the bench does not slow them.
        scaling: also measure how epoch time and NC cost grow with N and p.
        sizes: the N values of the scaling study.
        nc_dims: the feature widths p of the scaling study.
        profile: break one (b) epoch into stages and time each kernel (TensorFlow backend only).
        threads: intra-op threads for every arm's framework (None: each framework's default).
        matmul_size: side of the square matmul that sets each framework's reference rate.
        seed: seed of the data, the weights and the data order.
        nc_horizon: the run length whose default log schedule is amortized into (c).

    Example:

    ```python
    opts = BenchOptions(n=2000, reps=2, torch=True, variants=("xla",), alone=("torch/b",))
    ```
    """

    n: int = 10_000
    n_test: int = 2_000
    reps: int = 3
    epochs_warmup: int = 1
    batch_size: int = 128
    data_dir: str | None = None
    backends: tuple[str, ...] = ()
    torch: bool | None = None
    variants: tuple[str, ...] = ()
    stack: tuple[int, ...] = ()
    stack_backend: str = "jax"
    stack_modes: tuple[str, ...] = ("auto",)
    alone: tuple[str, ...] = ()
    scaling: bool = False
    sizes: tuple[int, ...] = DEFAULT_SIZES
    nc_dims: tuple[int, ...] = DEFAULT_NC_DIMS
    profile: bool = False
    threads: int | None = None
    matmul_size: int = 2048
    seed: int = 0
    nc_horizon: int = 1000

    def resolved(self) -> BenchOptions:
        """A copy with the automatic choices made: the installed backends, torch when installed."""
        backends = tuple(self.backends) or tuple(b for b in KERAS_BACKENDS if installed(b))
        torch = installed("torch") if self.torch is None else self.torch
        return BenchOptions(**{**asdict(self), "backends": backends, "torch": torch})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BenchOptions:
        """The inverse of `to_dict` (lists back to tuples), e.g. in a worker process."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})

    def check(self) -> None:
        """Raise `BenchError` (one line) on values that cannot be benchmarked."""
        if self.n < 2 or self.n_test < 2:
            raise BenchError(f"--n/--n-test: need at least 2 images, got {self.n}/{self.n_test}")
        if self.batch_size < 1 or self.batch_size > self.n:
            raise BenchError(f"--batch-size: {self.batch_size} must be in 1..{self.n} (the training images)")
        if self.reps < 1:
            raise BenchError(f"--reps: need at least 1 timed epoch, got {self.reps}")
        if self.epochs_warmup < 0:
            raise BenchError(f"--epochs-warmup: must be >= 0, got {self.epochs_warmup}")
        if self.scaling and (not self.sizes or min(self.sizes) < self.batch_size):
            raise BenchError(f"--sizes: every size must be >= the batch size {self.batch_size}, got {list(self.sizes)}")
        if self.scaling and (not self.nc_dims or min(self.nc_dims) < 1):
            raise BenchError(f"--nc-dims: need positive feature widths, got {list(self.nc_dims)}")
        if self.data_dir is not None and self.n > 10_000:
            raise BenchError(f"--n: CIFAR-10 has 10,000 training images of classes 1 and 2, asked for {self.n}")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"--threads: must be >= 1, got {self.threads}")
        if self.matmul_size < 16:
            raise BenchError(f"--matmul-size: must be >= 16, got {self.matmul_size}")
        for b in (*self.backends, *((self.stack_backend,) if self.stack else ())):
            if b not in KERAS_BACKENDS:
                raise BenchError(f"--backends: {b!r} is not a Keras backend of this project (use {', '.join(KERAS_BACKENDS)})")
            if not installed(b):
                raise BenchError(f"--backends: {b} is not installed (pip install -e '.[{b}]')")
        if self.torch and not installed("torch"):
            raise BenchError('--torch: PyTorch is not installed (pip install -e ".[bench]", or pip install torch)')
        if any(k < 1 for k in self.stack):
            raise BenchError(f"--stack: K must be >= 1, got {list(self.stack)}")
        modes = stack_modes()
        bad = [m for m in self.stack_modes if m not in modes]
        if bad or not self.stack_modes:
            raise BenchError(f"--stack-mode: {', '.join(map(repr, bad)) or 'none given'}: use one or more of {', '.join(modes)}")
        steps = -(-self.n // self.batch_size)
        for v in self.variants:
            spe = parse_variant(v)["steps_per_execution"]
            if isinstance(spe, int) and steps % spe:
                raise BenchError(
                    f"--variants: {v!r}: {spe} steps per execution do not divide the {steps} steps of an epoch (use a divisor or 'epoch')"
                )


def stack_modes() -> tuple[str, ...]:
    """The values of `compute.stack_mode` (`auto`, `vmap`, `map`, `unroll`), read from the config
    model (framework-free), so the bench accepts exactly what a run does."""
    from typing import get_args

    from ..config import ComputeConfig

    return get_args(ComputeConfig.model_fields["stack_mode"].annotation)


def parse_variant(text: str) -> dict:
    """A (b) variant name -> the `compute` settings it times (see `config.ComputeConfig`).

    `xla` compiles with XLA, `spe<N>` runs N steps per call of the compiled function, `epoch` a
    whole epoch per call; join with "+".

    Args:
        text: the variant name.

    Example: `parse_variant("xla+epoch")` == {"jit_compile": True, "steps_per_execution": "epoch"}.
    """
    out: dict = {"jit_compile": False, "steps_per_execution": 1}
    for part in text.split("+"):
        part = part.strip().lower()
        if part == "xla":
            out["jit_compile"] = True
        elif part == "epoch":
            out["steps_per_execution"] = "epoch"
        elif part.startswith("spe") and part[3:].isdigit() and int(part[3:]) >= 1:
            out["steps_per_execution"] = int(part[3:])
        else:
            raise BenchError(f"--variants: unknown variant {text!r} (use xla, spe<N>, epoch, or joined by +)")
    return out

"""`sqnc bench`: how fast one training epoch of the paper's experiment runs, arm by arm, fairly.

Every arm (Keras `fit` (a), the project's step (b), the project with tracking (c) on each Keras
backend; the PyTorch reference without and with tracking; stacked runs `stack<K>`) runs in a
fresh process of its own that imports only its framework, with the environment as given (no
`OMP_WAIT_POLICY`, default threads). The arms are interleaved over rounds, one epoch of each per
round in rotating order; ratios are medians of per-round ratios. The paper's setting: N images
of 32x32x3, the BN convnet, square loss, coupled weight decay 0.01, SGD 0.01 / 0.9, batch 128.

| module | holds |
|---|---|
| `options.py` | `BenchOptions` (what to measure), `BenchError`, `parse_variant` |
| `arms.py` | `ArmSpec`, the arms and how each is built in its process (`build_arm`), the data |
| `timing.py` | `spread`, `run_rounds`, `paired_ratio` |
| `runner.py` | `run_bench`: the parent (data once, one worker process per arm, rounds, result) |
| `worker.py` | the fresh-process entry (`serve` for the rounds, `alone` for one arm by itself) |
| `flops.py` | the FLOP count, a framework's matmul rate, the TensorFlow kernel profile |
| `scaling.py` | epoch time against N, NC cost against N and p |
| `report.py` | the JSON file and the tables |
| `torch_reference.py` | the PyTorch twin of the experiment |

Importing this package imports no framework (nor does the parent of a bench); only each arm's
process does, and `sqnc bench` imports `sqloss_nc` bare (`worker.bare_package`) so that its
parent process holds no TensorFlow, JAX or PyTorch at all.

Example:

```python
from sqloss_nc.bench import BenchOptions, run_bench, results_tables
result = run_bench(BenchOptions(n=2000, reps=2, backends=("jax",), torch=True, alone=("torch/b",)))
result["ratios"]["jax/c / jax/b"]["median"], result["arms"]["torch/b"]["epoch_s"]["median"]
```
"""

from .arms import ArmSpec, arm_specs, bench_config, bench_dataset
from .flops import FLOP_CONVENTION, count_flops
from .options import DEFAULT_NC_DIMS, DEFAULT_SIZES, BenchError, BenchOptions, parse_variant
from .report import results_tables, write_json
from .runner import run_bench
from .timing import paired_ratio, run_rounds, spread

__all__ = [
    "DEFAULT_NC_DIMS",
    "DEFAULT_SIZES",
    "FLOP_CONVENTION",
    "ArmSpec",
    "BenchError",
    "BenchOptions",
    "arm_specs",
    "bench_config",
    "bench_dataset",
    "count_flops",
    "paired_ratio",
    "parse_variant",
    "results_tables",
    "run_bench",
    "run_rounds",
    "spread",
    "write_json",
]

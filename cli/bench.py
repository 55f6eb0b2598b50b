"""`sqnc bench`: time one training epoch of the paper's experiment, arm by arm, each arm in its
own fresh process.

Thin: parse options, call `sqloss_nc.bench.run_bench`, print its tables, write the JSON. The
library is imported bare (`sqloss_nc.bench.worker.bare_package`), so this process imports no
framework: only the arms' processes do.
Wire it into an app with `register(app)`:

```python
import typer
from cli.bench import register
app = typer.Typer()
register(app)
```

    sqnc bench                                   # N = 10,000 synthetic images, every installed framework
    sqnc bench --data-dir cifar10-jpeg.zip --reps 5 --alone torch/b --variants xla,epoch
    sqnc bench --backends jax --no-torch --stack 1,2,4,8,16
    sqnc bench --backends jax --no-torch --stack 4,60 --stack-mode auto,vmap,map   # arms jax/stack60, jax/stack60+vmap, ...
    sqnc bench --scaling --sizes 1000,5000,20000 --nc-dims 512,2048
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _bench_package():
    """`sqloss_nc.bench` without `sqloss_nc/__init__` (which imports Keras and its framework):
    `bare_package` lives in `worker.py`, a file loadable by its path for exactly this."""
    if "sqloss_nc" not in sys.modules:
        root = Path(importlib.util.find_spec("sqloss_nc").submodule_search_locations[0])
        spec = importlib.util.spec_from_file_location("_sqnc_bench_worker", root / "bench" / "worker.py")
        worker = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(worker)
        worker.bare_package()
    from sqloss_nc import bench

    return bench


def _str_list(text: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (text or "").split(",") if v.strip())


def _int_list(option: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        _fail(f"{option}: expected comma-separated positive integers, got {text!r}")
    return values


def bench_command(
    n: int = typer.Option(10_000, "--n", help="Training images per epoch."),
    n_test: int = typer.Option(2_000, "--n-test", help="Test images (the tracking passes measure them too)."),
    reps: int = typer.Option(3, "--reps", help="Timed rounds (one epoch of every arm each; medians and min/max are reported)."),
    epochs_warmup: int = typer.Option(1, "--epochs-warmup", help="Untimed rounds first (tracing, compilation)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Minibatch size."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="CIFAR-10 image folder or .zip (classes 1, 2); synthetic images if absent."
    ),
    backends: str | None = typer.Option(
        None, "--backends", help="Keras backends whose arms (a), (b), (c) run, comma-separated (default: every one installed)."
    ),
    torch: bool | None = typer.Option(
        None, "--torch/--no-torch", help="Time the PyTorch reference with and without tracking (default: when torch is installed)."
    ),
    variants: str | None = typer.Option(
        None,
        "--variants",
        help="Extra (b) rows of the first backend with other compute settings: xla, epoch (one call per epoch), spe<N> (N steps per call, a divisor of the epoch), joined by +; comma-separated.",
    ),
    stack: str | None = typer.Option(None, "--stack", help="K values of stacked-runs arms (sqloss_nc.stacking), e.g. 1,2,4,8,16."),
    stack_backend: str = typer.Option("jax", "--stack-backend", help="Keras backend of the stacked arms."),
    stack_mode: str = typer.Option(
        "auto",
        "--stack-mode",
        help="compute.stack_mode of the stacked arms, comma-separated: auto (arm stack<K>, the stack's own choice), vmap, map, unroll (arms stack<K>+<mode>).",
    ),
    alone: str | None = typer.Option(
        None,
        "--alone",
        help="Arms (e.g. torch/b) timed again afterwards alone in a fresh process, to compare with the bench; torch/plain times the independent plain PyTorch script (tools/plain_torch_epoch.py).",
    ),
    scaling: bool = typer.Option(False, "--scaling", help="Also measure how epoch time and NC cost grow with N and p."),
    sizes: str | None = typer.Option(None, "--sizes", help="N values of --scaling (default 1000,2000,5000,10000,20000,50000)."),
    nc_dims: str | None = typer.Option(None, "--nc-dims", help="Feature widths p of --scaling (default 256,1024,2048,4096)."),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Break one TensorFlow (b) epoch into data, forward, backward and update, and time each kernel of a step alone.",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="Intra-op threads for every arm's framework (default: each framework's own)."
    ),
    matmul_size: int = typer.Option(2048, "--matmul-size", help="Side of the float32 matmul that sets each framework's reference rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of data, weights and data order."),
    json_path: Path = typer.Option(Path("outputs/bench/bench.json"), "--json", help="Where to write the JSON result."),
) -> None:
    """Time one epoch of the paper's convnet, each arm in its own process, against PyTorch and plain Keras.

    The arms: plain Keras fit, the project's step, the project with tracking (each Keras
    backend), PyTorch with and without tracking, stacked runs; GFLOP/s against each framework's
    matmul rate; targets pass/fail."""
    sizes_t, dims_t, stack_t = _int_list("--sizes", sizes), _int_list("--nc-dims", nc_dims), _int_list("--stack", stack)
    bench = _bench_package()
    from sqloss_nc.errors import UserError

    opts = bench.BenchOptions(
        n=n,
        n_test=n_test,
        reps=reps,
        epochs_warmup=epochs_warmup,
        batch_size=batch_size,
        data_dir=data_dir,
        backends=_str_list(backends),
        torch=torch,
        variants=_str_list(variants),
        stack=stack_t or (),
        stack_backend=stack_backend,
        stack_modes=_str_list(stack_mode),
        alone=_str_list(alone),
        scaling=scaling,
        sizes=sizes_t or bench.DEFAULT_SIZES,
        nc_dims=dims_t or bench.DEFAULT_NC_DIMS,
        profile=profile,
        threads=threads,
        matmul_size=matmul_size,
        seed=seed,
    )
    try:
        opts.resolved().check()
        result = bench.run_bench(opts, log=lambda msg: err_console.print(f"[dim]bench:[/] {msg}", highlight=False))
        path = bench.write_json(result, json_path)
    except UserError as err:
        _fail(str(err), 2)
    except KeyboardInterrupt:
        _fail("interrupted; nothing written", 130)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    for table in bench.results_tables(result):
        console.print(table)
    env = result["environment"]
    load = env.get("load_average")
    if load and load[0] > 0.5:
        console.print(
            f"[yellow]note:[/] load average {load[0]:.1f} on {env['cores']} cores at the end: other work shared these cores, so timings are noisy",
            highlight=False,
            soft_wrap=True,
        )
    set_env = {k: v for k, v in env["env"].items() if v is not None and k != "CUDA_VISIBLE_DEVICES"}
    if set_env:
        console.print(f"[yellow]note:[/] timing-relevant settings in the environment: {set_env}", highlight=False, soft_wrap=True)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `bench` command to a Typer app.

    Args:
        app: the `sqnc` Typer app (or any Typer app, e.g. a fresh one in tests).

    Example: `register(app)` in `cli/main.py`, then `sqnc bench --n 2000 --reps 2 --alone torch/b`.
    """
    app.command("bench")(bench_command)

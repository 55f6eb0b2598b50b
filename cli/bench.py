"""`sqnc bench`: time one training epoch of the paper's experiment, arm by arm, in one process.

Thin: parse options, call `sqloss_nc.bench.run_bench`, print its tables, write the JSON.
Wire it into an app with `register(app)`:

```python
import typer
from cli.bench import register
app = typer.Typer()
register(app)
```

    sqnc bench                                   # N = 10,000 synthetic images, 3 timed epochs per arm
    sqnc bench --data-dir cifar10-jpeg.zip --torch --variants xla,epoch
    sqnc bench --scaling --sizes 1000,5000,20000 --nc-dims 512,2048
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _int_list(option: str, text: Optional[str]) -> Optional[tuple[int, ...]]:
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
    reps: int = typer.Option(3, "--reps", help="Timed epochs per arm (medians and min/max are reported)."),
    epochs_warmup: int = typer.Option(1, "--epochs-warmup", help="Untimed epochs first (tracing, compilation)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Minibatch size."),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", help="CIFAR-10 image folder or .zip (classes 1, 2); synthetic images if absent."
    ),
    torch: bool = typer.Option(False, "--torch/--no-torch", help="Also time the PyTorch reference (pip install -e '.[bench]')."),
    scaling: bool = typer.Option(False, "--scaling", help="Also measure how epoch time and NC cost grow with N and p."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="N values of --scaling (default 1000,2000,5000,10000,20000,50000)."),
    nc_dims: Optional[str] = typer.Option(None, "--nc-dims", help="Feature widths p of --scaling (default 256,1024,2048,4096)."),
    variants: Optional[str] = typer.Option(
        None,
        "--variants",
        help="Extra (b) rows with other compute settings: xla, epoch (one call per epoch), spe<N> (N steps per call, a divisor of the epoch), joined by +; comma-separated.",
    ),
    profile: bool = typer.Option(
        False, "--profile", help="Break one (b) epoch into data, forward, backward and update, and time each kernel of a step alone."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads for TensorFlow and torch (default: all cores)."),
    matmul_size: int = typer.Option(2048, "--matmul-size", help="Side of the float32 matmul that sets the reference rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of data, weights and data order."),
    json_path: Path = typer.Option(Path("outputs/bench/bench.json"), "--json", help="Where to write the JSON result."),
) -> None:
    """Time one epoch of the paper's convnet: plain Keras fit, the project's step, the project with
    tracking (and PyTorch with --torch); GFLOP/s against the matmul rate; targets pass/fail."""
    from cli.main import _import_library_quietly

    sizes_t, dims_t = _int_list("--sizes", sizes), _int_list("--nc-dims", nc_dims)
    variant_t = tuple(v.strip() for v in (variants or "").split(",") if v.strip())
    _import_library_quietly()
    from sqloss_nc.bench import DEFAULT_NC_DIMS, DEFAULT_SIZES, BenchOptions, results_tables, run_bench, write_json
    from sqloss_nc.errors import UserError

    opts = BenchOptions(
        n=n,
        n_test=n_test,
        reps=reps,
        epochs_warmup=epochs_warmup,
        batch_size=batch_size,
        data_dir=data_dir,
        torch=torch,
        scaling=scaling,
        sizes=sizes_t or DEFAULT_SIZES,
        nc_dims=dims_t or DEFAULT_NC_DIMS,
        variants=variant_t,
        profile=profile,
        threads=threads,
        matmul_size=matmul_size,
        seed=seed,
    )
    try:
        opts.check()
        result = run_bench(opts, log=lambda msg: err_console.print(f"[dim]bench:[/] {msg}", highlight=False))
        path = write_json(result, json_path)
    except UserError as err:
        _fail(str(err), 2)
    except KeyboardInterrupt:
        _fail("interrupted; nothing written", 130)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    for table in results_tables(result):
        console.print(table)
    load = result["environment"].get("load_average")
    if load and load[0] > result["environment"]["tf_threads"]:
        console.print(
            f"[yellow]note:[/] load average {load[0]:.1f} on {result['environment']['tf_threads']} threads: other work shares these cores, "
            "so timings are noisy (and PyTorch's OpenMP threads spin-wait; OMP_WAIT_POLICY=PASSIVE avoids that)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `bench` command to a Typer app.

    Args:
        app: the `sqnc` Typer app (or any Typer app, e.g. a fresh one in tests).

    Example: `register(app)` in `cli/main.py`, then `sqnc bench --n 2000 --reps 2 --torch`.
    """
    app.command("bench")(bench_command)

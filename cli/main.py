"""`sqnc`: the command line. Parses arguments, calls one library function per command, prints.

User mistakes (config, data, paths) end with one line on stderr and exit code 2, before anything
is written; environment faults (disk full, permissions during a run) with exit code 1.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console


# TensorFlow's C++ runtime writes these at import whatever TF_CPP_MIN_LOG_LEVEL says (absl INFO and
# WARNING lines, the pre-absl banner, the CPU-feature notice): noise, not news.
_IMPORT_NOISE = re.compile(r"^([IW]\d{4} |WARNING: All log messages before absl::InitializeLog|To enable the following instructions)")


def _import_library_quietly() -> None:
    """Import the library (and with it the Keras backend) with the process's stderr captured: the
    backend's C++ runtime prints absl lines at import that would bury our one-line messages.
    Everything else it printed (an E-level line of a broken CUDA install, say) is passed on after
    the import; a Python-level import error still raises, after stderr is restored."""
    if "sqloss_nc" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import sqloss_nc  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines() if line.strip() and not _IMPORT_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Square-loss dynamics and neural collapse: train, analyze, draw.")
console = Console()
err_console = Console(stderr=True)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def _main(ctx: typer.Context) -> None:
    """sqloss-nc command line."""
    # Every command imports the library (and its Keras backend); do it once here, before any
    # output. Not `bench`: its parent process must hold no framework, each arm loads its own.
    if ctx.invoked_subcommand != "bench":
        _import_library_quietly()


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config (default: configs/quickstart.yaml, the shipped sample)."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override a config key: --set optim.lr=0.05 (repeatable)."),
    out: Path = typer.Option(Path("outputs"), "--out", "-o", help="Output root; runs go to OUT/<name>/<run_id>/."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Image folder (or .zip) for data.source=folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their state; train nothing."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Local worker processes (each gets cores/J threads)."),
    backend: str = typer.Option("local", "--backend", help="local or ray (pip install -e '.[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)."),
    gpus_per_run: Optional[float] = typer.Option(
        None, "--gpus-per-run", help="Ray: GPUs per run (default 1 if the cluster has GPUs, else 0)."
    ),
    stack: Optional[str] = typer.Option(
        None, "--stack", help="Train up to K stackable sweep points as one vmapped step (JAX backend); 'auto' (default) = 1 on CPU."
    ),
) -> None:
    """Train the run(s) a config describes (a `sweep:` block gives several) and write run directories."""
    _import_library_quietly()
    from sqloss_nc.errors import UserError
    from sqloss_nc.sweep import plan_runs, run_config, run_states, stacks_plan, states_table

    if config is None:
        config = DEFAULT_CONFIG
    if stack is not None:
        set_ = [*set_, f"compute.stack={stack}"]  # the same key as in a config, validated there
    try:
        if dry_run:
            plan = plan_runs(config, set_, out)
            console.print(states_table(run_states(plan), stacks=stacks_plan(plan)))
            return
        results = run_config(
            config,
            set_,
            out,
            data_dir=data_dir,
            progress=progress,
            console=console,
            jobs=jobs,
            backend=backend,
            address=address,
            gpus_per_run=gpus_per_run,
        )
    except UserError as err:
        _fail(str(err), 2)
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume where it stopped", 130)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    from sqloss_nc.sweep import summary_table

    for r in results:
        if r["state"] == "locked":
            console.print(f"{r['run_id']}: {r['reason']}, skipped", highlight=False, soft_wrap=True, markup=False)
        elif r.get("skipped"):
            console.print(f"{r['run_id']}: already {r['state']}, skipped ({r['rundir']})", highlight=False, soft_wrap=True, markup=False)
        elif r["state"] != "done":
            err_console.print(f"{r['run_id']}: {r['state']}: {r['reason']}", highlight=False, soft_wrap=True, markup=False)
    console.print(summary_table(results))
    if any(r["state"] not in ("done", "locked") for r in results):
        raise typer.Exit(1)


from cli.bench import register as _register_bench  # noqa: E402
from cli.measure import register as _register_measure  # noqa: E402
from cli.report import register as _register_report  # noqa: E402
from cli.simulate import register as _register_simulate  # noqa: E402

_register_report(app)
_register_simulate(app)
_register_bench(app)
_register_measure(app)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

"""`sqnc`: the command line. Parses arguments, calls one library function per command, prints.

User mistakes (config, data, paths) end with one line on stderr and exit code 2, before anything
is written; environment faults (disk full, permissions during a run) with exit code 1.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from cli.helptext import TidyGroup
from cli.library import import_keras_or_fail


def _import_library_quietly() -> None:
    """`sqloss_nc`, Keras and its backend, imported quietly; a backend that cannot load ends the
    command with one line (exit 2)."""
    import_keras_or_fail(_fail)


app = typer.Typer(
    cls=TidyGroup, add_completion=False, no_args_is_help=True, help="Square-loss dynamics and neural collapse: train, analyze, draw."
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _set_mistake(config: Optional[Path], sets: List[str], extra: List[str] = ()) -> Optional[str]:
    """The likely mistake behind a `--set` that swallowed the next words, or None. `--set
    optim.epochs 8` makes `8` the config file; `--set data.classes=[1, 2]` unquoted is split by the
    shell and makes `2]` the config file (and `--set data.classes=[1, 2, 3]` adds `3]` as an extra
    argument): all would end in "config: file not found" or a usage error."""
    words = [str(config)] + list(extra) if config is not None else list(extra)
    if extra and config is None:
        return f"unexpected argument(s): {' '.join(extra)}"
    if config is None or (config.exists() and not extra):
        return None
    rest = " ".join(words)
    for text in sets:
        if "=" not in text and not extra:
            return f"--set {text} {config}: a setting is key=value with no spaces: --set {text}={config}"
        opened = sum(text.count(c) for c in "[{") - sum(text.count(c) for c in "]}")
        if opened > 0:
            return f"--set {text} {rest}: the shell split this value at its spaces; quote it: --set '{text} {rest}'"
    if extra:
        return f"unexpected argument(s) after the config {config}: {' '.join(extra)} (one config per command; settings go in --set key=value)"
    return None


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: the run is marked `interrupted` and resumable."""

    exit_code = 130


def _stop_on_signals() -> None:
    """Turn SIGTERM (kill, a scheduler's stop) and SIGHUP (the terminal was closed) into the
    `KeyboardInterrupt` of Ctrl-C, so the run writes `interrupted` and how to resume instead of
    dying `running`. After SIGHUP the terminal is gone: output that still went to it is sent to
    /dev/null (writes to a hung-up terminal fail), output redirected to a file keeps going there."""
    from sqloss_nc.errors import STOP_GRACE_S, request_stop

    request_stop(None)  # a stop from an earlier command in this process (tests, notebooks) is done

    def stop(signum, _frame):
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGHUP", None):
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                if os.isatty(fd):
                    os.dup2(devnull, fd)
            os.close(devnull)
        # `--jobs` workers: the sweep's driver interrupts them when this reaches it
        # (`sweep._run_processes`), whichever signal it was.
        err = _Stopped(f"stopped by {name}" + (" (the terminal was closed)" if name == "SIGHUP" else ""))
        err.exit_code = 128 + signum
        # Raised again at the next epoch end if this raise is swallowed; a process stuck after it
        # prints its stacks and exits. A `--jobs` driver outlives its workers' watchdogs (they
        # start as it forwards the stop): their stacks come first, then its one-line message.
        request_stop(err, grace_s=STOP_GRACE_S + 30)
        raise err

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


@app.callback()
def _main(ctx: typer.Context) -> None:
    """sqloss-nc command line."""
    # No library import here: this runs before `sqnc <command> --help` is answered, and importing
    # TensorFlow took 5 s. The commands that need Keras import it first thing in their body.


@app.command(context_settings={"allow_extra_args": True})
def run(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML config (default: configs/quickstart.yaml, the shipped sample)."),
    set_: List[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a config key: --set optim.lr=0.05 (repeatable)."),
    out: Path = typer.Option(Path("outputs"), "--out", "-o", metavar="DIR", help="Output root; runs go to OUT/<name>/<run_id>/."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="PATH", help="Image folder (or .zip) for data.source=folder; TFDS' data_dir for data.source=tfds."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their state; train nothing."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="J", help="Local worker processes (each gets cores/J threads)."),
    backend: str = typer.Option("local", "--backend", metavar="local|ray", help="local or ray (pip install -e '.\\[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)."),
    gpus_per_run: Optional[float] = typer.Option(
        None, "--gpus-per-run", metavar="G", help="Ray: GPUs per run (default 1 if the cluster has GPUs, else 0)."
    ),
    stack: Optional[str] = typer.Option(
        None,
        "--stack",
        metavar="K|auto",
        help="Train up to K stackable sweep points as one vmapped step (JAX backend); 'auto' (default) = 1 on CPU.",
    ),
) -> None:
    """Train the run(s) a config describes (a `sweep:` block gives several) and write run directories."""
    mistake = _set_mistake(config, set_, ctx.args)
    if mistake:
        _fail(mistake, 2)
    _import_library_quietly()
    from sqloss_nc.errors import UserError
    from sqloss_nc.sweep import check_data_paths, plan_runs, plan_warnings, run_config, run_states, stacks_plan, states_table

    if config is None:
        config = DEFAULT_CONFIG
    if stack is not None:
        set_ = [*set_, f"compute.stack={stack}"]  # the same key as in a config, validated there
    try:
        if dry_run:
            plan = plan_runs(config, set_, out)
            check_data_paths(plan, data_dir)  # the real run would fail on them: so does the dry run
            for line in plan_warnings(plan):
                console.print(f"warning: {line}", style="yellow", highlight=False, markup=False, soft_wrap=True)
            console.print(states_table(run_states(plan), stacks=stacks_plan(plan)))
            return
        _stop_on_signals()
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
    except KeyboardInterrupt as err:
        # Ctrl-C, or SIGTERM / SIGHUP turned into the same exception by `_stop_on_signals`.
        _fail(f"{str(err) or 'interrupted'}; rerun the same command to resume where it stopped", getattr(err, "exit_code", 130))
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    from sqloss_nc.sweep import summary_table

    from sqloss_nc.backend import NAME as backend_name

    for r in results:
        if r["state"] == "locked":
            # Nothing was trained here: say so on stderr (the table's note repeats who holds it).
            err_console.print(f"{r['run_id']}: not trained by this command: {r['reason']}", highlight=False, soft_wrap=True, markup=False)
        elif r.get("skipped"):
            # A finished run is skipped whichever backend made it: say which, so that a run meant
            # for the other backend (`KERAS_BACKEND=jax sqnc run` after `sqnc run`) is not mistaken for one.
            made = r.get("backend")
            other = f"; to train it on {backend_name} too, give another --out" if made and made != backend_name else ""
            line = f"{r['run_id']}: already {r['state']}{f' on {made}' if made else ''}, skipped ({r['rundir']}){other}"
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        elif r["state"] != "done":
            err_console.print(f"{r['run_id']}: {r['state']}: {r['reason']}", highlight=False, soft_wrap=True, markup=False)
    console.print(summary_table(results))
    if any(r["state"] not in ("done", "locked") for r in results):
        raise typer.Exit(1)
    locked = any(r["state"] == "locked" for r in results)
    if locked and all(r.get("skipped") for r in results):
        raise typer.Exit(1)  # it trained nothing: every run it did not skip as done is another command's
    if not locked:
        _next_steps(out)


def _next_steps(out: Path) -> None:
    """What to run next on these runs (the README's order): analyze, figures, report."""
    root = str(out)
    console.print(f"next: sqnc analyze {root}; sqnc figures {root}; sqnc report {root}", highlight=False, soft_wrap=True, markup=False)


@app.command("reproduce")
def reproduce(
    out: Path = typer.Argument(..., help="Output root: runs go to OUT/<experiment>/<run_id>/, the report to OUT/report/."),
    budget: Optional[str] = typer.Option(
        None, "--budget", metavar="TIME", help="Wall-time budget: 3h, 20m, 90s, 1h30m (default: every claim)."
    ),
    claims: Optional[str] = typer.Option(None, "--claims", metavar="A,B", help="Claims to reproduce, ids or numbers (default: all)."),
    scale: str = typer.Option(
        "cpu", "--scale", metavar="cpu|paper", help="cpu: protocols reduced for this machine; paper: the source's own."
    ),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", metavar="PATH", help="Image folder (or .zip) of the protocols on data.source=folder."
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="J", help="Local worker processes (each gets cores/J threads)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate, show the plan and its estimate; write nothing to OUT."),
    json_file: Optional[Path] = typer.Option(
        None, "--json", metavar="FILE", help="Write the plan (and after a run the verdicts) as JSON."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per run."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw the figures the report links."),
) -> None:
    """Plan every claim's protocols (evidence and controls) to fit a time budget, run them, and judge the claims."""
    budget_s = None
    if budget is not None:
        from sqloss_nc.errors import UserError
        from sqloss_nc.reproduce import parse_budget

        try:
            budget_s = parse_budget(budget)
        except UserError as err:
            _fail(str(err), 2)
    _import_library_quietly()
    from sqloss_nc.errors import UserError
    from sqloss_nc.reproduce import RegistryError, make_plan, plan_json, plan_table, run_plan, select_claims, verdicts_table, write_json

    try:
        plan = make_plan(out, budget_s, scale, select_claims(claims), data_dir, jobs, console=console)
    except UserError as err:
        _fail(str(err), 2)
    except (RegistryError, OSError) as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    console.print(plan_table(plan))
    if dry_run:
        if json_file is not None:
            written = write_json(plan_json(plan, command=_command_line()), json_file)
            console.print(f"wrote {_escape(str(written))}", highlight=False, soft_wrap=True)
        console.print("dry run: nothing written to OUT; run the same command without --dry-run to train", highlight=False)
        return
    _stop_on_signals()
    try:
        result = run_plan(plan, progress=progress, console=console, figures=figures)
    except UserError as err:
        _fail(str(err), 2)
    except KeyboardInterrupt as err:
        _fail(f"{str(err) or 'interrupted'}; rerun the same command to continue where it stopped", getattr(err, "exit_code", 130))
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    console.print(verdicts_table(result))
    files = ", ".join(_escape(str(p)) for p in result.report_files.values())
    line = f"wall time {result.wall_s / 60:.1f} min (estimated {plan.remaining_s / 60:.1f} min); report: {files}"
    console.print(line, highlight=False, soft_wrap=True)
    if json_file is not None:
        written = write_json(plan_json(plan, result, _command_line()), json_file)
        console.print(f"wrote {_escape(str(written))}", highlight=False, soft_wrap=True)
    if any(r["state"] not in ("done", "locked") for r in result.results):
        raise typer.Exit(1)


def _command_line() -> str:
    """This command line as the user would type it (for the JSON and docs/reproduction.md)."""
    import shlex

    return "sqnc " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


from cli.bench import register as _register_bench  # noqa: E402
from cli.config_cmd import register as _register_config  # noqa: E402
from cli.measure import register as _register_measure  # noqa: E402
from cli.report import register as _register_report  # noqa: E402
from cli.simulate import register as _register_simulate  # noqa: E402

_register_report(app)
_register_simulate(app)
_register_bench(app)
_register_measure(app)
_register_config(app)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

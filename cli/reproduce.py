"""`sqnc reproduce OUT`: a thin wrapper over `sqloss_nc.reproduce` (parse, call, print).

Wire it into an app with `register(app)`:

```python
import typer
from cli.reproduce import register
app = typer.Typer()
register(app)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def reproduce_command(
    out: Path = typer.Argument(..., help="Output root: runs go to OUT/<experiment>/<run_id>/, the report to OUT/report/."),
    budget: Optional[str] = typer.Option(None, "--budget", metavar="TIME", help="Wall-time budget: 3h, 20m, 90s, 1h30m (default: every claim)."),
    claims: Optional[str] = typer.Option(None, "--claims", metavar="A,B", help="Claims to reproduce, ids or numbers (default: all)."),
    scale: str = typer.Option("cpu", "--scale", metavar="cpu|paper", help="cpu: protocols reduced for this machine; paper: the source's own."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="PATH", help="Image folder (or .zip) of the protocols on data.source=folder."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="J", help="Local worker processes (each gets cores/J threads)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show the plan with its estimate; write nothing to OUT."),
    json_file: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Write the plan (and after a run the verdicts) as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per run."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw the figures the report links."),
) -> None:
    """Plan every claim's protocols (evidence and controls) to fit a time budget, run them, and judge the claims."""
    from cli.library import import_keras_or_fail

    budget_s = None
    if budget is not None:
        from sqloss_nc.errors import UserError
        from sqloss_nc.reproduce import parse_budget

        try:
            budget_s = parse_budget(budget)
        except UserError as err:
            _fail(str(err), 2)
    import_keras_or_fail(_fail)
    from sqloss_nc.errors import UserError
    from sqloss_nc.reproduce import RegistryError, make_plan, plan_json, plan_table, run_plan, select_claims, write_json

    try:
        plan = make_plan(out, budget_s, scale, select_claims(claims), data_dir, jobs, console=console)
    except UserError as err:
        _fail(str(err), 2)
    except (RegistryError, OSError) as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    console.print(plan_table(plan))
    if dry_run:
        if json_file is not None:
            console.print(f"wrote {escape(str(write_json(plan_json(plan, command=_command()), json_file)))}", highlight=False, soft_wrap=True)
        console.print("dry run: nothing written to OUT; run the same command without --dry-run to train", highlight=False)
        return
    from cli.main import _stop_on_signals

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
    console.print(f"wall time {result.wall_s / 60:.1f} min (estimated {plan.remaining_s / 60:.1f} min); report: "
                  + ", ".join(escape(str(p)) for p in result.report_files.values()), highlight=False, soft_wrap=True)  # fmt: skip
    if json_file is not None:
        console.print(f"wrote {escape(str(write_json(plan_json(plan, result, _command()), json_file)))}", highlight=False, soft_wrap=True)
    if any(r["state"] not in ("done", "locked") for r in result.results):
        raise typer.Exit(1)


def _command() -> str:
    """This command line as the user would type it (for the JSON and docs/reproduction.md)."""
    import shlex
    import sys

    return "sqnc " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def verdicts_table(result):
    """Per claim: its verdict, its control's verdict and why (a `sweep.FitTable`)."""
    from sqloss_nc.sweep import FitTable

    rows = [
        {"claim": f"{cp.claim.number} {cp.claim.id}", **{k: str(v or "") for k, v in result.verdicts.get(cp.claim.id, {}).items() if k != "numbers"}}
        for cp in result.plan.included
    ]
    columns = [("claim", "claim", "left"), ("verdict", "verdict", "left"), ("control", "control_verdict", "left"), ("why", "why", "left")]
    return FitTable("verdicts", columns, rows, plain=2)


def register(app: typer.Typer) -> None:
    """Add the `reproduce` command to a Typer app. Example: `register(app)` in `cli/main.py`."""
    app.command("reproduce")(reproduce_command)

"""`sqnc analyze OUT`, `sqnc figures [OUT]`, `sqnc tensorboard OUT` and `sqnc report OUT`: thin
wrappers over `sqloss_nc.analysis`, `sqloss_nc.figures`, `sqloss_nc.tensorboard` and
`sqloss_nc.report` (parse, call the library, print).

Wire them into an app with `register(app)`:

```python
import typer
from cli.report import register
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


def analyze_command(
    out: Path = typer.Argument(..., help="Output root of `sqnc run` (holds <experiment>/<run_id>/ folders)."),
    include_partial: bool = typer.Option(
        False, "--include-partial", help="Also aggregate runs still running or interrupted (each with the epochs it has)."
    ),
) -> None:
    """Collect every run under OUT into tables in OUT/analysis/ (runs, summary over seeds, per-epoch means)."""
    from sqloss_nc.analysis import analyze, key_numbers_table, problems_table, states_line
    from sqloss_nc.errors import UserError

    try:
        result = analyze(out, include_partial=include_partial)
    except UserError as err:
        _fail(str(err), 2)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    if result.problems:
        console.print(problems_table(result.problems))
    console.print(key_numbers_table(result))
    console.print(states_line(result), highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(sorted(result.files))} to {out / 'analysis'}", highlight=False, soft_wrap=True)
    console.print(f"next: sqnc figures {out}", highlight=False, soft_wrap=True)


def figures_command(
    out: Path = typer.Argument(Path("outputs"), help="Output root that `sqnc analyze` was run on."),
    only: list[str] = typer.Option([], "--only", help="Redraw only these figure kinds: --only fig2,fig6 (others are kept)."),
) -> None:
    """Draw the paper's figures from OUT/analysis/ into OUT/figures/ (PNG, PDF and index.html)."""
    from sqloss_nc.errors import UserError
    from sqloss_nc.figures import draw_figures, figure_kinds, figures_line

    kinds = [k.strip() for text in only for k in text.split(",") if k.strip()] or None
    bad = [k for k in kinds or [] if k not in figure_kinds()]
    if bad:
        _fail(f"--only: unknown figure {bad[0]!r}; known: {', '.join(figure_kinds())}", 2)
    if not (Path(out) / "analysis").is_dir():
        _fail(f"no analysis tables in {Path(out) / 'analysis'}; run `sqnc analyze {out}` first", 2)
    try:
        results = draw_figures(out, only=kinds)
    except UserError as err:
        _fail(str(err), 2)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    drawn = [r for r in results if not r.skipped]
    for r in drawn:
        console.print(f"[green]drew[/] {r.name}: {r.caption}", highlight=False, soft_wrap=True)
    for r in results:
        if r.skipped:
            console.print(f"[yellow]skipped[/] {r.name}: {r.skipped}", highlight=False, soft_wrap=True)
    console.print(figures_line(out, results), highlight=False, soft_wrap=True)


def tensorboard_command(
    out: Path = typer.Argument(..., help="Output root of `sqnc run` (holds <experiment>/<run_id>/ folders)."),
    logdir: Optional[Path] = typer.Option(None, "--logdir", help="Where the event files go (default: OUT/tensorboard)."),
) -> None:
    """Export every run's per-epoch CSVs (metrics.csv, nc.csv) as TensorBoard event files, one TensorBoard run per run folder."""
    from sqloss_nc.errors import UserError
    from sqloss_nc.tensorboard import export_tensorboard

    try:
        export = export_tensorboard(out, logdir)
    except UserError as err:
        _fail(str(err), 2)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    for name, why in export.skipped:
        console.print(f"[yellow]skipped[/] {escape(name)}: {escape(why)}", highlight=False, soft_wrap=True)
    for name, problem in export.problems:
        console.print(f"[yellow]repaired[/] {escape(name)}: {escape(problem)}", highlight=False, soft_wrap=True)
    points = sum(export.runs.values())
    console.print(f"wrote {len(export.runs)} run(s), {points} scalar points to {escape(str(export.logdir))}", highlight=False, soft_wrap=True)
    console.print(f"next: tensorboard --logdir {escape(str(export.logdir))}", highlight=False, soft_wrap=True)


def report_command(
    out: Path = typer.Argument(..., help="Output root of `sqnc run` (holds <experiment>/<run_id>/ folders)."),
    no_figures: bool = typer.Option(False, "--no-figures", help="Do not draw missing or stale figures (the report links what is there)."),
) -> None:
    """Judge every claim from OUT's runs (runs `analyze` first when its tables are missing or stale) into OUT/report/claims.md and claims.html."""
    from sqloss_nc.errors import UserError
    from sqloss_nc.report import claims_table, make_report

    try:
        rep = make_report(out, figures=not no_figures)
    except UserError as err:
        _fail(str(err), 2)
    except OSError as err:
        _fail(f"{type(err).__name__}: {err}", 1)
    if rep.analyzed:
        console.print(f"ran sqnc analyze {out} (its tables were missing or older than the runs)", highlight=False, soft_wrap=True)
    for msg in rep.messages:
        console.print(f"[yellow]{escape(msg)}[/]", highlight=False, soft_wrap=True)
    console.print(claims_table(rep))
    console.print(f"wrote {', '.join(escape(str(p)) for p in rep.files.values())}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `analyze`, `figures`, `tensorboard` and `report` commands to a Typer app.

    Args:
        app: the `sqnc` Typer app (or any Typer app, e.g. a fresh one in tests).

    Example: `register(app)` in `cli/main.py`, then `sqnc analyze outputs && sqnc figures outputs`
    (and `sqnc tensorboard outputs` for TensorBoard).
    """
    app.command("analyze")(analyze_command)
    app.command("figures")(figures_command)
    app.command("tensorboard")(tensorboard_command)
    app.command("report")(report_command)

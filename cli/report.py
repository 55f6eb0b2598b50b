"""`sqnc analyze OUT` and `sqnc figures [OUT]`: thin wrappers over `sqloss_nc.analysis` and
`sqloss_nc.figures` (parse, call the library, print).

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

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
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
    from sqloss_nc.figures import draw_figures, figure_kinds

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
    console.print(f"{len(drawn)} figure(s) in {Path(out) / 'figures'} (open index.html)", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `analyze` and `figures` commands to a Typer app.

    Args:
        app: the `sqnc` Typer app (or any Typer app, e.g. a fresh one in tests).

    Example: `register(app)` in `cli/main.py`, then `sqnc analyze outputs && sqnc figures outputs`.
    """
    app.command("analyze")(analyze_command)
    app.command("figures")(figures_command)

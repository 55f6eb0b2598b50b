"""`sqnc config show [KEY]`: every config key with its default, type and meaning (the schema in
`sqloss_nc/config.py`, whose field docstrings are the meanings). No framework is imported.

    sqnc config show              # all keys, section by section
    sqnc config show optim        # the keys of one section
    sqnc config show optim.lr     # one key

Wire it into an app with `register(app)`:

```python
import typer
from cli.config_cmd import register
app = typer.Typer()
register(app)
```
"""

from __future__ import annotations

import textwrap
from typing import Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def show_command(
    key: Optional[str] = typer.Argument(None, help="A key (optim.lr) or a section (optim); default: every key."),
) -> None:
    """List config keys with their default and meaning (what `--set KEY=VALUE` and YAML configs take)."""
    from rich.markup import escape

    from sqloss_nc.config import config_keys, did_you_mean

    keys = config_keys()
    if key:
        keys = [k for k in keys if k.key == key or k.key.startswith(key + ".")]
        if not keys:
            err_console.print(f"[bold red]error:[/] {escape(f'config: unknown key {key!r}{did_you_mean(key)}')}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
    width = max(40, min(console.width, 100))
    for k in keys:
        if k.type == "section":
            console.print(f"\n{k.key}: {k.description}", style="bold", highlight=False, markup=False, soft_wrap=True)
            continue
        console.print(f"{k.key} = {k.default}  ({k.type})", highlight=False, markup=False, soft_wrap=True)
        for line in textwrap.wrap(k.description, width=width - 4, break_on_hyphens=False) or ["(no description)"]:
            console.print("    " + line, style="dim", highlight=False, markup=False, soft_wrap=True)
    if not key:
        console.print("\nSet any key in a YAML config or with --set KEY=VALUE (lists in YAML: --set 'data.classes=[3, 5]').", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add the `config` command group (`config show`) to a Typer app.

    Args:
        app: the `sqnc` Typer app (or any Typer app).

    Example: `register(app)` in `cli/main.py`, then `sqnc config show optim.lr`.
    """
    group = typer.Typer(no_args_is_help=True, help="The config schema: every key, its default and meaning.")
    group.command("show")(show_command)
    app.add_typer(group, name="config")

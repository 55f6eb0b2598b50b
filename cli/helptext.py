"""`--help` that reads like the README: `sqnc analyze OUT` (not `{out}`), `--set KEY=VALUE`
(not `<list[str]>`), and no type label on flags (not `<bool>`).

Typer (0.2x) labels every parameter with its Python annotation and braces required arguments in
the usage line. `TidyGroup` rewrites those labels on every command as the command is looked up,
so commands registered anywhere (`cli/report.py`, `cli/simulate.py`, ...) get them too.

Example:

```python
app = typer.Typer(cls=TidyGroup)
```
"""

from __future__ import annotations

import re

from typer.core import TyperGroup

# Typer's `<...>` label -> the word a reader expects (`<list[str]>` is a repeatable TEXT).
_PLAIN = {"str": "TEXT", "path": "PATH", "int": "INT", "float": "FLOAT", "int range": "INT", "float range": "FLOAT"}


def plain_label(label: str | None) -> str | None:
    """`<list[str]>` -> `TEXT`, `<path>` -> `PATH`, `<int range>` -> `INT`; anything else as is.

    Example: `plain_label("<list[path]>")` is `'PATH'`.
    """
    if not label:
        return label
    m = re.fullmatch(r"<(?:list\[)?([^\]>]*)\]?>", label)
    return _PLAIN.get(m.group(1), m.group(1).upper()) if m else label


def tidy(param):
    """Give one parameter the labels above (idempotent; returns it)."""
    if getattr(param, "_sqnc_tidy", False):
        return param
    param._sqnc_tidy = True
    # Typer 0.2x vendors Click: its parameters are no `click.Argument`/`click.Option` instances.
    if param.param_type_name == "argument":
        name = (param.metavar or param.name or "").upper()
        param.metavar = name
        usage = (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")
        param._usage_display_name = lambda: usage  # Typer writes {name} for a required argument
        param.display_type_rich = lambda ctx: None  # the name says it (OUT, CONFIG)
    elif param.param_type_name == "option":
        if param.is_flag or param.is_bool_flag:
            param.metavar = ""  # a flag takes no value
        elif param.metavar is None:
            show = param.display_type_rich
            param.display_type_rich = lambda ctx: plain_label(show(ctx))
    return param


def tidy_command(command):
    """`tidy` every parameter of `command`, including the `--help` option made on demand."""
    if not getattr(command, "_sqnc_tidy", False):
        command._sqnc_tidy = True
        get_params = command.get_params
        command.get_params = lambda ctx: [tidy(p) for p in get_params(ctx)]
    return command


class TidyGroup(TyperGroup):
    """The `sqnc` group: every command it hands out, and the group itself, get tidy labels."""

    def get_params(self, ctx):
        return [tidy(p) for p in super().get_params(ctx)]

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_command(command)
            if hasattr(command, "list_commands"):  # a command group (none yet)
                for name in command.list_commands(ctx):
                    sub = command.get_command(ctx, name)
                    if sub is not None:
                        tidy_command(sub)
        return command

"""The command-line reference (``docs/cli.md``), rendered from every command's ``--help``.

``python -m konbini_ld.apps.cli.reference > docs/cli.md`` writes it; ``tests/test_docs.py``
fails when the file differs from what this renders. The help is rendered at a fixed width
(100 columns), whatever the terminal, so the text is the same on every machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

__all__ = ["render"]

WIDTH = 100
"""Columns of the help text: ``--help`` on a terminal at least this wide (click keeps two for the margin)."""

HEADER = """\
# Command-line reference

Every command's `--help`, as `konbini-ld` prints it. This file is generated: after changing a
command, regenerate it with

```sh
.venv/bin/python -m konbini_ld.apps.cli.reference > docs/cli.md
```

(`tests/test_docs.py` fails while it differs). The [guide](guide.md) explains the commands with
examples; [operations](operations.md) lists the exit codes.
"""


def _walk(command: click.Command, ctx: click.Context) -> Iterator[tuple[click.Context, click.Command]]:
    yield ctx, command
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(sub, _context(sub, name, ctx))


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """The context ``--help`` would have, at :data:`WIDTH` columns whatever the terminal."""
    settings = {**command.context_settings, "terminal_width": WIDTH - 2, "max_content_width": WIDTH}
    return click.Context(command, info_name=name, parent=parent, **settings)


def render(command: click.Command | None = None, prog: str = "konbini-ld") -> str:
    """The Markdown reference of ``command`` (default: ``konbini-ld``) and every subcommand.

    >>> "## konbini-ld load" in render()
    True
    """
    if command is None:
        from . import main as command
    assert command is not None
    root = _context(command, prog, None)
    parts = [HEADER]
    entries = list(_walk(command, root))
    if len(entries) > 1:
        parts.append("Commands: " + ", ".join(f"[`{ctx.command_path}`](#{_anchor(ctx.command_path)})"
                                             for ctx, _ in entries[1:]) + ".\n")
    for ctx, cmd in entries:
        parts.append(f"## {ctx.command_path}\n\n```text\n{cmd.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


if __name__ == "__main__":
    sys.stdout.write(render())

"""docs/cli.md, generated from the commands' own --help, so the reference cannot drift.

Regenerate with `python -m sg2_container.cli.reference > docs/cli.md`; a test compares.
"""
from __future__ import annotations

import click

from sg2_container.cli.main import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name in sorted(group.commands):
        command = group.commands[name]
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def render() -> str:
    """Markdown: the top-level help, then every command's help in a code block."""
    parts = ["# sg2 command reference", "",
             "Generated from `--help` by `python -m sg2_container.cli.reference`; do not edit.", ""]
    entries = [((), cli)] + list(_commands(cli))
    for path, command in entries:
        title = " ".join(("sg2",) + path)
        with click.Context(command, info_name=title, max_content_width=100, terminal_width=100,
                           help_option_names=["-h", "--help"]) as ctx:
            text = command.get_help(ctx)
        parts += [f"## {title}", "", "```", text.rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")

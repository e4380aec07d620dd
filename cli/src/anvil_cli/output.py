"""What the commands print: aligned tables for people, the server's JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(
    rows: Sequence[Sequence[object]], *, headers: Sequence[str] | None = None, right=()
) -> str:
    """Columns padded to their widest cell, under ``headers`` if given; the columns numbered in
    ``right`` are aligned right (numbers). No line ends in spaces."""
    cells = [[str(cell) for cell in row] for row in ([headers] if headers else []) + list(rows)]
    if not cells:
        return ""
    widths = [max(len(row[n]) for row in cells) for n in range(len(cells[0]))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(width) if n in right else cell.ljust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def credits(value: str | None, *, none: str = "no limit") -> str:
    return none if value is None else str(value)


def warn(message: str) -> None:
    click.secho(f"Warning: {message}", err=True, fg="yellow")


def note(message: str) -> None:
    click.echo(message, err=True)

"""What every command shares: turning input errors into one red line, printing tables, writing reports."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..logs import console

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Turn the library's input errors into one red line and exit status 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
            console.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(2) from error

    return wrapper  # type: ignore[return-value]


def print_tables(tables: dict[str, dict[str, float]]) -> None:
    """Metric tables as rich tables on the console."""
    from rich.table import Table

    for name, values in tables.items():
        table = Table(title=name, title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in values.items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)

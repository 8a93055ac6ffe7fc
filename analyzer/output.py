"""Printing results as a table for people, or JSON / CSV for programs (always to stdout)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    """How listings are printed."""

    table = "table"
    json = "json"
    csv = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """JSON text of query results: datetimes as ISO strings, decimals as floats."""
    return json.dumps(_plain(value), ensure_ascii=False, indent=2)


def stdout_console() -> Console:
    """A console on stdout that never wraps tables into unreadable slivers when piped."""
    return Console(file=sys.stdout, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, dict | list):
        return json.dumps(_plain(value), ensure_ascii=False)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def emit_rows(
    rows: list[dict[str, Any]],
    fmt: OutputFormat,
    *,
    columns: list[str] | None = None,
    title: str | None = None,
) -> None:
    """Print a list of row objects in the chosen format."""
    cols = columns or (list(rows[0]) if rows else [])
    if fmt is OutputFormat.json:
        sys.stdout.write(to_json([{c: r.get(c) for c in cols} for r in rows]) + "\n")
        return
    if fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(cols)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in cols])
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    stdout_console().print(table)


def emit_object(obj: dict[str, Any], fmt: OutputFormat) -> None:
    """Print one object: JSON as is, CSV/table as key/value rows."""
    if fmt is OutputFormat.json:
        sys.stdout.write(to_json(obj) + "\n")
        return
    emit_rows([{"field": k, "value": v} for k, v in obj.items()], fmt)

"""Reading ledger rows from CSV text."""

from __future__ import annotations

import csv
import io

from ledger.money import parse_amount


def parse_amounts(column: list[str]) -> list[float]:
    """Every amount of a column, in order."""
    return [parse_amount(cell) for cell in column]


def read_rows(text: str) -> list[dict[str, object]]:
    """The rows of a CSV export, with `amount` parsed."""
    rows: list[dict[str, object]] = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({**row, "amount": parse_amount(row["amount"])})
    return rows

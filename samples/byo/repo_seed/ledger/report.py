"""Totals by account."""

from __future__ import annotations

from ledger.importer import read_rows
from ledger.money import format_amount


def totals(text: str) -> dict[str, str]:
    """Each account's total of a CSV export, formatted."""
    sums: dict[str, float] = {}
    for row in read_rows(text):
        account = str(row["account"])
        sums[account] = sums.get(account, 0.0) + float(row["amount"])  # type: ignore[arg-type]
    return {account: format_amount(total) for account, total in sorted(sums.items())}

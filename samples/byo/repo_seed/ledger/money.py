"""Amounts as text and as numbers."""

from __future__ import annotations


def parse_amount(text: str) -> float:
    """The amount `text` writes: `$1,234.50` is 1234.5, `(12.00)` is -12.0 (a refund)."""
    cleaned = text.strip().replace("$", "").replace(",", "")
    if cleaned.startswith("(") and cleaned.endswith(")"):
        return -float(cleaned[1:-1])
    return float(cleaned)


def format_amount(value: float) -> str:
    """`value` written as the ledger writes amounts: `$1,234.50`, `($12.00)` when negative."""
    text = f"${abs(value):,.2f}"
    return f"({text})" if value < 0 else text

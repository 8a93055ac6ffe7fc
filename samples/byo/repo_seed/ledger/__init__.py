"""ledger: amounts parsed from text, totals and reports."""

from ledger.money import format_amount, parse_amount

__all__ = ["format_amount", "parse_amount"]

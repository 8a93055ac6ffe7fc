from ledger import format_amount, parse_amount
from ledger.importer import parse_amounts


def test_parse_amount_reads_dollars_and_refunds() -> None:
    assert parse_amount("$1,234.50") == 1234.5
    assert parse_amount("(12.00)") == -12.0


def test_parse_amounts_keeps_order() -> None:
    assert parse_amounts(["1", "$2.50"]) == [1.0, 2.5]


def test_format_amount_round_trips() -> None:
    assert parse_amount(format_amount(-3.5)) == -3.5

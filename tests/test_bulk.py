"""Rows bound as one JSON text per column (`analyzer.checks.bulk`) are stored exactly as the
store's own inserts store them: every type a row of the analysis holds, None, text JSON must
escape, floats to the last bit, a value shared by every row."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import duckdb
import pytest

from analyzer.checks.bulk import insert_json_rows, json_list, json_type
from traces.store.inserts import insert_rows
from traces.store.tables import FindingRow, LedgerRow

NOW = datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=UTC)


def _tables() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    for suffix in ("", "_json"):
        conn.execute(
            f"CREATE TABLE findings{suffix} (run_id VARCHAR, step_idx INTEGER, kind VARCHAR, "
            "severity VARCHAR, layer VARCHAR, evidence JSON, created_at TIMESTAMPTZ, "
            "confidence DOUBLE)"
        )
    return conn


FINDINGS = [
    FindingRow("r1", 0, "dropped_call", "error", "model", '{"a": "<>&\\"\'"}', NOW, None),
    FindingRow("r1", None, "loop", "warning", "tool", '{"é": "\u2028 中"}', NOW, 0.1 + 0.2),
    FindingRow('r"2', 7, "x", "info", "provider", "{}", NOW, 5e-324),
    FindingRow("r3", 2**31 - 1, "x", "info", "client", '{"n": [1, 2]}', NOW, 1 / 3),
]


@pytest.mark.parametrize("rows", [FINDINGS, FINDINGS[:1], [FINDINGS[1]] * 3])
def test_findings_stored_as_the_stores_own_insert_stores_them(rows: list[FindingRow]) -> None:
    conn = _tables()
    insert_rows(conn, "findings", rows, into="findings")
    insert_json_rows(conn, "findings", rows, into="findings_json")
    ours = conn.execute("SELECT * FROM findings_json").fetchall()
    assert ours == conn.execute("SELECT * FROM findings").fetchall()
    assert [r[7] for r in ours] == [r.confidence for r in rows]  # every bit of each float


def test_a_ledger_row_of_every_kind_of_value() -> None:
    conn = duckdb.connect()
    names = ", ".join(f"{n} {_type(n)}" for n in LedgerRow._fields)
    conn.execute(f"CREATE TABLE ledgers ({names})")
    row = LedgerRow("r", 3, 1.236, 421.0, None, "kept", 0.94, 497.0, 497.0, "partial", 0.95,
                    None, 11.49, 1.0, 337, None, 6, NOW)  # fmt: skip
    insert_json_rows(conn, "ledgers", [row, row._replace(run_id="s", per_turn_tokens=-0.0)])
    stored = conn.execute("SELECT * FROM ledgers ORDER BY run_id").fetchall()
    assert stored == [tuple(row), tuple(row._replace(run_id="s", per_turn_tokens=-0.0))]
    assert math.copysign(1.0, stored[1][12]) == -1.0


def _type(name: str) -> str:
    if name == "created_at":
        return "TIMESTAMPTZ"
    if name in ("chain_steps", "first_prompt_tokens", "check_version"):
        return "INTEGER"
    if name.endswith("behaviour") or name == "run_id":
        return "VARCHAR"
    return "DOUBLE"


def test_what_json_cannot_carry_goes_as_a_list() -> None:
    assert json_type(["a", None]) == "VARCHAR" and json_type([None]) == "VARCHAR"
    assert json_type([1, None, 2]) == "BIGINT" and json_type([True, False]) == "BOOLEAN"
    assert json_type([1, 0.5]) == "DOUBLE"
    assert json_type([math.inf]) is None and json_type([math.nan, 1.0]) is None
    assert json_type([NOW]) is None and json_type([True, 1]) is None
    conn = _tables()
    rows = [FINDINGS[0]._replace(confidence=math.inf), FINDINGS[1]]
    insert_json_rows(conn, "findings", rows, into="findings_json")
    stored = conn.execute("SELECT confidence FROM findings_json").fetchall()
    assert stored == [(math.inf,), (rows[1].confidence,)]
    texts = ["\x00", "\\", "a\nb"]
    assert conn.execute(
        "SELECT unnest(from_json($1, '[\"VARCHAR\"]'))", [json_list(texts)]
    ).fetchall() == [(t,) for t in texts]

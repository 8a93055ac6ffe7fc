"""Storing findings: re-analyzing a run replaces its findings in one transaction.

Checks are pure, so a run's findings are a function of its recorded data and the check
version; replacing rather than appending keeps `traces analyze` idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb

from analyzer.checks.loader import load_run
from analyzer.checks.records import Finding
from analyzer.checks.registry import CHECK_VERSION, run_checks


def replace_findings(
    conn: duckdb.DuckDBPyConnection, run_id: str, findings: Sequence[Finding]
) -> None:
    """Delete the run's findings and insert `findings`, atomically."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        (
            run_id,
            f.step,
            f.kind,
            f.severity,
            f.layer,
            json.dumps({**f.evidence, "check_version": CHECK_VERSION}, ensure_ascii=False),
            now,
        )
        for f in findings
    ]
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute("DELETE FROM findings WHERE run_id = ?", [run_id])
        if rows:
            conn.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def analyze_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[Finding]:
    """Run every check over the stored run and store the result; returns the findings."""
    findings = run_checks(load_run(conn, run_id))
    replace_findings(conn, run_id, findings)
    return findings

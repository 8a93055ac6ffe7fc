"""Storing findings: re-analyzing runs replaces their findings (and ledgers) in one
transaction.

Checks are pure, so a run's findings are a function of its recorded data and the check
version; replacing rather than appending keeps `traces analyze` idempotent. Each run's
one-line `failure_summary` and `findings_by_kind` are refreshed in the same transaction, so
they never disagree with the `findings` rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from analyzer.checks.ledger import Ledger, measure
from analyzer.checks.loader import load_runs
from analyzer.checks.records import Finding
from analyzer.checks.registry import CHECK_VERSION, run_checks
from traces.store.database import open_for_writing
from traces.store.inserts import insert_rows
from traces.store.tables import FindingRow, LedgerRow

CHUNK_RUNS = 2_000
"""Runs loaded and checked at a time: bounds memory on a 100k-run import, while each chunk
still costs only a handful of queries."""

_SEVERITY_ORDER = ("error", "warning", "info")

_DELETE = "DELETE FROM findings WHERE run_id IN (SELECT unnest($1::VARCHAR[]))"
_DELETE_LEDGERS = "DELETE FROM ledgers WHERE run_id IN (SELECT unnest($1::VARCHAR[]))"
_SUMMARIZE = """
    UPDATE runs SET failure_summary = u.summary, findings_by_kind = u.by_kind
    FROM (SELECT unnest($1::VARCHAR[]) AS id, unnest($2::VARCHAR[]) AS summary,
                 unnest($3::VARCHAR[])::JSON AS by_kind) AS u
    WHERE runs.id = u.id
"""


def failure_summary(findings: Sequence[Finding]) -> str:
    """One line, most severe first, most frequent kind first within a severity:
    `error: dropped_call×3; warning: http_rate_limit×1` ("" when there is nothing)."""
    counts = Counter((f.severity, f.kind) for f in findings)
    parts = []
    for severity in _SEVERITY_ORDER:
        kinds = sorted(
            ((kind, n) for (sev, kind), n in counts.items() if sev == severity),
            key=lambda item: (-item[1], item[0]),
        )
        if kinds:
            parts.append(f"{severity}: " + ", ".join(f"{kind}×{n}" for kind, n in kinds))
    return "; ".join(parts)


def findings_by_kind(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings counted by kind, most frequent first."""
    return dict(Counter(f.kind for f in findings).most_common())


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def ledger_row(ledger: Ledger, now: datetime) -> LedgerRow | None:
    """The `ledgers` row of a run's ledger; None when the run has no counted request."""
    first = next((e for e in ledger.entries if e.kind == "first"), None)
    if first is None:
        return None
    fit = ledger.fit
    reasoning = fit.reasoning if fit is not None else None
    tools = fit.tool_results if fit is not None else None
    return LedgerRow(
        run_id=ledger.run_id,
        chain_steps=len(ledger.chain),
        token_ratio=ledger.ratio,
        reasoning_sent_tokens=ledger.reasoning_sent if reasoning is not None else None,
        reasoning_kept_tokens=ledger.reasoning_kept,
        reasoning_behaviour=reasoning.best.name if reasoning is not None else None,
        reasoning_probability=reasoning.best.posterior if reasoning is not None else None,
        tool_results_sent_tokens=ledger.tool_results_sent if tools is not None else None,
        tool_results_kept_tokens=ledger.tool_results_kept,
        tool_results_behaviour=tools.best.name if tools is not None else None,
        tool_results_probability=tools.best.posterior if tools is not None else None,
        per_result_tokens=fit.value("per_result") if fit is not None else None,
        per_turn_tokens=fit.value("per_turn") if fit is not None else None,
        noise_scale=fit.scale if fit is not None else None,
        first_prompt_tokens=first.prompt_tokens,
        first_sent_tokens=first.sent_estimate,
        check_version=CHECK_VERSION,
        created_at=now,
    )


def _store(
    conn: duckdb.DuckDBPyConnection,
    found: dict[str, list[Finding]],
    now: datetime,
    ledgers: Sequence[LedgerRow] | None = None,
) -> None:
    """Replace the findings and summaries of the runs in `found` (inside a transaction), and
    their ledgers when given."""
    ids = list(found)
    conn.execute(_DELETE, [ids])
    if ledgers is not None:
        conn.execute(_DELETE_LEDGERS, [ids])
        insert_rows(conn, "ledgers", ledgers)
    rows = [
        FindingRow(
            run_id=run_id,
            step_idx=f.step,
            kind=f.kind,
            severity=f.severity,
            layer=f.layer,
            evidence=json.dumps({**f.evidence, "check_version": CHECK_VERSION}, ensure_ascii=False),
            created_at=now,
            confidence=f.confidence,
        )
        for run_id, findings in found.items()
        for f in findings
    ]
    insert_rows(conn, "findings", rows)  # one statement for the chunk, as the recorder does
    summaries = [failure_summary(found[run_id]) for run_id in ids]
    by_kind = [json.dumps(findings_by_kind(found[run_id])) for run_id in ids]
    conn.execute(_SUMMARIZE, [ids, summaries, by_kind])


def analyze_runs(
    conn: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    *,
    chunk: int = CHUNK_RUNS,
    on_chunk: Callable[[int], None] | None = None,
    own_transaction: bool = True,
) -> dict[str, list[Finding]]:
    """Run every check over the stored runs and store the results, all in one transaction;
    returns each existing run's findings (ids that do not exist are left out).

    `on_chunk(n)` is told after each chunk how many of the ids it covered (progress bars).
    With `own_transaction=False` the caller's open transaction is used (an import commits
    its runs and their findings together) and the caller commits or rolls back.
    """
    ids = list(dict.fromkeys(run_ids))
    now = datetime.now(UTC).replace(tzinfo=None)
    everything: dict[str, list[Finding]] = {}
    if own_transaction:
        conn.execute("BEGIN TRANSACTION")
    try:
        for part in _chunks(ids, chunk):
            found: dict[str, list[Finding]] = {}
            ledgers: list[LedgerRow] = []
            for run in load_runs(conn, part):
                found[run.id] = run_checks(run)
                # The checks have just measured this run's ledger: storing it is free.
                row = None if run.raw_text else ledger_row(measure(run), now)
                if row is not None:
                    ledgers.append(row)
            if found:
                _store(conn, found, now, ledgers)
            everything.update(found)
            if on_chunk is not None:
                on_chunk(len(part))
        if own_transaction:
            conn.execute("COMMIT")
    except BaseException:
        if own_transaction:
            conn.execute("ROLLBACK")
        raise
    return everything


def analyze_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[Finding]:
    """Run every check over the stored run and store the result; KeyError when it does not
    exist. Returns the findings."""
    found = analyze_runs(conn, [run_id])
    if run_id not in found:
        raise KeyError(run_id)
    return found[run_id]


def replace_findings(
    conn: duckdb.DuckDBPyConnection, run_id: str, findings: Sequence[Finding]
) -> None:
    """Delete the run's findings and insert `findings` (and refresh its summary), atomically."""
    now = datetime.now(UTC).replace(tzinfo=None)
    conn.execute("BEGIN TRANSACTION")
    try:
        _store(conn, {run_id: list(findings)}, now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def analyze_recorded(db_path: Path, run_ids: list[str]) -> dict[str, list[Finding]]:
    """Check runs just recorded into `db_path`; the findings of each. Call it once the
    recorder has closed: the checks need the database to themselves."""
    if not run_ids:
        return {}
    with open_for_writing(db_path) as conn:
        return analyze_runs(conn, run_ids)

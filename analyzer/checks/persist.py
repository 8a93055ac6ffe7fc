"""Storing findings: re-analyzing runs replaces their findings (and ledgers) in one
transaction.

Checks are pure, so a run's findings are a function of its recorded data and the check
version; replacing rather than appending keeps `traces analyze` idempotent. Each run's
one-line `failure_summary` and `findings_by_kind` are refreshed in the same transaction, so
they never disagree with the `findings` rows.

A run still `running` is checked on the steps it has so far: its findings are stored as
partial (a `findings_so_far` row naming the last step checked, store migration 15), and the
check of the ended run replaces them and deletes that row, in one transaction. A partial
result never replaces a final one: it is stored only if the run is still running in the
transaction that stores it, and since both update the run's `runs` row, DuckDB refuses
whichever of two overlapping transactions commits second (on a file the analysis is done
again, on a lake the chunk's store, each then reading what is committed).
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import duckdb

from analyzer.checks.ledger import Ledger, measure
from analyzer.checks.loader import Messages, load_runs
from analyzer.checks.records import Finding, Run
from analyzer.checks.registry import CHECK_VERSION, run_checks
from analyzer.checks.stored import DELETE_FINDINGS, DELETE_LEDGERS, RUN_IDS, FindingCounts
from traces.store.database import Store, open_for_writing
from traces.store.inserts import insert_columns, insert_rows, json_list
from traces.store.lake import is_lake, transaction
from traces.store.tables import FindingRow, LedgerRow

if TYPE_CHECKING:
    from analyzer.checks.timing import Timings

CHUNK_RUNS = 2_000
"""Runs loaded and checked at a time: bounds memory on a 100k-run import, while each chunk
still costs only a handful of queries."""

_SEVERITY_ORDER = ("error", "warning", "info")
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_MAKE_ENCODER: Callable[..., Callable[[Any, int], Sequence[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_ITERENCODE = (
    None
    if _MAKE_ENCODER is None
    else _MAKE_ENCODER(
        None,  # no circular-reference markers: evidence is plain acyclic data
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        False,
        False,
        True,
    )
)


def _encode(value: dict[str, Any]) -> str:
    """`json.dumps(value, ensure_ascii=False)`: the encoder's C function made once, where
    `JSONEncoder.encode` builds it (and a closure) anew for every finding's evidence."""
    if _ITERENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_ITERENCODE(value, 0))


_IDS = RUN_IDS
_SO_FAR = f"SELECT 1 FROM findings_so_far WHERE run_id IN ({_IDS}) LIMIT 1"
_DELETE_SO_FAR = f"DELETE FROM findings_so_far WHERE run_id IN ({_IDS})"
_RUNNING = f"SELECT id FROM runs WHERE status = 'running' AND id IN ({_IDS})"
_INSERT_SO_FAR = """
    INSERT INTO findings_so_far
    SELECT unnest(from_json($1, '["VARCHAR"]')), unnest(from_json($2, '["INTEGER"]')), $3
"""
"""Both take the run ids as one JSON text (`traces.store.inserts.json_list`): bound as a list,
each id is a Python value DuckDB converts at a cost (see `traces.store.inserts`). The runs'
keys bound the rows scanned (`run_tables.of_runs`)."""
_SUMMARIZE = """
    UPDATE runs SET failure_summary = u.summary, findings_by_kind = u.by_kind
    FROM (SELECT unnest(from_json($1, '["VARCHAR"]')) AS id,
                 unnest(from_json($2, '["VARCHAR"]')) AS summary,
                 unnest(from_json($3, '["VARCHAR"]'))::JSON AS by_kind) AS u
    WHERE runs.id = u.id
"""


def failure_summary(findings: Sequence[Finding]) -> str:
    """One line, most severe first, most frequent kind first within a severity:
    `error: dropped_call×3; warning: http_rate_limit×1` ("" when there is nothing)."""
    return _summary_line(finding_counts(findings))


def _summary_line(counts: FindingCounts) -> str:
    parts = []
    for severity in _SEVERITY_ORDER:
        kinds = sorted(
            ((kind, n) for (sev, kind), n in counts.items() if sev == severity),
            key=lambda item: (-item[1], item[0]),
        )
        if kinds:
            parts.append(f"{severity}: " + ", ".join(f"{kind}×{n}" for kind, n in kinds))
    return "; ".join(parts)


def finding_counts(findings: Sequence[Finding]) -> FindingCounts:
    """`findings` counted by (severity, kind)."""
    return Counter((f.severity, f.kind) for f in findings)


def findings_by_kind(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings counted by kind, most frequent first."""
    return _by_kind(finding_counts(findings))


def _by_kind(counts: FindingCounts) -> dict[str, int]:
    # Kinds in the order they first occur, as the counts' pairs are: ties keep that order.
    kinds: dict[str, int] = {}
    for (_, kind), n in counts.items():
        kinds[kind] = kinds.get(kind, 0) + n
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def finding_columns(found: dict[str, list[Finding]], now: datetime) -> list[list[Any]]:
    """The `findings` rows of `found` (run id -> its findings) as one list per column, in
    the table's order: inserted as they are, one statement for a chunk, as the recorder
    inserts (a row tuple per finding only to transpose it again cost a tenth of storing)."""
    columns: dict[str, list[Any]] = {name: [] for name in FindingRow._fields}
    run_ids, steps, kinds = columns["run_id"], columns["step_idx"], columns["kind"]
    severities, layers, evidence = columns["severity"], columns["layer"], columns["evidence"]
    confidences = columns["confidence"]
    for run_id, findings in found.items():
        for f in findings:
            run_ids.append(run_id)
            steps.append(f.step)
            kinds.append(f.kind)
            severities.append(f.severity)
            layers.append(f.layer)
            evidence.append(_encode({**f.evidence, "check_version": CHECK_VERSION}))
            confidences.append(f.confidence)
    columns["created_at"] = [now] * len(run_ids)
    return list(columns.values())


def summary_columns(counts: dict[str, FindingCounts]) -> list[list[str]]:
    """Each run's id, `failure_summary` and `findings_by_kind` (JSON), as three columns,
    from its findings counted (`finding_counts`)."""
    ids = list(counts)
    return [
        ids,
        [_summary_line(counts[run_id]) for run_id in ids],
        [json.dumps(_by_kind(counts[run_id])) for run_id in ids],
    ]


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
        # Sent and kept are unknown together (an undecided behaviour): a sum over runs then
        # leaves the run out rather than count its reasoning as lost.
        reasoning_sent_tokens=ledger.reasoning_sent if ledger.reasoning_kept is not None else None,
        reasoning_kept_tokens=ledger.reasoning_kept,
        reasoning_behaviour=reasoning.best.name if reasoning is not None else None,
        reasoning_probability=reasoning.best.posterior if reasoning is not None else None,
        tool_results_sent_tokens=(
            ledger.tool_results_sent if ledger.tool_results_kept is not None else None
        ),
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


def check_runs(
    runs: Sequence[Run], now: datetime, timings: Timings | None = None
) -> tuple[dict[str, list[Finding]], list[LedgerRow]]:
    """Every check over each run: its findings by run id, and the ledger rows to store.
    One process and the workers (`worker`) both check a chunk this way."""
    found: dict[str, list[Finding]] = {}
    ledgers: list[LedgerRow] = []
    for run in runs:
        found[run.id] = run_checks(run, timings)
        # The checks have just measured this run's ledger: storing it is free.
        row = None if run.raw_text else ledger_row(measure(run), now)
        if row is not None:
            ledgers.append(row)
    return found, ledgers


def running_runs(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> set[str]:
    """Those of `run_ids` whose status is `running` (in the caller's transaction)."""
    if not run_ids:
        return set()
    return {row[0] for row in conn.execute(_RUNNING, [json_list(list(run_ids))]).fetchall()}


def _store(
    conn: duckdb.DuckDBPyConnection,
    found: dict[str, list[Finding]],
    now: datetime,
    ledgers: Sequence[LedgerRow] | None = None,
    so_far: dict[str, int | None] | None = None,
) -> dict[str, list[Finding]]:
    """Replace the findings and summaries of the runs in `found` (inside a transaction), and
    their ledgers when given; what it stored.

    `so_far`: the runs of `found` checked while running, each with the last step checked.
    Their findings are stored as partial, and only if the run is still running now: one
    that ended since was checked on steps it no longer ends with, and the check of its end
    stores its findings (before this transaction or after it)."""
    if so_far:
        ended = set(so_far) - running_runs(conn, list(so_far))
        if ended:
            found = {run_id: f for run_id, f in found.items() if run_id not in ended}
            so_far = {run_id: step for run_id, step in so_far.items() if run_id not in ended}
            if ledgers is not None:
                ledgers = [row for row in ledgers if row.run_id not in ended]
        if not found:
            return found
    ids = [json_list(list(found))]
    conn.execute(DELETE_FINDINGS, ids)
    if ledgers is not None:
        conn.execute(DELETE_LEDGERS, ids)
        insert_rows(conn, "ledgers", ledgers)
    columns = finding_columns(found, now)
    if columns[0]:
        insert_columns(conn, "findings", columns)
    # Also what makes two overlapping analyses of a run conflict (see the module's doc).
    counted = {run_id: finding_counts(findings) for run_id, findings in found.items()}
    conn.execute(_SUMMARIZE, [json_list(c) for c in summary_columns(counted)])
    # Looked for first: a delete that finds nothing (every analysis of ended runs, nearly)
    # is still a write of the table, which on a lake two analyses would conflict on.
    if conn.execute(_SO_FAR, ids).fetchone() is not None:
        conn.execute(_DELETE_SO_FAR, ids)
    if so_far:
        conn.execute(
            _INSERT_SO_FAR, [json_list(list(so_far)), json.dumps(list(so_far.values())), now]
        )
    return found


def rollback(conn: duckdb.DuckDBPyConnection) -> None:
    """Roll the open transaction back, if there still is one: Ctrl-C can land after COMMIT
    returned (the work is stored, whole) or before BEGIN took effect (nothing to undo)."""
    with suppress(duckdb.TransactionException):
        conn.execute("ROLLBACK")


@contextmanager
def without_collector() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and back on after, if it was).

    Loading a chunk builds hundreds of thousands of records, findings and decoded messages,
    none of them cyclic; the collector's passes over that growing heap took 40% of the
    loading time and found nothing to free. Reference counting still frees every chunk.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


CONFLICT_ATTEMPTS = 5
"""Times an analysis of a store file, in a transaction of its own, is tried when it conflicts
with another transaction (a recorder ending a run the analysis updates)."""


def analyze_runs(
    conn: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    *,
    chunk: int = CHUNK_RUNS,
    on_chunk: Callable[[int], None] | None = None,
    own_transaction: bool = True,
    timings: Timings | None = None,
    on_findings: Callable[[str, list[Finding]], None] | None = None,
    only_running: bool = False,
) -> dict[str, list[Finding]]:
    """Run every check over the stored runs and store the results, all in one transaction;
    returns each existing run's findings (ids that do not exist are left out).

    A run still running is checked on the steps it has so far and its findings stored as
    partial (see the module's doc); with `only_running`, runs that are not running are left
    out (the live checks of a recording: the check of a run's end is not theirs).

    `on_chunk(n)` is told after each chunk how many of the ids it covered (progress bars).
    With `own_transaction=False` the caller's open transaction is used (an import commits
    its runs and their findings together) and the caller commits or rolls back. `timings`
    (benchmarks) is told where the time went: `load`, each check by name, `store`.
    With `on_findings(run_id, findings)`, each run's findings go there once stored instead
    of into the returned dict (then empty): a million-step analysis need not hold them all.

    On a store file being recorded, an analysis in a transaction of its own that conflicts
    with another transaction (a run it updates was ended meanwhile) is rolled back and done
    again, on what is committed then.
    """
    args = (conn, run_ids, chunk, on_chunk, own_transaction, timings, on_findings, only_running)
    if not own_transaction or is_lake(conn):
        return _analyze_runs(*args)
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            return _analyze_runs(*args)
        except duckdb.TransactionException as exc:
            if "conflict" not in str(exc).lower() or attempt == CONFLICT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _analyze_runs(
    conn: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    chunk: int,
    on_chunk: Callable[[int], None] | None,
    own_transaction: bool,
    timings: Timings | None,
    on_findings: Callable[[str, list[Finding]], None] | None,
    only_running: bool,
) -> dict[str, list[Finding]]:
    ids = list(dict.fromkeys(run_ids))
    now = datetime.now(UTC).replace(tzinfo=None)
    everything: dict[str, list[Finding]] = {}
    # On a lake, each chunk's results commit on their own, in a short transaction done again
    # if it conflicts: DuckLake refuses a commit that updates `runs` once another writer has
    # inserted or updated runs since it began, which a recording does all along. A run's
    # findings and summary still change together; the analysis as a whole is not atomic.
    by_chunk = own_transaction and is_lake(conn)

    def timed(name: str) -> Any:
        return nullcontext() if timings is None else timings.part(name)

    if own_transaction and not by_chunk:
        conn.execute("BEGIN TRANSACTION")
    try:
        with without_collector():
            messages = Messages()
            for part in _chunks(ids, chunk):
                with timed("load"):
                    # Read before the steps: a run that ends meanwhile is checked on all of
                    # them as partial, which `_store` then drops, never the other way round.
                    running = running_runs(conn, part)
                    runs = load_runs(
                        conn, [r for r in part if r in running] if only_running else part, messages
                    )
                found, ledgers = check_runs(runs, now, timings)
                so_far = {
                    run.id: run.steps[-1].index if run.steps else None
                    for run in runs
                    if run.id in running
                }
                if found:
                    with timed("store"):
                        if by_chunk:
                            found = transaction(
                                conn, partial(_store, conn, found, now, ledgers, so_far)
                            )
                        else:
                            found = _store(conn, found, now, ledgers, so_far)
                if on_findings is None:
                    everything.update(found)
                else:
                    for run_id, findings in found.items():
                        on_findings(run_id, findings)
                if on_chunk is not None:
                    on_chunk(len(part))
        if own_transaction and not by_chunk:
            with timed("commit"):
                conn.execute("COMMIT")
    except BaseException:
        if own_transaction and not by_chunk:
            rollback(conn)
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
    transaction(conn, partial(_store, conn, {run_id: list(findings)}, now))


def analyze_recorded(db_path: Store, run_ids: list[str]) -> dict[str, list[Finding]]:
    """Check runs just recorded into `db_path`; the findings of each."""
    if not run_ids:
        return {}
    with open_for_writing(db_path) as conn:
        return analyze_runs(conn, run_ids)

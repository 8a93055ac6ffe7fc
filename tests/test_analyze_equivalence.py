"""The fast analysis path changes no verdict: what `traces analyze` loads, finds and stores
equals what a straightforward reference path gives on the same store.

The reference reads each run with one query per table, rebuilds every request with the SQL
macro `request_messages` (a query per step), builds records with the dataclass constructors and runs
every registered check; the fast path (`analyzer.checks.loader`, `persist`) batches, shares
decoded JSON and skips constructors. The store holds every simulator fault recorded over
real HTTP and every dialect recorded clean, streaming and not (test_checks_faults's
recordings, made once per test run for both modules, so that every fault added there is
compared here too), and the import fixtures, so each check has something to find and
something to pass.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_checks_faults import recorded_corpus

from analyzer.checks import loader
from analyzer.checks.ledger import measure
from analyzer.checks.loader import _Builder, load_runs
from analyzer.checks.parallel import analyze_in_workers, plan
from analyzer.checks.persist import (
    CHECK_VERSION,
    analyze_runs,
    failure_summary,
    finding_counts,
    findings_by_kind,
    ledger_row,
)
from analyzer.checks.records import Call, Finding, Result, Run, Step
from analyzer.checks.registry import RAW_TEXT_CHECKS, RUN_CHECKS, STEP_CHECKS, run_checks
from analyzer.cursor_rows import dict_rows
from traces.importing import import_files
from traces.store.database import open_for_writing
from traces.store.run_batch import RunBatch, of_batch
from traces.store.tables import LedgerRow

from conftest import run_cli

pytestmark = pytest.mark.slow  # records every fault scenario over HTTP

FIXTURES = Path(__file__).parent / "fixtures" / "import"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A store of every fault scenario, clean runs of every dialect, and imported logs."""
    db, _ = recorded_corpus(tmp_path_factory, "equivalence")
    import_files(db, [FIXTURES / "exchanges.jsonl", FIXTURES / "k2vv_results.jsonl"])
    conn = duckdb.connect(str(db), read_only=True)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
    finally:
        conn.close()
    return db, ids


@dataclass(frozen=True)
class Reference:
    """The store's runs read the plain way (`reference_run`) and what `run_checks` finds in
    each, by run id."""

    runs: dict[str, Run]
    findings: dict[str, list[Finding]]


@pytest.fixture(scope="module")
def reference(store: tuple[Path, list[str]]) -> Reference:
    """The reference the comparisons below are made against, read once per module instead of
    once per test (reading every step one query at a time was most of three tests' time).
    Analysis writes findings, ledgers and the runs' summaries, never what a run is read
    from, so a reference read before a test analyzed the store is that test's reference."""
    db, ids = store
    with duckdb.connect(str(db), read_only=True) as conn:
        runs = {run_id: reference_run(conn, run_id) for run_id in ids}
    return Reference(runs, {run_id: run_checks(run) for run_id, run in runs.items()})


# -- the reference path: one query per table and step, the macro, the constructors -----------


def _json_columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND data_type = 'JSON'",
        [table],
    ).fetchall()
    return {name for (name,) in rows}


def _record_fields(
    cls: type[Any], row: dict[str, Any], json_columns: set[str], renamed: dict[str, str]
) -> dict[str, Any]:
    """The fields of `cls` that `row` holds a column for (by name, or as `renamed`), JSON
    decoded, lists as tuples where the field holds a tuple."""
    values: dict[str, Any] = {}
    for field in fields(cls):
        column = renamed.get(field.name, field.name)
        if column not in row:
            continue
        value = row[column]
        if column in json_columns and isinstance(value, str):
            value = json.loads(value)
        if isinstance(field.default, tuple):
            value = tuple(value or ())
        elif field.name == "request_params":
            value = value or {}
        values[field.name] = value
    return values


def reference_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> Run:
    """One run, read the plain way."""
    [head] = dict_rows(conn.execute("SELECT * FROM runs WHERE id = ?", [run_id]))
    settings = json.loads(head["settings"]) or {}
    step_json = _json_columns(conn, "steps")
    call_json = _json_columns(conn, "tool_calls")
    # A run's calls and results in one query each, not one per step (the reference read in
    # 5.5 s of CPU instead of 6.7 s, the same runs); grouping the rows by step here shares
    # nothing with the loader it is compared with.
    calls_of: dict[int, list[Call]] = {}
    for c in dict_rows(
        conn.execute(
            "SELECT * FROM tool_calls WHERE run_id = ? ORDER BY step_idx, call_idx", [run_id]
        )
    ):
        call = Call(**_record_fields(Call, c, call_json, {"index": "call_idx"}))
        calls_of.setdefault(c["step_idx"], []).append(call)
    results_of: dict[int, list[Result]] = {}
    for r in dict_rows(
        conn.execute(
            "SELECT * FROM tool_results WHERE run_id = ? ORDER BY step_idx, call_idx", [run_id]
        )
    ):
        result = Result(**_record_fields(Result, r, set(), {"index": "call_idx"}))
        results_of.setdefault(r["step_idx"], []).append(result)
    steps = []
    for row in dict_rows(
        conn.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", [run_id])
    ):
        key = [run_id, row["idx"]]
        calls = tuple(calls_of.get(row["idx"], ()))
        results = tuple(results_of.get(row["idx"], ()))
        messages = tuple(
            json.loads(body)
            for (body,) in conn.execute("SELECT body FROM request_messages(?, ?)", key).fetchall()
        )
        values = _record_fields(Step, row, step_json, {"index": "idx"})
        steps.append(
            Step(**{**values, "calls": calls, "results": results, "request_messages": messages})
        )
    dialect = settings.get("dialect")
    return Run(
        id=run_id,
        provider=head["provider"],
        model=head["model"],
        dialect=dialect if isinstance(dialect, str) else None,
        termination=head["termination"],
        steps=tuple(steps),
        raw_text=settings.get("variant") == "raw",
        parameter_probe=bool(settings.get("parameters")),
    )


def _loaded(db: Path, ids: list[str]) -> list[Run]:
    """The runs `ids` of `db` as the checks' loader builds them."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return load_runs(conn, ids)
    finally:
        conn.close()


def _canonical(rows: Iterator[tuple[Any, ...]]) -> list[str]:
    """Finding rows as sortable JSON text, evidence decoded (tuples become lists)."""
    return sorted(json.dumps(row, sort_keys=True, ensure_ascii=False) for row in rows)


def _stored(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT run_id, step_idx, kind, severity, layer, confidence, evidence FROM findings"
    ).fetchall()
    return _canonical((*row, json.loads(evidence)) for *row, evidence in rows)


def _expected_rows(found: dict[str, list[Finding]]) -> list[str]:
    return _canonical(
        (
            run_id,
            f.step,
            f.kind,
            f.severity,
            f.layer,
            f.confidence,
            {**f.evidence, "check_version": CHECK_VERSION},
        )
        for run_id, findings in found.items()
        for f in findings
    )


def _stored_ledgers(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    columns = [c for c in LedgerRow._fields if c != "created_at"]
    return sorted(conn.execute(f"SELECT {', '.join(columns)} FROM ledgers").fetchall())


def _expected_ledgers(runs: list[Run]) -> list[tuple[Any, ...]]:
    now = datetime(2000, 1, 1)
    rows = [ledger_row(measure(run), now) for run in runs if not run.raw_text]
    return sorted(tuple(row)[:-1] for row in rows if row is not None)


# -- the comparisons --------------------------------------------------------------------------


def test_the_loader_builds_what_the_constructors_build(
    store: tuple[Path, list[str]], reference: Reference
) -> None:
    db, ids = store
    fast = _loaded(db, ids)
    assert [run.id for run in fast] == ids
    for quick, plain in zip(fast, reference.runs.values(), strict=True):
        assert quick == plain, quick.id
        for a, b in zip(quick.steps, plain.steps, strict=True):
            assert a.tools == b.tools  # shared per distinct request parameters, still equal
    assert sum(len(run.steps) for run in fast) > 300  # the store is not trivially small


def test_request_parameters_sharing_a_hash_are_each_steps_own(
    store: tuple[Path, list[str]], reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every text under one hash (as if all collided): each step's own text is fetched."""
    db, ids = store
    monkeypatch.setattr(loader, "_PARAMS_SQL", loader._PARAMS_SQL.replace("hash(", "0 * hash("))
    with duckdb.connect(str(db), read_only=True) as conn:
        assert loader._params_by_hash(conn, RunBatch(conn, ids)) is None
    assert _loaded(db, ids) == list(reference.runs.values())


def test_a_batch_reads_exactly_its_runs_whatever_their_ids_hold() -> None:
    """The ranges written into a batch's queries (keys, ids as literals) keep every row of
    its runs and none of the others', ids with quotes and placeholders' names included."""
    odd = ["it's {last}", "{first}'", "plain", "z {low}"]
    others = ["a", "itsy", "q", "zz"]
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE runs (id VARCHAR, key BIGINT)")
        conn.execute("CREATE TABLE step_rows (run_id VARCHAR, run_key BIGINT, idx INTEGER)")
        for key, run_id in enumerate(sorted(odd + others), start=1):
            conn.execute("INSERT INTO runs VALUES (?, ?)", [run_id, key])
            conn.execute("INSERT INTO step_rows SELECT ?, ?, range FROM range(3)", [run_id, key])
        for ids in (odd, odd[:1], sorted(odd)):
            batch = RunBatch(conn, ids)
            found = batch.execute(conn, f"SELECT run_id, idx FROM step_rows WHERE {of_batch()}")
            assert sorted(found.fetchall()) == sorted((r, i) for r in ids for i in range(3))


_REPLAYED = """
    SELECT m.seq, m.key, m.body, t.reasoning_source
    FROM step_rows t JOIN step_message_keys s
      ON s.run_id = t.run_id AND s.step_idx = t.idx + 1 AND s.position = t.request_message_count
    JOIN messages m ON m.seq = s.seq AND m.key = s.key
    WHERE t.reasoning_replayed AND t.run_id = ?
"""
_OUTPUT_MESSAGES = """
    SELECT m.seq, m.key, m.body
    FROM tool_result_rows t JOIN step_message_keys s
      ON s.run_id = t.run_id AND s.step_idx = t.step_idx + 1 AND s.position = t.output_position
    JOIN messages m ON m.seq = s.seq AND m.key = s.key
    WHERE t.run_id = ?
"""


def test_the_loader_takes_the_views_values_where_a_message_gives_none(
    store: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A step's reasoning and a tool's output stored once, in a message of the run's next
    request (store migrations 16, 17), come from the view, looked up a batch at a time,
    where that message does not give them as text: one imported run's messages hold a
    number and a list there (the view gives their JSON text), the others' have lost their
    numbers (as rows a parallel import stored before their messages were: the view's join,
    the macro's and the loader's then find no message, and the view gives none). The
    loader builds what the reference path reads."""
    db, _ = store
    copy = _copy(db, tmp_path)
    with duckdb.connect(str(copy)) as conn:
        imported = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT run_id FROM step_rows WHERE reasoning_replayed ORDER BY 1"
            ).fetchall()
        ]
        assert len(imported) >= 2
        edited = imported[0]
        changed = 0
        for seq, key, body, source in conn.execute(_REPLAYED, [edited]).fetchall():
            conn.execute(
                "UPDATE messages SET body = ? WHERE seq = ? AND key = ?",
                [json.dumps({**json.loads(body), source: 12345}), seq, key],
            )
            changed += 1
        for seq, key, body in conn.execute(_OUTPUT_MESSAGES, [edited]).fetchall():
            listed = [{"type": "text", "text": json.loads(body).get("content")}]
            conn.execute(
                "UPDATE messages SET body = ? WHERE seq = ? AND key = ?",
                [json.dumps({**json.loads(body), "content": listed}), seq, key],
            )
            changed += 1
        conn.execute(
            "UPDATE step_message_keys SET seq = NULL WHERE run_id IN (SELECT unnest(?))",
            [imported[1:]],
        )
        plain = [reference_run(conn, run_id) for run_id in imported]
    assert changed > 0
    fast = _loaded(copy, imported)
    assert fast == plain
    reasoning = [s.reasoning for s in fast[0].steps if s.reasoning_source != "none"]
    assert "12345" in reasoning  # the view's text of the number, not the loader's guess
    assert any(s.reasoning is None and s.reasoning_source != "none" for s in fast[1].steps)


def test_findings_and_summaries_equal_the_reference(
    store: tuple[Path, list[str]], reference: Reference
) -> None:
    db, ids = store
    plain = list(reference.runs.values())
    expected = reference.findings
    conn = open_for_writing(db)
    try:
        found = analyze_runs(conn, ids, chunk=7)  # several chunks, one transaction
        stored = _stored(conn)
        ledgers = _stored_ledgers(conn)
        summaries = {
            run_id: (summary, json.loads(by_kind))
            for run_id, summary, by_kind in conn.execute(
                "SELECT id, failure_summary, findings_by_kind FROM runs"
            ).fetchall()
        }
    finally:
        conn.close()
    assert found == expected
    assert stored == _expected_rows(expected)
    assert ledgers == _expected_ledgers(plain) and ledgers
    assert summaries == {
        run_id: (failure_summary(f), findings_by_kind(f)) for run_id, f in expected.items()
    }
    # Every fault scenario's store holds most kinds: the comparison is not over silence.
    kinds = {f.kind for findings in expected.values() for f in findings}
    assert len(kinds) >= 30, sorted(kinds)


def test_checks_run_check_by_check_sort_as_step_by_step(store: tuple[Path, list[str]]) -> None:
    """`run_checks` runs each step check over all of a run's steps before the next (cheaper:
    one check's code stays in the processor's caches); every check on one step, then the
    next step, sorts to the same findings, because a step check reports only the step it is
    given, in kinds no other step check reports."""
    db, ids = store
    runs = _loaded(db, ids)
    kinds: dict[str, set[str]] = {}
    for run in runs:
        per_step, per_run = (RAW_TEXT_CHECKS, {}) if run.raw_text else (STEP_CHECKS, RUN_CHECKS)
        step_by_step: list[Finding] = []
        for step in run.steps:
            for name, step_check in per_step.items():
                found = list(step_check(step, run))
                assert all(f.step == step.index for f in found), (run.id, name)
                kinds.setdefault(name, set()).update(f.kind for f in found)
                step_by_step.extend(found)
        for run_check in per_run.values():
            step_by_step.extend(run_check(run))
        ordered = sorted(step_by_step, key=lambda f: (-1 if f.step is None else f.step, f.kind))
        assert run_checks(run) == ordered, run.id
    names = sorted(kinds)
    for at, name in enumerate(names):
        for other in names[at + 1 :]:
            assert not kinds[name] & kinds[other], (name, other)
    assert sum(1 for found in kinds.values() if found) >= 10  # most step checks found some


def _copy(db: Path, to: Path) -> Path:
    target = to / "copy.duckdb"
    shutil.copyfile(db, target)
    return target


def test_workers_store_what_one_process_stores(
    store: tuple[Path, list[str]], reference: Reference, tmp_path: Path
) -> None:
    db, ids = store
    copy = _copy(db, tmp_path)
    with duckdb.connect(str(copy), read_only=True) as conn:
        split = plan(conn, [*ids, "no-such-run"], max_steps=40, workers=3)
    chunks = split.chunks
    runs = reference.runs
    expected = reference.findings
    # Chunks of whole runs, in order, none over 40 steps unless one run is.
    assert [run_id for chunk in chunks for run_id in chunk] == ids
    assert split.steps == sum(len(run.steps) for run in runs.values())
    assert all(len(chunk) == 1 or sum(len(runs[r].steps) for r in chunk) <= 40 for chunk in chunks)
    counts = analyze_in_workers(copy, chunks, workers=3)
    assert counts == {run_id: finding_counts(f) for run_id, f in expected.items()}
    with duckdb.connect(str(copy), read_only=True) as conn:
        stored = _stored(conn)
        ledgers = _stored_ledgers(conn)
        summaries = {
            run_id: (summary, json.loads(by_kind))
            for run_id, summary, by_kind in conn.execute(
                "SELECT id, failure_summary, findings_by_kind FROM runs"
            ).fetchall()
        }
    assert stored == _expected_rows(expected)
    assert ledgers == _expected_ledgers(list(runs.values()))
    assert summaries == {
        run_id: (failure_summary(f), findings_by_kind(f)) for run_id, f in expected.items()
    }


def test_traces_analyze_in_workers_prints_what_one_process_prints(
    store: tuple[Path, list[str]], tmp_path: Path
) -> None:
    db, _ = store
    printed = {}
    for workers in ("1", "2"):
        (tmp_path / workers).mkdir()
        copy = _copy(db, tmp_path / workers)
        done = run_cli(
            "analyze",
            "--db",
            str(copy),
            "--format",
            "json",
            env={"TRACES_ANALYZE_WORKERS": workers},
        )
        assert done.returncode == 0, done.stderr
        with duckdb.connect(str(copy), read_only=True) as conn:
            printed[workers] = (json.loads(done.stdout), _stored(conn), _stored_ledgers(conn))
    assert printed["1"] == printed["2"]


def test_findings_handed_over_equal_those_returned(store: tuple[Path, list[str]]) -> None:
    db, ids = store
    handed: dict[str, list[Finding]] = {}
    conn = open_for_writing(db)
    try:
        returned = analyze_runs(conn, ids, chunk=11)
        kept = analyze_runs(conn, ids, on_findings=handed.__setitem__)
    finally:
        conn.close()
    assert kept == {}
    assert handed == returned


def test_records_built_without_constructors_behave_as_built_with() -> None:
    names = ["index", "finish_reason", "content", "anomalies"]
    values = [3, "stop", "x", ({"kind": "k"},)]
    constructed = Step(**dict(zip(names, values, strict=True)))
    for build in (_Builder(Step, names), _Builder(Step, names).function()):
        built = build(values)
        assert built == constructed and vars(built) == vars(constructed)
        assert replace(built, content="y") == replace(constructed, content="y")
        with pytest.raises(FrozenInstanceError):
            built.content = "y"  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field 'nope'"):
        _Builder(Step, ["index", "nope"])


@dataclass(frozen=True)
class _Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


def test_records_with_their_own_initialisation_go_through_it() -> None:
    build = _Builder(_Checked, ["value"])
    assert build([1]) == _Checked(1) == build.function()([1])
    with pytest.raises(ValueError, match="negative"):
        build([-1])

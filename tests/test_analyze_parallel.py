"""Analysis in worker processes: when it is chosen, workers deaf to Ctrl-C, and a worker that
dies leaves the store as it was, with no process or file left behind. And the loader's
message windows, which find exactly what a lookup in the whole table finds.

(That the workers store exactly what one process stores is in test_analyze_equivalence.)
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import duckdb
import pytest

from analyzer.checks import parallel
from analyzer.checks.loader import Messages, load_runs
from analyzer.checks.parallel import (
    AnalysisWorkerError,
    analyze_in_workers,
    plan,
    workers_for,
)
from traces.errors import TracesError
from traces.importing import import_files

from conftest import table_counts

FIXTURES = Path(__file__).parent / "fixtures" / "import"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "t.duckdb"
    import_files(db, [FIXTURES / "exchanges.jsonl", FIXTURES / "k2vv_results.jsonl"])
    return db


def _chunks(db: Path) -> list[list[str]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
        return plan(conn, ids, max_steps=1, workers=2).chunks


def _workers() -> list[int]:
    """This process's live analysis workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"analyzer.checks.worker" in command:
            found.append(int(entry.name))
    return found


def test_how_many_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(parallel.WORKERS_ENV, raising=False)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    assert workers_for(parallel.PARALLEL_STEPS - 1) == 1
    assert workers_for(parallel.PARALLEL_STEPS) == 2
    monkeypatch.setattr(parallel, "cores", lambda: 64)
    assert workers_for(parallel.PARALLEL_STEPS) == parallel.MAX_WORKERS
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert workers_for(10) == 3
    monkeypatch.setenv(parallel.WORKERS_ENV, "many")
    with pytest.raises(TracesError, match="TRACES_ANALYZE_WORKERS='many': not a number"):
        workers_for(10)


@pytest.mark.slow  # several seconds: worker processes / a served simulator
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_worker_that_dies_leaves_the_store_as_it_was(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    chunks = _chunks(store)
    assert len(chunks) > 4
    before = table_counts(store)

    def kill_the_workers(done: int) -> None:
        for pid in _workers():
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(AnalysisWorkerError, match="an analysis worker stopped"):
        analyze_in_workers(store, chunks, workers=2, on_chunk=kill_the_workers)
    assert table_counts(store) == before
    # The workers' files are gone (they lay in the store's staging directory, which the
    # store's server may attach, under the temporary directory).
    assert [p for p in scratch.rglob("*") if "traces-analyze-" in str(p)] == []
    assert _workers() == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.slow  # several seconds: two analysis workers start (fresh interpreters)
def test_analysis_workers_never_see_ctrl_c(store: Path) -> None:
    masks: dict[int, set[int]] = {}

    def read_masks(done: int) -> None:
        for pid in _workers():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("SigIgn:"):
                    mask = int(line.split(":")[1].strip(), 16)
                    masks[pid] = {s for s in (signal.SIGINT, signal.SIGTERM) if mask & 1 << s - 1}

    counts = analyze_in_workers(store, _chunks(store), workers=2, on_chunk=read_masks)
    assert counts  # the analysis went through
    assert masks and all(ignored == {signal.SIGINT, signal.SIGTERM} for ignored in masks.values())
    assert _workers() == []  # each was waited for before the analysis returned


class _WholeTable(Messages):
    """Looks every body up in the whole table, as the loader did before windows."""

    windowed = False


class _Narrow(Messages):
    """Windows as narrow as a batch's count of messages: the test store is far smaller than
    the row group a window spans at least."""

    WINDOW = 0


def test_message_windows_find_what_the_whole_table_gives(store: Path) -> None:
    # Batches of one, two and all runs: narrow windows, some missing the messages that
    # older runs stored first (the shared system prompt), so the fallback and the kept
    # shared bodies are used too.
    with duckdb.connect(str(store), read_only=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
        for size in (1, 2, len(ids)):
            windowed, whole = _Narrow(), _WholeTable()
            for start in range(0, len(ids), size):
                batch = ids[start : start + size]
                assert load_runs(conn, batch, windowed) == load_runs(conn, batch, whole)
            if size == 1:
                assert windowed.shared  # some bodies lay outside a window: the fallback ran


def test_rows_of_an_open_transaction_are_found_too(tmp_path: Path) -> None:
    # An import checks its runs before it commits them: their rows are numbered apart.
    db = tmp_path / "t.duckdb"
    import_files(db, [FIXTURES / "exchanges.jsonl"])
    compared = []

    def check(conn: duckdb.DuckDBPyConnection, run_ids: list[str]) -> None:
        loaded = load_runs(conn, run_ids, Messages())
        assert loaded == load_runs(conn, run_ids, _WholeTable())
        compared.append(sum(len(step.request_messages) for run in loaded for step in run.steps))

    import_files(db, [FIXTURES / "k2vv_results.jsonl"], before_commit=check)
    assert compared and compared[0] > 0


def test_chunks_shrink_toward_the_end_so_the_workers_finish_together() -> None:
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE runs (id VARCHAR)")
        conn.execute("CREATE TABLE step_rows (run_id VARCHAR, idx INTEGER)")
        ids = [f"run-{i:03d}" for i in range(100)]
        conn.execute("INSERT INTO runs SELECT unnest(?::VARCHAR[])", [ids])
        conn.execute(
            "INSERT INTO step_rows SELECT id, i FROM runs, range(10) t(i) WHERE id <> 'run-050'"
        )
        alone = plan(conn, [*ids, "missing"], max_steps=100, workers=1)
        split = plan(conn, [*ids, "missing"], max_steps=100, workers=2)
        # Read without testing each id, as when they are every run: the same plan, but for
        # a run that is not among them (recorded since they were read).
        everything = plan(conn, ids[:-1], max_steps=100, workers=2, every=True)
        assert everything == plan(conn, ids[:-1], max_steps=100, workers=2)
    assert everything.steps == 980
    assert alone.steps == split.steps == 990
    for chunks in (alone.chunks, split.chunks):
        assert [run_id for chunk in chunks for run_id in chunk] == ids  # in order, whole runs
    assert {len(chunk) for chunk in alone.chunks[:-1]} == {10, 11}  # run-050 has no steps
    sizes = [sum(0 if r == "run-050" else 10 for r in chunk) for chunk in split.chunks]
    assert sizes[0] == 100 and sizes == sorted(sizes, reverse=True) and sizes[-1] <= 30

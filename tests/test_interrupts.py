"""Ctrl-C and SIGTERM at any moment: one stderr line, exit 130, no traceback, no process left.

Real processes and real signals: the command runs as `traces` does (`python -m analyzer`) in
a process group of its own, and the signal goes to the whole group, as a terminal's Ctrl-C
does (the writer process and import workers receive it too).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import duckdb
import pytest

from traces.importing.parallel import WorkerPool
from traces.store import database, migrations
from traces.store.recorder import Recorder

from conftest import REPO, TASKS, group_left, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="signals and /proc")

_INTERRUPTED = re.compile(r"error: interrupted|interrupted: runs? \S+(, \S+)* left interrupted")


def _handles_signals(pid: int) -> bool:
    """Whether process `pid` catches SIGTERM: `traces.interrupts.install()` has run (the
    interpreter catches only SIGINT by itself)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split(":")[1].strip(), 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _signal_group_after(args: list[str], delay: float, sig: int) -> tuple[int, str, int]:
    """Run `traces ARGS` in its own group, signal the group `delay` seconds after the command
    installed its handlers; returns the exit code, stderr and the pid (the group id).

    Counted from there, not from the start: before them a signal meets the bare interpreter
    (a KeyboardInterrupt while `site` loads is a fatal error no program can turn into a
    line), and a loaded machine can take as long as any fixed delay to get there."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("TRACES_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _handles_signals(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "no handlers installed"
            time.sleep(0.01)
        time.sleep(delay)
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, proc.pid


def _blocked_or_ignored(pid: int) -> set[int]:
    """Which of SIGINT and SIGTERM process `pid` blocks or ignores right now."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigBlk", "SigIgn"):
            masks[key] = int(value.strip(), 16)
    either = masks["SigBlk"] | masks["SigIgn"]
    return {sig for sig in (signal.SIGINT, signal.SIGTERM) if either & (1 << (sig - 1))}


def _ignored(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split(":")[1].strip(), 16)
            return {s for s in (signal.SIGINT, signal.SIGTERM) if mask & (1 << (s - 1))}
    return set()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("delay", "sig"),
    [
        (0.0, signal.SIGINT),  # the interpreter is importing the command line
        (0.45, signal.SIGINT),  # start-up: task, simulator, writer process
        (1.05, signal.SIGTERM),
        (2.35, signal.SIGINT),  # recording
    ],
)
def test_a_recording_stopped_at_any_moment_ends_with_one_line(
    tmp_path: Path, delay: float, sig: int
) -> None:
    db = tmp_path / "t.duckdb"
    code, err, pgid = _signal_group_after(
        ["record", "--task", str(TASKS / "chain.toml"), "--db", str(db)], delay, sig
    )
    assert code == 130, err
    assert len(err.splitlines()) == 1 and _INTERRUPTED.fullmatch(err.strip()), err
    assert group_left(pgid) == set()  # the writer exits once its parent closed the pipe
    if db.exists():  # readable by every later command, no run left `running`
        # As a command reads it: the store's server may still hold the file (one whose
        # starter was stopped before it connected waits for it a while), and then serves it.
        conn = database.open_for_reading(db)
        rows = conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
        conn.close()
        assert all(status != "running" for _, status in rows), rows
        named = re.findall(r"\d{8}-\d{6}-[0-9a-f]{8}", err)
        assert set(named) == {run for run, status in rows if status == "interrupted"}


class _CommitInterrupted:
    """A real connection whose `at`-th COMMIT Ctrl-C stops, the way DuckDB 2.0 ends it: the
    statement raises `Query interrupted` and the transaction is over, so a rollback finds none
    (seen with a timer's signal across real migrations; the slow test below sends them)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, at: int) -> None:
        self.conn, self.at, self.commits = conn, at, 0

    def execute(self, sql: str, *params: Any) -> duckdb.DuckDBPyConnection:
        if sql == "COMMIT":
            self.commits += 1
            if self.commits == self.at:
                self.conn.execute("ROLLBACK")
                raise RuntimeError("Query interrupted")
        return self.conn.execute(sql, *params)


@pytest.mark.parametrize("at", [1, 4, len(migrations.MIGRATIONS)])
def test_ctrl_c_that_stops_a_migrations_commit_is_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    """Not `cannot migrate` (exit 4), the failed rollback's words: an import into a new
    database, interrupted while it created the file, ended so under load (test_import's
    Ctrl-C test). The file is released, and the next writer finishes the migrations."""
    real = migrations.migrate

    def stopped(conn: duckdb.DuckDBPyConnection) -> int:
        # `migrate` calls nothing of the connection but `execute`.
        return real(cast(duckdb.DuckDBPyConnection, _CommitInterrupted(conn, at)))

    monkeypatch.setattr(database, "migrate", stopped)
    db = tmp_path / "t.duckdb"
    with pytest.raises(KeyboardInterrupt):
        database.open_file_for_writing(db)
    monkeypatch.undo()
    conn = database.open_file_for_writing(db)  # released: no lock left behind
    try:
        assert migrations.current_version(conn) == migrations.latest_version()
    finally:
        conn.close()


_OPEN_INTERRUPTED = """
import signal, sys
from pathlib import Path
from traces.store import database

def interrupt(signum, frame):
    raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

signal.signal(signal.SIGALRM, interrupt)
signal.setitimer(signal.ITIMER_REAL, float(sys.argv[2]))
try:
    conn = database.open_file_for_writing(Path(sys.argv[1]))
    signal.setitimer(signal.ITIMER_REAL, 0)
except KeyboardInterrupt:
    sys.exit(130)
conn.close()
"""


@pytest.mark.slow  # a dozen processes, each creating a database
def test_a_migration_interrupted_at_any_moment_is_an_interrupt(tmp_path: Path) -> None:
    """A timer's signal at moments spread over creating a database: each attempt ends
    migrated or with KeyboardInterrupt, never another error, and the file is released.

    Each attempt is a process of its own, as each `traces` command is, which exits after the
    interrupt. In one process a reopen could not be tested: DuckDB 1.5.5 keeps the database
    instance of a connection whose COMMIT or close a signal interrupted, and a later connect
    to the same file in that process waits for it for ever."""
    started = time.monotonic()
    database.open_file_for_writing(tmp_path / "first.duckdb").close()
    took = time.monotonic() - started
    outcomes = set()
    for moment in range(12):
        db = tmp_path / f"t{moment}.duckdb"
        attempt = subprocess.run(
            [sys.executable, "-c", _OPEN_INTERRUPTED, str(db), str(took * (moment + 0.5) / 12)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert attempt.returncode in (0, 130), attempt.stderr
        outcomes.add(attempt.returncode)
        conn = database.open_file_for_writing(db)  # released: no lock left behind
        try:
            assert migrations.current_version(conn) == migrations.latest_version()
        finally:
            conn.close()
    assert 130 in outcomes  # the signal did land inside the migration at least once


def test_a_signal_while_duckdb_imports_a_module_is_an_interrupt() -> None:
    """DuckDB imports some Python modules the first time a statement needs them; a Ctrl-C
    during that import reaches us as its own error, which still means "interrupted"."""
    script = """
import sys, duckdb
from traces.store.database import interrupted_statement

class Interrupting:
    def find_spec(self, name, path=None, target=None):
        if name == "uuid":
            raise KeyboardInterrupt

sys.modules.pop("uuid", None)
sys.meta_path.insert(0, Interrupting())
try:
    duckdb.connect().execute("SELECT uuid()").fetchall()
except duckdb.Error as exc:
    print(type(exc).__name__, interrupted_statement(exc))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.stdout.split() == ["InvalidInputException", "True"], done.stderr


def test_the_writer_process_never_sees_ctrl_c(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "t.duckdb")
    try:
        pid = recorder.writer_pid
        assert pid is not None
        # Ignored for good once it is ready: it must commit what it receives until its
        # parent closes the pipe, whatever the terminal sends the group.
        assert _ignored(pid) == {signal.SIGINT, signal.SIGTERM}
    finally:
        recorder.close()


def test_import_workers_never_see_ctrl_c() -> None:
    with WorkerPool(2) as pool:
        pids = [worker.process.pid for worker in pool.workers]
        deadline = time.monotonic() + 30
        # From their first instant: blocked while they import, then ignored.
        for pid in pids:
            while _ignored(pid) != {signal.SIGINT, signal.SIGTERM}:
                assert _blocked_or_ignored(pid) == {signal.SIGINT, signal.SIGTERM}
                assert time.monotonic() < deadline, "the worker never got going"
                time.sleep(0.01)


def test_an_interrupt_during_shutdown_changes_nothing(tmp_path: Path) -> None:
    """A command that has said how it ended ignores later signals: no second line."""
    script = (
        "import os, signal, sys\n"
        "from traces import interrupts\n"
        "interrupts.install()\n"
        "try:\n"
        "    interrupts.exit_with(4, 'error: the first and only line')\n"
        "finally:\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came during shutdown\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4
    assert done.stderr.splitlines() == ["error: the first and only line"]


def test_ctrl_c_before_the_command_runs_is_one_line(tmp_path: Path) -> None:
    """A KeyboardInterrupt raised while the command line is imported ends as one line."""
    script = (
        "import os, signal, sys\n"
        "sys.argv = ['traces', 'runs']\n"
        "import builtins\n"
        "real_import = builtins.__import__\n"
        "def slow(name, *args, **kwargs):\n"
        "    if name == 'analyzer.cli':\n"  # the entry point has installed its handlers
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = slow\n"
        "from analyzer.__main__ import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["error: interrupted"]


@pytest.mark.parametrize("entry", ["analyzer.__main__", "analyzer.cli"])
def test_ctrl_c_inside_a_c_extensions_import_is_one_line(entry: str) -> None:
    """A signal landing while a command imports duckdb's C extension surfaces as that
    extension's `ImportError: initialization failed` (seen in a full test run): still an
    interrupt, one line and 130, from either entry point."""
    script = (
        "import os, signal, sys\n"
        "sys.argv = ['traces', 'runs']\n"
        "from traces import interrupts\n"
        "interrupts.install()\n"
        "import analyzer.cli\n"
        "def importing_duckdb(*args, **kwargs):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except KeyboardInterrupt as signal_:\n"
        "        raise ImportError('initialization failed') from signal_\n"
        "analyzer.cli.app = importing_duckdb\n"
        f"from {entry} import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["error: interrupted"]


def test_interrupted_names_the_runs_left_interrupted() -> None:
    from traces.running import left_interrupted

    assert left_interrupted(["a"]) == "interrupted: run a left interrupted"
    assert left_interrupted(["a", "b"]) == "interrupted: runs a, b left interrupted"
    assert _INTERRUPTED.fullmatch(left_interrupted(["20260101-000000-0a1b2c3d"]))


def test_a_finished_command_exits_with_its_own_code(tmp_path: Path) -> None:
    done = run_cli("runs", "--db", str(tmp_path / "missing.duckdb"))
    assert done.returncode == 4
    assert len(done.stderr.splitlines()) == 1

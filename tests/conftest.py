"""Shared fixtures: the simulator over real HTTP, temporary databases, the CLI as a user runs it.

The default test run needs no network: an autouse guard refuses every connection that is not
to loopback, so a test that would reach a real provider fails loudly instead.
"""

from __future__ import annotations

import gc
import importlib
import ipaddress
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest

from traces.sample_files import samples_dir
from traces.sim.config import SimConfig

if TYPE_CHECKING:
    from traces.sim.server import SimServer

    from postgres_server import PostgresCluster

REPO = Path(__file__).resolve().parents[1]
SAMPLES = samples_dir()
TASKS = SAMPLES / "tasks"
EXTERNAL = REPO.parent / "shared" / "external"


def reference_missing(what: Path | str) -> None:
    """Skip a test whose reference data (`../shared/external`) is absent, locally; under CI,
    where the folder is always laid beside the clone, fail it instead: a CI run that silently
    skipped the tests against real provider data would pass without checking anything."""
    message = f"reference data not available: {what}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must have ../shared/external)")
    pytest.skip(message)


_PYCACHE = "TRACES_TEST_PYCACHE"
"""The run's bytecode cache, as the controller hands it to its xdist workers."""


_TMPFS = Path("/dev/shm")
"""Where the run keeps its temporary files when the machine has it: a RAM file system."""
_TMPFS_FREE = 8 << 30
"""The room the RAM file system must have free for the run's files to go there: a
container's default /dev/shm (64 MiB) would fill up, and the tests would fail for it."""


def _temp_in_memory(config: pytest.Config) -> None:
    """Put this run's temporary files (pytest's `tmp_path`s, and what the tests and the
    commands they start put under TMPDIR: stores, servers' sockets, PostgreSQL clusters) in
    a folder of the run's own on the RAM file system, removed when the run ends. DuckDB
    syncs its files to disk at every commit and checkpoint (39 fsyncs for a `traces record`
    of two short runs, 235 for a test committing 210 steps), each a few milliseconds of
    waiting on the disk that the suite's thousands of stores add up to; what the tests prove
    about a store outliving a killed process does not need the disk under it. Only the
    controller decides (its workers and their children inherit TMPDIR); not when the run
    names its own --basetemp, nor with TRACES_TEST_TMPFS=0 (a failed run's files kept on
    disk, in pytest's usual place)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or config.option.basetemp:
        return
    if os.environ.get("TRACES_TEST_TMPFS") == "0" or not _TMPFS.is_dir():
        return
    if not os.access(_TMPFS, os.W_OK) or shutil.disk_usage(_TMPFS).free < _TMPFS_FREE:
        return
    root = Path(tempfile.mkdtemp(prefix="traces-tests-", dir=_TMPFS))
    # Others may pass through, not list (where /tmp lets everyone in): the PostgreSQL
    # cluster's unprivileged user reaches its own folder in it (`tests/postgres_server.py`).
    root.chmod(0o711)
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = str(root)  # gettempdir() caches its first answer
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))


_TIMELINE = "TRACES_TEST_TIMELINE"
"""A file to append one JSON line per test to (see `_timeline`)."""


def _timeline(config: pytest.Config) -> None:
    """With TRACES_TEST_TIMELINE=FILE, every test appends a line to FILE: its worker, id,
    start and end (wall clock), and the CPU seconds of the worker (all its threads) and of
    the worker's children that ended during it; each worker appends a line when it starts
    and when it has collected. Where the suite's wall time goes, per worker: its idle
    stretches (wall well above CPU, in the worker and its children), the tests ending last.
    Lines from several processes: one `write` each, on a file opened to append."""
    path = os.environ.get(_TIMELINE)
    if path:
        config.pluginmanager.register(_Timeline(Path(path)), "traces-timeline")


class _Timeline:
    """The hooks of `_timeline`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")

    def _write(self, line: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps({"w": self.worker, **line}) + "\n")

    def pytest_sessionstart(self) -> None:
        self._write({"started": time.time()})

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._write({"collected": time.time(), "tests": len(session.items)})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        start, cpu, children = time.time(), time.process_time(), _children_cpu()
        yield
        self._write(
            {
                "id": item.nodeid,
                "start": start,
                "end": time.time(),
                "cpu": round(time.process_time() - cpu, 3),
                "children_cpu": round(_children_cpu() - children, 3),
            }
        )


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def pytest_configure(config: pytest.Config) -> None:
    """Give every interpreter of the run (the xdist workers, and the CLI, writer processes
    and import workers the tests start) one bytecode cache. Where PYTHONDONTWRITEBYTECODE is
    set (as on these machines), each of those hundreds of processes would otherwise compile
    every module it imports (ours and the dependencies', which CI installs with
    --no-compile), which costs more than most of the commands under test. The controller
    makes it; its workers, which inherit it, keep it for their commands too rather than each
    making one of its own (where each worker's commands compiled the same modules again)."""
    _temp_in_memory(config)
    _timeline(config)
    made_by_controller = os.environ.get(_PYCACHE) if os.environ.get("PYTEST_XDIST_WORKER") else None
    if made_by_controller:
        cache = Path(made_by_controller)  # removed by the controller
    else:
        cache = Path(tempfile.mkdtemp(prefix="traces-test-pycache-"))
        os.environ[_PYCACHE] = str(cache)
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # Tables as wide as `run_cli`'s, whatever the runner set (pytest-xdist's workers set 80);
    # a test that wants a narrow table sets COLUMNS itself.
    os.environ["COLUMNS"] = "200"


def _collected_modules(config: pytest.Config) -> list[Path]:
    """The test modules this run collects, when its arguments are folders (the whole suite,
    the fast path); none when it names files or tests."""
    args = [Path(arg) for arg in config.args]
    if not args or not all(arg.is_dir() for arg in args):
        return []
    return sorted(module for arg in args for module in arg.rglob("test_*.py"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """In an xdist worker, import the test modules before collecting them, starting at this
    worker's share of the list (worker k of n at k/n of it). Every worker imports every
    module to collect it, and pytest rewrites each module's asserts on import (about 60 % of
    collecting) into the run's shared bytecode cache; starting together at the list's head,
    the workers each rewrote every module, where now each finds most of them rewritten by
    another. Collection then finds the modules imported. A module that fails to import is
    left for collection to report."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    modules = _collected_modules(session.config)
    if not worker.startswith("gw") or count < 2 or not modules:
        return
    start = int(worker[2:]) * len(modules) // count
    for module in modules[start:] + modules[:start]:
        if str(module.parent.resolve()) not in sys.path:
            continue  # not importable as collection imports it: left to collection
        try:
            importlib.import_module(module.stem)
        except KeyboardInterrupt:
            raise
        except BaseException:  # collection imports it again, and reports why it fails
            continue


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI a missing reference folder fails the whole run before any test: some of the
    tests built from it are parametrized from its files and would otherwise just vanish."""
    if os.environ.get("CI") and not EXTERNAL.is_dir():
        raise pytest.UsageError(f"CI needs the reference folder {EXTERNAL}; it is missing")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths and the like never leave the machine
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise OSError(f"tests may only connect to loopback, not {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise OSError(f"tests may only connect to loopback, not {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


_CORPUS_USERS = {"test_checks_faults.py", "test_analyze_equivalence.py"}
"""The modules that analyze the fault corpus (`test_checks_faults.recorded_corpus`)."""


def corpus_in_this_run(session: pytest.Session) -> bool:
    """Whether this run analyzes the fault corpus, and so records it (in the background from
    its first test): a module that needs one of its runs takes it from there, and records that
    run alone otherwise (the fast path, which leaves both corpus modules out)."""
    return any(item.path.name in _CORPUS_USERS for item in session.items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the two modules that analyze the fault corpus after the other `test_checks_*`
    modules (about a third into the run) instead of at their places in file-name order, each
    whole and in its own order: its recording (started at the first test,
    `_fault_corpus_early`) has a head start, where `test_analyze_equivalence`, second in
    file-name order, had one worker wait on it from the start (85 s at a load of 15). On a
    quiet machine a worker still reached them 16 s in and waited 29 s: later is left to do.

    Only these move. Every module holding a `slow` test first was tried, and came out worse
    in a simulation of xdist's scheduling on the durations of a measured run (one worker
    ended about 30 % after the others): pytest-xdist hands each worker a quarter of its share
    as one consecutive stretch at first, and a stretch of only heavy modules is more than a
    share."""
    last_checks = max(
        (
            n
            for n, item in enumerate(items)
            if item.path.name.startswith("test_checks_") and item.path.name not in _CORPUS_USERS
        ),
        default=len(items) - 1,
    )

    def place(n: int, item: pytest.Item) -> tuple[int, int]:
        return (last_checks, 1) if item.path.name in _CORPUS_USERS else (n, 0)

    items[:] = [item for _, item in sorted(enumerate(items), key=lambda pair: place(*pair))]


@pytest.fixture(scope="session", autouse=True)
def _fault_corpus_early(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """When this run has tests that analyze the fault corpus, start recording it at the
    first test, in a child process beside the tests, instead of when the first of them needs
    it (the run's first worker to get here starts it; see `recording_in_background`)."""
    if not corpus_in_this_run(request.session):
        yield
        return
    from shared_work import session_shared
    from test_checks_faults import CORPUS

    from recording import recording_in_background

    with recording_in_background(
        session_shared(tmp_path_factory), CORPUS, "test_checks_faults:corpus_recordings"
    ):
        yield


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    """One simulator for the session (it is stateless, so tests cannot disturb each other)."""
    from traces.sim.server import SimServer

    with SimServer(SimConfig(seed=0)) as server:
        yield server


def lake_missing(what: str) -> None:
    """Skip a lake test whose parts are absent here (the `lake` extra's DuckDB extensions,
    Debian's PostgreSQL); under CI, which installs both, fail it instead."""
    message = f"lake store tests need {what}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must install them: see .ci/run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def lake_extensions() -> None:
    """The DuckLake, PostgreSQL and SQLite extensions of the `lake` extra, for this DuckDB."""
    from traces.errors import DatabaseError
    from traces.store.lake import extension_file

    try:
        for name in ("ducklake", "postgres", "sqlite"):
            extension_file(name)
    except DatabaseError as missing:
        lake_missing(f"the lake extra, pip install -e '.[lake]' ({missing})")


@pytest.fixture(scope="session")
def postgres(
    lake_extensions: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresCluster]:
    """A PostgreSQL server of this session (Debian's binaries, an unprivileged user, a
    temporary directory, a Unix socket in it); tests create databases of their own. Each
    xdist worker runs its own, from a data directory initdb made once for the run."""
    from shared_work import session_shared

    from postgres_server import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        lake_missing("PostgreSQL's initdb and pg_ctl (Debian: apt-get install postgresql)")
        raise AssertionError("unreachable")
    cluster = PostgresCluster(bindir)
    try:
        cluster.start(session_shared(tmp_path_factory) / "postgres")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh trace database path (the file does not exist yet)."""
    return tmp_path / "traces.duckdb"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `traces ARGS` in a subprocess exactly as a user would, capturing both streams."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    for name in ("TRACES_DB", "TRACES_DATA_PATH"):
        full_env.pop(name, None)
        if env and name in env:
            full_env[name] = env[name]
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],  # what the `traces` script runs
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def run_cli_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run `traces ARGS` through the console script's entry point in this process (no
    interpreter start-up: for tables of many cases); same result shape as `run_cli`."""
    from analyzer.cli import main

    monkeypatch.setattr(sys, "argv", ["traces", *args])
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", os.environ.get("COLUMNS", "200"))
    capsys.readouterr()
    collecting = gc.isenabled()
    try:
        with pytest.raises(SystemExit) as ended:
            main()
    finally:
        # `main` turns the cyclic collector off until the command starts: a command that
        # ends before (a usage error) would leave it off for every later test.
        if collecting:
            gc.enable()
    captured = capsys.readouterr()
    code = ended.value.code
    return subprocess.CompletedProcess(
        ["traces", *args], code if isinstance(code, int) else 1, captured.out, captured.err
    )


CliRun = Callable[..., "subprocess.CompletedProcess[str]"]
"""`run_cli`'s signature: `(*args, env=None)` -> the exit code and both streams."""


def _in_process(capture: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRun:
    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as patch:
            patch.delenv("TRACES_DB", raising=False)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            return run_cli_in_process(capture, patch, *args)

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRun:
    """`traces ARGS` in this process, called as `run_cli` is (`env` sets variables for the
    call, `TRACES_DB` unset unless given): for tests of what a command prints and how it
    exits, where the interpreter starting is not what is tested. A subprocess costs 0.3 s of
    CPU to start, a second for a command that imports the endpoint client."""
    return _in_process(capsys, monkeypatch)


@pytest.fixture
def cli_fd(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRun:
    """`cli` with the output read at the file descriptors: what the command's child
    processes and C libraries print counts too (for tests of everything a command prints)."""
    return _in_process(capfd, monkeypatch)


def group_processes(pgid: int) -> set[int]:
    """Live (not zombie) processes of process group `pgid`: what a command left running."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pgid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def read_only(db: Path) -> duckdb.DuckDBPyConnection:
    """The database at `db` opened read-only by DuckDB itself, as any program would. A store
    server whose last client was just killed may hold it a moment longer (committing what
    it received, closing the run): wait for that, as a traces command would."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return duckdb.connect(str(db), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def group_left(pgid: int, within: float = 60.0) -> set[int]:
    """The processes of group `pgid` still alive after waiting up to `within` seconds for
    them to end: a child that exits once its parent is gone (a writer reading the end of its
    pipe) takes a moment that a loaded machine stretches."""
    deadline = time.monotonic() + within
    while (left := group_processes(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) process `pid` has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def query_rows(db: Path, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The rows of a query on the database at `db` (opened read-only), as dicts by column."""
    with read_only(db) as conn:
        cursor = conn.execute(sql, list(params))
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def table_counts(db: Path) -> dict[str, int]:
    """Row counts of every table of the database at `db`: equal before and after a command
    that must leave the store as it was."""
    with read_only(db) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        counts = {}
        for table in tables:
            row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


def python_calls(work: Callable[[], object]) -> int:
    """Python function calls `work()` makes: a count, not a time, so a loaded machine cannot
    fail a complexity test and a quadratic algorithm cannot pass it."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


def npm_server_path(program: str) -> str:
    """PATH with the folder holding npm MCP server `program`: `.ci-node/mcp/bin` (where `.ci/run`
    installs it) or PATH. Missing: skipped locally, failed under CI, which installs it."""
    local = REPO / ".ci-node" / "mcp" / "bin"
    path = f"{local}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which(program, path=path) is None:
        message = (
            f"{program} is not installed (npm install -g --prefix .ci-node/mcp …; see .ci/run)"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return path


def migrate_to(conn: duckdb.DuckDBPyConnection, version: int) -> None:
    """Give `conn` the schema of an older release: migrations 1..`version` applied and
    recorded, as that release left them."""
    from traces.store.migrations import MIGRATIONS

    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    for number, name, sql in MIGRATIONS[:version]:
        conn.execute(sql)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [number, name])

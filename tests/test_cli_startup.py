"""Start-up: `traces` imports only the command it runs, and its writer process only the store.

Nothing here is timed (see benchmarks/bench_startup.py for the figures): the tests pin down
*which* modules a command loads, and that the help printed from `analyzer.cli.COMMANDS`
without importing the commands is the help the commands themselves give.
"""

from __future__ import annotations

import json
import os
import pkgutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer

import analyzer.commands
from analyzer.cli import COMMANDS, app, load_command
from analyzer.cli import _options as cli_options
from traces.importing.parallel import WorkerPool
from traces.sim.server import SimServer

from conftest import REPO
from recording import record

HEAVY = (
    "openai",
    "httpx",
    "jinja2",
    "tokenizers",
    "jsonschema",
    "uvicorn",
    "multiprocessing",
    "mcp",
    "numpy",
)
"""What `record`, `sim`, `compare` or `expect` need, and a reading command must not import."""

_PROBE = """
import gc, json, sys
out, argv = sys.argv[1], sys.argv[2:]
sys.argv = ["traces", *argv]
from analyzer.cli import main
code = 0
try:
    main()
except SystemExit as done:
    code = done.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules), "gc": gc.isenabled()}, f)
"""


def _eager_group() -> typer.main.TyperGroup:
    """`traces` as it was built before: every command module imported and registered."""
    eager = typer.Typer(
        name="traces",
        help=app.info.help,
        no_args_is_help=True,
        rich_markup_mode=app.rich_markup_mode,
        add_completion=app._add_completion,  # the same group options as `traces`
    )
    eager.callback()(cli_options)  # and the same `--version`
    for module, _ in COMMANDS.values():
        __import__(f"analyzer.commands.{module}", fromlist=["register"]).register(eager)
    group = typer.main.get_command(eager)
    assert isinstance(group, typer.core.TyperGroup)
    return group


def test_every_command_module_is_listed() -> None:
    modules = {info.name for info in pkgutil.iter_modules(analyzer.commands.__path__)}
    assert modules == {module for module, _ in COMMANDS.values()}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_first_sentence_of_the_commands_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert COMMANDS[name][1] == command.get_short_help_str(limit=10**6)


@pytest.mark.parametrize("columns", ["60", "100"])
def test_help_is_what_a_group_of_every_imported_command_prints(
    columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    lazy = typer.main.get_command(app)
    eager = _eager_group()
    # Resilient, as completion parses: no arguments is not an error then.
    lazy_ctx = lazy.make_context("traces", [], resilient_parsing=True)
    ctx = eager.make_context("traces", [], resilient_parsing=True)
    with lazy_ctx, ctx:
        assert lazy.get_help(lazy_ctx) == eager.get_help(ctx)
        for incomplete in ("", "s", "re", "x"):
            got = [(c.value, c.help) for c in lazy.shell_complete(lazy_ctx, incomplete)]
            want = [(c.value, c.help) for c in eager.shell_complete(ctx, incomplete)]
            assert got == want


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Path:
    """One recorded run of the short chain."""
    db = tmp_path_factory.mktemp("startup") / "t.duckdb"
    record(db, sim.base_url)
    return db


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["runs"],
        ["runs", "--help"],
        ["sql", "select 1"],
        ["show", "last"],
        ["steps"],
        ["failures"],
        ["schema"],
    ],
    ids=" ".join,
)
def test_reading_commands_import_only_what_they_need(
    argv: list[str], small_db: Path, tmp_path: Path
) -> None:
    probe = _probed(argv, small_db, tmp_path)
    modules = set(probe["modules"])
    assert not [m for m in modules if m.split(".")[0] in HEAVY]
    # The project's pydantic models stay out, and pydantic itself: typer converts option values
    # with it, but none of these needs converting (analyzer.option_values).
    assert "traces.model" not in modules
    assert not [m for m in modules if m.split(".")[0] == "pydantic"]
    if argv[0] in ("runs", "sql", "steps", "failures"):
        # Tables are laid out without rich's console and table (only its character widths).
        assert not {"rich.console", "rich.table", "rich.text"} & modules
    commands = {m for m in modules if m.startswith("analyzer.commands.")}
    wanted = set() if argv[0] == "--help" else {f"analyzer.commands.{COMMANDS[argv[0]][0]}"}
    assert commands == wanted
    # The collector, off during start-up, is back on once a command does its work.
    assert probe["gc"] is ("--help" not in argv)


def _probed(argv: list[str], db: Path, tmp_path: Path) -> dict[str, Any]:
    """What `traces ARGV` on `db` imported (`modules`), its exit code and whether the
    collector was on at the end, from `_PROBE` in a fresh interpreter."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "TRACES_DB": str(db)},
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    probe: dict[str, Any] = json.loads(out.read_text())
    assert probe["code"] == 0, done.stderr
    return probe


@pytest.mark.parametrize(
    "argv",
    [["compare", "--format", "json"], ["report", "--html", "{tmp}/r.html"]],
    ids=lambda argv: argv[0],
)
def test_comparing_stored_runs_imports_nothing_of_recording(
    argv: list[str], small_db: Path, tmp_path: Path
) -> None:
    # compare without --suite and report without --policy read the store: the endpoint
    # client (openai), the simulator, the recorder and the checks are for recording and
    # judging, and importing them was a second of start-up at every comparison.
    modules = set(_probed([a.format(tmp=tmp_path) for a in argv], small_db, tmp_path)["modules"])
    assert "numpy" in modules  # the comparison did run
    heavy = {"openai", "httpx", "jinja2", "jsonschema", "mcp", "uvicorn"}
    assert not [m for m in modules if m.split(".")[0] in heavy]
    recording = ("traces.sim", "traces.client", "traces.running", "analyzer.checks.registry")
    assert not [m for m in modules if m.startswith(recording)]


_COMPLETE = """
import json, sys
import typer
from analyzer.cli import app
group = typer.main.get_command(app)
with group.make_context("traces", [], resilient_parsing=True) as ctx:
    names = [item.value for item in group.shell_complete(ctx, "s")]
print(json.dumps({"names": names, "modules": sorted(sys.modules)}))
"""


def test_completing_a_command_name_imports_no_command() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COMPLETE], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert probe["names"] == ["show", "steps", "sql", "schema", "sim"]
    assert not [m for m in probe["modules"] if m.startswith("analyzer.commands.")]


_OPEN_RECORDER = """
import sys
from pathlib import Path

from analyzer.cli import main  # as the `traces` console script does
from traces.store.recorder import Recorder

if __name__ == "__main__":
    recorder = Recorder(Path(sys.argv[1]))
    print(recorder.writer_pid, flush=True)
    sys.stdin.readline()
    recorder.close()
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_the_writer_process_is_a_fresh_interpreter_that_imports_only_the_store(
    tmp_path: Path,
) -> None:
    # Started the way `traces record` starts it, from a main module that imports the CLI:
    # multiprocessing's spawn would re-run that module in the child.
    script = tmp_path / "open_recorder.py"
    script.write_text(_OPEN_RECORDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "t.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        writer = int(proc.stdout.readline())
        argv = Path(f"/proc/{writer}/cmdline").read_bytes().decode().split("\0")
        libraries = Path(f"/proc/{writer}/maps").read_text()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert argv[1:3] == ["-m", "traces.store.writer"]
    assert "_duckdb" in libraries  # what it needs is mapped (the check can see modules)...
    # ...and the compiled parts of what the rest of `traces` uses are not.
    for extension in ("pydantic_core", "tokenizers", "jiter"):
        assert extension not in libraries


def _ignores_interrupts(pid: int) -> bool:
    """Whether process `pid` ignores SIGINT and SIGTERM (per /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split(":")[1].strip(), 16)
            return all(mask & (1 << (sig - 1)) for sig in (signal.SIGINT, signal.SIGTERM))
    return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_an_import_worker_imports_no_database() -> None:
    """A worker of a parallel import reads and builds rows; the importing process inserts
    them. DuckDB (a tenth of a second of every worker's start) stays out of it."""
    with WorkerPool(1) as pool:
        pid = pool.workers[0].process.pid
        deadline = time.monotonic() + 60
        # Ready once it ignores Ctrl-C: the first thing it does after its imports.
        while not _ignores_interrupts(pid):
            assert time.monotonic() < deadline, "the worker never got going"
            time.sleep(0.01)
        libraries = Path(f"/proc/{pid}/maps").read_text()
    assert "_duckdb" not in libraries

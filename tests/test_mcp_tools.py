"""MCP tools through real servers: the sample server over stdio and streamable HTTP, the
PyPI time and git servers, and every way a server fails (recorded as a tool-layer failure
with its stderr tail, or refused before anything is written)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from traces.environments import discover_tools, open_environment
from traces.model import ToolErrorKind
from traces.tasks import Task, load_task

from conftest import REPO, CliRun, npm_server_path, run_cli

BYO = REPO / "samples" / "byo"
SERVER = BYO / "sample_mcp_server.py"


def write_task(folder: Path, environment: str, *, name: str = "mine") -> Path:
    """A tools task whose `[environment]` body is `environment`."""
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ndescription = "d"\nmax_steps = 12\nsystem_prompt = "s"\n'
        f'user_prompt = "Use {{tool_names}}."\n[environment]\ntype = "tools"\n{environment}'
        '\n[success]\nanswer_contains = ["words"]\n'
    )
    return path


def stdio_server(extra: str = "") -> str:
    return (
        f'[[environment.mcp]]\nname = "sample"\n'
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(SERVER))}]\n{extra}"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def http_server() -> Iterator[str]:
    """The sample server over streamable HTTP on a loopback port; its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "the sample HTTP server exited"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_stdio_tools_are_listed_called_and_their_failures_recorded(tmp_path: Path) -> None:
    task = asyncio.run(discover_tools(load_task(write_task(tmp_path, stdio_server()))))
    names = ["convert_length", "word_stats", "checked_divide", "fail", "nap", "die"]
    assert task.environment.tool_names() == names

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=tmp_path / "box") as env:
            specs = {spec["function"]["name"]: spec["function"] for spec in env.tool_specs()}
            assert list(specs) == names
            assert specs["word_stats"]["parameters"]["required"] == ["text"]
            assert specs["convert_length"]["description"].startswith("Convert a length")
            done = await env.call("word_stats", {"text": "a b a", "top": 1})
            assert done.error is None
            assert json.loads(done.output) == {"words": 3, "distinct": 2, "top": ["a"]}
            # Off the listed schema: refused before the server sees it.
            refused = await env.call("word_stats", {"txt": "a"})
            assert refused.error_kind is ToolErrorKind.INVALID_ARGUMENTS
            # isError from the server: the tool said no.
            failed = await env.call("fail", {"reason": "no"})
            assert failed.error_kind is ToolErrorKind.REJECTED
            # The server dies mid-call: crashed, with what it wrote to stderr as evidence.
            died = await env.call("die", {"code": 3})
            assert died.error_kind is ToolErrorKind.CRASHED
            assert died.error is not None
            assert "died during die" in died.error
            assert "dying with exit code 3" in died.error
            # Later calls fail at once with the same evidence, never hang on the dead pipe.
            started = time.monotonic()
            again = await env.call("word_stats", {"text": "x"})
            assert again.error_kind is ToolErrorKind.CRASHED
            assert time.monotonic() - started < 1

    asyncio.run(go())


@pytest.mark.slow
def test_a_call_past_its_time_limit_is_a_timeout_and_the_server_goes_on(tmp_path: Path) -> None:
    environment = "call_timeout_s = 1\n" + stdio_server('tools = ["nap", "word_stats"]\n')
    task = asyncio.run(discover_tools(load_task(write_task(tmp_path, environment))))

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=tmp_path / "box") as env:
            started = time.monotonic()
            late = await env.call("nap", {"seconds": 30})
            assert time.monotonic() - started < 10
            assert late.error_kind is ToolErrorKind.TIMEOUT
            assert late.error is not None and "nap did not answer within 1 s" in late.error
            done = await env.call("word_stats", {"text": "still here"})
            assert done.error is None

    asyncio.run(go())


def test_streamable_http_tools_are_called(tmp_path: Path, http_server: str) -> None:
    path = write_task(tmp_path, f'[[environment.mcp]]\nname = "web"\nurl = "{http_server}"\n')
    task = asyncio.run(discover_tools(load_task(path)))
    assert "convert_length" in task.environment.tool_names()

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=tmp_path / "box") as env:
            done = await env.call("convert_length", {"value": 2, "from_unit": "km", "to_unit": "m"})
            assert done.error is None and done.output == "2000.0"

    asyncio.run(go())


def test_a_server_failing_in_one_run_fails_its_calls_with_its_stderr(tmp_path: Path) -> None:
    task = asyncio.run(discover_tools(load_task(write_task(tmp_path, stdio_server()))))
    # The server listed its tools before the recording; in this run it cannot start.
    spec = task.environment
    assert spec.type == "tools"
    broken = spec.mcp[0].model_copy(
        update={"command": ["/bin/sh", "-c", "echo 'no licence file' >&2; exit 5"]}
    )
    task = task.model_copy(update={"environment": spec.model_copy(update={"mcp": [broken]})})

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=tmp_path / "box") as env:
            assert len(env.tool_specs()) == 6  # the run still offers what was listed
            outcome = await env.call("word_stats", {"text": "x"})
            assert outcome.error_kind is ToolErrorKind.CRASHED
            assert outcome.error is not None and "no licence file" in outcome.error

    asyncio.run(go())


@pytest.mark.parametrize(
    ("environment", "field", "problem"),
    [
        (
            '[[environment.mcp]]\nname = "x"\ncommand = ["no-such-mcp-server-here"]\n',
            "environment.mcp[0].command",
            "command 'no-such-mcp-server-here' not found",
        ),
        (
            '[[environment.mcp]]\nname = "x"\ncommand = ["sh", "-c", "echo boom >&2; exit 3"]\n',
            "environment.mcp[0].command",
            "stderr: boom",
        ),
        (
            'start_timeout_s = 1\n[[environment.mcp]]\nname = "x"\ncommand = ["sleep", "30"]\n',
            "environment.mcp[0].command",
            "did not start within 1 s",
        ),
        (
            '[[environment.mcp]]\nname = "x"\nurl = "http://127.0.0.1:{port}/mcp"\n',
            "environment.mcp[0].url",
            "ConnectError",
        ),
        (
            '[[environment.mcp]]\nname = "x"\nurl = "ftp://example.com"\n',
            "environment.mcp[0].url",
            "must match pattern",
        ),
        (
            '[[environment.mcp]]\nname = "x"\n',
            "environment.mcp",
            "give exactly one of command and url",
        ),
        (
            stdio_server('tools = ["word_stats", "nope"]\n'),
            "environment.mcp[0].tools",
            "the server has no tool 'nope'",
        ),
    ],
)
def test_a_server_that_cannot_serve_is_bad_input_and_nothing_is_written(
    tmp_path: Path, cli: CliRun, environment: str, field: str, problem: str
) -> None:
    path = write_task(tmp_path, environment.replace("{port}", str(free_port())))
    db = tmp_path / "t.duckdb"
    started = time.monotonic()
    done = cli("record", "--task", str(path), "--db", str(db))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {path}: {field}: ")
    assert problem in lines[0]
    assert not db.exists()
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_recording_against_the_simulator_stores_mcp_and_python_results(tmp_path: Path) -> None:
    # The sample server over stdio and the sample Python tools in one task, end to end.
    (tmp_path / "extra_tools.py").write_text(
        'def halve(x: float) -> float:\n    """Half of x."""\n    return x / 2\n'
    )
    only = 'tools = ["word_stats", "convert_length"]\n'
    path = write_task(tmp_path, 'python = ["extra_tools:halve"]\n' + stdio_server(only))
    db = tmp_path / "t.duckdb"
    done = run_cli("record", "--task", str(path), "--db", str(db))
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.sql("select name, error_kind, output from tool_results").fetchall()
        structured = dict(conn.sql("select name, structured from tool_results").fetchall())
    by_name = {name: (kind, output) for name, kind, output in rows}
    # An MCP tool's structured content is kept beside its text; a Python tool has none.
    assert json.loads(structured["word_stats"]) == json.loads(by_name["word_stats"][1])
    assert set(json.loads(structured["convert_length"])) == {"result"}
    assert structured["halve"] is None
    # The simulator's generic strategy calls every declared tool with schema-valid arguments.
    assert set(by_name) == {"halve", "convert_length", "word_stats"}
    assert by_name["word_stats"][0] is None
    assert "words" in json.loads(by_name["word_stats"][1])


def test_a_tool_offered_twice_is_bad_input(tmp_path: Path, cli: CliRun) -> None:
    (tmp_path / "twin_tools.py").write_text(
        'def word_stats(text: str) -> str:\n    """Also word stats."""\n    return text\n'
    )
    path = write_task(tmp_path, 'python = ["twin_tools:word_stats"]\n' + stdio_server())
    done = cli("record", "--task", str(path), "--db", str(tmp_path / "t.duckdb"))
    assert done.returncode == 2
    assert f"{path}: environment.mcp[0]: tool 'word_stats' is offered twice" in done.stderr
    assert not (tmp_path / "t.duckdb").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "tools"),
    [
        ("mcp_time.toml", {"get_current_time", "convert_time"}),
        ("mcp_git.toml", {"git_status"}),
        ("python_tools.toml", {"convert_length", "word_stats", "checked_divide"}),
    ],
)
def test_the_byo_samples_record_end_to_end(tmp_path: Path, task: str, tools: set[str]) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli("record", "--task", str(BYO / task), "--db", str(db))
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        names = {row[0] for row in conn.sql("select name from tool_results").fetchall()}
        (status,) = conn.sql("select status from runs").fetchone() or (None,)
    assert tools <= names
    assert status == "completed"


def test_the_git_sample_serves_a_seeded_repository(tmp_path: Path) -> None:
    task: Task = asyncio.run(discover_tools(load_task(BYO / "mcp_git.toml")))

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=tmp_path / "box") as env:
            log = await env.call("git_log", {"repo_path": str(tmp_path / "box")})
            assert log.error is None, log.error
            assert "Seed" in log.output and "agent-traces" in log.output
            # "." is the sandbox: the server runs there, as the sample's prompt tells the model.
            status = await env.call("git_status", {"repo_path": "."})
            assert "nothing to commit" in status.output

    asyncio.run(go())


def test_a_missing_sample_server_command_is_reported_not_skipped() -> None:
    # mcp-server-time and mcp-server-git are dev dependencies: they must be there.
    folder = Path(sys.executable).parent
    for program in ("mcp-server-time", "mcp-server-git"):
        assert (folder / program).exists() or any(
            (Path(p) / program).exists() for p in os.environ.get("PATH", "").split(os.pathsep)
        ), program


def test_recording_a_builtin_task_never_imports_mcp(tmp_path: Path) -> None:
    probe = (
        "import sys\nsys.argv = ['traces', 'record', '--task', 'chain_short', '--db', "
        f"{str(tmp_path / 't.duckdb')!r}]\nfrom analyzer.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_npm_filesystem_server_works_over_the_seeded_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", npm_server_path("mcp-server-filesystem"))
    task = asyncio.run(discover_tools(load_task(BYO / "mcp_files.toml")))
    names = task.environment.tool_names()
    assert {"read_text_file", "write_file", "list_directory", "search_files"} <= set(names)
    box = tmp_path / "box"

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=box) as env:
            listing = await env.call("list_directory", {"path": str(box)})
            assert listing.error is None and "[FILE] README.md" in listing.output
            written = await env.call(
                "write_file", {"path": str(box / "report.md"), "content": "TODO: x\n"}
            )
            assert written.error is None
            # The server confines itself to the sandbox it was given.
            outside = await env.call("read_text_file", {"path": "/etc/hostname"})
            assert outside.error_kind is ToolErrorKind.REJECTED
            assert "outside allowed directories" in (outside.error or "")
        assert (box / "report.md").read_text() == "TODO: x\n"

    asyncio.run(go())


@pytest.mark.slow
def test_the_npm_filesystem_sample_records_end_to_end(tmp_path: Path) -> None:
    path = npm_server_path("mcp-server-filesystem")
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "record", "--task", str(BYO / "mcp_files.toml"), "--db", str(db), env={"PATH": path}
    )
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        calls = conn.sql("select count(*) from tool_results").fetchone()
    assert calls is not None and calls[0] >= 1


@pytest.mark.slow
def test_a_suite_of_own_tools_is_compared_and_a_dead_server_in_it_is_bad_input(
    tmp_path: Path,
) -> None:
    good = write_task(tmp_path, stdio_server('tools = ["word_stats"]\n'), name="good")
    port = free_port()
    dead = write_task(
        tmp_path,
        f'[[environment.mcp]]\nname = "x"\nurl = "http://127.0.0.1:{port}/mcp"\n',
        name="dead",
    )
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f'name = "byo"\ndescription = "d"\n[[tasks]]\npath = "{good.name}"\nrepeats = 1\n'
    )
    db = tmp_path / "t.duckdb"
    args = ["compare", "--suite", str(suite), "--db", str(db), "--dialect", "openai"]
    done = run_cli(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        names = {row[0] for row in conn.sql("select name from tool_results").fetchall()}
    assert names == {"word_stats"}
    suite.write_text(suite.read_text() + f'[[tasks]]\npath = "{dead.name}"\nrepeats = 1\n')
    other = tmp_path / "other.duckdb"
    done = run_cli("compare", "--suite", str(suite), "--db", str(other), "--dialect", "openai")
    assert done.returncode == 2
    assert f"error: {dead}: environment.mcp[0].url: " in done.stderr
    assert not other.exists()


RAW_SERVER = """
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    method, ident = message.get("method"), message.get("id")
    if method == "initialize":
        result = {"protocolVersion": message["params"]["protocolVersion"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "raw", "version": "1"}}
    elif method == "tools/list":
        schema = {"type": "object", "properties": {"x": {"type": "nonsense"}}}
        result = {"tools": [{"name": "broken", "description": "d", "inputSchema": schema}]}
    elif ident is None:
        continue
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": ident, "result": result}), flush=True)
"""


def test_a_tool_whose_schema_is_not_json_schema_is_bad_input(tmp_path: Path, cli: CliRun) -> None:
    # A hand-written server (no SDK) listing a tool whose input schema no validator accepts.
    (tmp_path / "raw_server.py").write_text(RAW_SERVER)
    server = f'[[environment.mcp]]\nname = "raw"\ncommand = [{json.dumps(sys.executable)}, '
    path = write_task(tmp_path, server + f"{json.dumps(str(tmp_path / 'raw_server.py'))}]\n")
    done = cli("record", "--task", str(path), "--db", str(tmp_path / "t.duckdb"))
    assert done.returncode == 2, done.stderr
    assert f"{path}: environment.mcp[0]: tool 'broken' has an input schema that is not valid" in (
        done.stderr
    )
    assert not (tmp_path / "t.duckdb").exists()

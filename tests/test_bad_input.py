"""The bad-input corpus: every malformed file, option, query or endpoint a user can hand the CLI.

Each case runs `traces` against a copy of a populated store and holds the contract the README
promises for bad input: the documented exit code, exactly one line on stderr (`error: …`,
naming the file, field, line or value at fault), no traceback, and every table's row count as
it was. Cases where the command rightly records something (a host that fails every request is
still a recording) say which tables may grow, and by how much.

The cases that talk to an endpoint (and the few marked `subprocess`) run `traces` in a
subprocess as a user runs it; the others run the console script's entry point in this process,
its output read at the file descriptors (`capfd`, so what any child process prints counts
too): the same code from `main` down, without an interpreter start-up per case (0.8 to 1.4 s
of CPU each, most of this module's time).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from conftest import SAMPLES, TASKS, run_cli, run_cli_in_process

# Slow as a whole, outside the fast path `pytest -m "not slow"`: 85 commands, a populated store
# copied for each, and the endpoint cases' recordings in subprocesses.
pytestmark = pytest.mark.slow

GOOD_TASK = """\
name = "t"
description = "a short chain"
max_steps = 10
system_prompt = "Open the boxes."
user_prompt = "Open box {start_box}; there are {length}."

[environment]
type = "chain"
length = 5
"""
PROVIDERS = """
[local]
base_url = "http://127.0.0.1:9/v1"
api_key_env = "TRACES_TEST_UNSET_KEY"
models = ["m"]
dialect = "openai"
"""
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
RESPONSE = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
GOOD_LINE = json.dumps({"request": REQUEST, "response": RESPONSE})


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@dataclass
class Case:
    """One bad input: the command (`{file}`/`{db}`/`{url}` filled in), the files it reads,
    the exit code it must end with and fragments the error line must contain."""

    id: str
    args: list[str]
    code: int
    fragments: list[str] = field(default_factory=list)
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    records: int = 0
    """Runs the command rightly records (a host that fails every request is still a
    recording): they must all have failed, and nothing else in the store may change."""
    subprocess: bool = False
    """Run as a user runs it (a new interpreter through `python -m analyzer`) rather than
    through the entry point in this process: the cases that reach an endpoint, and one or two
    of each other kind, so the real start-up path is held to the same contract."""


def _record(*extra: str) -> list[str]:
    return ["record", "--db", "{db}", *extra]


def _record_short(*extra: str) -> list[str]:
    """`traces record` of the short chain task, with these options."""
    return _record("--task", str(TASKS / "chain_short.toml"), *extra)


TASK_CASES = [
    Case("task-missing", _record("--task", "{dir}/nope.toml"), 2, ["nope.toml"]),
    Case("task-not-toml", _record("--task", "{file}"), 2, ["t.toml"], {"t.toml": "name = [\n"}),
    Case("task-empty", _record("--task", "{file}"), 2, ["t.toml"], {"t.toml": ""}),
    Case(
        "task-binary",
        _record("--task", "{file}"),
        2,
        ["t.toml"],
        {"t.toml": b"\x00\xff\xfe"},
        subprocess=True,
    ),
    Case("task-is-a-directory", _record("--task", "{dir}"), 2),
    Case(
        "task-no-name",
        _record("--task", "{file}"),
        2,
        ["name"],
        {"t.toml": GOOD_TASK.replace('name = "t"\n', "")},
    ),
    Case(
        "task-max-steps-text",
        _record("--task", "{file}"),
        2,
        ["max_steps"],
        {"t.toml": GOOD_TASK.replace("max_steps = 10", 'max_steps = "ten"')},
    ),
    Case(
        "task-max-steps-negative",
        _record("--task", "{file}"),
        2,
        ["max_steps"],
        {"t.toml": GOOD_TASK.replace("max_steps = 10", "max_steps = -3")},
    ),
    Case(
        "task-no-user-prompt",
        _record("--task", "{file}"),
        2,
        ["user_prompt"],
        {"t.toml": re.sub("user_prompt = .*\n", "", GOOD_TASK)},
    ),
    Case(
        "task-unknown-field",
        _record("--task", "{file}"),
        2,
        ["colour"],
        {"t.toml": 'colour = "red"\n' + GOOD_TASK},
    ),
    Case(
        "task-unknown-environment",
        _record("--task", "{file}"),
        2,
        ["type"],
        {"t.toml": GOOD_TASK.replace('type = "chain"', 'type = "spaceship"')},
    ),
    Case(
        "task-environment-bad-length",
        _record("--task", "{file}"),
        2,
        ["length"],
        {"t.toml": GOOD_TASK.replace("length = 5", 'length = "five"')},
    ),
    Case(
        "task-unknown-placeholder",
        _record("--task", "{file}"),
        2,
        ["t.toml"],
        {"t.toml": GOOD_TASK.replace("{start_box}", "{no_such_value}")},
    ),
]

PROVIDER_CASES = [
    Case(
        "providers-not-toml",
        ["providers", "--providers", "{file}"],
        2,
        ["p.toml"],
        {"p.toml": "[local\n"},
        subprocess=True,
    ),
    Case(
        "providers-missing-file",
        ["providers", "--providers", "{dir}/none.toml"],
        2,
        ["none.toml"],
    ),
    Case(
        "provider-no-base-url",
        ["providers", "--providers", "{file}"],
        2,
        ["base_url"],
        {"p.toml": PROVIDERS.replace('base_url = "http://127.0.0.1:9/v1"\n', "")},
    ),
    Case(
        "provider-unknown-dialect",
        ["providers", "--providers", "{file}"],
        2,
        ["dialect"],
        {"p.toml": PROVIDERS.replace('dialect = "openai"', 'dialect = "klingon"')},
    ),
    Case(
        "provider-models-not-a-list",
        ["providers", "--providers", "{file}"],
        2,
        ["models"],
        {"p.toml": PROVIDERS.replace('models = ["m"]', "models = 7")},
    ),
    Case(
        "provider-not-a-table",
        ["providers", "--providers", "{file}"],
        2,
        ["local"],
        {"p.toml": 'local = "http://x"\n'},
    ),
    Case(
        "provider-unknown-name",
        _record_short("--provider", "nobody"),
        2,
        ["nobody"],
    ),
    Case(
        "provider-key-variable-unset",
        _record_short("--providers", "{file}", "--provider", "local"),
        2,
        ["TRACES_TEST_UNSET_KEY"],
        {"p.toml": PROVIDERS},
    ),
    Case(
        "provider-named-key-variable-unset",
        _record_short(
            "--base-url", "{url}", "--model", "m", "--api-key-env", "TRACES_TEST_UNSET_KEY"
        ),
        2,
        ["TRACES_TEST_UNSET_KEY"],
    ),
]


def _import(fmt: str | None = None) -> list[str]:
    extra = ["--format-in", fmt] if fmt else []
    return ["import", "{file}", "--db", "{db}", "--provider", "x", *extra]


IMPORT_CASES = [
    Case("import-missing-file", ["import", "{dir}/no.jsonl", "--db", "{db}"], 2, ["no.jsonl"]),
    Case("import-not-json", _import(), 2, ["l.jsonl:2"], {"l.jsonl": _lines(GOOD_LINE, "{oops")}),
    Case("import-array-line", _import(), 2, ["l.jsonl:1"], {"l.jsonl": _lines("[1, 2]")}),
    Case(
        "import-no-request",
        _import("exchanges"),
        2,
        ["l.jsonl:1", "request"],
        {"l.jsonl": _lines(json.dumps({"response": RESPONSE}))},
    ),
    Case(
        "import-messages-not-a-list",
        _import("exchanges"),
        2,
        ["l.jsonl:1", "messages"],
        {"l.jsonl": _lines(json.dumps({"request": {"messages": "hi"}, "response": RESPONSE}))},
    ),
    Case(
        "import-nan",
        _import(),
        2,
        ["l.jsonl:2"],
        {"l.jsonl": _lines(GOOD_LINE, GOOD_LINE.replace('"completion_tokens": 1', '"x": NaN'))},
    ),
    Case(
        "import-infinity",
        _import(),
        2,
        ["l.jsonl:1"],
        {"l.jsonl": _lines(GOOD_LINE.replace('"prompt_tokens": 3', '"prompt_tokens": Infinity'))},
    ),
    Case(
        "import-1e999",
        _import(),
        2,
        ["l.jsonl:1"],
        {"l.jsonl": _lines(GOOD_LINE.replace('"prompt_tokens": 3', '"prompt_tokens": 1e999'))},
    ),
    Case(
        "import-nested-100k",
        _import(),
        2,
        ["l.jsonl:1"],
        {"l.jsonl": _lines('{"request": ' + "[" * 100_000 + "]" * 100_000 + "}")},
    ),
    Case(
        "import-binary",
        _import(),
        2,
        ["l.jsonl"],
        {"l.jsonl": b"\xff\xfe\x00\x01garbage\n"},
        subprocess=True,
    ),
    Case(
        "import-response-not-object",
        _import("exchanges"),
        2,
        ["l.jsonl:1", "response"],
        {"l.jsonl": _lines(json.dumps({"request": REQUEST, "response": 5}))},
    ),
    Case(
        "import-bad-started-at",
        _import("exchanges"),
        2,
        ["l.jsonl:1", "started_at"],
        {
            "l.jsonl": _lines(
                json.dumps({"request": REQUEST, "response": RESPONSE, "started_at": "soon"})
            )
        },
    ),
    Case(
        "import-k2vv-no-request",
        _import("k2vv"),
        2,
        ["l.jsonl:1"],
        {"l.jsonl": _lines(json.dumps({"data_index": 0, "response": RESPONSE}))},
    ),
    Case("import-unknown-format", _import("xml"), 2, ["--format-in"], {"l.jsonl": GOOD_LINE}),
    Case("import-empty-file", _import(), 2, ["l.jsonl"], {"l.jsonl": ""}),
]

SQL_CASES = [
    Case("sql-syntax", ["sql", "selec 1", "--db", "{db}"], 2, ["selec"], subprocess=True),
    Case("sql-empty", ["sql", "", "--db", "{db}"], 2),
    Case("sql-blank", ["sql", "   \n ", "--db", "{db}"], 2),
    Case("sql-unknown-table", ["sql", "select * from nothing_here", "--db", "{db}"], 2),
    Case("sql-delete", ["sql", "delete from runs", "--db", "{db}"], 2),
    Case("sql-create", ["sql", "create table x (a int)", "--db", "{db}"], 2),
    Case("sql-copy-out", ["sql", "copy (select 1) to '{dir}/out.csv'", "--db", "{db}"], 2),
    Case("sql-export", ["sql", "export database '{dir}/exported'", "--db", "{db}"], 2),
    Case("sql-attach", ["sql", "attach '{dir}/other.duckdb' as o", "--db", "{db}"], 2),
    Case("sql-install", ["sql", "install httpfs", "--db", "{db}"], 2),
    Case("sql-load", ["sql", "load httpfs", "--db", "{db}"], 2),
    Case("sql-read-file", ["sql", "select * from read_csv('/etc/passwd')", "--db", "{db}"], 2),
    Case("sql-two-statements", ["sql", "select 1; drop table runs", "--db", "{db}"], 2),
    Case("sql-bad-limit", ["sql", "select 1", "--limit", "-5", "--db", "{db}"], 2, ["limit"]),
]

TAKE_UP_CASES = [
    Case(
        "resume-nothing-interrupted",
        _record("--resume"),
        2,
        ["no interrupted run to resume"],
        subprocess=True,
    ),
    Case("resume-unknown-run", _record("--resume", "zzzzzz"), 2, ["zzzzzz"]),
    Case("resume-imported-run", _record("--resume", "last"), 2, ["is an imported run"]),
    Case(
        "resume-missing-store", ["record", "--resume", "--db", "{dir}/no.duckdb"], 4, ["no.duckdb"]
    ),
    Case(
        "resume-with-a-seed", _record("--resume", "--seed", "3"), 2, ["--seed: not with --resume"]
    ),
    Case("resume-with-a-task", _record("--resume", "-t", "chain"), 2, ["--task: not with"]),
    Case("resume-and-retry", _record("--resume", "--retry-failed"), 2, ["one at a time"]),
    Case("retry-nothing-failed", _record("--retry-failed"), 2, ["no run ended with a provider"]),
    Case("retry-imported-run", _record("--retry-failed", "last"), 2, ["is an imported run"]),
    Case("again-without-retry", _record_short("--again"), 2, ["--again goes with --retry-failed"]),
    Case("run-without-resume", _record_short("someid"), 2, ["go with --resume"]),
    Case("record-without-task", _record(), 2, ["--task is required"]),
]

OPTION_CASES = [
    Case("runs-bad-status", ["runs", "--status", "bogus", "--db", "{db}"], 2, ["bogus"]),
    Case("runs-bad-origin", ["runs", "--origin", "nope", "--db", "{db}"], 2, ["nope"]),
    Case("runs-bad-format", ["runs", "--format", "xml", "--db", "{db}"], 2, ["xml"]),
    Case("runs-bad-limit", ["runs", "--limit", "many", "--db", "{db}"], 2, ["--limit"]),
    Case("failures-bad-kind", ["failures", "--kind", "nope", "--db", "{db}"], 2, ["nope"]),
    Case("failures-bad-layer", ["failures", "--layer", "nope", "--db", "{db}"], 2, ["nope"]),
    Case("show-unknown-run", ["show", "zzzzzz", "--db", "{db}"], 2, ["zzzzzz"]),
    Case("unknown-command", ["frobnicate"], 2, ["frobnicate"], subprocess=True),
    Case("unknown-option", ["runs", "--colour", "--db", "{db}"], 2, ["--colour"]),
    Case("db-missing", ["runs", "--db", "{dir}/absent.duckdb"], 4, ["absent.duckdb"]),
    Case(
        "db-not-duckdb",
        ["runs", "--db", "{file}"],
        4,
        ["x.duckdb"],
        {"x.duckdb": "hello"},
        subprocess=True,
    ),
    Case("db-is-a-directory", ["runs", "--db", "{dir}"], 4),
    Case("compare-bad-since", ["compare", "--since", "yesterday", "--db", "{db}"], 2, ["since"]),
    Case("compare-bad-by", ["compare", "--by", "colour", "--db", "{db}"], 2, ["colour"]),
    Case(
        "record-bad-dialect",
        _record_short("--dialect", "klingon"),
        2,
        ["klingon"],
    ),
    Case(
        "record-unknown-fault",
        _record_short("--fault", "gremlins=0.5"),
        2,
        ["gremlins"],
    ),
    Case(
        "record-fault-rate-above-one",
        _record_short("--fault", "rate_limit_429=7"),
        2,
        ["rate_limit_429"],
    ),
    Case(
        "record-bad-replay",
        _record_short("--reasoning-replay", "sideways"),
        2,
        ["sideways"],
    ),
    Case(
        "record-zero-repeat",
        _record_short("--repeat", "0"),
        2,
        ["repeat"],
    ),
    Case(
        "record-zero-concurrency",
        _record_short("--concurrency", "0"),
        2,
        ["concurrency"],
    ),
    Case(
        "compare-suite-missing",
        ["compare", "--suite", "{dir}/none.toml", "--db", "{db}", "--dialect", "openai"],
        2,
        ["none.toml"],
    ),
    Case(
        "compare-suite-bad-task-path",
        ["compare", "--suite", "{file}", "--db", "{db}", "--dialect", "openai"],
        2,
        ["missing.toml"],
        {"s.toml": 'name = "s"\ndescription = "d"\n[[tasks]]\npath = "missing.toml"\n'},
    ),
    Case(
        "report-into-missing-directory",
        ["report", "--html", "{dir}/no/such/dir/r.html", "--db", "{db}"],
        2,
        ["r.html"],
    ),
]

# The cases that reach an endpoint start writer processes and HTTP clients: as a user runs them.
ENDPOINT_CASES = [
    Case(
        "endpoint-refused",
        _record_short("--base-url", "http://127.0.0.1:9/v1", "--model", "m"),
        3,
        ["127.0.0.1:9"],
        subprocess=True,
    ),
    Case(
        "endpoint-closes-at-once",
        _record_short("--base-url", "{close_url}", "--model", "m"),
        3,
        subprocess=True,
    ),
    Case(
        "endpoint-bad-url",
        _record_short("--base-url", "not a url", "--model", "m"),
        2,
        ["not a url"],
    ),
    Case(
        "endpoint-no-model",
        _record_short("--base-url", "{url}"),
        2,
        ["--model"],
    ),
    Case(
        "endpoint-answers-500",
        _record_short("--base-url", "{hostile_url}/status500", "--model", "m", "--repeat", "2"),
        3,
        records=2,
        subprocess=True,
    ),
    Case(
        "endpoint-answers-html",
        _record_short("--base-url", "{hostile_url}/html", "--model", "m"),
        3,
        records=1,
        subprocess=True,
    ),
    Case(
        "endpoint-answers-nan",
        _record_short("--base-url", "{hostile_url}/nan", "--model", "m"),
        3,
        records=1,
        subprocess=True,
    ),
    Case(
        "endpoint-context-overflow-400",
        _record_short("--base-url", "{hostile_url}/overflow", "--model", "m"),
        3,
        records=1,
        subprocess=True,
    ),
    Case("record-temperature-nan", _record_short("--temperature", "nan"), 2, ["--temperature"]),
    Case("record-timeout-inf", _record_short("--timeout", "inf"), 2, ["--timeout"]),
]

CASES = (
    TASK_CASES
    + PROVIDER_CASES
    + IMPORT_CASES
    + SQL_CASES
    + OPTION_CASES
    + ENDPOINT_CASES
    + TAKE_UP_CASES
)


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a recorded run and an imported one: every table has rows to lose."""
    db = tmp_path_factory.mktemp("corpus") / "store.duckdb"
    done = run_cli("record", "--task", str(TASKS / "chain_short.toml"), "--db", str(db))
    assert done.returncode == 0, done.stderr
    log = db.parent / "log.jsonl"
    log.write_text(GOOD_LINE + "\n", encoding="utf-8")
    done = run_cli("import", str(log), "--db", str(db), "--provider", "imported")
    assert done.returncode == 0, done.stderr
    return db


@pytest.fixture(scope="module")
def closing_server() -> Iterator[str]:
    """A loopback server that accepts every connection and closes it without a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    listener.close()


_HOSTILE: dict[str, tuple[int, str, bytes]] = {
    "status500": (500, "application/json", b'{"error": {"message": "internal error"}}'),
    "html": (200, "text/html", b"<html><body>Bad gateway</body></html>"),
    "nan": (200, "application/json", json.dumps(RESPONSE).replace("3", "NaN", 1).encode()),
    "overflow": (
        400,
        "application/json",
        b'{"error": {"message": "This model\'s maximum context length is 8192 tokens. '
        b'However, your messages resulted in 9100 tokens.", "code": "context_length_exceeded"}}',
    ),
}


class _Hostile(BaseHTTPRequestHandler):
    """Answers every request under /BEHAVIOUR/… the same way (see `_HOSTILE`)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, kind, body = _HOSTILE[self.path.strip("/").split("/")[0]]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[str]:
    """A loopback host that answers with a fixed failure per path prefix."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _rows_outside(db: Path, new_runs: set[str]) -> dict[str, int]:
    """Row counts of every table, leaving out rows of `new_runs` (tables with a run id)."""
    with duckdb.connect(str(db), read_only=True) as conn:
        columns = conn.execute(
            "select table_name, bool_or(column_name = 'run_id') "
            "from information_schema.columns join information_schema.tables using "
            "(table_schema, table_name) where table_type = 'BASE TABLE' group by 1 order by 1"
        ).fetchall()
        counts = {}
        for table, has_run_id in columns:
            where = ""
            if new_runs and (has_run_id or table == "runs"):
                key = "run_id" if has_run_id else "id"
                where = f" where {key} not in (select unnest(?::varchar[]))"
            params = [sorted(new_runs)] if where else []
            counts[table] = conn.execute(
                f'select count(*) from "{table}"{where}', params
            ).fetchone()[0]  # type: ignore[index]
        return counts


def _new_runs(db: Path, before: set[str]) -> dict[str, str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute("select id, status from runs").fetchall()
    return {run: status for run, status in rows if run not in before}


def _run_ids(db: Path) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {run for (run,) in conn.execute("select id from runs").fetchall()}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_leaves_the_store(
    case: Case,
    populated: Path,
    tmp_path: Path,
    closing_server: str,
    hostile_server: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "store.duckdb"
    shutil.copy(populated, db)
    work = tmp_path / "work"
    work.mkdir()
    written = []
    for name, content in case.files.items():
        path = work / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    values = {
        "db": str(db),
        "dir": str(work),
        "file": str(written[0]) if written else "",
        "url": closing_server,
        "close_url": closing_server,
        "hostile_url": hostile_server,
    }
    args = [arg.format(**values) if "{" in arg else arg for arg in case.args]
    runs_before = _run_ids(db)
    before = _rows_outside(db, set())
    listing = sorted(p.name for p in work.iterdir())

    env = {"TRACES_PROVIDERS": str(SAMPLES / "providers.toml"), **case.env}
    if case.subprocess:
        done = run_cli(*args, env=env)
    else:
        with monkeypatch.context() as patch:
            for name in ("TRACES_DB", "TRACES_DATA_PATH"):  # as `run_cli` leaves them
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            done = run_cli_in_process(capfd, patch, *args)

    err = done.stderr.strip()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.code, (done.returncode, done.stderr, done.stdout[-500:])
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for fragment in case.fragments:
        assert fragment in err, (fragment, err)
    new = _new_runs(db, runs_before)
    assert len(new) == case.records, new
    assert all(status == "failed" for status in new.values()), new
    after = _rows_outside(db, set(new))
    if case.records:  # messages are shared by runs: a new run's own prompt is a new row
        assert after.pop("messages") >= before.pop("messages")
    assert after == before
    assert sorted(p.name for p in work.iterdir()) == listing, "the command left files behind"

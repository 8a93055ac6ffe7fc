"""Output that keeps data and fits a terminal: exact CSV and JSON, tables that fit 80 and 100
columns without breaking a run id, recorded control characters and markup printed inertly,
`--version`, shell completion, filters that refuse unknown values, `runs` saying what it left
out, and `–` for missing values."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import REPO, run_cli, run_cli_in_process

FIXTURES = REPO / "tests" / "fixtures" / "import"
EVIL_LABEL = "evil\x1b[2J[bold]lab\u202eel\x9b"
EVIL_TEXT = "ans\x1b]0;pwned\x07 [red]x[/red] \x1b[31mred <|tool_call_begin|>"
ESCAPE_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")


@pytest.fixture(scope="module")
def traces_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Imported runs: three labelled with escape sequences and markup, whose answers carry
    them too, plus both import fixtures (31-character run ids that share long prefixes)."""
    folder = tmp_path_factory.mktemp("output")
    evil = folder / "evil.jsonl"
    evil.write_text(
        "".join(
            json.dumps(
                {
                    "conversation": f"c{i}",
                    "provider": EVIL_LABEL,
                    "model": "moonshotai/kimi-k2-thinking",
                    "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    "response": {
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": EVIL_TEXT},
                                "finish_reason": "stop",
                            }
                        ]
                    },
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    db = folder / "t.duckdb"
    done = run_cli(
        "import",
        str(evil),
        str(FIXTURES / "exchanges.jsonl"),
        str(FIXTURES / "k2vv_results.jsonl"),
        "--provider",
        "other",
        "--db",
        str(db),
    )
    assert done.returncode == 0, done.stderr
    return db


Cli = Any


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`traces ARGS` in this process; returns (exit code, stdout, stderr)."""

    def run(*args: str, columns: int = 200) -> tuple[int, str, str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        done = run_cli_in_process(capsys, monkeypatch, *args)
        return done.returncode, done.stdout, done.stderr

    return run


def _ids(db: Path, provider: str | None = None) -> list[str]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        where = "WHERE provider = ?" if provider is not None else ""
        params = [provider] if provider is not None else []
        return [
            r[0]
            for r in conn.execute(f"SELECT id FROM runs {where} ORDER BY id", params).fetchall()
        ]
    finally:
        conn.close()


# -- exact CSV and JSON ------------------------------------------------------------------------

VALUES = """
    select 1234.5678::double as dbl,
           0.1::double + 0.2::double as sum,
           123456789012345678901234567890.12345678::decimal(38, 8) as dec,
           170141183460469231731687303715884105727::hugeint as huge,
           'nan'::double as nan, '-infinity'::double as neg_inf,
           timestamp '2024-05-06 07:08:09.123456' as ts,
           timestamptz '2024-05-06 07:08:09.5+00' as tstz,
           date '2024-05-06' as day, time '07:08:09.25' as clock,
           interval '1 day 2 hours 3.5 seconds' as span,
           '\\xAA\\x00ab'::blob as bytes,
           '123e4567-e89b-42d3-a456-426614174000'::uuid as id,
           [1, 2, 3] as list, {'x': 1.5::decimal(3, 1), 'y': ['a', null]} as struct,
           map([1, 2], ['one', 'two']) as map,
           [1, 2]::int[2] as array, null as nothing
"""


def test_json_carries_every_value_exactly(traces_db: Path, cli: Cli) -> None:
    code, out, err = cli("sql", VALUES, "--db", str(traces_db), "-f", "json")
    assert code == 0, err
    [row] = json.loads(out, parse_float=Decimal)
    assert row["dbl"] == Decimal("1234.5678")
    assert row["sum"] == Decimal("0.30000000000000004")  # the float as it is, not rounded
    assert row["dec"] == Decimal("123456789012345678901234567890.12345678")
    assert row["huge"] == 170141183460469231731687303715884105727
    assert (row["nan"], row["neg_inf"]) == ("NaN", "-Infinity")
    assert row["ts"] == "2024-05-06T07:08:09.123456"
    assert row["tstz"] == "2024-05-06T07:08:09.500000+00:00"
    assert (row["day"], row["clock"]) == ("2024-05-06", "07:08:09.250000")
    assert row["span"] == "P1DT2H3.5S"
    assert row["bytes"] == "\\xAA\\x00ab"
    assert row["id"] == "123e4567-e89b-42d3-a456-426614174000"
    assert row["list"] == [1, 2, 3] and row["array"] == [1, 2]
    assert row["struct"] == {"x": Decimal("1.5"), "y": ["a", None]}
    assert row["map"] == {"1": "one", "2": "two"}
    assert row["nothing"] is None


def test_csv_carries_every_value_exactly(traces_db: Path, cli: Cli) -> None:
    code, out, err = cli("sql", VALUES, "--db", str(traces_db), "-f", "csv")
    assert code == 0, err
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["dbl"] == "1234.5678" and row["sum"] == "0.30000000000000004"
    assert row["dec"] == "123456789012345678901234567890.12345678"
    assert row["huge"] == "170141183460469231731687303715884105727"
    assert (row["nan"], row["neg_inf"]) == ("nan", "-inf")
    assert row["ts"] == "2024-05-06T07:08:09.123456"
    assert row["tstz"] == "2024-05-06T07:08:09.500000+00:00"
    assert row["span"] == "P1DT2H3.5S" and row["bytes"] == "\\xAA\\x00ab"
    assert json.loads(row["struct"], parse_float=Decimal) == {"x": Decimal("1.5"), "y": ["a", None]}
    assert row["nothing"] == ""


def test_tables_round_for_people_and_print_every_type(traces_db: Path, cli: Cli) -> None:
    code, out, err = cli("sql", VALUES, "--db", str(traces_db), columns=400)
    assert code == 0, err
    assert "1235" in out and "1234.5678" not in out
    assert "2024-05-06 07:08:09" in out and "–" in out


def test_run_json_keeps_fractions_of_seconds(traces_db: Path, cli: Cli) -> None:
    code, out, _ = cli("runs", "--db", str(traces_db), "-f", "json", "--limit", "0")
    assert code == 0
    started = {r["started_at"] for r in json.loads(out)}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", s) for s in started)


# -- control characters and markup ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["runs", "--wide"],
        ["runs", "-f", "csv"],
        ["failures"],
        ["failures", "--kind", "leaked_special_tokens"],
        ["steps"],
        ["sql", "select provider, content from runs join steps on run_id = id"],
        ["sql", "select provider, content from runs join steps on run_id = id", "-f", "csv"],
        ["compare", "--provider", EVIL_LABEL, "--by", "provider"],
    ],
    ids=lambda a: " ".join(a)[:40],
)
def test_recorded_control_characters_never_reach_the_terminal(
    traces_db: Path, cli: Cli, args: list[str]
) -> None:
    code, out, err = cli(*args, "--db", str(traces_db))
    assert code == 0, err
    assert not ESCAPE_CHARS.search(out + err), (out + err)[:2000]
    assert "\\x1b[2J" in out and "\\u202e" in out
    assert "[bold]" in out  # markup in data is text


def test_show_escapes_and_prints_markup_literally(traces_db: Path, cli: Cli) -> None:
    run = _ids(traces_db, EVIL_LABEL)[0]
    code, out, err = cli("show", run, "--db", str(traces_db), "--full")
    assert code == 0, err
    assert not ESCAPE_CHARS.search(out + err)
    assert "\\x1b]0;pwned\\x07 [red]x[/red] \\x1b[31mred <|tool_call_begin|>" in out
    assert "provider evil\\x1b[2J[bold]lab\\u202eel\\x9b" in out
    assert "None" not in out


def test_json_escapes_control_characters_losslessly(traces_db: Path, cli: Cli) -> None:
    run = _ids(traces_db, EVIL_LABEL)[0]
    code, out, _ = cli("show", run, "--db", str(traces_db), "-f", "json")
    assert code == 0 and not ESCAPE_CHARS.search(out)
    detail = json.loads(out)
    assert detail["provider"] == EVIL_LABEL and detail["steps"][0]["content"] == EVIL_TEXT


def test_errors_quoting_input_escape_it(traces_db: Path, cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("show", "no\x1b[2Jsuch", "--db", str(traces_db))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and not ESCAPE_CHARS.search(err)
    code, out, err = cli("runs", "--db", str(tmp_path / "a\x1b[2Jb\nc.duckdb"))
    assert (code, out) == (4, "")
    assert err.count("\n") == 1 and not ESCAPE_CHARS.search(err) and "a\\x1b[2Jb c" in err


def test_stderr_lines_are_not_wrapped_when_not_a_terminal(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4)
    deep.mkdir()
    log = deep / "log.jsonl"
    log.write_text((FIXTURES / "exchanges.jsonl").read_text())
    code, _, err = cli("import", str(log), "--db", str(tmp_path / "t.duckdb"), columns=80)
    assert code == 0, err
    [line] = [line for line in err.splitlines() if "names no provider" in line]
    assert str(log) in line and len(line) > 160


# -- fitting 80 and 100 columns ---------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 100])
def test_run_tables_fit_and_never_break_an_id(traces_db: Path, cli: Cli, columns: int) -> None:
    ids = _ids(traces_db)
    for args in (["runs", "--limit", "0"], ["failures", "--kind", "leaked_special_tokens"]):
        code, out, err = cli(*args, "--db", str(traces_db), "-f", "json")
        expected = [r.get("id") or r["run"] for r in json.loads(out)]
        code, out, err = cli(*args, "--db", str(traces_db), columns=columns)
        assert code == 0, err
        lines = out.rstrip("\n").splitlines()
        assert all(len(line.rstrip()) <= columns for line in lines), out
        firsts = [line.split()[0] for line in lines if line.strip()]
        shown = [s for s in firsts if any(i.startswith(s) for i in ids)]
        # Every row starts with its run's whole abbreviated id, naming that run alone.
        assert len(shown) == len(expected)
        for short, full in zip(shown, expected, strict=True):
            assert full.startswith(short) and sum(i.startswith(short) for i in ids) == 1
    code, out, err = cli("runs", "--limit", "0", "--db", str(traces_db), columns=columns)
    assert "leave no room for" in err and "--wide" in err


def test_wide_json_and_csv_show_whole_ids(traces_db: Path, cli: Cli) -> None:
    ids = set(_ids(traces_db))
    _, out, _ = cli("runs", "--limit", "0", "--wide", "--db", str(traces_db), columns=80)
    assert {line.split()[0] for line in out.splitlines()[1:]} == ids
    _, out, _ = cli("runs", "--limit", "0", "-f", "csv", "--db", str(traces_db), columns=80)
    assert {r["id"] for r in csv.DictReader(io.StringIO(out))} == ids
    _, out, _ = cli("runs", "--limit", "0", "-f", "json", "--db", str(traces_db), columns=80)
    assert {r["id"] for r in json.loads(out)} == ids


def test_short_ids_are_the_shortest_unique_prefixes_and_resolve(tmp_path: Path, cli: Cli) -> None:
    db = tmp_path / "t.duckdb"
    code, _, err = cli("import", str(FIXTURES / "k2vv_results.jsonl"), "--db", str(db))
    assert code == 0, err
    conn = duckdb.connect(str(db))
    # Recorded-style ids: one alone, two sharing all but their last character.
    for run_id in ("20250101-000000-aaaaaaaa", "20250101-000000-aaaaaaab", "19990101-x"):
        conn.execute("INSERT INTO runs SELECT * REPLACE (? AS id) FROM runs LIMIT 1", [run_id])
    conn.close()
    ids = _ids(db)
    code, out, _ = cli("runs", "--limit", "0", "--db", str(db))
    shown = [line.split()[0] for line in out.splitlines()[1:]]
    assert len(shown) == len(ids)
    for short in shown:
        [full] = [i for i in ids if i.startswith(short)]
        assert (
            len(short) == len(full)
            or sum(i.startswith(short[:-1]) for i in ids) > 1
            or len(short) == 8
        )
        code, out, err = cli("show", short, "--db", str(db), "-f", "json")
        assert code == 0 and json.loads(out)["id"] == full, err
    assert "19990101" in shown and "20250101-000000-aaaaaaaa" in shown
    code, out, err = cli("analyze", shown[0], "--db", str(db))
    assert code == 0 and out.split("\n")[1].split()[0] == shown[0], err
    code, out, err = cli("failures", "--run", shown[0], "--db", str(db), "-f", "json")
    assert code == 0, err


def test_a_real_terminal_of_80_columns(traces_db: Path) -> None:
    """The width comes from the terminal itself (no $COLUMNS), as a user's shell runs it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TRACES_DB")}
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "runs", "--limit", "0", "--db", str(traces_db)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**env, "NO_COLOR": "1", "TERM": "dumb"},
        cwd=REPO,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done writing
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    assert len(lines) == len(_ids(traces_db)) + 1
    assert all(len(line.rstrip()) <= 80 for line in lines), text


# -- version, completion, filters, notes -------------------------------------------------------


def test_version_comes_from_the_installed_distribution(cli: Cli) -> None:
    code, out, err = cli("--version")
    assert (code, out, err) == (0, f"traces {version('agent-traces')}\n", "")


def test_shell_completion_completes_commands_and_values(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_TRACES_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "traces ru")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert cli()[:2] == (0, "runs\n")
    monkeypatch.setenv("COMP_WORDS", "traces runs --status int")
    monkeypatch.setenv("COMP_CWORD", "3")
    assert cli()[:2] == (0, "interrupted\n")
    monkeypatch.delenv("_TRACES_COMPLETE")
    # `--show-completion` prints the script of the shell `traces` runs under, found by
    # walking up the process tree (shellingham). A test run started without a shell among
    # its ancestors (a CI runner, a detached job) has none to find, so the detection is set
    # here: the two shells give two scripts, each naming the variable the shell sets.
    for shell, marker in (("bash", "complete_bash"), ("zsh", "complete_zsh")):
        monkeypatch.setattr("shellingham.detect_shell", lambda s=shell: (s, f"/bin/{s}"))
        code, out, err = cli("--show-completion")
        assert (code, err) == (0, "") and f"_TRACES_COMPLETE={marker}" in out


@pytest.mark.parametrize(
    ("args", "valid"),
    [
        (["runs", "--status", "bogus"], "running, completed, failed, interrupted"),
        (["runs", "--origin", "nope"], "recorded, imported, probe"),
        (["failures", "--kind", "nope"], "leaked_special_tokens"),
        (["failures", "--layer", "nope"], "model, tool, provider, client"),
        (["failures", "--kinds", "--layer", "nope"], "model, tool, provider, client"),
        (["compare", "--origin", "nope"], "recorded, imported, probe"),
        (["report", "--html", "r.html", "--origin", "nope"], "recorded, imported, probe"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_unknown_filter_values_are_refused_with_the_valid_ones(
    traces_db: Path,
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    valid: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*args, "--db", str(traces_db))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1 and valid in err
    assert "unknown" in err and not list(tmp_path.iterdir())


def test_runs_says_how_many_it_left_out(traces_db: Path, cli: Cli) -> None:
    total = len(_ids(traces_db))
    code, out, err = cli("runs", "--limit", "2", "--db", str(traces_db), "-f", "json")
    assert code == 0 and len(json.loads(out)) == 2
    assert err == f"showing 2 of {total} runs; --limit 0 for all\n"
    code, out, err = cli("runs", "--limit", "0", "--db", str(traces_db), "-f", "json")
    assert len(json.loads(out)) == total and err == ""
    code, out, err = cli("runs", "--status", "failed", "--db", str(traces_db), "-f", "json")
    assert err == "" and {r["status"] for r in json.loads(out)} == {"failed"}


def test_show_prints_a_dash_for_what_is_missing(traces_db: Path, cli: Cli) -> None:
    shown = []
    for run in _ids(traces_db):
        code, out, err = cli("show", run, "--db", str(traces_db))
        assert code == 0, err
        shown.append(out)
    assert not any("None" in out for out in shown)
    assert any("prompt –" in out for out in shown) and any("success –" in out for out in shown)

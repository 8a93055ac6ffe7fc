"""Suite files: the samples load, and every kind of bad suite is one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from traces.suites import SuiteFileError, load_suite

from conftest import SAMPLES, TASKS, CliRun

SUITES = SAMPLES / "suites"


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def suite_text(*entries: str, head: str = 'name = "s"\ndescription = "A suite."\n') -> str:
    return head + "".join(f"\n[[tasks]]\n{entry}\n" for entry in entries)


def load_error(path: Path) -> str:
    with pytest.raises(SuiteFileError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    return message


def test_sample_suites_load_with_their_tasks() -> None:
    quick = load_suite(SUITES / "quick.toml")
    assert quick.name == "quick"
    assert [(e.task.name, e.repeats) for e in quick.tasks] == [("chain_short", 5), ("files", 3)]
    assert quick.defaults.stream is True and quick.defaults.concurrency == 4
    assert quick.runs_per_provider() == 8 and quick.runs_per_provider(repeat=2) == 4
    agentic = load_suite(SUITES / "agentic.toml")
    assert [e.task.name for e in agentic.tasks] == ["chain", "research", "files"]
    assert {e.task.name: e.max_steps for e in agentic.tasks}["chain"] == 320


TINY_CHAIN = """\
name = "{name}"
description = "A tiny chain."
max_steps = 5
system_prompt = "Be careful."
user_prompt = "Open {{start_box}}; there are {{length}} boxes."

[environment]
type = "chain"
length = 3
"""


def test_paths_are_relative_to_the_suite_and_step_limits_take_precedence(
    tmp_path: Path,
) -> None:
    (tmp_path / "tasks").mkdir()
    for name in ("one", "two"):
        write(tmp_path / "tasks", TINY_CHAIN.format(name=name), name=f"{name}.toml")
    (tmp_path / "suites").mkdir()
    path = write(
        tmp_path / "suites",
        suite_text(
            'path = "../tasks/one.toml"\nrepeats = 2\nmax_steps = 7',
            'path = "../tasks/two.toml"',
            head='name = "s"\ndescription = "x"\n[defaults]\nmax_steps = 9\nstream = false\n',
        ),
    )
    suite = load_suite(path)
    assert [(e.task.name, e.repeats, e.max_steps) for e in suite.tasks] == [
        ("one", 2, 7),
        ("two", 1, 9),
    ]
    assert suite.defaults.stream is False and suite.source_path == path
    # Without either override, a task keeps its own limit.
    plain = write(tmp_path / "suites", suite_text('path = "../tasks/one.toml"'), name="p.toml")
    assert load_suite(plain).tasks[0].max_steps == 5


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (suite_text(f'path = "{TASKS}/chain_short.toml"', head='description = "x"\n'), ["name:"]),
        ('name = "s"\ndescription = "x"\ntasks = []\n', ["tasks:", "at least 1"]),
        (
            suite_text(f'path = "{TASKS}/chain_short.toml"\nrepeats = 0'),
            ["tasks[0].repeats:", "greater than or equal to 1"],
        ),
        (
            suite_text(f'path = "{TASKS}/chain_short.toml"\nrepeat = 2'),
            ["tasks[0].repeat:", "unknown key", "repeats"],
        ),
        (
            suite_text(
                f'path = "{TASKS}/chain_short.toml"', head='name = "s"\ndescription = "x"\nx = 1\n'
            ),
            ["x:", "unknown key"],
        ),
        (
            suite_text(
                f'path = "{TASKS}/chain_short.toml"',
                head='name = "s"\ndescription = "x"\n[defaults]\nconcurrency = "4"\n',
            ),
            ["defaults.concurrency:", "must be an integer"],
        ),
        (suite_text('path = "no/such/task.toml"'), ["tasks[0].path:", "cannot read task file"]),
        (
            suite_text(f'path = "{TASKS}/chain_short.toml"', f'path = "{TASKS}/chain_short.toml"'),
            ["tasks[1].path:", "listed twice"],
        ),
        ('name = "s"\ndescription = \n', ["line 2", "invalid TOML"]),
    ],
    ids=[
        "missing-name",
        "no-tasks",
        "zero-repeats",
        "misspelt-key",
        "unknown-top-key",
        "wrong-type",
        "missing-task",
        "duplicate-task",
        "toml-syntax",
    ],
)
def test_bad_suites_are_one_line_naming_the_field(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    message = load_error(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in message, message


def test_a_broken_task_names_the_suite_field_and_the_task_file(tmp_path: Path) -> None:
    task = write(tmp_path, 'name = "t"\ndescription = "x"\n', name="task.toml")
    message = load_error(write(tmp_path, suite_text('path = "task.toml"')))
    assert "tasks[0].path:" in message and f"{task}: max_steps" in message


def test_missing_suite_file(tmp_path: Path) -> None:
    assert "cannot read suite file" in load_error(tmp_path / "nope.toml")


def test_cli_reports_a_bad_suite_on_one_line_and_leaves_no_database(
    tmp_path: Path, cli: CliRun
) -> None:
    db = tmp_path / "t.duckdb"
    bad = write(tmp_path, suite_text(f'path = "{TASKS}/chain_short.toml"\nrepeats = -1'))
    done = cli("compare", "--suite", str(bad), "--dialect", "openai", "--db", str(db))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"{bad}: tasks[0].repeats" in line
    assert not db.exists()

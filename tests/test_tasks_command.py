"""`traces tasks`: the sample tasks and suites in every format, and copies that run."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from analyzer.cli import main
from traces.sample_files import sample_tasks, samples_dir
from traces.suites import load_suite
from traces.tasks import load_task

TASK_NAMES = ["chain", "chain_short", "files", "research"]


def traces(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run `traces ARGS` in this process (the CLI's own entry point, its error handling
    included) and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["traces", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, as a user outside the checkout has."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_json_lists_every_sample_task(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = traces(capsys, monkeypatch, "tasks", "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [row["name"] for row in rows] == TASK_NAMES
    by_name = {row["name"]: row for row in rows}
    assert by_name["chain"] == {
        "name": "chain",
        "environment": "chain",
        "tools": ["open_box"],
        "max_steps": 320,
        "description": "Open 300 locked boxes one after another; the last one holds the treasure.",
        "file": str(samples_dir() / "tasks" / "chain.toml"),
    }
    assert by_name["research"]["tools"] == ["search", "open_document"]
    assert by_name["files"]["tools"] == ["list_files", "read_file", "write_file", "grep"]
    assert by_name["files"]["max_steps"] == 20


def test_csv_and_table_list_the_same_tasks(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = traces(capsys, monkeypatch, "tasks", "-f", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["name"] for row in rows] == TASK_NAMES
    assert rows[3]["environment"] == "research" and rows[3]["max_steps"] == "30"
    assert json.loads(rows[3]["tools"]) == ["search", "open_document"]

    code, out, err = traces(capsys, monkeypatch, "tasks")
    assert code == 0
    lines = out.splitlines()
    header = ["name", "environment", "tools", "max_steps", "description"]
    assert lines[0].split() == header
    research = next(line for line in lines if line.startswith("research "))
    assert "search, open_document" in research and " 30 " in research
    assert "traces tasks --copy NAME" in err


def test_suites_are_listed_with_their_tasks(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = traces(capsys, monkeypatch, "tasks", "--suites", "-f", "json")
    assert code == 0
    quick = {row["name"]: row for row in json.loads(out)}["quick"]
    assert quick["tasks"] == {"chain_short": 5, "files": 3}
    assert quick["runs_per_provider"] == 8


@pytest.mark.parametrize("name", TASK_NAMES)
def test_a_copied_task_runs_where_it_lands(
    name: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = traces(capsys, monkeypatch, "tasks", "--copy", name, "mine")
    assert code == 0, err
    copy = Path(out.strip())
    assert copy == Path("mine") / f"{name}.toml"
    original = load_task(sample_tasks()[name])
    copied = load_task(copy)
    # Same task, but every folder it reads is the copy's own, so editing it edits the copy.
    assert copied.model_dump(exclude={"source_path", "sha256", "environment"}) == (
        original.model_dump(exclude={"source_path", "sha256", "environment"})
    )
    for field in original.environment.folder_fields:
        folder = getattr(copied.environment, field)
        assert folder.is_relative_to((cwd / "mine").resolve())
        assert sorted(p.name for p in folder.rglob("*")) == sorted(
            p.name for p in getattr(original.environment, field).rglob("*")
        )


def test_the_research_copy_points_at_its_own_corpus(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = traces(capsys, monkeypatch, "tasks", "--copy", "research")
    assert code == 0
    text = (cwd / "research.toml").read_text()
    assert 'corpus = "research"' in text and "../corpus" not in text
    # Comments and layout stay: only the reference changed.
    assert text.startswith("# A 4-hop lookup")
    assert (cwd / "research" / "kestrel-observatory.md").is_file()
    assert "traces record --task research.toml" in err


def test_a_copy_never_overwrites_unless_forced(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (cwd / "chain.toml").write_text("my edits\n")
    code, out, err = traces(capsys, monkeypatch, "tasks", "--copy", "chain")
    assert (code, out) == (2, "")
    assert err == "error: chain.toml: already exists (--force overwrites it)\n"
    assert (cwd / "chain.toml").read_text() == "my edits\n"
    code, _, _ = traces(capsys, monkeypatch, "tasks", "--copy", "chain", "--force")
    assert code == 0 and load_task(cwd / "chain.toml").name == "chain"


def test_a_copy_can_be_given_a_file_name(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = traces(capsys, monkeypatch, "tasks", "--copy", "files", "work/todo.toml")
    assert code == 0 and out == "work/todo.toml\n"
    task = load_task(cwd / "work" / "todo.toml")
    assert task.environment.seed_dir == (cwd / "work" / "files_seed").resolve()


def test_a_copied_suite_brings_its_tasks(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = traces(capsys, monkeypatch, "tasks", "--suites", "--copy", "quick", "s")
    assert code == 0 and out == "s/quick.toml\n"
    suite = load_suite(cwd / "s" / "quick.toml")
    assert [entry.task.source_path for entry in suite.tasks] == [
        (cwd / "s" / "chain_short.toml").resolve(),
        (cwd / "s" / "files.toml").resolve(),
    ]
    assert suite.tasks[1].task.environment.seed_dir == (cwd / "s" / "files_seed").resolve()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--copy", "chian"],
            "error: no sample task 'chian' (sample tasks: chain, chain_short, files, research; "
            "or give a file path)\n",
        ),
        (
            ["--suites", "--copy", "slow"],
            "error: no sample suite 'slow' (sample suites: agentic, quick; or give a file path)\n",
        ),
        (["somewhere"], "error: somewhere: a destination is only used with --copy NAME\n"),
        (["--force"], "error: --force is only used with --copy NAME\n"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str],
    message: str,
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert traces(capsys, monkeypatch, "tasks", *args) == (2, "", message)
    assert list(cwd.iterdir()) == []

"""The realistic long task that ships: a rename across a git repository through the MCP
filesystem (npm) and git (PyPI) servers, judged by a hidden check the simulator's model can
pass, and that tells what an incomplete rename missed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from traces.errors import TaskFileError
from traces.tasks import load_task
from traces.tools.custom import seed_git

from conftest import npm_server_path, query_rows, run_cli

BYO = Path(__file__).resolve().parents[1] / "samples" / "byo"


def _check(sandbox: Path) -> tuple[bool, str]:
    sys.path.insert(0, str(BYO))
    try:
        from repo_checks import renamed
    finally:
        sys.path.remove(str(BYO))
    verdict: tuple[bool, str] = renamed("", sandbox)
    return verdict


def _commit(sandbox: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=sandbox, check=True
        )


def _replace(sandbox: Path, old: str, new: str, skip: str = "") -> None:
    for path in sandbox.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.name != skip:
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_hidden_check_names_what_a_rename_missed(tmp_path: Path) -> None:
    def fresh(name: str) -> Path:
        sandbox = tmp_path / name
        shutil.copytree(BYO / "repo_seed", sandbox)
        seed_git(sandbox)
        return sandbox

    message = "Rename parse_amount to parse_money"
    untouched = fresh("untouched")
    assert _check(untouched) == (False, f"the last commit is 'Seed', not {message!r}")

    uncommitted = fresh("uncommitted")
    _replace(uncommitted, "parse_amount(", "parse_money(")
    _commit(uncommitted, message)
    (uncommitted / "notes.txt").write_text("later\n", encoding="utf-8")
    passed, why = _check(uncommitted)
    assert not passed and why == "uncommitted changes are left: ?? notes.txt"

    forgotten = fresh("forgotten")
    # Calls renamed, imports and docs forgotten: a whole-word search finds them.
    _replace(forgotten, "parse_amount(", "parse_money(")
    _commit(forgotten, message)
    passed, why = _check(forgotten)
    assert not passed and why.startswith("parse_amount is still in ") and "README.md" in why

    greedy = fresh("greedy")
    _replace(greedy, "parse_amount", "parse_money")  # parse_amounts becomes parse_moneys
    _commit(greedy, message)
    assert _check(greedy) == (False, "parse_amounts, a different function, was renamed too")

    broken = fresh("broken")
    _replace(broken, "parse_amount", "parse_money")
    _replace(broken, "parse_moneys", "parse_amounts")
    (broken / "ledger" / "money.py").write_text(
        (broken / "ledger" / "money.py").read_text().replace("-float(", "float("),
        encoding="utf-8",
    )
    _commit(broken, message)
    passed, why = _check(broken)
    assert not passed and why.startswith("the renamed code no longer works: AssertionError")

    done = fresh("done")
    _replace(done, "parse_amount", "parse_money")
    _replace(done, "parse_moneys", "parse_amounts")
    _commit(done, message)
    assert _check(done) == (
        True,
        "parse_amount → parse_money in 5 files, committed; the code still works",
    )


def test_a_check_that_does_not_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", npm_server_path("mcp-server-filesystem"))
    task = tmp_path / "repo_rename.toml"
    text = (BYO / "repo_rename.toml").read_text(encoding="utf-8")
    task.write_text(text.replace("repo_checks:renamed", "nowhere:judge"), encoding="utf-8")
    shutil.copytree(BYO / "repo_seed", tmp_path / "repo_seed")
    with pytest.raises(TaskFileError) as raised:
        load_task(task)
    assert str(raised.value).startswith(
        f"{task}: success.check: nowhere:judge: cannot import nowhere "
        "(ModuleNotFoundError: No module named 'nowhere'"
    )


@pytest.mark.slow
def test_compare_runs_the_rename_through_real_servers_on_each_host(tmp_path: Path) -> None:
    env = {"PATH": npm_server_path("mcp-server-filesystem")}
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "compare", "--suite", str(BYO / "repo_suite.toml"), "--dialect", "openai",
        "--dialect", "moonshot", "--db", str(db), "--format", "json", env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = query_rows(db, "SELECT provider, success, success_detail, steps FROM runs")
    assert len(runs) == 4
    for run in runs:
        assert run["success"] is True, run
        assert run["success_detail"].endswith("committed; the code still works")
        assert run["steps"] >= 15  # tree, 9 reads, 5 writes, add, commit, status, answer
    commits = query_rows(
        db,
        "SELECT output FROM tool_results WHERE name = 'git_commit'",
    )
    assert len(commits) == 4
    assert all(row["output"].startswith("Changes committed successfully") for row in commits)
    comparison = json.loads(done.stdout)
    (task,) = comparison["task_success"]
    assert task["task"] == "repo_rename"
    assert {name: e["value"] for name, e in task["values"].items()} == {
        "sim": 1.0,
        "sim-moonshot": 1.0,
    }

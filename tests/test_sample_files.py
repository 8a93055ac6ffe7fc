"""The shipped samples: found through one resolver, addressed by name or path, packaged whole."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from traces.errors import TaskFileError, TracesError
from traces.profiles import profiles_path
from traces.sample_files import (
    is_name,
    providers_file,
    resolve_suite,
    resolve_task,
    sample_suites,
    sample_tasks,
    samples_dir,
)
from traces.suites import load_suite
from traces.tasks import load_task
from traces.tools.sandbox import Sandbox

from conftest import REPO, CliRun


def test_the_samples_are_the_checkouts_folder_in_an_editable_install() -> None:
    # The editable install maps `traces.samples` onto the repository's own `samples/`, so an
    # edit there is what every command sees, as before the folder became package data.
    assert samples_dir() == (REPO / "samples").resolve()
    assert providers_file() == samples_dir() / "providers.toml"


def test_every_sample_task_and_suite_is_named_after_its_file() -> None:
    tasks = sample_tasks()
    assert list(tasks) == ["chain", "chain_short", "files", "research"]
    for name, path in tasks.items():
        assert load_task(path).name == name
    suites = sample_suites()
    assert list(suites) == ["agentic", "quick"]
    for name, path in suites.items():
        assert load_suite(path).name == name


def test_a_name_resolves_to_the_shipped_file_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_task("chain") == samples_dir() / "tasks" / "chain.toml"
    assert resolve_suite("quick") == samples_dir() / "suites" / "quick.toml"


def test_a_path_is_read_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert resolve_task("samples/tasks/chain.toml") == Path("samples/tasks/chain.toml")
    assert resolve_suite(Path("samples/suites/quick.toml")) == Path("samples/suites/quick.toml")
    # An existing file wins over a sample of the same name: a path that worked still does.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chain").write_text("not a sample")
    assert resolve_task("chain") == Path("chain")
    # A path that does not exist is left for the loader to report with its own message.
    assert resolve_task("mine/task.toml") == Path("mine/task.toml")
    with pytest.raises(TaskFileError, match="cannot read task file"):
        load_task(resolve_task("mine/task.toml"))


@pytest.mark.parametrize("value", ["chain", "chain_short", "Chain", "my-task"])
def test_what_reads_as_a_name(value: str) -> None:
    assert is_name(value)


@pytest.mark.parametrize("value", ["", "chain.toml", "./chain", "tasks/chain", "a\\b"])
def test_what_reads_as_a_path(value: str) -> None:
    assert not is_name(value)


def test_an_unknown_name_lists_the_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskFileError) as task_error:
        resolve_task("chian")
    assert str(task_error.value) == (
        "no sample task 'chian' (sample tasks: chain, chain_short, files, research; "
        "or give a file path)"
    )
    assert task_error.value.exit_code == 2
    with pytest.raises(TracesError, match=r"^no sample suite 'slow' \(sample suites: agentic, q"):
        resolve_suite("slow")


def test_a_checkout_path_typed_elsewhere_points_at_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskFileError, match=r"addressed by its name: chain\b"):
        resolve_task("samples/tasks/chain.toml")


def test_the_default_providers_file_is_the_shipped_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACES_PROVIDERS", raising=False)
    assert profiles_path() == providers_file()
    monkeypatch.setenv("TRACES_PROVIDERS", "/elsewhere/providers.toml")
    assert profiles_path() == Path("/elsewhere/providers.toml")


def test_record_refuses_an_unknown_task_name_with_one_line(tmp_path: Path, cli: CliRun) -> None:
    db = tmp_path / "t.duckdb"
    done = cli("record", "--task", "chian", "--db", str(db))
    assert done.returncode == 2
    assert done.stderr == (
        "error: no sample task 'chian' (sample tasks: chain, chain_short, files, research; "
        "or give a file path)\n"
    )
    assert done.stdout == "" and not db.exists()


def test_a_seed_folder_is_copied_without_bytecode_caches(tmp_path: Path) -> None:
    # pip compiles the shipped seed's .py files next to them when it installs the wheel; the
    # model must see the same project as from the checkout.
    seed = tmp_path / "seed"
    (seed / "src" / "__pycache__").mkdir(parents=True)
    (seed / "src" / "mod.py").write_text("x = 1\n")
    (seed / "src" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    sandbox = Sandbox.seeded(tmp_path / "run", seed)
    assert [p.relative_to(sandbox.root).as_posix() for p in sandbox.files_under(sandbox.root)] == [
        "src/mod.py"
    ]


def test_every_package_is_listed_for_the_wheel() -> None:
    # Packages are listed by hand in pyproject.toml (discovery cannot map samples/ into
    # traces.samples), so a new subpackage must not silently be left out of the wheel.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("traces", "analyzer")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert listed == on_disk | {"traces.samples"}
    assert config["package-dir"] == {"traces.samples": "samples"}

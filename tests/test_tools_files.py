"""The files world: sandbox confinement, the four tools, schema errors and the success check."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from traces.model import ToolErrorKind
from traces.sample_files import samples_dir
from traces.tasks import build_environment, load_task
from traces.tools.base import ToolOutcome
from traces.tools.files import FilesEnvironment
from traces.tools.sandbox import MAX_FILE_BYTES, Sandbox, SandboxError

SAMPLES = samples_dir()
SEED_FILES = [
    "README.md",
    "docs/operations.txt",
    "notes/ideas.md",
    "notes/meeting.txt",
    "src/inventory/__init__.py",
    "src/inventory/reader.py",
    "src/inventory/report.py",
]


@pytest.fixture
def env(tmp_path: Path) -> FilesEnvironment:
    task = load_task(SAMPLES / "tasks" / "files.toml")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    built = build_environment(task, seed=0, sandbox_dir=sandbox)
    assert isinstance(built, FilesEnvironment)
    return built


def run(env: FilesEnvironment, name: str, arguments: dict[str, Any]) -> ToolOutcome:
    return asyncio.run(env.call(name, arguments))


def ok(env: FilesEnvironment, name: str, arguments: dict[str, Any]) -> Any:
    outcome = run(env, name, arguments)
    assert outcome.error is None, outcome
    return outcome.output if name == "read_file" else json.loads(outcome.output)


def test_seeded_sandbox_is_a_copy(env: FilesEnvironment) -> None:
    assert ok(env, "list_files", {}) == SEED_FILES
    assert ok(env, "list_files", {"path": "notes"}) == ["notes/ideas.md", "notes/meeting.txt"]
    assert ok(env, "list_files", {"path": "README.md"}) == ["README.md"]
    assert env.prompt_variables() == {"output_file": "report.md", "file_count": "7"}
    # Writing in the sandbox never touches the shared seed directory.
    ok(env, "write_file", {"path": "README.md", "content": "changed"})
    assert "changed" not in (SAMPLES / "tasks" / "files_seed" / "README.md").read_text()


def outside_link(env: FilesEnvironment, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TODO: steal me\n")
    (env.sandbox.root / "escape.txt").symlink_to(secret)
    (env.sandbox.root / "escape_dir").symlink_to(tmp_path, target_is_directory=True)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("read_file", {}),
        ("write_file", {"content": "x"}),
        ("list_files", {}),
        ("grep", {"pattern": "TODO"}),
    ],
)
@pytest.mark.parametrize(
    "path",
    ["../x", "/etc/passwd", "a/../../x", "escape.txt", "escape_dir/secret.txt", "escape_dir"],
)
def test_escapes_are_refused(
    env: FilesEnvironment, tmp_path: Path, name: str, extra: dict[str, Any], path: str
) -> None:
    outside_link(env, tmp_path)
    outcome = run(env, name, {"path": path, **extra})
    assert outcome.error is not None, outcome
    assert "outside the sandbox" in outcome.error
    assert "outside the sandbox" in outcome.output
    assert outcome.error_kind == ToolErrorKind.SANDBOX
    assert not (tmp_path / "x").exists()


def test_symlinks_outside_are_hidden_from_listing_and_grep(
    env: FilesEnvironment, tmp_path: Path
) -> None:
    outside_link(env, tmp_path)
    assert ok(env, "list_files", {}) == SEED_FILES
    assert all(hit["path"] != "escape.txt" for hit in ok(env, "grep", {"pattern": "steal"}))


def test_paths_that_stay_inside_are_fine(env: FilesEnvironment) -> None:
    assert "TODO" in ok(env, "read_file", {"path": "notes/../notes/meeting.txt"})
    (env.sandbox.root / "link.md").symlink_to(env.sandbox.root / "README.md")
    assert ok(env, "read_file", {"path": "link.md"}).startswith("# Inventory tool")


def test_write_read_roundtrip_creates_parents(env: FilesEnvironment) -> None:
    written = ok(env, "write_file", {"path": "out/deep/r.txt", "content": "héllo\n"})
    assert written == {"path": "out/deep/r.txt", "bytes": len("héllo\n".encode())}
    assert ok(env, "read_file", {"path": "out/deep/r.txt"}) == "héllo\n"
    assert "out/deep/r.txt" in ok(env, "list_files", {"path": "."})
    ok(env, "write_file", {"path": "out/deep/r.txt", "content": "second"})
    assert ok(env, "read_file", {"path": "./out/deep/r.txt"}) == "second"


def test_write_limit_and_directory_targets(env: FilesEnvironment) -> None:
    too_big = run(env, "write_file", {"path": "big.txt", "content": "x" * (MAX_FILE_BYTES + 1)})
    assert too_big.error is not None and "limit" in too_big.error
    assert not (env.sandbox.root / "big.txt").exists()
    assert (
        run(env, "write_file", {"path": "notes", "content": "x"}).error == "notes: is a directory"
    )
    assert run(env, "write_file", {"path": ".", "content": "x"}).error == ".: is a directory"
    assert too_big.error_kind == ToolErrorKind.REJECTED


def test_read_errors(env: FilesEnvironment) -> None:
    assert run(env, "read_file", {"path": "nope.txt"}).error == "nope.txt: no such file"
    assert run(env, "read_file", {"path": "notes"}).error == "notes: is a directory"
    assert run(env, "list_files", {"path": "nope"}).error == "nope: no such file or directory"
    assert run(env, "grep", {"pattern": "x", "path": "nope"}).error is not None
    # A path through a regular file is an OS error, reported without the host path.
    outcome = run(env, "write_file", {"path": "README.md/x.txt", "content": "x"})
    assert outcome.error is not None and outcome.error.startswith("README.md/x.txt: ")
    assert str(env.sandbox.root) not in outcome.error
    # Each names something that is not there or not a file: the request's problem.
    assert outcome.error_kind == ToolErrorKind.REJECTED
    assert run(env, "read_file", {"path": "notes"}).error_kind == ToolErrorKind.REJECTED
    for name, path in [("read_file", "nope.txt"), ("list_files", "nope")]:
        assert run(env, name, {"path": path}).error_kind == ToolErrorKind.MISSING
    assert run(env, "grep", {"pattern": "x", "path": "nope"}).error_kind == ToolErrorKind.MISSING


def test_a_host_io_failure_is_the_tool_crashing(
    env: FilesEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    outcome = run(env, "write_file", {"path": "report.md", "content": "x"})
    assert outcome.error == "report.md: No space left on device"
    assert outcome.error_kind == ToolErrorKind.CRASHED


def test_a_file_gone_between_check_and_read_is_missing(
    env: FilesEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vanished(self: Path, *args: object, **kwargs: object) -> str:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(self))

    monkeypatch.setattr(Path, "read_text", vanished)
    outcome = run(env, "read_file", {"path": "README.md"})
    assert outcome.error == "README.md: No such file or directory"
    assert outcome.error_kind == ToolErrorKind.MISSING


def test_an_undeclared_tool_is_not_found(env: FilesEnvironment) -> None:
    outcome = run(env, "delete_file", {"path": "README.md"})
    assert outcome.error is not None and "unknown tool 'delete_file'" in outcome.error
    assert outcome.error_kind == ToolErrorKind.NOT_FOUND
    assert (env.sandbox.root / "README.md").exists()


def test_grep_is_a_plain_substring_search(env: FilesEnvironment) -> None:
    hits = ok(env, "grep", {"pattern": "TODO"})
    assert [(h["path"], h["line"]) for h in hits] == [
        ("README.md", 9),
        ("docs/operations.txt", 4),
        ("notes/meeting.txt", 4),
        ("src/inventory/reader.py", 9),
        ("src/inventory/report.py", 10),
    ]
    assert hits[3]["text"] == "    # TODO: handle files with no header row"
    # Case-sensitive: the lowercase "todo" in notes/ideas.md is not a match.
    assert all(h["path"] != "notes/ideas.md" for h in hits)
    assert ok(env, "grep", {"pattern": "TODO", "path": "notes"}) == [hits[2]]
    # Regex metacharacters are literal text, so a pathological pattern is harmless.
    assert ok(env, "grep", {"pattern": "(a+)+$"}) == []
    assert ok(env, "grep", {"pattern": "dict[str, str]"})[0]["path"] == "src/inventory/reader.py"


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("write_file", {"path": "a.txt"}, "content"),
        ("write_file", {"path": "a.txt", "content": 3}, "content"),
        ("read_file", {}, "path"),
        ("read_file", {"path": ["a"]}, "path"),
        ("grep", {"pattern": ""}, "pattern"),
        ("grep", {"pattern": "x", "regex": True}, "regex"),
        ("list_files", {"recursive": False}, "recursive"),
    ],
)
def test_schema_violations_name_the_field(
    env: FilesEnvironment, name: str, arguments: dict[str, Any], field: str
) -> None:
    outcome = run(env, name, arguments)
    assert outcome.error is not None
    assert outcome.error.startswith(f"invalid arguments for {name}: {field}: "), outcome.error
    assert outcome.error_kind == ToolErrorKind.INVALID_ARGUMENTS


def test_success_after_writing_the_expected_report(env: FilesEnvironment) -> None:
    assert not env.check_success("done").passed
    hits = ok(env, "grep", {"pattern": "TODO"})
    report = "\n".join(hit["text"] for hit in hits)
    ok(env, "write_file", {"path": "report.md", "content": report})
    verdict = env.check_success("I found 5 lines.")
    assert verdict.passed, verdict.detail


def test_success_fails_on_an_incomplete_report(env: FilesEnvironment) -> None:
    ok(env, "write_file", {"path": "report.md", "content": "TODO: round totals to two decimals"})
    verdict = env.check_success("done")
    assert not verdict.passed
    assert "lacks 4" in verdict.detail


def test_success_fails_when_report_is_elsewhere(env: FilesEnvironment) -> None:
    hits = ok(env, "grep", {"pattern": "TODO"})
    ok(
        env,
        "write_file",
        {"path": "notes/report.md", "content": "\n".join(h["text"] for h in hits)},
    )
    assert not env.check_success("done").passed


def test_sandbox_resolve_directly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sandbox = Sandbox.seeded(root, None)
    assert sandbox.resolve("") == sandbox.root
    assert sandbox.resolve("a/b/../c") == sandbox.root / "a" / "c"
    for bad in ("..", "/", "a/../../root2", "nul\x00byte"):
        with pytest.raises(SandboxError):
            sandbox.resolve(bad)
    # A sibling directory whose name extends the root's must not count as inside.
    (tmp_path / "root2").mkdir()
    with pytest.raises(SandboxError, match="outside the sandbox"):
        sandbox.resolve("../root2/x")


def test_seed_symlinks_are_copied_as_links(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", seed / "leak.txt")
    sandbox = Sandbox.seeded(tmp_path / "box", seed)
    assert (sandbox.root / "leak.txt").is_symlink()
    with pytest.raises(SandboxError, match="outside the sandbox"):
        sandbox.resolve("leak.txt")

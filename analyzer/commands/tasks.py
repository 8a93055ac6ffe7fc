"""`traces tasks`: the sample tasks (and suites) shipped with the package, and copies to edit.

A copy is made so that it runs where it lands: a folder the task reads (the research corpus,
the files seed) is copied next to it, and a reference that would no longer point at it is
rewritten; the copy is loaded before the command reports success.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.options import FormatOption
from analyzer.output import OutputFormat, emit_rows
from traces.errors import TracesError
from traces.sample_files import resolve_suite, resolve_task, sample_suites, sample_tasks
from traces.suites import load_suite
from traces.tasks import load_task


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("tasks")(tasks)


def tasks(
    dest: Annotated[
        Path | None,
        typer.Argument(
            metavar="DEST",
            help="With --copy: folder to copy into (created if missing), or the new file's "
            "path (*.toml) [default: the current folder].",
            show_default=False,
        ),
    ] = None,
    copy: Annotated[
        str | None,
        typer.Option(
            "--copy",
            metavar="NAME",
            help="Copy this sample task (with --suites: suite) out to edit it, with the "
            "folders it reads.",
        ),
    ] = None,
    suites: Annotated[
        bool, typer.Option("--suites", help="Sample suites instead of tasks.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --copy: overwrite files that exist.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the sample tasks: name, tool world, tools, step limit and what each exercises
    (--suites: the sample suites); --copy NAME [DEST] copies one out to edit."""
    if copy is None:
        if dest is not None:
            raise TracesError(f"{dest}: a destination is only used with --copy NAME")
        if force:
            raise TracesError("--force is only used with --copy NAME")
        if suites:
            _list_suites(fmt)
        else:
            _list_tasks(fmt)
        return
    target = dest if dest is not None else Path(".")
    written = _copy_suite(copy, target, force) if suites else _copy_task(copy, target, force)
    sys.stdout.write(f"{written}\n")


def _list_tasks(fmt: OutputFormat) -> None:
    rows: list[dict[str, Any]] = []
    for name, path in sample_tasks().items():
        task = load_task(path)
        rows.append(
            {
                "name": name,
                "environment": task.environment.type,
                "tools": task.environment.tool_names(),
                "max_steps": task.max_steps,
                "description": task.description,
                "file": str(path),
            }
        )
    columns = None
    if fmt is OutputFormat.table:
        columns = ["name", "environment", "tools", "max_steps", "description"]
        rows = [{**row, "tools": ", ".join(row["tools"])} for row in rows]
    emit_rows(rows, fmt, columns=columns)
    if fmt is OutputFormat.table:
        sys.stderr.write(
            "run one: traces record --task NAME   copy one: traces tasks --copy NAME\n"
        )


def _list_suites(fmt: OutputFormat) -> None:
    rows: list[dict[str, Any]] = []
    for name, path in sample_suites().items():
        suite = load_suite(path)
        rows.append(
            {
                "name": name,
                "tasks": {entry.task.name: entry.repeats for entry in suite.tasks},
                "runs_per_provider": suite.runs_per_provider(),
                "description": suite.description,
                "file": str(path),
            }
        )
    columns = None
    if fmt is OutputFormat.table:
        columns = ["name", "tasks", "runs_per_provider", "description"]
        rows = [
            {**row, "tasks": ", ".join(f"{t}×{n}" for t, n in row["tasks"].items())} for row in rows
        ]
    emit_rows(rows, fmt, columns=columns)
    if fmt is OutputFormat.table:
        sys.stderr.write(
            "run one: traces compare --suite NAME --provider P …   "
            "copy one: traces tasks --suites --copy NAME\n"
        )


def _copy_task(name: str, dest: Path, force: bool) -> Path:
    """Copy a task file and the folders it reads; returns the new task file."""
    source = resolve_task(name)
    task = load_task(source)
    folder, file_name = _destination(dest, source)
    text, folders = _task_copy_plan(source, task.environment.folder_fields)
    target = folder / file_name
    _refuse_existing([target, *(folder / new for _, new in folders)], force)
    folder.mkdir(parents=True, exist_ok=True)
    for old_dir, new in folders:
        shutil.copytree(
            old_dir,
            folder / new,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    target.write_text(text, encoding="utf-8")
    load_task(target)  # the copy must run where it landed
    sys.stderr.write(
        f"copied task {task.name!r} to {target}"
        + "".join(f" (+ {folder / new}/)" for _, new in folders)
        + f"; edit it, then: traces record --task {target}\n"
    )
    return target


def _copy_suite(name: str, dest: Path, force: bool) -> Path:
    """Copy a suite file, each task it names and their folders, side by side."""
    source = resolve_suite(name)
    suite = load_suite(source)
    folder, file_name = _destination(dest, source)
    text = source.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    plans: list[tuple[Path, str, list[tuple[Path, str]]]] = []
    for i, entry in enumerate(raw["tasks"]):
        task_source = (source.parent / entry["path"]).resolve()
        task_text, folders = _task_copy_plan(
            task_source, suite.tasks[i].task.environment.folder_fields
        )
        plans.append((task_source, task_text, folders))
        text = _rewrite(text, entry["path"], task_source.name, source)
    names = [task_source.name for task_source, _, _ in plans]
    if len(set(names)) != len(names):
        raise TracesError(f"{source}: two tasks share a file name; copy the suite by hand")
    target = folder / file_name
    destinations = [target]
    for task_source, _, folders in plans:
        destinations += [folder / task_source.name, *(folder / new for _, new in folders)]
    _refuse_existing(destinations, force)
    folder.mkdir(parents=True, exist_ok=True)
    for task_source, task_text, folders in plans:
        for old_dir, new in folders:
            shutil.copytree(
                old_dir,
                folder / new,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        (folder / task_source.name).write_text(task_text, encoding="utf-8")
    target.write_text(text, encoding="utf-8")
    load_suite(target)  # the copy must run where it landed
    sys.stderr.write(
        f"copied suite {suite.name!r} and its {len(plans)} tasks to {folder}; edit them, then: "
        f"traces compare --suite {target} --provider P\n"
    )
    return target


def _destination(dest: Path, source: Path) -> tuple[Path, str]:
    """(folder, file name) of the copy: DEST as the file when it ends in .toml, else a
    folder that receives the file under its own name."""
    if dest.suffix == ".toml" and not dest.is_dir():
        return dest.parent, dest.name
    if dest.exists() and not dest.is_dir():
        raise TracesError(f"{dest}: not a folder (give a folder, or a new file name *.toml)")
    return dest, source.name


def _task_copy_plan(source: Path, fields: tuple[str, ...]) -> tuple[str, list[tuple[Path, str]]]:
    """The copied task's text and the folders to copy with it, as (source folder, path
    relative to the copy). A folder inside the task's own folder keeps its relative path; one
    outside it (`../corpus/research`) lands next to the copy and the reference is rewritten;
    an absolute reference keeps working as it is and is not copied."""
    text = source.read_text(encoding="utf-8")
    environment = tomllib.loads(text).get("environment", {})
    home = source.parent.resolve()
    folders: list[tuple[Path, str]] = []
    for field in fields:
        value = environment.get(field)
        if not isinstance(value, str) or Path(value).is_absolute():
            continue
        folder = (home / value).resolve()
        if folder.is_relative_to(home):
            folders.append((folder, folder.relative_to(home).as_posix()))
        else:
            folders.append((folder, folder.name))
            text = _rewrite(text, value, folder.name, source)
    return text, folders


def _rewrite(text: str, old: str, new: str, source: Path) -> str:
    """Replace the one TOML string literal `old` in `text` by `new`, keeping the comments
    and layout of the file a user is about to edit."""
    for quote in ('"', "'"):
        literal = f"{quote}{old}{quote}"
        if text.count(literal) == 1:
            return text.replace(literal, json.dumps(new))
    raise TracesError(f"{source}: cannot rewrite {old!r} for the copy; copy it by hand")


def _refuse_existing(paths: list[Path], force: bool) -> None:
    if force:
        return
    for path in paths:
        if path.exists():
            raise TracesError(f"{path}: already exists (--force overwrites it)")

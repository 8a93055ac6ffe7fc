"""Suite files: a named set of tasks, each repeated N times, that `traces compare` runs against
several providers so their runs can be set side by side.

A suite file is user input like a task file, so every problem is one `SuiteFileError` line of
the form `{path}: {field}: {problem}`; a broken task it names is reported with the suite's
field too (`{suite}: tasks[1].path: {task file}: {field}: {problem}`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from traces.datasets import Sample, select_samples
from traces.errors import TaskFileError, TracesError

# The same wording as task-file errors, so both kinds of input read alike.
from traces.tasks import MAX_STEPS_LIMIT, Task, _field_name, _problem, _toml_error, load_task

MAX_REPEATS = 10_000
MAX_CONCURRENCY = 1_024


class SuiteFileError(TracesError):
    """A suite file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    # TOML values are typed already: coercion would only hide mistakes, and a misspelt key
    # must be an error rather than a silent default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SuiteDefaults(_Strict):
    """The `[defaults]` table: settings every run of the suite uses unless told otherwise."""

    stream: bool = Field(default=True, description="Stream responses (SSE).")
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STEPS_LIMIT,
        description="Step limit for every task [default: each task's own].",
    )
    concurrency: int = Field(
        default=4, ge=1, le=MAX_CONCURRENCY, description="Runs in flight at once per provider."
    )


class _TaskEntry(_Strict):
    """One `[[tasks]]` entry as written."""

    path: str = Field(min_length=1, description="Task file, relative to the suite file.")
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS, description="Runs of this task.")
    max_steps: int | None = Field(
        default=None, ge=1, le=MAX_STEPS_LIMIT, description="Step limit for this task."
    )


class _SuiteFile(_Strict):
    """The top level of a suite file."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$", max_length=100)
    description: str = Field(min_length=1)
    tasks: list[_TaskEntry] = Field(min_length=1)
    defaults: SuiteDefaults = Field(default_factory=SuiteDefaults)


class SuiteTask(BaseModel):
    """One task of a suite, loaded, with how often to run it and its effective step limit."""

    model_config = ConfigDict(frozen=True)

    task: Task
    repeats: int = Field(description="Runs of this task per provider.")
    max_steps: int = Field(
        description="Step limit: the entry's, else the suite's, else the task's."
    )
    samples: tuple[Sample, ...] | None = Field(
        default=None,
        description="For a task with a dataset, the samples to run (None: all of them).",
    )

    @property
    def chosen_samples(self) -> tuple[Sample, ...]:
        """The dataset samples its runs answer (empty for a task without a dataset)."""
        return self.task.dataset if self.samples is None else self.samples


@dataclass(frozen=True)
class SampleChoice:
    """Which samples of a task's dataset to run (`--sample ID...`, `--limit N`)."""

    ids: list[str] = field(default_factory=list)
    limit: int | None = None

    def of(self, task: Task) -> tuple[Sample, ...] | None:
        """The chosen samples of `task` (None: all of them, or a task without a dataset);
        a TaskFileError for a choice the task cannot take."""
        if not self.ids and self.limit is None:
            return None
        if not task.dataset:
            option = "--sample" if self.ids else "--limit"
            raise TaskFileError(f"{option}: task {task.name} has no dataset to choose samples from")
        return select_samples(
            task.dataset, ids=self.ids, limit=self.limit, where=str(task.source_path)
        )


class Suite(BaseModel):
    """A validated suite file with its tasks loaded."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Short identifier, `[a-z0-9_-]+`.")
    description: str = Field(description="One line about what the suite measures.")
    tasks: list[SuiteTask] = Field(description="Tasks in file order.")
    defaults: SuiteDefaults = Field(description="Settings shared by every run.")
    source_path: Path = Field(description="The suite file as it was given to `load_suite`.")

    def runs_per_provider(self, repeat: int | None = None) -> int:
        """How many runs one provider gets (`repeat` overrides every task's repeats)."""
        return sum(repeat or entry.repeats for entry in self.tasks)


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file and every task it names; one-line SuiteFileError."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SuiteFileError(f"{path}: cannot read suite file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SuiteFileError(f"{path}: invalid TOML (not UTF-8)") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteFileError(_toml_error(path, text, exc)) from None
    top = _validate(path, raw)
    tasks: list[SuiteTask] = []
    seen: set[str] = set()
    for i, entry in enumerate(top.tasks):
        try:
            task = load_task((path.parent / entry.path).resolve())
        except TaskFileError as exc:
            raise SuiteFileError(f"{path}: tasks[{i}].path: {exc}") from None
        if task.name in seen:
            # Runs are told apart by task name in every comparison: two entries of one name
            # would silently pool.
            raise SuiteFileError(f"{path}: tasks[{i}].path: task {task.name!r} is listed twice")
        seen.add(task.name)
        max_steps = entry.max_steps or top.defaults.max_steps or task.max_steps
        tasks.append(SuiteTask(task=task, repeats=entry.repeats, max_steps=max_steps))
    return Suite(
        name=top.name,
        description=top.description,
        tasks=tasks,
        defaults=top.defaults,
        source_path=path,
    )


def _validate(path: Path, raw: dict[str, Any]) -> _SuiteFile:
    try:
        return _SuiteFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = first["loc"]
        field = _field_name("", loc)
        # Report an unknown key against the table it is in, listing what that table allows.
        owner: type[BaseModel] = _SuiteFile
        if len(loc) >= 2 and loc[0] == "tasks":
            owner = _TaskEntry
        elif len(loc) >= 2 and loc[0] == "defaults":
            owner = SuiteDefaults
        problem = _problem(first, owner)
        raise SuiteFileError(f"{path}: {field}: {problem}".replace("\n", " ")) from None

"""Datasets: the samples a task runs once each, every one with its input and its target.

A task's `[dataset]` table holds its samples inline (`[[dataset.samples]]`) or names a JSONL
or CSV file beside the task file. Each sample has an `input` (filling the task's `{input}`
placeholder), a `target` (a string, a number, or a list of accepted answers) and an optional
`id` (else its line or position, from 1); the other keys are its metadata, which a Python
scorer receives. `input_field`, `target_field` and `id_field` name other keys (a dataset's
own `question`/`answer`, say).

A dataset is user input: a sample without its input or target, an id used twice, a line that
is not a JSON object, is one `TaskFileError` line naming the file and the line (or the field).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from traces.errors import TaskFileError


class Sample(BaseModel):
    """One dataset sample: what the model is asked and what counts as the right answer."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Unique within the dataset; `--sample ID` picks it.")
    input: str = Field(description="Fills the task's `{input}` placeholder.")
    target: tuple[str, ...] = Field(description="Accepted answers (at least one).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="The sample's other keys.")

    def as_dict(self) -> dict[str, Any]:
        """The sample as a Python scorer receives it (`target` a list)."""
        return {
            "id": self.id,
            "input": self.input,
            "target": list(self.target),
            "metadata": dict(self.metadata),
        }


class DatasetSpec(BaseModel):
    """The `[dataset]` table as written."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    file: str | None = Field(default=None, description="A .jsonl or .csv file, beside the task.")
    samples: list[dict[str, Any]] | None = Field(default=None, description="Inline samples.")
    input_field: str = Field(default="input", min_length=1, description="Key of the input.")
    target_field: str = Field(default="target", min_length=1, description="Key of the target.")
    id_field: str = Field(default="id", min_length=1, description="Key of the id.")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.file is None) == (self.samples is None):
            raise ValueError("give exactly one of file and samples")
        if self.samples is not None and not self.samples:
            raise ValueError("samples: at least one sample is needed")
        if self.file is not None and Path(self.file).suffix.lower() not in (".jsonl", ".csv"):
            raise ValueError(f"file {self.file!r} must be .jsonl or .csv")
        return self


def load_samples(spec: DatasetSpec, task_path: Path) -> tuple[tuple[Sample, ...], str]:
    """The dataset's samples and the SHA-256 of its file's bytes ("" inline); raise
    TaskFileError naming the file and the line, or the task's field, on any problem."""
    if spec.samples is not None:
        rows = [(f"{task_path}: dataset.samples[{i}]", row) for i, row in enumerate(spec.samples)]
        return _samples(spec, rows, f"{task_path}: dataset.samples"), ""
    assert spec.file is not None
    path = (task_path.parent / spec.file).resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskFileError(
            f"{task_path}: dataset.file: cannot read {spec.file} ({exc.strerror or exc})"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TaskFileError(f"{path}: line {line}: not UTF-8") from None
    reader = _csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows
    samples = _samples(spec, reader(path, text), str(path))
    return samples, hashlib.sha256(data).hexdigest()


def select_samples(
    samples: tuple[Sample, ...], *, ids: list[str], limit: int | None, where: str
) -> tuple[Sample, ...]:
    """The samples `--sample ID...` names (in the dataset's order), else the first `limit`
    (all when None); raise TaskFileError for an id the dataset lacks (`where` names it)."""
    if ids:
        known = {sample.id for sample in samples}
        missing = [i for i in ids if i not in known]
        if missing:
            raise TaskFileError(f"{where}: --sample {missing[0]!r}: no sample has that id")
        wanted = set(ids)
        samples = tuple(sample for sample in samples if sample.id in wanted)
    return samples if limit is None else samples[:limit]


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            rows.append((where, json.loads(line)))
        except ValueError as exc:
            raise TaskFileError(f"{where}: not JSON ({exc.args[0] if exc.args else exc})") from None
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[str, Any]] = []
    try:
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if None in row:
                raise TaskFileError(f"{where}: more cells than the header has columns")
            rows.append((where, {k: v for k, v in row.items() if v is not None}))
    except csv.Error as exc:
        raise TaskFileError(f"{path}: line {reader.line_num}: not CSV ({exc})") from None
    return rows


def _samples(spec: DatasetSpec, rows: list[tuple[str, Any]], source: str) -> tuple[Sample, ...]:
    if not rows:
        raise TaskFileError(f"{source}: the dataset has no sample")
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for position, (where, row) in enumerate(rows, start=1):
        sample = _sample(spec, where, row, position)
        if sample.id in seen:
            raise TaskFileError(f"{where}: {spec.id_field}: {sample.id!r} is used twice")
        seen[sample.id] = where
        samples.append(sample)
    return tuple(samples)


def _sample(spec: DatasetSpec, where: str, row: Any, position: int) -> Sample:
    if not isinstance(row, dict):
        raise TaskFileError(
            f"{where}: must be an object with {spec.input_field} and {spec.target_field}"
        )
    given = row.get(spec.input_field)
    if given is None:
        raise TaskFileError(f"{where}: {spec.input_field}: required field is missing")
    if not isinstance(given, str) or not given.strip():
        raise TaskFileError(f"{where}: {spec.input_field}: must be a non-empty string")
    if spec.target_field not in row:
        raise TaskFileError(f"{where}: {spec.target_field}: required field is missing")
    target = _target(where, spec.target_field, row[spec.target_field])
    raw_id = row.get(spec.id_field, position)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or str(raw_id) == "":
        raise TaskFileError(f"{where}: {spec.id_field}: must be a non-empty string or an integer")
    used = {spec.input_field, spec.target_field, spec.id_field}
    metadata = {key: value for key, value in row.items() if key not in used}
    return Sample(id=str(raw_id), input=given, target=target, metadata=metadata)


def _target(where: str, field: str, value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    targets: list[str] = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise TaskFileError(f"{where}: {field}: must be a string, a number or a list of them")
        text = item if isinstance(item, str) else json.dumps(item)
        if not text.strip():
            raise TaskFileError(f"{where}: {field}: must not be empty")
        targets.append(text)
    if not targets:
        raise TaskFileError(f"{where}: {field}: must not be an empty list")
    return tuple(targets)

"""`traces expect`: recorded prompt tokens against what a chat template says they should be.

Renders each step's request with `--template` and counts it with `--tokenizer` (or the
simulator's counter), then reports per step, or per provider and model, the deviation from
the recorded `prompt_tokens` and which variant of the request (reasoning dropped, ids
rewritten, arguments re-encoded) explains it.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer

from analyzer.expectations import (
    Expectation,
    StepExpectation,
    expect_stored,
    explained_text,
    select_runs,
    summarize,
)
from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows
from analyzer.progress import progress_bar
from analyzer.queries import resolve_run_id
from traces.chat_template import HFTokenizer, SimTokenCounter, TokenCounter, load_template
from traces.chat_template.counting import TOKENIZER_FILE
from traces.errors import TracesError
from traces.store.database import open_for_reading, resolve_db_path


class Grouping(StrEnum):
    """What one output row is."""

    step = "step"
    provider = "provider"


_STEP_COLUMNS = [
    "run",
    "step",
    "provider",
    "model",
    "recorded",
    "expected",
    "deviation",
    "best",
    "gap",
    "error",
]
_PROVIDER_COLUMNS = [
    "provider",
    "model",
    "runs",
    "steps",
    "measured",
    "median_deviation",
    "median_gap",
    "as_sent_exact",
    "explained",
    "unexplained",
    "unrendered",
]


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("expect")(expect)


def expect(
    template: Annotated[
        Path,
        typer.Option(
            help="Chat template: a .jinja file, a tokenizer_config.json, or a model folder."
        ),
    ],
    runs: Annotated[
        list[str] | None,
        typer.Argument(help="Run ids, unique prefixes or `last`; default: every matching run."),
    ] = None,
    template_name: Annotated[
        str | None,
        typer.Option(help="Which named template of a config that holds several."),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="tokenizer.json (or its folder); default: the one beside --template."),
    ] = None,
    sim_tokenizer: Annotated[
        bool, typer.Option("--sim-tokenizer", help="Count like the embedded simulator.")
    ] = False,
    kwarg: Annotated[
        list[str] | None,
        typer.Option(
            "--kwarg",
            help="Template keyword KEY=VALUE for every render (VALUE as JSON, else text), "
            "e.g. enable_thinking=true. A request's chat_template_kwargs override it.",
        ),
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Only runs of this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only runs of this model.")] = None,
    by: Annotated[
        Grouping | None,
        typer.Option(
            help="One row per step, or per provider and model; default: per step with RUN "
            "arguments, else per provider."
        ),
    ] = None,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Compare recorded prompt tokens with a chat template's rendering of each request."""
    loaded = load_template(template, template_name)
    counter = _counter(template, tokenizer, sim_tokenizer)
    expectation = Expectation(loaded, counter, _kwargs(kwarg or []))
    with open_for_reading(resolve_db_path(db, data_path)) as conn:
        if runs:
            refs = list(dict.fromkeys(resolve_run_id(conn, ref) for ref in runs))
            wanted = set(select_runs(conn, provider, model))
            ids = [i for i in refs if i in wanted]
        else:
            ids = select_runs(conn, provider, model)
        if not ids:
            raise TracesError("no runs match (see `traces runs`)")
        found = _with_progress(conn, ids, expectation)
    _require_some_rendering(found)
    grouping = by or (Grouping.step if runs else Grouping.provider)
    if grouping is Grouping.step:
        emit_rows([item.row() for item in found], fmt, columns=_step_columns(fmt), keep=["run"])
        return
    rows = summarize(found)
    if fmt is not OutputFormat.json:
        for row in rows:
            row["explained"] = explained_text(row["explained"])
    emit_rows(rows, fmt, columns=_PROVIDER_COLUMNS)


def _step_columns(fmt: OutputFormat) -> list[str]:
    # Every variant's count is detail for programs; a table keeps to what a reader scans.
    return [*_STEP_COLUMNS, "variants"] if fmt is OutputFormat.json else _STEP_COLUMNS


def _counter(template: Path, tokenizer: Path | None, sim: bool) -> TokenCounter:
    if sim and tokenizer is not None:
        raise TracesError("give either --tokenizer or --sim-tokenizer, not both")
    if sim:
        return SimTokenCounter()
    if tokenizer is None:
        beside = (template if template.is_dir() else template.parent) / TOKENIZER_FILE
        if not beside.is_file():
            raise TracesError(
                f"no tokenizer: {beside} does not exist; pass --tokenizer PATH or --sim-tokenizer"
            )
        tokenizer = beside
    return HFTokenizer.load(tokenizer)


def _kwargs(pairs: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TracesError(f"--kwarg {pair!r}: expected KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value  # plain text needs no JSON quotes
    return parsed


def _with_progress(
    conn: duckdb.DuckDBPyConnection, ids: list[str], expectation: Expectation
) -> list[StepExpectation]:
    with progress_bar("expect", len(ids)) as advance:
        return expect_stored(conn, ids, expectation, on_run=advance)


def _require_some_rendering(found: list[StepExpectation]) -> None:
    """A template that renders no step at all is the user's error: say why, in one line.
    Some steps failing is a finding, reported in their rows and counted on stderr."""
    failed = [item for item in found if not item.rendered]
    if found and len(failed) == len(found):
        raise TracesError(failed[0].error or "the template rendered no step")
    if failed:
        sys.stderr.write(
            f"warning: {len(failed)} of {len(found)} steps did not render under any variant "
            "(see the error column)\n"
        )

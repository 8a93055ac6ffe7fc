"""Printing a verification: a table for people, JSON or CSV rows for programs."""

from __future__ import annotations

import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from analyzer.compare.formatting import format_value
from analyzer.compare.model import Unit
from analyzer.output import OutputFormat, emit_rows, printable, stdout_console
from analyzer.verify.model import Judgement, Verification

STATUS_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "skipped": "dim"}
CSV_COLUMNS = [
    "group",
    "criterion",
    "metric",
    "rule",
    "status",
    "estimate",
    "lo",
    "hi",
    "runs",
    "runs_needed",
    "reason",
]


def emit_verification(verification: Verification, fmt: OutputFormat) -> None:
    """Print the verification to stdout in `fmt`."""
    if fmt is OutputFormat.json:
        sys.stdout.write(verification.to_json() + "\n")
    elif fmt is OutputFormat.csv:
        rows = [j.model_dump(include=set(CSV_COLUMNS)) for j in verification.judgements]
        emit_rows(rows, fmt, columns=CSV_COLUMNS)
    else:
        _table(verification)


def shown_estimate(judgement: Judgement) -> str:
    """The judged number with its interval, as people read it (`—` when there is none)."""
    if judgement.judged == "fingerprint" or judgement.estimate is None:
        return "—"
    unit = judgement.unit or "rate"
    relative = judgement.judged == "difference"

    def number(value: float) -> str:
        return _signed(value, unit) if relative else format_value(value, unit)

    text = number(judgement.estimate) + (" vs reference" if relative else "")
    if judgement.lo is not None and judgement.hi is not None:
        text += f" [{number(judgement.lo)}, {number(judgement.hi)}]"
    return text


def _signed(value: float, unit: Unit) -> str:
    sign = "+" if value >= 0 else "−"
    shown = format_value(abs(value), unit)
    return sign + (shown.removesuffix("%") + " pts" if unit == "rate" else shown)


def _table(verification: Verification) -> None:
    console = stdout_console()
    table = Table(
        title=f"verify {verification.policy}: 95% intervals over runs"
        + (f", reference {verification.reference}" if verification.reference else ""),
        header_style="bold",
    )
    for name in ("group", "criterion", "rule", "estimate [95% interval]", "verdict", "why"):
        table.add_column(name, overflow="fold")
    group = None
    for judgement in verification.judgements:
        if judgement.group != group:
            if group is not None:
                table.add_section()
            group = judgement.group
        table.add_row(
            Text(printable(judgement.group, keep="")),
            Text(printable(judgement.criterion, keep="")),
            Text(judgement.rule),
            Text(shown_estimate(judgement)),
            Text(judgement.status.upper(), style=STATUS_STYLE[judgement.status]),
            Text(printable(judgement.reason, keep="")),
        )
    console.print(table)
    notes = verification.notes()
    if notes:
        console.print("[bold]Notes[/bold]", highlight=False)
        for note in notes:
            console.print(f"  - {printable(note)}", highlight=False, markup=False)
    style = STATUS_STYLE[verification.status]
    console.print(Text(verification.summary(), style=style))


def rows(verification: Verification) -> list[dict[str, Any]]:
    """One plain row per judgement (what the Markdown summary tabulates)."""
    return [
        {
            "group": j.group,
            "criterion": j.criterion,
            "rule": j.rule,
            "estimate": shown_estimate(j),
            "status": j.status.upper(),
            "why": j.reason,
        }
        for j in verification.judgements
    ]

"""Printing a comparison: a side-by-side table for people, JSON or long-form CSV for programs."""

from __future__ import annotations

import csv
import sys

from rich.table import Table
from rich.text import Text

from analyzer.compare.formatting import format_estimate, paired_lines, significance_note
from analyzer.compare.model import Comparison
from analyzer.output import OutputFormat, csv_cell, printable, stdout_console

_SECTION_TITLES = {
    "outcome": "outcome",
    "tool_calls": "tool calls",
    "reasoning": "reasoning",
    "latency": "latency",
    "tokens": "tokens and cost",
    "findings": "findings",
}

CSV_COLUMNS = ["section", "metric", "label", "unit", "group", "value", "lo", "hi", "runs"]


def emit_comparison(comparison: Comparison, fmt: OutputFormat) -> None:
    """Print the comparison to stdout in `fmt`."""
    if fmt is OutputFormat.json:
        sys.stdout.write(comparison.to_json() + "\n")
    elif fmt is OutputFormat.csv:
        _csv(comparison)
    else:
        _table(comparison)


def _csv(comparison: Comparison) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for metric in comparison.metrics:
        for group in comparison.groups:
            estimate = metric.values.get(group.name)
            if estimate is None:
                continue
            writer.writerow(
                csv_cell(value)
                for value in (
                    metric.section,
                    metric.key,
                    metric.label,
                    metric.unit,
                    group.name,
                    estimate.value,
                    estimate.lo,
                    estimate.hi,
                    estimate.runs,
                )
            )


def _table(comparison: Comparison) -> None:
    console = stdout_console()
    names = [g.name for g in comparison.groups]
    # Group names, models and hosts are recorded labels: shown with control characters escaped.
    shown = {name: printable(name, keep="") for name in names}
    runs = sum(g.runs for g in comparison.groups)
    table = Table(
        title=f"Comparison by {comparison.by.value}: {runs} runs, 95% intervals over runs",
        header_style="bold",
    )
    table.add_column("metric", overflow="fold")
    for name in names:
        header = f"{name} (reference)" if name == comparison.reference else name
        table.add_column(Text(printable(header, keep="")), overflow="fold")
    table.add_row("runs", *(str(g.runs) for g in comparison.groups))
    table.add_row(
        "models", *(Text(printable(", ".join(g.models), keep="")) for g in comparison.groups)
    )
    if any(g.upstreams for g in comparison.groups):
        table.add_row(
            "upstream hosts",
            *(Text(printable(", ".join(g.upstreams), keep="")) for g in comparison.groups),
        )
    section = None
    for metric in comparison.metrics:
        if metric.section != section:
            section = metric.section
            table.add_section()
            table.add_row(Text(_SECTION_TITLES[section], style="bold"), *([""] * len(names)))
        cells = [Text(format_estimate(metric.values.get(n), metric.unit)) for n in names]
        table.add_row(Text(metric.label), *cells)
    console.print(table)

    if comparison.steps_histogram:
        histogram = Table(title="Steps to finish (completed runs)", header_style="bold")
        histogram.add_column("steps")
        for name in names:
            histogram.add_column(Text(shown[name]), justify="right")
        for bucket in comparison.steps_histogram:
            label = str(bucket.lo) if bucket.lo == bucket.hi else f"{bucket.lo}–{bucket.hi}"
            histogram.add_row(label, *(str(bucket.runs.get(n, 0)) for n in names))
        console.print(histogram)

    if comparison.task_success:
        console.print(_task_success_table(comparison, names))

    console.print(
        f"[bold]Significant differences[/bold] ({significance_note(comparison)})",
        highlight=False,
    )
    if comparison.significant:
        for difference in comparison.significant:
            console.print(f"  - {printable(difference.text)}", highlight=False, markup=False)
    else:
        console.print("  none", highlight=False)
    if comparison.paired_tests:
        console.print(
            "[bold]Paired by request hash[/bold] (the requests both groups answered were "
            "resampled, not the runs)",
            highlight=False,
        )
        for line in paired_lines(comparison):
            console.print(f"  - {printable(line)}", highlight=False, markup=False)
    if comparison.notes:
        console.print("[bold]Notes[/bold]", highlight=False)
        for note in comparison.notes:
            console.print(f"  - {printable(note)}", highlight=False, markup=False)


def _task_success_table(comparison: Comparison, names: list[str]) -> Table:
    """Task success task by task: passed / judged runs, Wilson 95% intervals."""
    table = Table(title="Task success by task (Wilson 95% intervals)", header_style="bold")
    table.add_column("task", overflow="fold")
    for name in names:
        table.add_column(Text(printable(name, keep="")), overflow="fold")
    for row in comparison.task_success:
        label = row.task + (f" ({row.samples} samples)" if row.samples else "")
        cells = []
        for name in names:
            estimate = row.values.get(name)
            text = format_estimate(estimate, "rate") if estimate is not None else "–"
            if estimate is not None:
                text += f" of {estimate.runs}"
            unjudged = row.unjudged.get(name, 0)
            if unjudged:
                text += f" (+{unjudged} not judged)"
            cells.append(Text(text))
        table.add_row(Text(printable(label, keep="")), *cells)
    return table

"""`traces show RUN`: the timeline of one run, step by step."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Annotated, Any

import typer
from rich.markup import escape

from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import (
    NULL_CELL,
    OutputFormat,
    emit_rows,
    one_line,
    printable,
    stdout_console,
    to_json,
)
from analyzer.queries import resolve_run_id, run_detail, so_far_label
from analyzer.stream_shape import describe_shape
from traces.store.database import Store, open_for_reading, resolve_db_path

PREVIEW_CHARS = 160


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("show")(show)


def show(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `last`.")],
    full: Annotated[bool, typer.Option("--full", help="Do not truncate long text.")] = False,
    ledger: Annotated[
        bool,
        typer.Option(
            "--ledger",
            help="Instead of the timeline, the ledger: per step, what the request added "
            "against the growth of prompt_tokens, and what the host kept.",
        ),
    ] = False,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Each step's reasoning, tool calls and results, with latency and tokens."""
    if ledger:
        _show_ledger(run, resolve_db_path(db, data_path), fmt)
        return
    with open_for_reading(resolve_db_path(db, data_path)) as conn:
        detail = run_detail(conn, resolve_run_id(conn, run))
    if fmt is OutputFormat.json:
        sys.stdout.write(to_json(detail) + "\n")
    elif fmt is OutputFormat.csv:
        emit_rows([_flat_step(s) for s in detail["steps"]], fmt)
    else:
        _print_timeline(detail, full)


def _show_ledger(run: str, store: Store, fmt: OutputFormat) -> None:
    """The run's ledger, measured from its stored steps (nothing is written)."""
    # Imported here: only --ledger needs the checks' loader and the fit.
    from analyzer.checks.ledger import measure
    from analyzer.checks.loader import load_run
    from analyzer.ledger_view import LEDGER_COLUMNS, ledger_document, ledger_rows, summary_lines

    with open_for_reading(store) as conn:
        measured = measure(load_run(conn, resolve_run_id(conn, run)))
    if fmt is OutputFormat.json:
        sys.stdout.write(to_json(ledger_document(measured)) + "\n")
        return
    if fmt is OutputFormat.table:
        out = stdout_console()
        for line in summary_lines(measured):
            out.print(_text(line))
    emit_rows(ledger_rows(measured), fmt, columns=LEDGER_COLUMNS, droppable=["system", "user"])


def _flat_step(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": step["index"],
        "latency_ms": step["latency_ms"],
        "finish_reason": step["finish_reason"],
        "prompt_tokens": step["usage"]["prompt_tokens"],
        "completion_tokens": step["usage"]["completion_tokens"],
        "reasoning_tokens": step["usage"]["reasoning_tokens"],
        "reasoning_source": step["reasoning_source"],
        "reasoning": step["reasoning"],
        "content": step["content"],
        "tool_calls": json.dumps(
            [
                {"id": c["id"], "name": c["name"], "arguments": c["arguments_raw"]}
                for c in step["tool_calls"]
            ]
        ),
        "error": step["error_message"],
    }


def _text(value: Any) -> str:
    """A recorded value inside a markup line: `–` when missing, escaped, never markup."""
    return NULL_CELL if value is None else escape(printable(str(value), keep=""))


def _ms(value: float | None) -> str:
    return NULL_CELL if value is None else f"{value:.0f} ms"


def _confidence(value: float | None) -> str:
    """`, confidence 0.87` for an inferred finding; nothing for one observed directly."""
    return "" if value is None else f", confidence {value:.2f}"


def _cut(text: str | None, full: bool) -> str:
    if not text:
        return ""
    flat = printable(text) if full else one_line(text)
    if full or len(flat) <= PREVIEW_CHARS:
        return escape(flat)
    return escape(flat[: PREVIEW_CHARS - 1]) + "[dim]…[/dim]"


def _tool_error_counts(steps: list[dict[str, Any]]) -> str:
    """`kind×count, …` over the run's failed tool calls (`unknown` where no kind was stored)."""
    counts = Counter(
        r["error_kind"] or "unknown" for s in steps for r in s["tool_results"] if r["error"]
    )
    return ", ".join(f"{kind}×{n}" for kind, n in sorted(counts.items()))


def _origin_lines(detail: dict[str, Any]) -> list[str]:
    """Where a run that no task made came from: a proxied run's client, upstream, path and
    grouping; an imported or proxied run's first user message."""
    lines: list[str] = []
    settings = detail.get("settings")
    proxy = settings.get("proxy") if isinstance(settings, dict) else None
    if isinstance(proxy, dict):
        agent = proxy.get("client")
        client = _text(proxy.get("client_name") or agent or "unknown client")
        if agent and proxy.get("client_name"):
            client += f" [dim]({_text(agent)})[/dim]"
        upstream = _text(proxy.get("upstream"))
        if proxy.get("upstream_url"):
            upstream += f" [dim]{_text(proxy['upstream_url'])}[/dim]"
        routed = proxy.get("routed_by")
        grouped = proxy.get("grouped_by")
        how = ", ".join(
            part
            for part in (
                _text(proxy["path"]) if proxy.get("path") else "",
                f"routed by {_text(routed)}" if routed else "",
                f"grouped by {_text(grouped)}" if grouped else "",
            )
            if part
        )
        lines.append(
            f"proxied: client {client} → upstream {upstream}" + (f"  ({how})" if how else "")
        )
    if detail.get("conversation"):
        lines.append(f"conversation: {_text(one_line(detail['conversation']))}")
    return lines


def _reasoning_tokens(usage: dict[str, Any]) -> str:
    """A step's reasoning tokens, marked `~N (estimated)` when the host reported none and the
    count is the client's estimate from the text: an estimate must not read as a measure."""
    count = _text(usage["reasoning_tokens"])
    estimated = usage.get("reasoning_tokens_source") == "estimated"
    return f"~{count} (estimated)" if estimated and usage["reasoning_tokens"] is not None else count


def _ended_by(detail: dict[str, Any]) -> str:
    """Who ended a failed run and on what evidence: `provider (empty_turn_after_reasoning)`,
    or the layer the termination names when no finding explained the end."""
    kind = detail.get("ended_by_kind")
    why = f"({_text(kind)})" if kind else f"(its termination, {_text(detail['termination'])})"
    return f"{_text(detail['ended_by'])} {why}"


def _print_timeline(detail: dict[str, Any], full: bool) -> None:
    out = stdout_console()
    verdict = {True: "[green]success[/green]", False: "[red]failed check[/red]", None: NULL_CELL}
    out.print(
        f"[bold]run {_text(detail['id'])}[/bold]  task {_text(detail['task'])}  "
        + (f"sample {_text(detail['sample'])}  " if detail.get("sample") is not None else "")
        + f"provider {_text(detail['provider'])}  model {_text(detail['model'])}"
    )
    out.print(
        f"status {_text(detail['status'])}  termination {_text(detail['termination'])}  "
        f"success {verdict[detail['success']]}  steps {_text(detail['steps_count'])}  "
        f"tool calls {_text(detail['tool_calls'])}  tokens {_text(detail['prompt_tokens'])} "
        f"prompt / {_text(detail['completion_tokens'])} completion"
    )
    if detail.get("ended_by"):
        out.print(f"ended by {_ended_by(detail)}")
    for line in _origin_lines(detail):
        out.print(line)
    if detail["error"]:
        out.print(f"[red]error:[/red] {_text(detail['error'])}")
    if detail.get("retry_of"):
        out.print(f"retry of run {_text(detail['retry_of'])}")
    if detail.get("resumptions"):
        out.print(f"resumed {_text(detail['resumptions'])}× after an interruption")
    label = so_far_label(detail)
    if label is not None:  # checked while it was recorded: the findings of its first steps
        summary = detail["failure_summary"] or "none"
        out.print(f"[yellow]failures {_text(label)}:[/yellow] {_text(summary)}")
    elif detail.get("failure_summary"):
        out.print(f"[yellow]failures:[/yellow] {_text(detail['failure_summary'])}")
    tool_errors = _tool_error_counts(detail["steps"])
    if tool_errors:
        out.print(f"[red]tool errors:[/red] {_text(tool_errors)}")
    for finding in detail["findings"]:
        out.print(f"[yellow]⚑ {_text(finding['kind'])}[/yellow] ({_text(finding['layer'])})")
    for step in detail["steps"]:
        usage = step["usage"]
        out.print(
            f"\n[bold cyan]step {step['index']}[/bold cyan]  {_ms(step['latency_ms'])}  "
            f"prompt {_text(usage['prompt_tokens'])}  "
            f"completion {_text(usage['completion_tokens'])}  "
            f"reasoning {_reasoning_tokens(usage)}  "
            f"finish {_text(step['finish_reason'])}"
            + (f"  retries {step['retries']}" if step["retries"] else "")
            + (
                f"  [yellow]resumed here (resumption {step['resumption']})[/yellow]"
                if step.get("resumption")
                else ""
            )
        )
        if step.get("stream"):
            out.print(f"  [dim]stream: {_text(describe_shape(step['stream']))}[/dim]")
        if step["reasoning"]:
            out.print(
                f"  [dim]thinking ({_text(step['reasoning_source'])}):[/dim] "
                f"{_cut(step['reasoning'], full)}"
            )
        for call in step["tool_calls"]:
            out.print(
                f"  [magenta]→ {_text(call['name'])}[/magenta] {_cut(call['arguments_raw'], full)}"
            )
        for result in step["tool_results"]:
            mark = "[green]←[/green]"
            if result["error"]:
                kind = result["error_kind"]
                mark = f"[red]✗ {_text(kind)}[/red]" if kind else "[red]✗[/red]"
            out.print(f"  {mark} {_cut(result['output'], full)}")
        if step["content"]:
            out.print(f"  [bold]answer:[/bold] {_cut(step['content'], full)}")
        if step["error_message"]:
            out.print(
                f"  [red]error ({_text(step['error_kind'])}):[/red] {_text(step['error_message'])}"
            )
        for finding in step["findings"]:
            out.print(
                f"  [yellow]⚑ {_text(finding['kind'])}[/yellow] ({_text(finding['layer'])}"
                f"{_confidence(finding['confidence'])}) "
                f"{_cut(json.dumps(finding['evidence'], ensure_ascii=False), full)}"
            )
    if detail["final_answer"]:
        out.print(f"\n[bold]final answer:[/bold] {_cut(detail['final_answer'], full)}")
    if detail["success_detail"]:
        out.print(f"[dim]{_text(detail['success_detail'])}[/dim]")

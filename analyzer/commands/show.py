"""`traces show RUN`: the timeline of one run, step by step."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from analyzer.options import DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, stdout_console, to_json
from analyzer.queries import resolve_run_id, run_detail
from traces.store.database import open_for_reading, resolve_db_path

PREVIEW_CHARS = 160


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("show")(show)


def show(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `last`.")],
    full: Annotated[bool, typer.Option("--full", help="Do not truncate long text.")] = False,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Each step's reasoning, tool calls and results, with latency and tokens."""
    conn = open_for_reading(resolve_db_path(db))
    try:
        detail = run_detail(conn, resolve_run_id(conn, run))
    finally:
        conn.close()
    if fmt is OutputFormat.json:
        print(to_json(detail))
    elif fmt is OutputFormat.csv:
        emit_rows([_flat_step(s) for s in detail["steps"]], fmt)
    else:
        _print_timeline(detail, full)


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


def _cut(text: str | None, full: bool) -> str:
    if not text:
        return ""
    flat = text if full else " ".join(text.split())
    if full or len(flat) <= PREVIEW_CHARS:
        return escape(flat)
    return escape(flat[: PREVIEW_CHARS - 1]) + "[dim]…[/dim]"


def _print_timeline(detail: dict[str, Any], full: bool) -> None:
    out = stdout_console()
    verdict = {True: "[green]success[/green]", False: "[red]failed check[/red]", None: "-"}
    out.print(
        f"[bold]run {detail['id']}[/bold]  task {escape(detail['task'])}  "
        f"provider {escape(detail['provider'])}  model {escape(detail['model'])}"
    )
    out.print(
        f"status {detail['status']}  termination {detail['termination'] or '-'}  "
        f"success {verdict[detail['success']]}  steps {detail['steps_count']}  "
        f"tool calls {detail['tool_calls']}  tokens {detail['prompt_tokens']} prompt / "
        f"{detail['completion_tokens']} completion"
    )
    if detail["error"]:
        out.print(f"[red]error:[/red] {escape(detail['error'])}")
    if detail.get("failure_summary"):
        out.print(f"[yellow]failures:[/yellow] {escape(detail['failure_summary'])}")
    for finding in detail["findings"]:
        out.print(f"[yellow]⚑ {finding['kind']}[/yellow] ({finding['layer']})")
    for step in detail["steps"]:
        usage = step["usage"]
        out.print(
            f"\n[bold cyan]step {step['index']}[/bold cyan]  {step['latency_ms']:.0f} ms  "
            f"prompt {usage['prompt_tokens']}  completion {usage['completion_tokens']}  "
            f"reasoning {usage['reasoning_tokens']}  finish {step['finish_reason']}"
            + (f"  retries {step['retries']}" if step["retries"] else "")
        )
        if step["reasoning"]:
            out.print(
                f"  [dim]thinking ({step['reasoning_source']}):[/dim] "
                f"{_cut(step['reasoning'], full)}"
            )
        for call in step["tool_calls"]:
            out.print(
                f"  [magenta]→ {escape(call['name'])}[/magenta] {_cut(call['arguments_raw'], full)}"
            )
        for result in step["tool_results"]:
            mark = "[red]✗[/red]" if result["error"] else "[green]←[/green]"
            out.print(f"  {mark} {_cut(result['output'], full)}")
        if step["content"]:
            out.print(f"  [bold]answer:[/bold] {_cut(step['content'], full)}")
        if step["error_message"]:
            out.print(f"  [red]error ({step['error_kind']}):[/red] {escape(step['error_message'])}")
        for finding in step["findings"]:
            out.print(
                f"  [yellow]⚑ {finding['kind']}[/yellow] ({finding['layer']}) "
                f"{_cut(json.dumps(finding['evidence']), full)}"
            )
    if detail["final_answer"]:
        out.print(f"\n[bold]final answer:[/bold] {_cut(detail['final_answer'], full)}")
    if detail["success_detail"]:
        out.print(f"[dim]{escape(detail['success_detail'])}[/dim]")

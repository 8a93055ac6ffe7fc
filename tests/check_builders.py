"""Hand-built runs, steps and calls for testing checks as pure functions: a clean chain of
four `open_box` calls and an answer, and builders to vary one field at a time."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from analyzer.checks.records import Call, Finding, Result, Run, Step
from analyzer.checks.registry import run_checks

TOOLS = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "open_box",
                "parameters": {
                    "type": "object",
                    "properties": {"box_id": {"type": "string"}},
                    "required": ["box_id"],
                },
            },
        }
    ]
}


def call(index: int = 0, name: str = "open_box", box: str = "box-1", **kw: Any) -> Call:
    """A valid `open_box` call; `kw` overrides any field."""
    arguments = {"box_id": box}
    fields: dict[str, Any] = {
        "index": index,
        "id": f"call_{box}_{index}",
        "id_format": "openai",
        "name": name,
        "arguments_raw": json.dumps(arguments),
        "arguments_type": "string",
        "arguments": arguments,
        "json_valid": True,
        "schema_valid": True,
        "schema_error": None,
    }
    return Call(**{**fields, **kw})


def tool_step(index: int, box: str = "box-1", **kw: Any) -> Step:
    """A clean step that calls `open_box` and got its result; `kw` overrides any field."""
    fields: dict[str, Any] = {
        "index": index,
        "finish_reason": "tool_calls",
        "finish_reason_raw": "tool_calls",
        "reasoning": "I should open the box.",
        "reasoning_source": "reasoning_content",
        "prompt_tokens": 300,
        "completion_tokens": 20,
        "reasoning_tokens": 6,
        "reasoning_tokens_source": "reported",
        "total_tokens": 320,
        "request_params": TOOLS,
        "calls": (call(box=box),),
        "results": (Result(0, f"call_{box}_0", "open_box", "next: box-2", None),),
    }
    return Step(**{**fields, **kw})


def answer_step(index: int, **kw: Any) -> Step:
    """A clean final answer after the chain; `kw` overrides any field."""
    fields: dict[str, Any] = {
        "finish_reason": "stop",
        "finish_reason_raw": "stop",
        "content": "The treasure is rusty-falcon-886.",
        "calls": (),
        "results": (),
        "completion_tokens": 16,
        "total_tokens": 316,
    }
    return tool_step(index, **{**fields, **kw})


def clean_run(**kw: Any) -> Run:
    """Four clean tool steps and an answer; `kw` overrides any run field."""
    steps = (*(tool_step(i, box=f"box-{i}") for i in range(4)), answer_step(4))
    return Run(**{"id": "r1", "dialect": "openai", "steps": steps, **kw})


def kinds(findings: list[Finding]) -> set[str]:
    """The kinds among `findings`."""
    return {f.kind for f in findings}


def with_step(step: Step, run: Run | None = None) -> list[Finding]:
    """Every finding on the clean run (or `run`) with its last step replaced by `step`."""
    base = run or clean_run()
    return run_checks(replace(base, steps=(*base.steps[:-1], step)))

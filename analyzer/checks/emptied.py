"""Tool-call arguments the host emptied: `{}`, `""` or none at all, for a tool that requires
parameters.

A parser that misses a value tag empties the arguments (GLM on vLLM); a host whose template
renders earlier calls wrongly makes the model, or its parser, lose them from the second turn
on. The evidence says when it began: the first step with emptied arguments and how many
steps with calls went well before it.
"""

from __future__ import annotations

from typing import Any

from analyzer.checks.onset import onset
from analyzer.checks.records import Call, Finding, Run, Step

KINDS = frozenset({"empty_arguments"})
"""Finding kinds this module emits (the catalogue describes each)."""


def emptied(call: Call, schema: dict[str, Any] | None) -> bool:
    """Whether a call to a declared tool came with no arguments: `""` or none (a tool without
    required parameters may be called so: OpenAI itself sends `""`), or `{}` where the tool
    requires some. `calls.arguments` leaves these to this module."""
    if schema is None:
        return False  # an undeclared tool's call is judged as such
    if call.json_valid:
        return call.arguments == {} and bool(schema.get("required"))
    return not call.arguments_raw.strip()


def _required(step: Step, call: Call) -> list[str]:
    schema = step.tools.get(call.name)
    required = schema.get("required") if schema else None
    return list(required) if isinstance(required, list) and emptied(call, schema) else []


def _has_emptied(step: Step) -> bool:
    return any(_required(step, call) for call in step.calls)


def _made_calls(step: Step) -> bool:
    return bool(step.calls)


def empty_arguments(step: Step, run: Run) -> list[Finding]:
    """Calls whose tool requires parameters that arrived with `{}`, `""` or no arguments,
    with the step they began at and the clean steps with calls before it."""
    findings: list[Finding] = []
    began: dict[str, Any] | None = None
    for call in step.calls:
        required = _required(step, call)
        if not required:
            continue
        if began is None:
            began = onset(run, step.index, _has_emptied, _made_calls)
        findings.append(
            Finding(
                "empty_arguments",
                "error",
                "provider",
                step.index,
                {
                    "call": call.index,
                    "tool": call.name,
                    "required": required,
                    "arguments": call.arguments_raw if call.arguments_type != "missing" else None,
                    **began,
                },
            )
        )
    return findings

"""The fixed two-step tool conversation of `shared/external/dialects/rendered` (its README.txt):
list_dir then read_file, each turn with its reasoning, Kimi-style ids and named results.

Written once for the tests that render it: the simulator's family templates and the
Hugging Face-compatible Jinja environment.
"""

from __future__ import annotations

import json
from typing import Any

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "list_dir",
            "description": "List a directory.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "Directory path"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path"},
                    "limit": {"type": "integer", "description": "Max lines"},
                },
                "required": ["path"],
            },
        },
    },
]
_STEPS = [
    ("REASONING-STEP-1: I should list the directory first.", "list_dir", {"path": "."}),
    (
        "REASONING-STEP-2: README.md exists, read it.",
        "read_file",
        {"path": "README.md", "limit": 20},
    ),
]
_RESULTS = ["README.md\nsrc/", "# Demo project"]
_OPENAI_IDS = {"functions.list_dir:0": "call_9f2c1a", "functions.read_file:1": "call_77b0e4"}


def conversation(
    reasoning: bool = True,
    as_object: bool = False,
    openai_ids: bool = False,
    field: str = "reasoning_content",
) -> list[dict[str, Any]]:
    """list_dir then read_file, each with its reasoning (in `field`), Kimi-style ids (or
    `call_…` ones), arguments as JSON strings (or objects), named results."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "List the files, then read the README."},
    ]
    for index, ((thought, name, arguments), result) in enumerate(
        zip(_STEPS, _RESULTS, strict=True)
    ):
        call_id = f"functions.{name}:{index}"
        if openai_ids:
            call_id = _OPENAI_IDS[call_id]
        args: Any = arguments if as_object else json.dumps(arguments)
        turn: dict[str, Any] = {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            ],
        }
        if reasoning:
            turn[field] = thought
        messages.append(turn)
        messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": result})
    return messages

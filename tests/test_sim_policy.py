"""The simulator's policy, driven directly with hand-made tool results (no HTTP)."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import jsonschema
import pytest

from traces.sim.policy import Decision, decide
from traces.sim.schema_values import example_arguments


def _tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def _string_props(*names: str, required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": list(required if required is not None else names),
        "additionalProperties": False,
    }


CHAIN_TOOLS = [
    _tool(
        "open_box",
        {
            "type": "object",
            "properties": {"box_id": {"type": "string", "pattern": "^box-[0-9a-f]{6}$"}},
            "required": ["box_id"],
            "additionalProperties": False,
        },
    )
]
RESEARCH_TOOLS = [
    _tool(
        "search",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
    _tool("open_document", _string_props("doc_id")),
]
FILES_TOOLS = [
    _tool("list_files", _string_props("path", required=())),
    _tool("read_file", _string_props("path")),
    _tool("write_file", _string_props("path", "content")),
    _tool("grep", _string_props("pattern", "path", required=("pattern",))),
]


def _append(messages: list[dict[str, Any]], decision: Decision, results: list[str]) -> None:
    """Echo the decided turn back as the client would, followed by its tool results."""
    messages.append(
        {
            "role": "assistant",
            "content": decision.content or None,
            "reasoning_content": decision.reasoning,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in decision.tool_calls
            ],
        }
    )
    for call, result in zip(decision.tool_calls, results, strict=True):
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


def _validate(decision: Decision, tools: list[dict[str, Any]]) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for call in decision.tool_calls:
        assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)
        jsonschema.validate(json.loads(call.arguments), schemas[call.name])


# --- chain ---------------------------------------------------------------------------------


def test_chain_recovers_from_one_error_and_gives_up_after_three() -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Start with box-00aa11."}]
    first = decide(messages, CHAIN_TOOLS, seed=0)
    assert json.loads(first.tool_calls[0].arguments) == {"box_id": "box-00aa11"}
    _append(
        messages,
        first,
        ['{"box_id": "box-00aa11", "opened": 1, "remaining": 2, "next_box_id": "box-22bb33"}'],
    )
    for attempt in range(3):
        decision = decide(messages, CHAIN_TOOLS, seed=0)
        assert decision.tool_calls, attempt
        # Retries go back to the id the world gave, whatever went wrong.
        assert json.loads(decision.tool_calls[0].arguments) == {"box_id": "box-22bb33"}
        _append(messages, decision, ["Error: box-22bb33 is locked or does not exist"])
    final = decide(messages, CHAIN_TOOLS, seed=0)
    assert final.strategy == "give_up"
    assert final.finish_reason == "stop"
    assert "could not complete" in final.content
    assert "locked or does not exist" in final.reasoning + final.content


def test_chain_without_start_box_answers() -> None:
    decision = decide([{"role": "user", "content": "Find the treasure."}], CHAIN_TOOLS, seed=0)
    assert not decision.tool_calls
    assert "box" in decision.content


def test_decisions_are_deterministic_and_seeded() -> None:
    messages = [{"role": "user", "content": "Start with box-00aa11."}]
    assert decide(messages, CHAIN_TOOLS, seed=3) == decide(messages, CHAIN_TOOLS, seed=3)
    assert (
        decide(messages, CHAIN_TOOLS, seed=3).tool_calls[0].id
        != decide(messages, CHAIN_TOOLS, seed=4).tool_calls[0].id
    )


def test_reasoning_varies_and_mentions_the_last_result() -> None:
    reasonings = set()
    for index in range(12):
        box, following = f"box-{index:06x}", f"box-{index + 1:06x}"
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"Start with {box}."}]
        _append(
            messages,
            decide(messages, CHAIN_TOOLS, seed=0),
            [json.dumps({"box_id": box, "opened": 1, "remaining": 5, "next_box_id": following})],
        )
        decision = decide(messages, CHAIN_TOOLS, seed=0)
        assert following in decision.reasoning
        reasonings.add(decision.reasoning.replace(box, "B").replace(following, "N"))
    assert len(reasonings) > 3


# --- research ------------------------------------------------------------------------------

CORPUS = {
    "kestrel-observatory": (
        "Kestrel Observatory",
        "The observatory was founded by [[Halvard Brenn]].",
    ),
    "halvard-brenn": (
        "Halvard Brenn",
        "Halvard Brenn studied at the [[Corvane Institute]] for years.",
    ),
    "halvard-brenn-the-younger": ("Halvard Brenn the Younger", "A painter unrelated to astronomy."),
    "corvane-institute": (
        "Corvane Institute",
        "The Corvane Institute is located in Saltmere. It has a bell.",
    ),
}


def _search(query: str) -> str:
    words = set(query.lower().split())
    scored = []
    for doc_id, (title, text) in CORPUS.items():
        score = 10 * len(words & set(title.lower().split())) + len(
            words & set(text.lower().split())
        )
        score += 100 if title.lower() == query.lower() else 0
        if score:
            scored.append((-score, doc_id, title, text))
    scored.sort()
    return json.dumps([{"doc_id": d, "title": t, "snippet": x[:40]} for _, d, t, x in scored])


def _open(doc_id: str) -> str:
    if doc_id not in CORPUS:
        return json.dumps({"error": f"unknown doc_id {doc_id}"})
    title, text = CORPUS[doc_id]
    return json.dumps({"doc_id": doc_id, "title": title, "text": f"# {title}\n\n{text}"})


def _run_research(question: str) -> tuple[str, list[Decision]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Research agent."},
        {"role": "user", "content": question},
    ]
    decisions = []
    for _ in range(20):
        decision = decide(messages, RESEARCH_TOOLS, seed=1)
        decisions.append(decision)
        _validate(decision, RESEARCH_TOOLS)
        if not decision.tool_calls:
            return decision.content, decisions
        results = []
        for call in decision.tool_calls:
            args = json.loads(call.arguments)
            results.append(
                _search(args["query"]) if call.name == "search" else _open(args["doc_id"])
            )
        _append(messages, decision, results)
    raise AssertionError("research did not finish")


def test_research_follows_links_to_the_first_sentence() -> None:
    answer, decisions = _run_research(
        'Starting from the article "Kestrel Observatory", follow the references. Where is it?'
    )
    assert answer.startswith("The Corvane Institute is located in Saltmere.")
    names = [[c.name for c in d.tool_calls] for d in decisions]
    assert names[:2] == [["search"], ["open_document"]]
    assert json.loads(decisions[0].tool_calls[0].arguments) == {"query": "Kestrel Observatory"}


def test_research_opens_close_hits_in_parallel() -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": 'Look up "Halvard" please.'}]
    first = decide(messages, RESEARCH_TOOLS, seed=0)
    _append(messages, first, [_search("Halvard")])
    second = decide(messages, RESEARCH_TOOLS, seed=0)
    assert [c.name for c in second.tool_calls] == ["open_document", "open_document"]
    assert len({c.id for c in second.tool_calls}) == 2


# --- files ---------------------------------------------------------------------------------

FILES = {
    "README.md": "Project\nTODO: write docs\n",
    "src/app.py": "import os\n# TODO: handle errors\nprint(1)\n# TODO: add tests\n",
    "notes/plan.txt": "nothing here\n",
    "notes/ideas.txt": "TODO: ship it\n",
}


def _files_tool(name: str, args: dict[str, Any], written: dict[str, str]) -> str:
    if name == "list_files":
        return json.dumps(sorted(FILES))
    if name == "grep":
        hits = [
            {"path": p, "line": n, "text": line}
            for p in sorted(FILES)
            for n, line in enumerate(FILES[p].splitlines(), 1)
            if args["pattern"] in line
        ]
        return json.dumps(hits)
    if name == "read_file":
        return FILES.get(args["path"], f"Error: {args['path']} does not exist")
    written[args["path"]] = args["content"]
    return json.dumps({"path": args["path"], "bytes": len(args["content"].encode())})


def test_files_reads_all_hits_in_one_turn_and_writes_the_report() -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": 'Find every line containing "TODO" and write them to `report.md`.',
        }
    ]
    written: dict[str, str] = {}
    names = []
    for _ in range(10):
        decision = decide(messages, FILES_TOOLS, seed=0)
        _validate(decision, FILES_TOOLS)
        names.append([c.name for c in decision.tool_calls])
        if not decision.tool_calls:
            break
        results = [
            _files_tool(c.name, json.loads(c.arguments), written) for c in decision.tool_calls
        ]
        _append(messages, decision, results)
    assert names == [
        ["list_files"],
        ["grep"],
        ["read_file", "read_file", "read_file"],
        ["write_file"],
        [],
    ]
    assert written["report.md"].splitlines() == [
        "TODO: write docs",
        "TODO: ship it",
        "# TODO: handle errors",
        "# TODO: add tests",
    ]
    assert "report.md" in decision.content


# --- generic -------------------------------------------------------------------------------

GENERIC_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "city": {"type": "string", "minLength": 3, "maxLength": 40},
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 2,
                "uniqueItems": True,
            },
            "when": {"type": "string", "format": "date"},
            "flag": {"type": "boolean"},
            "step": {"type": "integer", "multipleOf": 5, "minimum": 12},
            "maybe": {"type": ["string", "null"]},
        },
        "required": [
            "unit",
            "days",
            "ratio",
            "city",
            "code",
            "tags",
            "when",
            "flag",
            "step",
            "maybe",
        ],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "$defs": {
            "point": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
            }
        },
        "properties": {
            "points": {"type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 3},
            "mode": {"anyOf": [{"type": "null"}, {"const": "fast"}]},
            "nested": {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}]},
        },
        "required": ["points", "mode", "nested"],
    },
    {"type": "object", "properties": {}},
    {
        "type": "object",
        "properties": {"limit": {"type": "integer", "exclusiveMaximum": 3}},
        "required": ["limit"],
    },
]


@pytest.mark.parametrize("schema", GENERIC_SCHEMAS)
@pytest.mark.parametrize("full", [False, True])
def test_schema_values_validate(schema: dict[str, Any], full: bool) -> None:
    for seed in range(25):
        jsonschema.Draft202012Validator(schema).validate(
            example_arguments(schema, random.Random(seed), full=full)
        )


def test_generic_calls_each_tool_once_then_answers() -> None:
    tools = [_tool(f"tool_{i}", schema) for i, schema in enumerate(GENERIC_SCHEMAS)]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Try the tools."}]
    called = []
    for _ in range(10):
        decision = decide(messages, tools, seed=0)
        _validate(decision, tools)
        if not decision.tool_calls:
            break
        called += [c.name for c in decision.tool_calls]
        _append(messages, decision, [f"ok {c.name}" for c in decision.tool_calls])
    assert called == [f"tool_{i}" for i in range(len(GENERIC_SCHEMAS))]
    assert decision.strategy == "generic"
    assert "tool_3" in decision.content


def test_generic_retries_a_failed_tool_once() -> None:
    tools = [_tool("alpha", _string_props("x")), _tool("beta", _string_props("y"))]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Try the tools."}]
    called = []
    for _ in range(10):
        decision = decide(messages, tools, seed=0)
        if not decision.tool_calls:
            break
        called += [c.name for c in decision.tool_calls]
        results = ["Error: nope" if c.name == "alpha" else "fine" for c in decision.tool_calls]
        _append(messages, decision, results)
    assert called == ["alpha", "alpha", "beta"]


# --- no tools / tool_choice ----------------------------------------------------------------


def test_no_tools_answers_directly() -> None:
    decision = decide([{"role": "user", "content": "What is a kestrel?"}], None, seed=0)
    assert decision.finish_reason == "stop"
    assert "What is a kestrel?" in decision.content
    assert decision.reasoning


def test_tool_choice_none_answers_even_with_tools() -> None:
    messages = [{"role": "user", "content": "Start with box-00aa11."}]
    assert not decide(messages, CHAIN_TOOLS, seed=0, tool_choice="none").tool_calls


def test_required_forces_a_call_where_the_model_would_answer() -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Say hello."}]
    tools = [_tool("ping", {"type": "object", "properties": {}})]
    first = decide(messages, tools, seed=0)
    _append(messages, first, ["pong"])
    free = decide(messages, tools, seed=0)
    assert not free.tool_calls and free.unforced is None  # done with its one tool: answers
    forced = decide(messages, tools, seed=0, tool_choice="required")
    assert [c.name for c in forced.tool_calls] == ["ping"] and forced.finish_reason == "tool_calls"
    # What the model would have said unconstrained is kept for a host that ignores the choice.
    assert forced.unforced == free


def test_a_named_function_is_called_with_schema_valid_arguments() -> None:
    messages = [{"role": "user", "content": "Find every TODO and write them to report.md."}]
    named = {"type": "function", "function": {"name": "write_file"}}
    forced = decide(messages, FILES_TOOLS, seed=0, tool_choice=named)
    [call] = forced.tool_calls
    schema = FILES_TOOLS[2]["function"]["parameters"]
    assert call.name == "write_file"
    jsonschema.validate(json.loads(call.arguments), schema)
    assert forced.unforced is not None and [c.name for c in forced.unforced.tool_calls] != [
        "write_file"
    ]


def test_a_choice_the_model_already_meets_changes_nothing() -> None:
    messages = [{"role": "user", "content": "Start with box-00aa11."}]
    free = decide(messages, CHAIN_TOOLS, seed=0)
    for choice in ("required", {"type": "function", "function": {"name": "open_box"}}, "auto"):
        assert decide(messages, CHAIN_TOOLS, seed=0, tool_choice=choice) == free
    # A named function nobody declared forces nothing (a real host answers 400).
    unknown = {"type": "function", "function": {"name": "teleport"}}
    assert decide(messages, CHAIN_TOOLS, seed=0, tool_choice=unknown) == free


def test_tool_choice_none_keeps_the_calls_it_forbade() -> None:
    messages = [{"role": "user", "content": "Start with box-00aa11."}]
    answered = decide(messages, CHAIN_TOOLS, seed=0, tool_choice="none")
    assert not answered.tool_calls
    assert answered.unforced is not None and answered.unforced.tool_calls

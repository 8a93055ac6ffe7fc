"""Building the shipped `schemas` request suite from Moonshot's JSON Schema validator cases.

`python -m traces.request_suites.schema_suite SOURCE OUT` reads the validator cases (one
folder per feature, `TestAnyOf/valid.jsonl` and the like, one schema per line: the `schemas`
folder of the reference data, from MoonshotAI/walle, MIT) and writes one OpenAI batch-input
line per request: each distinct schema becomes a tool, asked for twice —

- `auto`: the tool alone, `tool_choice` auto;
- `named`: the tool after two others, `tool_choice` naming it (a host's guided decoding).

A schema that describes an object is the tool's `parameters` as it is; any other (a string,
an `anyOf`, an array…) becomes the one required property `value` of an object, its `$defs`
lifted to the top so its references still resolve. Cases no call can satisfy are left out
and counted: a string of at least 10⁴ characters, a required property that can only hold
itself (no finite instance). A few cases of this project's own (string formats, exclusive
bounds, multipleOf) complete the features the validator cases touch only through numbers.

The output depends only on the input files: same input, same bytes.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

SUITE_NAME = "schemas"
MAX_MIN_LENGTH = 10_000
"""Longer required strings are left out: no host should be asked for megabytes of `x`."""
_SYSTEM = (
    "You are a careful assistant that answers by calling the tool you are given. Fill every "
    "argument so that it satisfies the tool's JSON Schema exactly."
)
_DISTRACTORS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_time",
            "description": "The current time in a time zone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA zone name."}},
                "required": ["timezone"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_notes",
            "description": "Search the user's notes.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                },
                "required": ["query"],
            },
        },
    },
]
OWN_CASES: dict[str, list[dict[str, Any]]] = {
    "ProjectFormats": [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "time"},
        {"type": "string", "format": "email"},
        {"type": "string", "format": "uri"},
        {"type": "string", "format": "uuid"},
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "hostname"},
        {
            "type": "object",
            "properties": {
                "start": {"type": "string", "format": "date"},
                "end": {"type": "string", "format": "date"},
                "attendees": {
                    "type": "array",
                    "items": {"type": "string", "format": "email"},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            },
            "required": ["start", "end", "attendees"],
            "additionalProperties": False,
        },
    ],
    "ProjectNumberBounds": [
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 5},
        {"type": "number", "multipleOf": 0.25, "minimum": 1, "maximum": 2},
        {"type": "integer", "multipleOf": 7, "minimum": 20},
        {
            "type": "object",
            "properties": {
                "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "count": {"type": "integer", "minimum": 1, "maximum": 3},
            },
            "required": ["ratio", "count"],
            "additionalProperties": False,
        },
    ],
}
"""This project's cases (not from the validator suite): string formats and number bounds."""


@dataclass(frozen=True)
class Case:
    """One distinct schema of the source."""

    group: str
    """The feature folder it came from (`TestAnyOf`), or one of `OWN_CASES`."""
    index: int
    """Its position among the group's distinct schemas (1-based)."""
    schema: dict[str, Any]


@dataclass(frozen=True)
class Built:
    """The suite's lines and what was left out."""

    lines: list[dict[str, Any]]
    left_out: dict[str, str]
    """Case id -> why it was left out."""


def read_cases(source: Path) -> list[Case]:
    """The distinct schemas of every `*/valid.jsonl` under `source` (folders in name order,
    lines in file order), then this project's own cases."""
    seen: set[str] = set()
    cases: list[Case] = []
    for path in sorted(source.glob("*/valid.jsonl")):
        count = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            schema = json.loads(line)
            key = json.dumps(schema, sort_keys=True)
            if key in seen or not isinstance(schema, dict):
                continue
            seen.add(key)
            count += 1
            cases.append(Case(path.parent.name, count, schema))
    for group, schemas in OWN_CASES.items():
        cases.extend(Case(group, i, s) for i, s in enumerate(schemas, 1))
    return cases


def build(source: Path) -> Built:
    """The suite's lines from the validator cases under `source`."""
    lines: list[dict[str, Any]] = []
    left_out: dict[str, str] = {}
    for case in read_cases(source):
        case_id = f"{case.group}-{case.index}"
        problem = _unusable(case.schema)
        if problem is not None:
            left_out[case_id] = problem
            continue
        tool = _tool(case)
        lines.extend(_requests(case_id, case, tool))
    return Built(lines, left_out)


def _requests(case_id: str, case: Case, tool: dict[str, Any]) -> Iterator[dict[str, Any]]:
    name = tool["function"]["name"]
    feature = _feature(case.group)
    ask = (
        f"Call {name} once to record an example value for this {feature} case. Use only "
        "values its schema allows."
    )
    messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": ask}]
    yield _line(f"{case_id}-auto", {"messages": messages, "tools": [tool], "tool_choice": "auto"})
    yield _line(
        f"{case_id}-named",
        {
            "messages": messages,
            "tools": [*_DISTRACTORS, tool],
            "tool_choice": {"type": "function", "function": {"name": name}},
        },
    )


def _line(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _tool(case: Case) -> dict[str, Any]:
    name = "record_" + _snake(case.group.removeprefix("Test")) + f"_{case.index}"
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Records a value for {_feature(case.group)} case {case.index}.",
            "parameters": _parameters(case.schema),
        },
    }


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as a tool's parameters: itself when it describes an object (an `$id` the
    2020-12 metaschema refuses dropped), else the required property `value` of one."""
    if _describes_object(schema):
        return _valid_id(schema)
    inner = {k: v for k, v in schema.items() if k not in ("$defs", "definitions", "$id")}
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"value": inner},
        "required": ["value"],
        "additionalProperties": False,
    }
    for key in ("$defs", "definitions"):
        if key in schema:
            wrapped[key] = schema[key]
    return wrapped


def _valid_id(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return {k: v for k, v in schema.items() if k != "$id"}
    return schema


def _describes_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or kind == ["object"]


def _unusable(schema: dict[str, Any]) -> str | None:
    """Why no tool call could answer `schema`, or None."""
    text = json.dumps(schema)
    if not _describes_object(schema) and '"$ref": "#"' in text:
        return "refers to its own root, which wrapping it would change"
    lengths = [int(n) for n in re.findall(r'"minLength": (\d+)', text)]
    if any(n > MAX_MIN_LENGTH for n in lengths):
        return f"asks for a string of at least {max(lengths)} characters"
    if not _finite(schema, schema, frozenset()):
        return "no finite value satisfies it (a required property can only hold itself)"
    try:
        Draft202012Validator.check_schema(_parameters(schema))
    except SchemaError as exc:
        return f"not a valid Draft 2020-12 schema: {exc.message}"
    return None


def _finite(schema: Any, root: Mapping[str, Any], refs: frozenset[str]) -> bool:
    """Whether some finite JSON value satisfies `schema` (its required parts must end)."""
    if schema is False:
        return False
    if not isinstance(schema, Mapping):
        return True
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref in refs:
            return False  # a required path back to itself
        target = _pointer(root, ref)
        if target is not None and not _finite(target, root, refs | {ref}):
            return False
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and not any(
            _finite(s, root, refs) for s in schema[key]
        ):
            return False
    if isinstance(schema.get("allOf"), list) and not all(
        _finite(s, root, refs) for s in schema["allOf"]
    ):
        return False
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    for name in schema.get("required", []) or []:
        if name in properties and not _finite(properties[name], root, refs):
            return False
    low = schema.get("minItems", 0)
    if isinstance(low, int) and low > 0 and "items" in schema:
        return _finite(schema["items"], root, refs)
    return True


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    target: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or part not in target:
            return None
        target = target[part]
    return target


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _feature(group: str) -> str:
    return _snake(group.removeprefix("Test").removeprefix("Project")).replace("_", " ")


def write(built: Built, out: Path) -> None:
    """Write the suite's lines to `out` (compact JSON, one request per line)."""
    text = "".join(
        json.dumps(line, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        for line in built.lines
    )
    out.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """`python -m traces.request_suites.schema_suite SOURCE OUT`: build and write the suite,
    and say on stderr how many requests it holds and which cases were left out."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m traces.request_suites.schema_suite SOURCE OUT\n")
        return 2
    source, out = Path(args[0]), Path(args[1])
    if not any(source.glob("*/valid.jsonl")):
        sys.stderr.write(f"{source}: no */valid.jsonl validator cases here\n")
        return 2
    built = build(source)
    write(built, out)
    sys.stderr.write(f"{out}: {len(built.lines)} requests\n")
    for case_id, why in built.left_out.items():
        sys.stderr.write(f"left out {case_id}: {why}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tool calls written as text: the shapes models (and hosts that did not parse them) leave in
content, recognised without guessing at prose.

A call reaches content as `{"name": …, "arguments": …}` (or `parameters`, `args`, `input`),
with its arguments flattened beside `name`, wrapped as `{"function": {…}}` or
`{"type": "function", …}`, inside `<tool_call>…</tool_call>` (Hermes, Qwen), in a fenced
```json block, or as a list of those. A text counts only when every JSON value in the run
of values that ends it is a call to a declared tool: a JSON answer, an example in the middle
of an explanation or an object whose `name` is no tool are not calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema.exceptions import SchemaError

from traces.families import JSON_CALL_SYNTAXES, JsonCallSyntax
from traces.tools.schema_check import schema_error

Placement = Literal["whole", "trailing"]
"""`whole`: the text is nothing but the calls; `trailing`: prose, then the calls to the end."""

_DECODER = json.JSONDecoder()
_NAME_KEYS = ("name", "tool_name", "tool", "function")
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")
_ENVELOPE_KEYS = frozenset({"type", "id", "index", "call_id"})
"""Keys a serialised call carries beside its name and arguments."""
_PREFIXES = tuple(syntax.prefix for syntax in JSON_CALL_SYNTAXES)
_START = re.compile(
    r"```|<tool_call>|\[\s*\{|\{\s*\"(?:name|tool_name|tool|function|type|id|tool_calls)\"\s*:"
)
"""Where a run of calls may begin: a fence, a tag, a list of objects or an object whose first
key is one a call starts with. Linear: each alternative is literal up to a bounded `\\s*`."""
_MAX_STARTS = 16
"""Candidate starts tried per text; each try costs a pass or two over the rest of it."""
_FENCE_INFO = re.compile(r"[A-Za-z0-9_+\-]*")
_SEPARATORS = " \t\r\n;,"
_MAX_UNCLOSED = 2
"""Closing braces a text's last value may lack and still be read as written."""


@dataclass(frozen=True)
class TextCall:
    """One call found in a text."""

    name: str
    arguments: Any
    shape: str
    """How it was written: `name+arguments`, `name+parameters`, `flattened`, `function`."""
    schema_valid: bool | None
    """Whether the arguments fit the tool's schema; None when the schema cannot be used."""

    @property
    def explicit(self) -> bool:
        """Whether the text names where the arguments are (not inferred from key names)."""
        return self.shape != "flattened"


@dataclass(frozen=True)
class TextCalls:
    """The calls a text ends with, and how they were written."""

    calls: tuple[TextCall, ...]
    placement: Placement
    start: int
    """Offset in the text where the calls begin."""
    wrappers: tuple[str, ...]
    """What surrounds the JSON: `fence`, `tag`, `list`, `tool_calls`, or a special token."""
    values: tuple[Any, ...]
    """The top-level JSON values, as decoded."""


def _arguments(value: Any) -> Any:
    """Arguments as an object when they are one, or JSON text holding one."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded
    return value


def fits_schema(schema: Mapping[str, Any], arguments: Any) -> bool | None:
    """Whether `arguments` (an object) fit `schema`; None when no validator takes it."""
    if not isinstance(arguments, dict):
        return False
    try:
        return schema_error(schema, arguments) is None
    except (SchemaError, TypeError, ValueError):
        return None  # a declared schema no validator takes: unknown, not invalid


def _fits(rest: Mapping[str, Any], schema: Mapping[str, Any]) -> bool:
    """Whether keys beside `name` are the tool's own parameters (a flattened call)."""
    properties = schema.get("properties")
    if not rest or not isinstance(properties, Mapping):
        return False
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    return set(rest) <= set(properties) and needed <= set(rest)


def as_call(obj: Any, tools: Mapping[str, Mapping[str, Any]]) -> TextCall | None:
    """`obj` as a call to one of `tools`, or None when it is not one."""
    if not isinstance(obj, dict):
        return None
    inner = obj.get("function")
    if isinstance(inner, dict):
        # {"function": {"name": …, "arguments": …}}, with "type"/"id" beside it.
        if set(obj) - _ENVELOPE_KEYS - {"function"}:
            return None
        name = inner.get("name")
        key = next((k for k in _ARGUMENT_KEYS if k in inner), None)
        if not isinstance(name, str) or name not in tools or key is None:
            return None
        arguments = _arguments(inner[key])
        return TextCall(name, arguments, "function", fits_schema(tools[name], arguments))
    name_key = next((k for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name_key is None or obj[name_key] not in tools:
        return None
    name = obj[name_key]
    schema = tools[name]
    key = next((k for k in _ARGUMENT_KEYS if k in obj), None)
    if key is not None:
        if set(obj) - _ENVELOPE_KEYS - {name_key, key}:
            return None
        arguments = _arguments(obj[key])
        return TextCall(name, arguments, f"name+{key}", fits_schema(schema, arguments))
    rest = {k: v for k, v in obj.items() if k != name_key and k not in _ENVELOPE_KEYS}
    if not _fits(rest, schema):
        return None  # `{"name": "search", "results": […]}` is an answer about search
    return TextCall(name, rest, "flattened", fits_schema(schema, rest))


def _calls_of(value: Any, tools: Mapping[str, Mapping[str, Any]]) -> list[TextCall] | None:
    """Every call a top-level value holds, or None when any part of it is not a call."""
    items: Any = value
    if isinstance(value, dict) and set(value) == {"tool_calls"}:
        items = value["tool_calls"]
    if not isinstance(items, list):
        items = [items]
    if not items:
        return None
    calls = [as_call(item, tools) for item in items]
    return None if any(c is None for c in calls) else [c for c in calls if c is not None]


def _scan(text: str, start: int) -> tuple[list[Any], list[str]] | None:
    """The JSON values from `start` to the end of `text`, with the fences, tags and
    separators between them; None as soon as anything else (prose) follows."""
    values: list[Any] = []
    wrappers: list[str] = []
    position, end = start, len(text)
    while True:
        while position < end and text[position] in _SEPARATORS:
            position += 1
        if position == end:
            return (values, wrappers) if values else None
        if text.startswith("```", position):
            info = _FENCE_INFO.match(text, position + 3)
            position = info.end() if info else position + 3
            wrappers.append("fence")
            continue
        if text.startswith("<tool_call>", position) or text.startswith("</tool_call>", position):
            position = text.index(">", position) + 1
            wrappers.append("tag")
            continue
        if text[position] not in "{[":
            return None
        try:
            value, position = _DECODER.raw_decode(text, position)
        except ValueError:
            closed = _closed(text[position:])
            if closed is None:
                return None
            values.append(closed)
            wrappers.append("unclosed")
            return values, wrappers
        values.append(value)


def _closed(rest: str) -> Any:
    """The last value of a text when only its final closing braces are missing (small models
    stop one `}` short: `{"function": {"name": …, "parameters": {…}}`), else None."""
    stripped = rest.rstrip()
    for missing in range(1, _MAX_UNCLOSED + 1):
        try:
            return json.loads(stripped + "}" * missing)
        except ValueError:
            continue
    return None


def _lead(text: str) -> tuple[str, str | None]:
    """The text before the calls with a family's call token removed from its end (the token
    itself, or None)."""
    stripped = text.rstrip()
    for prefix in _PREFIXES:
        if stripped.endswith(prefix):
            return stripped[: -len(prefix)], prefix
    return stripped, None


def calls_in_text(text: str | None, tools: Mapping[str, Mapping[str, Any]]) -> TextCalls | None:
    """The calls to `tools` that `text` ends with (all of it, or after some prose), or None.

    Only JSON values are decoded, each once per candidate start, and at most `_MAX_STARTS`
    starts are tried, so a long text full of braces costs a bounded number of passes.
    """
    if not text or not tools or "{" not in text:
        return None
    for attempt, match in enumerate(_START.finditer(text)):
        if attempt == _MAX_STARTS:
            return None
        start = match.start()
        scanned = _scan(text, start)
        if scanned is None:
            continue
        values, wrappers = scanned
        calls: list[TextCall] = []
        for value in values:
            found = _calls_of(value, tools)
            if found is None:
                break
            calls.extend(found)
            if isinstance(value, list):
                wrappers.append("list")
            elif isinstance(value, dict) and "tool_calls" in value:
                wrappers.append("tool_calls")
        else:
            lead, prefix = _lead(text[:start])
            return TextCalls(
                calls=tuple(calls),
                placement="trailing" if lead.strip() else "whole",
                start=len(lead) if prefix else start,
                wrappers=tuple(dict.fromkeys(([prefix] if prefix else []) + wrappers)),
                values=tuple(values),
            )
    return None


def own_syntax(found: TextCalls, syntax: JsonCallSyntax | None) -> bool:
    """Whether `found` is exactly how `syntax`'s family writes calls, bare (no fence, tag or
    wrapper object), so its host's parser should have turned it into `tool_calls`."""
    if syntax is None or found.placement != "whole":
        return False
    if set(found.wrappers) - {syntax.prefix, "list"}:
        return False
    if syntax.prefix_required and syntax.prefix not in found.wrappers:
        return False
    if syntax.as_list:
        if len(found.values) != 1 or not isinstance(found.values[0], list):
            return False
        objects = found.values[0]
    else:
        if any(not isinstance(value, dict) for value in found.values):
            return False
        objects = list(found.values)
    allowed = {"name", "type", "id"}
    return all(
        isinstance(obj, dict)
        and isinstance(obj.get("name"), str)
        and any(key in obj for key in syntax.arguments_keys)
        and set(obj) <= allowed | set(syntax.arguments_keys)
        and obj.get("type", "function") == "function"
        for obj in objects
    )

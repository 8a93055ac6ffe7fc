"""The tools a logged request declared: compiled validators and canonical JSON, once per set.

A K2-Vendor-Verifier file draws each line's tools from a small pool and a conversation sends
the same tools every step, while compiling JSON Schemas and serializing tool lists were the
costliest parts of importing a line. Both are done once per distinct tool set.

Validating a call with `jsonschema` costs some 50 µs however small the schema. Schemas that
use only the common keywords (`type`, `properties`, `required`, `additionalProperties`,
`items`, `enum`, `const`, bounds and lengths) also get a plain-Python check that can only
accept: arguments it accepts are valid under Draft 2020-12, and everything else (and every
other schema) goes to `jsonschema`, which gives the verdict and the message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from traces.model import canonical_json
from traces.normalize import SchemaValidator
from traces.tools.schema_check import ArgumentChecker

_CACHE = 512
_ANY = "tool"
"""The name a single-schema checker knows its schema by."""


@dataclass(frozen=True)
class ToolSet:
    """One distinct `tools` list."""

    canonical: str
    """Its JSON as `traces.model.request_hash` writes it (sorted keys, compact, ASCII)."""
    validate: SchemaValidator | None
    """Validator of call arguments, with the harness's verdicts; None without tools."""


class ToolSets:
    """Tool sets seen so far, keyed by their canonical JSON, and the compiled schema of each
    distinct tool (bounded caches)."""

    def __init__(self) -> None:
        """Start with none."""
        self._sets: dict[str, ToolSet] = {}
        self._schemas: dict[str, tuple[ArgumentChecker, _Accept | None] | None] = {}

    def get(self, tools: Any) -> ToolSet:
        """The tool set of a request's `tools` value (a list, or None when absent)."""
        canonical = canonical_json(tools)
        found = self._sets.get(canonical)
        if found is None:
            if len(self._sets) >= _CACHE:
                self._sets.clear()
            validate = self._compile(tools) if isinstance(tools, list) and tools else None
            found = self._sets[canonical] = ToolSet(canonical, validate)
        return found

    def _compile(self, tools: list[Any]) -> SchemaValidator:
        """The harness's verdicts: unknown tools get none, known ones their first error."""
        checkers: dict[str, tuple[ArgumentChecker, _Accept | None]] = {}
        for spec in tools:
            function = spec.get("function") if isinstance(spec, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                continue
            checker = self._checker(function.get("parameters") or {})
            if checker is not None:
                checkers[function["name"]] = checker

        def validate(name: str, arguments: Any) -> tuple[bool | None, str | None]:
            found = checkers.get(name)
            if found is None:
                return None, None
            checker, accepts = found
            if accepts is not None and accepts(arguments):
                return True, None
            error = checker.check(_ANY, arguments)
            return error is None, error

        return validate

    def _checker(self, parameters: Any) -> tuple[ArgumentChecker, _Accept | None] | None:
        # Tool sets differ from line to line while the tools in them repeat: compiling a
        # schema (which validates it against the metaschema) costs milliseconds, so each
        # distinct schema is compiled once.
        key = json.dumps(parameters, sort_keys=True)
        if key not in self._schemas:
            if len(self._schemas) >= _CACHE:
                self._schemas.clear()
            try:
                checker = ArgumentChecker([{"function": {"name": _ANY, "parameters": parameters}}])
            except (SchemaError, TypeError, ValueError):
                # A broken schema in someone's log: its calls get no verdict.
                self._schemas[key] = None
            else:
                self._schemas[key] = (checker, fast_accept(parameters))
        return self._schemas[key]


# -- the fast check -----------------------------------------------------------------------------

_Accept = Callable[[Any], bool]
"""True only for arguments the schema accepts (False: ask `jsonschema`)."""

_KEYWORDS = frozenset(Draft202012Validator.VALIDATORS)
"""Keywords that validate; `jsonschema` ignores every other key (titles, descriptions, …)."""
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: _integer(v),
}
_OBJECT_KEYWORDS = ("properties", "required", "additionalProperties")


def _integer(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()  # 1.0 is an integer to JSON Schema
    return isinstance(value, int) and not isinstance(value, bool)


def _always(_: Any) -> bool:
    return True


def fast_accept(schema: Any) -> _Accept | None:
    """A check of `schema` that accepts only what Draft 2020-12 accepts; None when the
    schema uses a keyword it does not know (then `jsonschema` judges every call)."""
    if schema is True:
        return _always
    if not isinstance(schema, dict):
        return None
    checks: list[_Accept] = []
    for keyword, value in schema.items():
        if keyword not in _KEYWORDS or keyword in _OBJECT_KEYWORDS:
            continue
        make = _MAKERS.get(keyword)
        check = None if make is None else make(value)
        if check is None:
            return None
        checks.append(check)
    if any(keyword in schema for keyword in _OBJECT_KEYWORDS):
        check = _object(schema)
        if check is None:
            return None
        checks.append(check)
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _type(value: Any) -> _Accept | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n in _TYPES for n in names):
        return None
    tests = [_TYPES[n] for n in names]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(test(v) for test in tests)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON Schema compares scalars: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _enum(value: Any) -> _Accept | None:
    if not isinstance(value, list) or not all(_scalar(each) for each in value):
        return None
    return lambda v: _scalar(v) and any(_same(v, each) for each in value)


def _const(value: Any) -> _Accept | None:
    return _enum([value])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bound(test: Callable[[Any, Any], bool]) -> Callable[[Any], _Accept | None]:
    def make(limit: Any) -> _Accept | None:
        if not _number(limit):
            return None
        return lambda v: not _number(v) or test(v, limit)

    return make


def _length(of: type[Sized], test: Callable[[int, int], bool]) -> Callable[[Any], _Accept | None]:
    def make(limit: Any) -> _Accept | None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            return None
        return lambda v: not isinstance(v, of) or test(len(v), limit)

    return make


def _items(value: Any) -> _Accept | None:
    each = fast_accept(value)
    if each is None:
        return None
    return lambda v: not isinstance(v, list) or all(each(item) for item in v)


def _object(schema: dict[str, Any]) -> _Accept | None:
    """`properties`, `required` and `additionalProperties` together (the last depends on
    the first)."""
    if "patternProperties" in schema:
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list):
        return None
    if not all(isinstance(name, str) for name in required):
        return None
    named: dict[str, _Accept] = {}
    for name, subschema in properties.items():
        check = fast_accept(subschema)
        if check is None:
            return None
        named[name] = check
    others = None if extra is False else fast_accept(extra)
    if extra is not False and others is None:
        return None

    def accept(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name in required:
            if name not in v:
                return False
        for key, item in v.items():
            check = named.get(key, others)
            if check is None or not check(item):
                return False
        return True

    return accept


_MAKERS: dict[str, Callable[[Any], _Accept | None]] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(lambda v, limit: not v < limit),
    "maximum": _bound(lambda v, limit: not v > limit),
    "exclusiveMinimum": _bound(lambda v, limit: not v <= limit),
    "exclusiveMaximum": _bound(lambda v, limit: not v >= limit),
    "minLength": _length(str, lambda n, limit: n >= limit),
    "maxLength": _length(str, lambda n, limit: n <= limit),
    "minItems": _length(list, lambda n, limit: n >= limit),
    "maxItems": _length(list, lambda n, limit: n <= limit),
    "items": _items,
}

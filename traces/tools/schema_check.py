"""Validate tool-call arguments against a tool's JSON Schema and name the first bad field.

Validators are built once and reused: the chain tool alone is called 300 times per run and a
benchmark drives dozens of runs at once, so compiling a schema on every call would dominate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


class ArgumentChecker:
    """Validates the arguments of a fixed set of tools; built once per tool set."""

    def __init__(self, tool_specs: list[dict[str, Any]]) -> None:
        """Compile one validator per function tool in `tool_specs` (OpenAI tool dicts)."""
        self._validators: dict[str, Draft202012Validator] = {}
        for spec in tool_specs:
            function = spec["function"]
            self._validators[function["name"]] = _compile(function.get("parameters", {}))

    def knows(self, name: str) -> bool:
        """Whether `name` is one of the tools this checker was built for."""
        return name in self._validators

    def check(self, name: str, arguments: Any) -> str | None:
        """Return None when `arguments` fit tool `name`, else `"field: problem"`.

        Unknown tool names are reported too, so environments can defend against them
        even though the harness normally filters them out first.
        """
        validator = self._validators.get(name)
        if validator is None:
            return f"unknown tool {name!r}"
        return _first_error(validator, arguments)


def schema_error(schema: Mapping[str, Any], arguments: Any) -> str | None:
    """Return None when `arguments` satisfy `schema`, else `"field: problem"` for one error.

    For callers that hold arbitrary schemas (e.g. the harness recording schema validity);
    compiled validators are cached by the schema's canonical JSON text.
    """
    return _first_error(_cached_validator(json.dumps(schema, sort_keys=True)), arguments)


@lru_cache(maxsize=256)
def _cached_validator(schema_json: str) -> Draft202012Validator:
    return _compile(json.loads(schema_json))


def _compile(schema: Mapping[str, Any]) -> Draft202012Validator:
    # A broken schema is a bug in our own tool definitions: fail loudly at build time,
    # not as a confusing error blamed on the model later.
    Draft202012Validator.check_schema(schema)
    validator: Draft202012Validator = Draft202012Validator(schema)
    return validator


def _first_error(validator: Draft202012Validator, arguments: Any) -> str | None:
    # best_match is deterministic and prefers the shallowest, most specific error, which is
    # the one a model most needs to hear about.
    error: ValidationError | None = best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    return _describe(error)


def _describe(error: ValidationError) -> str:
    """Render one validation error as `field: problem`, naming the field even at the root."""
    path = ".".join(str(part) for part in error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        missing = [key for key in error.validator_value if key not in instance]
        if missing:
            return f"{_join(path, str(missing[0]))}: required property is missing"
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(key for key in instance if key not in known)
        if extra:
            allowed = ", ".join(sorted(known)) or "none"
            where = _join(path, str(extra[0]))
            return f"{where}: unexpected property (allowed: {allowed})"
    return f"{path or 'arguments'}: {error.message}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key

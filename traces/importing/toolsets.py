"""The tools a logged request declared: compiled validators and canonical JSON, once per set.

A K2-Vendor-Verifier file draws each line's tools from a small pool and a conversation sends
the same tools every step, while compiling JSON Schemas and serializing tool lists were the
costliest parts of importing a line. Both are done once per distinct tool set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
        self._schemas: dict[str, ArgumentChecker | None] = {}

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
        checkers: dict[str, ArgumentChecker] = {}
        for spec in tools:
            function = spec.get("function") if isinstance(spec, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                continue
            checker = self._checker(function.get("parameters") or {})
            if checker is not None:
                checkers[function["name"]] = checker

        def validate(name: str, arguments: Any) -> tuple[bool | None, str | None]:
            checker = checkers.get(name)
            if checker is None:
                return None, None
            error = checker.check(_ANY, arguments)
            return error is None, error

        return validate

    def _checker(self, parameters: Any) -> ArgumentChecker | None:
        # Tool sets differ from line to line while the tools in them repeat: compiling a
        # schema (which validates it against the metaschema) costs milliseconds, so each
        # distinct schema is compiled once.
        key = json.dumps(parameters, sort_keys=True)
        if key not in self._schemas:
            if len(self._schemas) >= _CACHE:
                self._schemas.clear()
            try:
                checker: ArgumentChecker | None = ArgumentChecker(
                    [{"function": {"name": _ANY, "parameters": parameters}}]
                )
            except (SchemaError, TypeError, ValueError):
                checker = None  # a broken schema in someone's log: its calls get no verdict
            self._schemas[key] = checker
        return self._schemas[key]

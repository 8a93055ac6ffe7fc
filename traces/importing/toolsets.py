"""The tools a logged request declared: compiled validators and canonical JSON, once per set.

A K2-Vendor-Verifier file draws each line's tools from a small pool and a conversation sends
the same tools every step, while compiling JSON Schemas and serializing tool lists were the
costliest parts of importing a line. Both are done once per distinct tool set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import SchemaError

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
        canonical = json.dumps(tools, sort_keys=True, separators=(",", ":"))
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


def pairing_extra(tool_set: ToolSet, tool_choice: Any) -> bytes:
    """What `request_hash` digests after the message hashes: tools and tool_choice, as
    `json.dumps({"tools": …, "tool_choice": …}, sort_keys=True, separators=(",", ":"))`."""
    choice = json.dumps(tool_choice, sort_keys=True, separators=(",", ":"))
    return f'{{"tool_choice":{choice},"tools":{tool_set.canonical}}}'.encode()


def pairing_hash(message_hashes: list[str], extra: bytes) -> str:
    """`traces.model.request_hash`, with the tools' JSON encoded once per tool set instead
    of once per step (a fifth of an import's time per step); the tests hold the two equal."""
    digest = hashlib.sha256("".join(h + "\n" for h in message_hashes).encode())
    digest.update(extra)
    return digest.hexdigest()

"""Build a value that validates against a JSON Schema (the parts tool schemas use).

Covers types (and type lists), const, enum, default, required/optional properties, $ref into
`$defs`/`definitions`, allOf/anyOf/oneOf, numeric bounds (inclusive and exclusive, draft 4
booleans too), multipleOf, string lengths, simple patterns and common formats, array item
counts and uniqueness. Values are readable and derived from the property name, because they
end up in traces people read.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from traces.sim.regex_gen import generate as generate_pattern

_FORMATS = {
    "date": "2025-11-20",
    "date-time": "2025-11-20T12:00:00Z",
    "time": "12:00:00Z",
    "email": "sim@example.com",
    "uri": "https://example.com/sim",
    "url": "https://example.com/sim",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}
_WORDS = ("alpha", "amber", "cobalt", "delta", "ember", "falcon", "harbor", "juniper")
_MAX_DEPTH = 8
_DEEP = 5
"""From this depth on, values take the way out a recursive schema offers (a null or scalar
branch, no array items beyond the minimum), so a linked list or a tree ends well before
`_MAX_DEPTH`, where a value could only be a placeholder that fits nothing."""
_SCALARS = frozenset({"null", "string", "number", "integer", "boolean"})


class SchemaValues:
    """Generates values for one root schema (which anchors `$ref` resolution)."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random, *, full: bool = False) -> None:
        """`full` also fills optional properties (used for a second, different attempt)."""
        self.root = root
        self.rng = rng
        self.full = full

    def value(self, schema: Any, name: str = "value", depth: int = 0) -> Any:
        """A value valid against `schema`; `name` (the property name) flavours strings."""
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return f"{name}-value" if schema is not False else None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        if "allOf" in schema and isinstance(schema["allOf"], list):
            return self.value(self._merge(schema), name, depth + 1)
        for key in ("oneOf", "anyOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self._branch(branches, depth), name, depth + 1)
        kind = _type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < _MAX_DEPTH:
            ref: str = schema["$ref"]
            target: Any = self.root
            if not ref.startswith("#"):
                return {}
            for part in ref.lstrip("#").split("/"):
                if part:
                    part = part.replace("~1", "/").replace("~0", "~")
                    target = target.get(part, {}) if isinstance(target, Mapping) else {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
            seen += 1
        return schema

    def _branch(self, branches: list[Any], depth: int) -> Any:
        """The anyOf/oneOf branch to fill: a non-null one near the top (a null is valid but
        says nothing in a trace), a scalar one deep down (it ends a recursion)."""
        shapes = [b for b in branches if isinstance(b, Mapping)]
        if depth >= _DEEP:
            ending = (b for b in shapes if "$ref" not in b and _type_of(b) in _SCALARS)
            chosen = next(ending, None)
        else:
            chosen = next((b for b in shapes if _type_of(self._resolve(b)) != "null"), None)
        return chosen if chosen is not None else branches[0]

    def _merge(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if not isinstance(part, Mapping):
                continue
            for key, value in self._resolve(part).items():
                if key == "properties" and isinstance(value, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        names = list(required)
        optional = [key for key in properties if key not in required]
        if self.full:
            names += optional
        minimum = schema.get("minProperties")
        if isinstance(minimum, int):
            names += optional[: max(0, minimum - len(names))]
        result: dict[str, Any] = {}
        for key in dict.fromkeys(names):
            sub = properties.get(key, {"type": "string"})
            if key not in required and isinstance(sub, Mapping) and "default" in sub:
                result[key] = sub["default"]
            else:
                result[key] = self.value(sub, key, depth + 1)
        return result

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = schema.get("minItems", 0)
        low = low if isinstance(low, int) else 0
        high = schema.get("maxItems")
        # One item at least near the top (an empty list shows nothing), the minimum deep down.
        wanted = max(low, 1) if depth < _DEEP else max(low, 0)
        count = wanted if not isinstance(high, int) else min(wanted, high)
        prefix = schema.get("prefixItems")
        items = schema.get("items", {"type": "string"})
        singular = name[:-1] if name.endswith("s") and len(name) > 1 else name
        out: list[Any] = []
        for index in range(count):
            if isinstance(prefix, list) and index < len(prefix):
                sub = prefix[index]
            elif isinstance(items, list):  # draft 4-7 tuple form
                sub = items[index] if index < len(items) else {}
            else:
                sub = items
            value = self.value(sub, singular, depth + 1)
            if schema.get("uniqueItems"):
                for _ in range(8):
                    if value not in out:
                        break
                    value = self.value(sub, singular, depth + 1)
            out.append(value)
        return out

    def _bounds(self, schema: Mapping[str, Any], step: float) -> tuple[float | None, float | None]:
        low, high = _number(schema.get("minimum")), _number(schema.get("maximum"))
        ex_low = _number(schema.get("exclusiveMinimum"))
        ex_high = _number(schema.get("exclusiveMaximum"))
        # Draft 4 spells exclusivity as booleans next to minimum/maximum.
        if schema.get("exclusiveMinimum") is True:
            low, ex_low = None, low
        if schema.get("exclusiveMaximum") is True:
            high, ex_high = None, high
        if ex_low is not None:
            low = max(low if low is not None else -math.inf, ex_low + step)
        if ex_high is not None:
            high = min(high if high is not None else math.inf, ex_high - step)
        return low, high

    def _integer(self, schema: Mapping[str, Any]) -> int:
        lo, hi = self._bounds(schema, 1)
        low = math.ceil(lo) if lo is not None else (math.floor(hi) - 9 if hi is not None else 1)
        high = math.floor(hi) if hi is not None else low + 9
        if high < low:
            high = low
        # Small values read better in a trace; stay near the low end.
        value = self.rng.randint(low, min(high, low + 9))
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            value = math.ceil(value / step) * step
            if value > high:
                value = math.ceil(low / step) * step
        return value

    def _number(self, schema: Mapping[str, Any]) -> float | int:
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            lo, hi = self._bounds(schema, step)
            start = math.ceil((lo if lo is not None else step) / step)
            value = start * step
            return int(value) if float(value).is_integer() else value
        lo, hi = self._bounds(schema, 1e-6)
        if lo is not None and hi is not None:
            return round(lo + (hi - lo) * self.rng.uniform(0.25, 0.75), 6)
        if lo is not None:
            return lo + round(self.rng.uniform(0.5, 9.5), 2)
        if hi is not None:
            return hi - round(self.rng.uniform(0.5, 9.5), 2)
        return round(self.rng.uniform(0.5, 9.5), 2)

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        text: str | None = None
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            text = generate_pattern(pattern, self.rng)
        if text is None and isinstance(schema.get("format"), str):
            text = _FORMATS.get(schema["format"])
        if text is None:
            if "default" in schema and isinstance(schema["default"], str):
                text = schema["default"]
            else:
                text = f"{name}-{self.rng.choice(_WORDS)}"
        low = schema.get("minLength")
        high = schema.get("maxLength")
        if isinstance(low, int) and len(text) < low:
            text = text + "x" * (low - len(text))
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        return text


def _number(value: Any) -> float | None:
    """`value` as a float when it is a JSON number (booleans are not numbers here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
        kind = next((k for k in kinds if k != "null"), kinds[0] if kinds else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(key in schema for key in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
        return "number"
    return "string"


def example_arguments(
    parameters: Mapping[str, Any] | None, rng: random.Random, *, full: bool = False
) -> dict[str, Any]:
    """Arguments object for a tool whose `parameters` schema is given (None/{} -> {})."""
    if not parameters:
        return {}
    value = SchemaValues(parameters, rng, full=full).value(parameters, "arguments")
    return value if isinstance(value, dict) else {}

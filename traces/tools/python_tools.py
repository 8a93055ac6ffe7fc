"""Python tools: `module:function` references offered to the model as function tools.

The function's typed signature becomes the tool's JSON Schema through a pydantic model built
from it, its docstring the description (the first paragraph; an `Args:` section describes the
parameters). Arguments are validated by that model before the call, so the function receives
the types it declared; what it returns goes back as text (a string as is, anything else as
JSON); an exception it raises becomes a `crashed` result naming the exception and the line
that raised it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_json

from traces.model import ToolErrorKind
from traces.tools.base import ToolOutcome

_REFERENCE = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<function>[A-Za-z_]\w*)$")
_ARG_LINE = re.compile(r"^\s+(?P<name>\w+)(?:\s*\([^)]*\))?:\s*(?P<text>.+)$")


class PythonToolError(ValueError):
    """A reference that cannot become a tool; the message says why, in one line."""


@dataclass(frozen=True)
class PythonTool:
    """One importable function and the function-tool definition made from its signature."""

    reference: str
    function: Callable[..., Any]
    arguments: type[BaseModel]
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        """The tool name the model calls: the function's own name."""
        return str(self.spec["function"]["name"])

    async def call(self, arguments: dict[str, Any], timeout_s: float) -> ToolOutcome:
        """Validate `arguments`, run the function (a sync one in a worker thread) within
        `timeout_s`, and turn what it returned or raised into an outcome."""
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or "arguments"
            return ToolOutcome.failure(
                ToolErrorKind.INVALID_ARGUMENTS,
                f"invalid arguments for {self.name}: {field}: {first['msg']}",
            )
        values = {name: getattr(parsed, name) for name in self.arguments.model_fields}
        try:
            async with asyncio.timeout(timeout_s):
                if inspect.iscoroutinefunction(self.function):
                    result = await self.function(**values)
                else:
                    # A thread, so a slow function cannot stall the other runs' event loop;
                    # on timeout the thread is abandoned (Python cannot kill it), the run goes on.
                    result = await asyncio.to_thread(self.function, **values)
        except TimeoutError:
            return ToolOutcome.failure(
                ToolErrorKind.TIMEOUT, f"{self.name} did not finish within {timeout_s:g} s"
            )
        except Exception as exc:  # the tool's own bug or refusal: the model hears it
            return ToolOutcome.failure(ToolErrorKind.CRASHED, exception_line(exc))
        return ToolOutcome(output=result if isinstance(result, str) else _json(result))


def exception_line(exc: BaseException) -> str:
    """`Type: message (file.py:LINE)`: the exception and the line of the frame that raised
    it, the evidence a crashed tool leaves."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"


def _first_line(exc: BaseException) -> str:
    # pydantic's schema errors run to several lines of advice; the first names the type.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _json(value: Any) -> str:
    try:
        return to_json(value).decode()
    except Exception:  # not JSON-able: the model still gets something readable
        return repr(value)


def load_python_tool(reference: str, base_dir: Path) -> PythonTool:
    """Import `module:function` (modules next to the task file first) and build its tool.

    Raises PythonToolError when the reference is malformed, does not import, names nothing
    callable, or has a signature that cannot become a JSON Schema.
    """
    function = import_reference(reference, base_dir)
    arguments = _arguments_model(function)
    try:
        schema = arguments.model_json_schema()
    except Exception as exc:  # pydantic raises several types for a type with no schema
        raise PythonToolError(
            f"{reference}: signature has no JSON Schema ({_first_line(exc)})"
        ) from None
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    summary, described = _docstring(function)
    if not summary:
        raise PythonToolError(f"{reference}: has no docstring to describe the tool")
    for name, text in described.items():
        prop = schema.get("properties", {}).get(name)
        if isinstance(prop, dict) and "description" not in prop:
            prop["description"] = text
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    spec = {
        "type": "function",
        "function": {
            "name": reference.rsplit(":", 1)[1],
            "description": summary,
            "parameters": schema,
        },
    }
    return PythonTool(reference=reference, function=function, arguments=arguments, spec=spec)


def import_reference(reference: str, base_dir: Path) -> Callable[..., Any]:
    """The function `module:function` names (modules beside `base_dir` first); raise
    PythonToolError when the reference is malformed, does not import or names no function."""
    match = _REFERENCE.match(reference)
    if match is None:
        raise PythonToolError(f"{reference!r} is not of the form module:function")
    return _import(match["module"], match["function"], base_dir)


def _import(module_name: str, attribute: str, base_dir: Path) -> Callable[..., Any]:
    # The task's folder goes first on the path only while importing: a tools module shipped
    # next to the task file is found wherever `traces` runs from.
    added = str(base_dir)
    sys.path.insert(0, added)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PythonToolError(
            f"{module_name}:{attribute}: cannot import {module_name} ({exception_line(exc)})"
        ) from None
    finally:
        if added in sys.path:
            sys.path.remove(added)
    _check_origin(module, module_name, attribute, base_dir)
    function = getattr(module, attribute, None)
    if function is None:
        raise PythonToolError(f"{module_name}:{attribute}: {module_name} has no {attribute}")
    if not callable(function) or isinstance(function, type):
        raise PythonToolError(f"{module_name}:{attribute}: is not a function")
    return function  # type: ignore[no-any-return]


def _check_origin(module: Any, module_name: str, attribute: str, base_dir: Path) -> None:
    """Refuse a module beside the task file shadowed by one of the same name imported before
    (another task's `tools.py`, an installed package): its functions would be the wrong ones."""
    relative = Path(*module_name.split("."))
    beside = [base_dir / f"{relative}.py", base_dir / relative / "__init__.py"]
    existing = [path.resolve() for path in beside if path.is_file()]
    loaded = getattr(module, "__file__", None)
    if existing and (loaded is None or Path(loaded).resolve() not in existing):
        raise PythonToolError(
            f"{module_name}:{attribute}: {module_name} was already imported from {loaded}, "
            f"not from {existing[0]}; give the module beside the task another name"
        )


def _arguments_model(function: Callable[..., Any]) -> type[BaseModel]:
    name = f"{getattr(function, '__module__', '')}:{getattr(function, '__name__', '')}"
    try:
        signature = inspect.signature(function)
        hints = get_type_hints(function)
    except Exception as exc:
        raise PythonToolError(f"{name}: cannot read its signature ({_first_line(exc)})") from None
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise PythonToolError(f"{name}: *{parameter.name} cannot become a schema field")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise PythonToolError(f"{name}: {parameter.name} is positional-only")
        if parameter.name not in hints:
            raise PythonToolError(f"{name}: parameter {parameter.name} has no type annotation")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], Field(default))
    try:
        return create_model(
            f"{getattr(function, '__name__', 'tool')}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
    except Exception as exc:
        raise PythonToolError(
            f"{name}: signature has no JSON Schema ({_first_line(exc)})"
        ) from None


def _docstring(function: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph (one line) and `Args:` descriptions by name."""
    text = inspect.getdoc(function) or ""
    summary = " ".join(text.split("\n\n", 1)[0].split())
    described: dict[str, str] = {}
    in_args = False
    for line in text.splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            match = _ARG_LINE.match(line)
            if match:
                described[match["name"]] = match["text"].strip()
            elif line.strip() and not line.startswith(" "):
                in_args = False
    return summary, described

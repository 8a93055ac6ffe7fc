"""`analyzer.option_values`: the converter that spares most commands pydantic gives, for every
parameter of every command, the value or the error typer's own converter gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer._coercion import build_runtime_param

from analyzer.cli import COMMANDS, app, load_command
from analyzer.option_values import FastCoercion, FastCommand


def _outcome(convert: Any, value: Any, param: Any, ctx: typer.Context) -> tuple[str, Any]:
    try:
        return "value", convert(value, param=param, ctx=ctx)
    except Exception as err:  # the type and words of the refusal must match too
        return type(err).__name__, str(err)


def _inputs(param: Any, tmp_path: Path) -> list[Any]:
    (tmp_path / "file.txt").write_text("x")
    words = [
        "5", "-3", "+7", "007", " 5", "1_000", "5.0", "0.5", "nan", "inf", "-0",
        "99999999999999999999", "", "x", "json", "JSON", "Table", "csv ", "error", "warning",
        "provider", "last", "research", "\x1b[31m", str(tmp_path), str(tmp_path / "file.txt"),
        str(tmp_path / "missing" / "t.duckdb"), "-",
    ]  # fmt: skip
    values: list[Any] = [None, param.default, *words, 0, 1, 2.5, float("nan"), True]
    values += [Path(str(tmp_path)), tmp_path / "file.txt", (), ("a", "b"), ["5", "x"], ("json",)]
    return [v for v in values if not callable(v)]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_parameter_converts_as_typer_does(name: str, tmp_path: Path) -> None:
    command = load_command(name)
    assert isinstance(command, FastCommand)
    ctx = typer.Context(command)
    params = [p for p in command.get_params(ctx) if hasattr(p, "type_descriptor")]
    assert params
    for param in params:
        if param.type_descriptor.is_file:  # typer's converter would open the files
            continue
        fast = FastCoercion(param)
        full = build_runtime_param(param.type_descriptor)
        for value in _inputs(param, tmp_path):
            got = _outcome(fast.coerce, value, param, ctx)
            want = _outcome(full.coerce, value, param, ctx)
            assert got == want, (name, param.name, value)


def test_the_groups_options_and_every_commands_convert_without_typers_converter() -> None:
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    converters = [getattr(p, "_runtime_param", None) for p in group.get_params(ctx)]
    assert converters and all(isinstance(c, FastCoercion) for c in converters)
    for name in COMMANDS:
        command = load_command(name)
        params = command.get_params(typer.Context(command))
        assert all(isinstance(p._runtime_param, FastCoercion) for p in params)  # type: ignore[attr-defined]

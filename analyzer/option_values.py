"""Converting option values without pydantic when nothing needs converting.

typer (0.29) converts every option and argument that is not a boolean flag with a pydantic
`TypeAdapter`, built when the command line is parsed, for the defaults too: `traces runs`
with no option imported pydantic (55-65 ms of CPU, a quarter of the command) and built nine
adapters to return `None`, `50` and `OutputFormat.table` unchanged. `fast_coercion` puts in
front of each parameter's converter one that handles what needs no pydantic: a missing
value, a default that already has the declared type, a string for a `str`, a choice, a path
or a plain decimal integer. Anything else, and anything it would refuse, goes to typer's own
converter, so values and error messages are exactly typer's (`tests/test_option_values.py`
compares the two on every parameter of every command).

It uses typer's parameter internals (`_runtime_param`, `type_descriptor`): a typer without
them is left alone, and then only costs what it did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

from typer.core import TyperCommand

if TYPE_CHECKING:
    from typer import _click

_PLAIN_INT = re.compile(r"[+-]?[0-9]{1,18}")
"""Integers every converter reads the same way: sign and ASCII digits (pydantic also takes
spaces, underscores and `5.0`; those go to it)."""


class _Unhandled(Exception):
    """The value needs typer's converter (to convert it, or to word the error)."""


class FastCoercion:
    """A parameter's converter: the cases above here, typer's converter for the rest."""

    def __init__(self, param: Any) -> None:
        """For `param`, a typer parameter whose converter is not built yet."""
        self._param = param
        self._full: Any = None

    def coerce(self, value: Any, param: Any, ctx: _click.Context) -> Any:
        """The converted value, as typer's `RuntimeParam.coerce` returns it."""
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None
        descriptor = self._param.type_descriptor
        try:
            if descriptor.parameter_info.parser is not None or descriptor.is_file:
                raise _Unhandled
            if multiple or descriptor.is_list:
                if isinstance(value, str) or not isinstance(value, list | tuple):
                    raise _Unhandled
                (item,) = get_args(descriptor.annotation) or (None,)
                if not descriptor.is_list or get_origin(item) is not None:
                    raise _Unhandled
                return [_leaf(item, element, descriptor, param, ctx) for element in value]
            return _leaf(descriptor.annotation, value, descriptor, param, ctx)
        except _Unhandled:
            return self._typer_converter().coerce(value, param=param, ctx=ctx)

    def _typer_converter(self) -> Any:
        if self._full is None:
            from typer._coercion import build_runtime_param

            self._full = build_runtime_param(self._param.type_descriptor)
        return self._full


def _leaf(annotation: Any, value: Any, descriptor: Any, param: Any, ctx: _click.Context) -> Any:
    """One value converted as typer's converter would, or `_Unhandled`."""
    info = descriptor.parameter_info
    if not isinstance(annotation, type) or get_origin(annotation) is not None:
        raise _Unhandled  # Literal, unions, tuples, generics
    if issubclass(annotation, Enum):
        from typer._param_types import coerce_cli_choice

        try:
            return coerce_cli_choice(
                value, choices=list(annotation), case_sensitive=info.case_sensitive, ctx=ctx
            )
        except ValueError:
            raise _Unhandled from None
    if annotation is str:
        if type(value) is not str:
            raise _Unhandled
        return value
    if annotation is int or annotation is float:
        if info.clamp:
            raise _Unhandled
        if type(value) is str and annotation is int and _PLAIN_INT.fullmatch(value):
            number: Any = int(value)
        elif type(value) is annotation and math.isfinite(value):
            number = value
        else:
            raise _Unhandled
        if (info.min is not None and number < info.min) or (
            info.max is not None and number > info.max
        ):
            raise _Unhandled
        return number
    if issubclass(annotation, Path):
        from typer._param_types import coerce_cli_path

        path_type = info.path_type or annotation
        if not (isinstance(path_type, type) and issubclass(path_type, Path)):
            raise _Unhandled
        if isinstance(value, str):
            value = path_type(value)  # what pydantic's Path does with any string
        elif not isinstance(value, path_type):
            raise _Unhandled
        try:
            return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
        except Exception:
            raise _Unhandled from None  # typer words the error, about the value as given
    raise _Unhandled


def fast_coercion(params: Iterable[_click.Parameter]) -> None:
    """Give each typer parameter in `params` the converter above (see the module), unless
    it has one already."""
    for param in params:
        if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = FastCoercion(param)  # type: ignore[attr-defined]


class FastCommand(TyperCommand):
    """A typer command whose parameters (its `--help` too) convert values as above."""

    def get_params(self, ctx: _click.Context) -> list[_click.Parameter]:
        """The parameters, as the command's parser and callbacks get them."""
        params = super().get_params(ctx)
        fast_coercion(params)
        return params

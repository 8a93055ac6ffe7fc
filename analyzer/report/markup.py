"""HTML and SVG built only from escaped parts: the one way the report writes markup.

Model output, tool output, evidence, provider labels and task names all end up in the report,
and any of them may hold `<script>` or a quote that closes an attribute. So no module of the
report concatenates markup by hand: `element` escapes every text child and every attribute
value, and only a `Markup` (something this module produced) passes through unchanged.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9:-]*$")
"""Tag and attribute names: fixed by the code, checked anyway so a typo cannot inject."""

VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "col", "wbr"})
"""HTML elements that have no closing tag."""


class Markup(str):
    """Text that is already safe markup. Only this module and trusted constants (the style
    sheet) create it; wrapping untrusted text in it would defeat the escaping."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """`value` as markup: unchanged if it already is, else its text with `& < > " '` escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _number(value: float) -> str:
    # SVG coordinates: one decimal is finer than a pixel, and keeps the file small.
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _children(children: Iterable[object]) -> Iterable[Markup]:
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, Markup):
            yield child
        elif isinstance(child, str):
            yield escape(child)
        elif isinstance(child, bool):
            yield escape(str(child))
        elif isinstance(child, int | float):
            yield Markup(_number(float(child)) if isinstance(child, float) else str(child))
        elif isinstance(child, Iterable):
            yield from _children(child)
        else:
            yield escape(child)


def _attribute(name: str, value: object) -> str:
    # Python spells `class` as `class_` and `aria-label` as `aria_label`.
    attr = name.rstrip("_").replace("_", "-")
    if not _NAME.match(attr):
        raise ValueError(f"not an attribute name: {name!r}")
    if value is True:
        return f" {attr}"
    if isinstance(value, float):
        return f' {attr}="{_number(value)}"'
    return f' {attr}="{escape(value)}"'


def element(tag: str, *children: object, **attributes: object) -> Markup:
    """`<tag attributes>children</tag>`: text children and attribute values escaped.

    Attributes that are None or False are left out, True ones are written bare. Children may
    be strings, numbers, Markup, None (skipped) or iterables of those.
    """
    if not _NAME.match(tag):
        raise ValueError(f"not a tag name: {tag!r}")
    attrs = "".join(
        _attribute(name, value)
        for name, value in attributes.items()
        if value is not None and value is not False
    )
    if tag in VOID:
        if children:
            raise ValueError(f"<{tag}> cannot have children")
        return Markup(f"<{tag}{attrs}>")
    return Markup(f"<{tag}{attrs}>{''.join(_children(children))}</{tag}>")


def concat(*parts: object) -> Markup:
    """Several children as one piece of markup (text escaped, as in `element`)."""
    return Markup("".join(_children(parts)))

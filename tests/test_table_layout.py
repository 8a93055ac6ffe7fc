"""Tables are laid out by `analyzer.output` itself, as rich's `Table` laid them out before
(rich's console and table modules cost every reading command 30 ms to import): the same text,
character for character, on tables of every kind of cell, checked against rich itself."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analyzer import output
from analyzer.output import OutputFormat, emit_rows

WORDS = [
    "run", "sim", "completed", "a", "kimi-k2-thinking", "moonshotai/kimi-k2-thinking",
    "中文", "日本語のテキスト", "e\u0301te\u0301", "👍", "👨\u200d👩\u200d👧", "❤\ufe0f", "x" * 45,
    "ends with spaces   ", "  leads", "tab\there", "two\nlines", "three\nline\ncell", "[bold]x",
    "esc\x1bape", "", "trailing\n", "\nleading", "a\u200bb",
]  # fmt: skip


def _value(rng: random.Random, kind: str) -> Any:
    if rng.random() < 0.15:
        return None
    if kind == "int":
        return rng.choice([0, 7, 12345, -3, 10**12])
    if kind == "float":
        return rng.choice([0.5, 1234.5678, 1e7, float("nan"), 3.0])
    if kind == "other":
        return rng.choice(
            [True, Decimal("1.50"), date(2024, 5, 6), datetime(2024, 5, 6, 7, 8, 9),
             timedelta(seconds=90), [1, "a"], {"k": None}]
        )  # fmt: skip
    return " ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 1, 2, 5, 12])))


def _case(seed: int) -> tuple[list[dict[str, Any]], list[str], list[str], list[str]]:
    rng = random.Random(seed)
    kinds = [
        rng.choice(["int", "float", "text", "text", "other"]) for _ in range(rng.randint(1, 9))
    ]
    names = [f"{rng.choice(WORDS[:8])[:10]}_{i}" for i in range(len(kinds))]
    rows = [
        {name: _value(rng, kind) for name, kind in zip(names, kinds, strict=True)}
        for _ in range(rng.randint(0, 6))
    ]
    keep = names[:1]
    droppable = rng.sample(names, k=rng.randint(0, len(names)))
    return rows, names, keep, droppable


def _rich_layout(
    rows: list[dict[str, Any]],
    cols: list[str],
    keep: Sequence[str],
    droppable: Sequence[str],
    wide: bool,
    title: str | None,
) -> str:
    """What `emit_rows` printed when rich's Table laid tables out (its code, to a buffer)."""
    headers = {c: Text(output.printable(c, keep="")) for c in cols}
    cells = {
        c: [
            Text(output.table_cell(r.get(c)), style="dim" if r.get(c) is None else "") for r in rows
        ]
        for c in cols
    }
    plain = {c: [cell.plain for cell in cells[c]] for c in cols}
    kinds = {c: output._column_kind([r.get(c) for r in rows], plain[c]) for c in cols}
    widths = {
        c: max([output._width(headers[c].plain), *map(output._width, plain[c])]) for c in cols
    }
    natural = sum(widths.values()) + 2 * max(len(cols) - 1, 0)
    buffer = io.StringIO()

    def console(width: int | None) -> Console:
        return Console(file=buffer, soft_wrap=False, width=width)

    space = console(natural if wide else None).width
    shown, sizes = (cols, widths) if wide else output._fit(widths, kinds, space, keep, droppable)
    needed = sum(sizes[c] for c in shown) + 2 * max(len(shown) - 1, 0)
    chosen = console(natural if wide else (needed if needed > space else None))
    table = Table(
        title=Text(output.printable(title, keep="")) if title else None,
        box=None,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=False,
        show_edge=False,
        header_style="bold",
    )
    for col in shown:
        table.add_column(
            headers[col],
            width=sizes[col],
            no_wrap=True,
            overflow="ellipsis",
            justify="right" if kinds[col] == "number" else "left",
        )
    for index in range(len(rows)):
        table.add_row(*(cells[c][index] for c in shown))
    chosen.print(table, crop=not wide)
    return buffer.getvalue()


@pytest.mark.parametrize("columns", [30, 80, 100, 200])
def test_tables_are_laid_out_as_rich_laid_them_out(
    columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    compared = 0
    for seed in range(150):
        rows, names, keep, droppable = _case(seed)
        wide = seed % 5 == 0
        title = [None, "dialects", "a title far longer than the narrowest tables " * 3][seed % 3]
        emit_rows(rows, OutputFormat.table, columns=names, keep=keep, droppable=droppable,
                  wide=wide, title=title)  # fmt: skip
        got = capsys.readouterr().out
        assert got == _rich_layout(rows, names, keep, droppable, wide, title), seed
        compared += bool(rows)
    assert compared > 100


def test_styles_on_a_terminal_are_bold_headers_and_dim_missing_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm")
    emit_rows([{"id": "r1", "n": None}], OutputFormat.table)
    assert capsys.readouterr().out == "\x1b[1mid\x1b[0m  \x1b[1mn\x1b[0m\nr1  \x1b[2m–\x1b[0m\n"
    monkeypatch.setenv("TERM", "dumb")  # rich's rule: no styles on a dumb terminal
    emit_rows([{"id": "r1", "n": None}], OutputFormat.table)
    assert capsys.readouterr().out == "id  n\nr1  –\n"

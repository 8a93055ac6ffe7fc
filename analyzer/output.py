"""Printing results: tables for people, JSON / CSV for programs (data always to stdout).

The three formats make different promises:

- JSON is exact: floats in their shortest round-trip form, decimals and big integers with
  every digit (as JSON numbers), timestamps in ISO 8601 with microseconds and their offset,
  intervals as ISO 8601 durations, BLOBs as DuckDB writes them (`\\xNN` escapes), UUIDs as
  text, lists and structs nested. NaN and infinities, which JSON cannot hold, are the strings
  `"NaN"`, `"Infinity"`, `"-Infinity"`. Control characters are escaped by JSON itself.
- CSV carries the same values as text (lists and structs as JSON), except that control
  characters other than tab, newline and carriage return (which quoting keeps safe) are
  written as visible `\\xNN` / `\\uNNNN` escapes, so a CSV printed to a terminal cannot drive
  it: JSON is the format that keeps such text byte for byte.
- Tables are for people: numbers rounded, long free text cut with an ellipsis, identifiers
  and numbers never broken across lines, NULL shown as `–`, control characters escaped and
  markup-like text (`[bold]`) printed literally.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any
from uuid import UUID

# Only rich's character widths (5 ms to import): tables are laid out here, as rich's
# `Table` laid them out, for the console and table modules cost the reading commands 30 ms.
from rich.cells import cell_len, set_cell_size

from traces.one_line import one_line as flatten

if TYPE_CHECKING:
    from rich.console import Console


class OutputFormat(StrEnum):
    """How listings are printed."""

    table = "table"
    json = "json"
    csv = "csv"


NULL_CELL = "–"
"""What a table shows for a missing value (NULL / None)."""

PIPED_WIDTH = 200
"""Table width when stdout is not a terminal and $COLUMNS is unset (pipes, files)."""

# Characters that move the cursor, clear the screen, switch character sets, reorder text
# (bidirectional overrides) or end lines in some readers: C0 and C1 controls, DEL, the bidi
# and line/paragraph separators and the BOM.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
# What `json.dumps(ensure_ascii=False)` leaves raw: everything above but C0 (it escapes those).
_JSON_RAW_CONTROL = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "\t\n") -> str:
    """`text` with control characters as visible escapes (`\\x1b`), except those in `keep`.

    Everything recorded (labels, model text, errors) goes through this before it reaches a
    terminal, so a recorded escape sequence is shown rather than obeyed.
    """
    return _CONTROL.sub(lambda m: m[0] if m[0] in keep else _escape_char(m[0]), text)


def one_line(text: str) -> str:
    """`text` on one line (`traces.one_line`, never cut), control characters escaped: the
    terminal's variant, as every quoted text may hold an escape sequence."""
    return printable(flatten(text, limit=None), keep="")


def blob_text(value: bytes | bytearray | memoryview) -> str:
    """A BLOB as DuckDB writes it: printable ASCII as is, other bytes as `\\xNN`
    (`'…'::BLOB` reads it back)."""
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x5C, 0x27) else f"\\x{b:02X}"
        for b in bytes(value)
    )


def iso_duration(value: timedelta) -> str:
    """An interval as an ISO 8601 duration (`P1DT2H0.5S`; DuckDB's months arrive as 30 days)."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        clock += f"{seconds}{fraction}S"
    text = (f"{value.days}D" if value.days else "") + (f"T{clock}" if clock else "")
    return f"{sign}P{text}" if text else "PT0S"


def _scalar_text(value: Any) -> str | None:
    """The exact text of a value JSON has no type for; None when JSON holds it as is."""
    if isinstance(value, datetime | time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return blob_text(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return None


# Decimals go into the JSON text as numbers with every digit: `json` writes them as strings
# holding this token and their index, which are then replaced by the digits. The token is
# random, so no recorded text can collide with it.
_EXACT_TOKEN = f"exact-{secrets.token_hex(8)}-"
_EXACT = re.compile(f'"{_EXACT_TOKEN}(\\d+)"')


_AS_THEY_ARE = frozenset({str, int, bool, type(None)})
"""Types `json` writes exactly, tested first by identity: most values of every row are."""


def _plain(value: Any, exact: list[str]) -> Any:
    kind = type(value)
    if kind in _AS_THEY_ARE:
        return value
    if kind is dict:
        return {
            (k if type(k) is str else _key(k)): (v if type(v) in _AS_THEY_ARE else _plain(v, exact))
            for k, v in value.items()
        }
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        exact.append(str(value))
        return f"{_EXACT_TOKEN}{len(exact) - 1}"
    if isinstance(value, float):
        text = _scalar_text(value)
        return value if text is None else text
    if isinstance(value, dict):
        return {_key(k): _plain(v, exact) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, exact) for v in value]
    text = _scalar_text(value)
    return text if text is not None else str(value)


def _key(key: Any) -> str | int | float | bool | None:
    # JSON object keys are strings; `json` itself turns numbers, booleans and null into
    # theirs, anything else (a DuckDB MAP keyed by dates, decimals, structs) becomes its text.
    if key is None or isinstance(key, str | int | bool):
        return key
    if isinstance(key, float) and math.isfinite(key):
        return key
    if isinstance(key, Decimal):
        return str(key)
    text = _scalar_text(key)
    if text is not None:
        return text
    return json.dumps(_plain(key, []), ensure_ascii=False, sort_keys=True)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """Exact JSON text of query results (see the module docstring for each type)."""
    exact: list[str] = []
    text = json.dumps(_plain(value, exact), ensure_ascii=False, indent=indent, allow_nan=False)
    if exact:
        text = _EXACT.sub(lambda m: exact[int(m[1])], text)
    # These can only occur inside strings, where `\uNNNN` is the same character: lossless,
    # and a terminal showing the JSON is not driven by C1 controls or reordered by bidi marks.
    return _JSON_RAW_CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def _stdout_width() -> int | None:
    # $COLUMNS, when set, is obeyed (rich reads it); a terminal is measured; anything else
    # (a pipe, a file) gets a wide fixed width rather than rich's 80.
    if os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty():
        return None
    return PIPED_WIDTH


def stdout_console(width: int | None = None) -> Console:
    """A console on stdout: never soft-wraps, `width` columns wide if given (else the
    terminal's, $COLUMNS, or 200 when piped)."""
    from rich.console import Console

    return Console(file=sys.stdout, soft_wrap=False, width=width or _stdout_width())


def stderr_console() -> Console:
    """The console for notes, summaries and progress on stderr.

    Not a terminal (CI logs, `2> file`): lines are never wrapped, so a one-line summary stays
    one line. Markup and highlighting are off: what is printed is mostly recorded data
    (labels, errors), which must print literally; escape it with `printable` first.
    """
    from rich.console import Console

    tty = sys.stderr.isatty()
    return Console(
        file=sys.stderr,
        soft_wrap=not tty,
        markup=False,
        highlight=False,
        width=None if tty else 100_000,
    )


def note(message: str) -> None:
    """One line on stderr (a note, a summary), control characters escaped."""
    sys.stderr.write(printable(message, keep="") + "\n")


def csv_cell(value: Any) -> str:
    """The exact text of a value in a CSV cell (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list | tuple | set | frozenset):
        return to_json(value, indent=None)
    text = _scalar_text(value)
    return printable(text if text is not None else str(value), keep="\t\n\r")


def table_cell(value: Any) -> str:
    """A value as people read it in a table: rounded, escaped (missing: `NULL_CELL`)."""
    if value is None:
        return NULL_CELL
    # The common cells first, as the general path below makes them (a table of every run of
    # a million-step store has 350,000 cells: the type tests were a third of printing it).
    kind = type(value)
    if kind is str:
        return printable(value.replace("\r\n", "\n").expandtabs(4), keep="\n")
    if kind is int:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, dict | list | tuple | set | frozenset):
        return to_json(value, indent=None)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, timedelta):
        return str(value)
    text = _scalar_text(value)
    if text is None:
        # Lines stay lines; tabs become spaces so widths are what the terminal shows.
        text = str(value).replace("\r\n", "\n").expandtabs(4)
    return printable(text, keep="\n")


_TEXT_MIN = 12
"""Free text is never cut narrower than this (or its own width)."""
_LABEL_MIN = 12
"""Labels (providers, models) are cut to this at the narrowest, as a last resort: shorter
ones (statuses, layers) are never cut."""
_GAP = 2
"""Spaces between columns."""
_LONG = 40
"""A string column wider than this is free text even without spaces."""


def _cells(text: str) -> int:
    """`cell_len(text)`: one cell a character for printable ASCII (nearly every cell), which
    is told without rich's per-character look-ups."""
    return len(text) if text.isascii() and text.isprintable() else cell_len(text)


def _width(text: str) -> int:
    if text.isascii() and text.isprintable():  # one line (a newline is not printable)
        return len(text)
    return max((cell_len(line) for line in text.split("\n")), default=0)


_SPACE = re.compile(r"\s")
"""A whitespace character, as `str.isspace` tells one (the same Unicode table)."""


def _column_kind(values: list[Any], cells: list[str]) -> str:
    """`number` (never cut), `text` (cut first) or `label` (identifiers: cut last)."""
    present = [v for v in values if v is not None]
    if not any(isinstance(v, bool) for v in present) and all(
        isinstance(v, int | float | Decimal | date | time | timedelta | UUID) for v in present
    ):
        return "number"
    for value, cell in zip(values, cells, strict=True):
        if isinstance(value, dict | list | tuple | set | frozenset):
            return "text"
        if isinstance(value, str) and (_width(cell) > _LONG or _SPACE.search(value) is not None):
            return "text"
    return "label"


def _fit(
    widths: dict[str, int],
    kinds: dict[str, str],
    space: int,
    keep: Sequence[str],
    droppable: Sequence[str],
) -> tuple[list[str], dict[str, int]]:
    """Which columns to show and how wide, for a table `space` cells wide.

    Free text is cut first, then long labels; only when that is not enough are columns left
    out. What room is left goes to labels first (identifiers are worth more than prose).
    """
    shown = list(widths)

    def total(sizes: dict[str, int]) -> int:
        return sum(sizes[c] for c in shown) + _GAP * (len(shown) - 1)

    if total(widths) <= space:
        return shown, dict(widths)
    least = {
        c: min(w, _TEXT_MIN)
        if kinds[c] == "text"
        else min(w, _LABEL_MIN)
        if kinds[c] == "label" and c not in keep
        else w
        for c, w in widths.items()
    }
    for column in droppable:
        if total(least) <= space:
            break
        if column in shown and len(shown) > 1:
            shown.remove(column)
    sizes = {c: least[c] for c in shown}
    spare = space - total(sizes)
    for kind in ("label", "text"):
        growing = [c for c in shown if kinds[c] == kind]
        while spare > 0:
            wanting = [c for c in growing if sizes[c] < widths[c]]
            if not wanting:
                break
            sizes[min(wanting, key=lambda c: sizes[c])] += 1
            spare -= 1
    return shown, sizes


def emit_rows(
    rows: list[dict[str, Any]],
    fmt: OutputFormat,
    *,
    columns: list[str] | None = None,
    title: str | None = None,
    keep: Sequence[str] = (),
    droppable: Sequence[str] = (),
    wide: bool = False,
) -> None:
    """Print a list of row objects in the chosen format.

    Tables fit the terminal: free text is cut with an ellipsis, then the `droppable` columns
    are left out in that order (a note on stderr names them), then labels are cut; `keep`
    columns (run ids) and numbers are never cut. `wide` prints every column whole.
    """
    cols = columns or (list(rows[0]) if rows else [])
    if fmt is OutputFormat.json:
        sys.stdout.write(to_json([{c: r.get(c) for c in cols} for r in rows]) + "\n")
        return
    if fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([printable(c, keep="") for c in cols])
        for row in rows:
            writer.writerow([csv_cell(row.get(c)) for c in cols])
        return
    headers = {c: printable(c, keep="") for c in cols}
    cells = {c: [table_cell(row.get(c)) for row in rows] for c in cols}
    kinds = {c: _column_kind([row.get(c) for row in rows], cells[c]) for c in cols}
    widths = {c: max([_width(headers[c]), *map(_width, cells[c])]) for c in cols}
    space = _stdout_width() or terminal_width(sys.stdout)
    shown, sizes = (cols, widths) if wide else _fit(widths, kinds, space, keep, droppable)
    if len(shown) < len(cols):
        hidden = ", ".join(c for c in cols if c not in shown)
        note(f"note: {space} columns leave no room for: {hidden} (--wide shows every column)")
    # Lines wider than `space` (nothing left to cut) are printed whole rather than squeezing
    # ids and numbers into slivers: the terminal may wrap them; the ids come first.
    right = {c: kinds[c] == "number" for c in shown}
    styled = styles_stream(sys.stdout)
    lines = _table_lines(
        [headers[c] for c in shown],
        [[(cells[c][i], rows[i].get(c) is None) for c in shown] for i in range(len(rows))],
        [sizes[c] for c in shown],
        [right[c] for c in shown],
        styled,
    )
    if title and shown:
        table_width = sum(sizes[c] for c in shown) + _GAP * (len(shown) - 1)
        lines[:0] = _title_lines(printable(title, keep=""), table_width, styled)
    sys.stdout.write("".join(line + "\n" for line in lines))


# Styles as rich wrote them (SGR: bold, dim, italic), on a terminal only.
_BOLD, _DIM, _ITALIC, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[3m", "\x1b[0m"


def styles_stream(stream: IO[str]) -> bool:
    """Whether text for `stream` gets terminal styles: rich's rule (a terminal, or
    `FORCE_COLOR` / `TTY_COMPATIBLE=1` set; never `TERM=dumb`)."""
    return _is_terminal(stream) and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def _is_terminal(stream: IO[str]) -> bool:
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def terminal_width(stream: IO[str]) -> int:
    """The width rich's console gives `stream`: $COLUMNS, else the terminal's, else 80."""
    dumb = _is_terminal(stream) and os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and not (dumb and not os.environ.get("LINES", "").isdigit()):
        return int(columns)
    if dumb:
        return 80
    for descriptor in (0, 1, 2):  # stdin first, as rich asks
        try:
            return os.get_terminal_size(descriptor).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def _cell_line(text: str, width: int, right: bool) -> str:
    """One line of a cell `width` cells wide, as rich lays out an unwrapped cell that cuts
    with an ellipsis."""
    if right:
        text = text.rstrip()
    size = _cells(text)
    if size > width:
        text = set_cell_size(text, width - 1) + "…"
        size = cell_len(text)
    pad = " " * max(width - size, 0)
    return pad + text if right else text + pad


def _table_lines(
    headers: list[str],
    rows: list[list[tuple[str, bool]]],
    widths: list[int],
    right: list[bool],
    styled: bool,
) -> list[str]:
    """The lines of a table without borders: a header row (bold), cells cut to `widths`
    with an ellipsis, numbers (`right`) right-aligned, missing values (flagged) dim, two
    spaces between columns; a cell's lines stay lines (the row is as tall as its tallest)."""
    if not widths:
        return []
    out: list[str] = []
    for row, style in [([(h, False) for h in headers], _BOLD), *((r, _DIM) for r in rows)]:
        columns = [text.split("\n") for text, _ in row]
        for index in range(max(len(lines) for lines in columns)):
            parts = []
            for (_, missing), lines, width, flush in zip(row, columns, widths, right, strict=True):
                part = _cell_line(lines[index] if index < len(lines) else "", width, flush)
                if styled and (style is _BOLD or missing):
                    part = f"{style}{part}{_RESET}"
                parts.append(part)
            out.append((" " * _GAP).join(parts))
    return out


def _title_lines(title: str, width: int, styled: bool) -> list[str]:
    """A table's title, centred over it (rich's layout, wrapped by rich if it is wider)."""
    if cell_len(title) > width:
        import io

        from rich.console import Console
        from rich.text import Text

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=styled, color_system=None)
        console.print(Text(title), justify="center")
        lines = buffer.getvalue().splitlines()
    else:
        title = title.rstrip()
        left = (width - cell_len(title)) // 2
        lines = [" " * left + title + " " * (width - cell_len(title) - left)]
    return [f"{_ITALIC}{line}{_RESET}" if styled else line for line in lines]


def emit_object(obj: dict[str, Any], fmt: OutputFormat) -> None:
    """Print one object: JSON as is, CSV/table as key/value rows."""
    if fmt is OutputFormat.json:
        sys.stdout.write(to_json(obj) + "\n")
        return
    emit_rows([{"field": k, "value": v} for k, v in obj.items()], fmt)

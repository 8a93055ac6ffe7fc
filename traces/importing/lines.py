"""Reading an import file: its fingerprint, its numbered lines, each line as a JSON object."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from traces import strict_json
from traces.errors import TracesError
from traces.redaction import Redactor, holds_token

LineFormat = Literal["exchanges", "k2vv"]
"""Line formats `traces import` reads."""

_READ_BLOCK = 1 << 20
_TOKENS = Redactor(tokens=True)


class ImportFileError(TracesError):
    """A file that cannot be imported at all (unreadable, empty, not JSON Lines)."""


class LineError(Exception):
    """A malformed line: the field at fault (None for the whole line) and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        """Name the field (dotted path, e.g. `request.messages`) and the problem."""
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def fingerprint(path: Path) -> tuple[str, int]:
    """(sha256 of the bytes, size) of `path`; a one-line ImportFileError when unreadable.

    Read once before anything is parsed, so a file already imported is refused at once
    instead of after the whole parse.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while block := handle.read(_READ_BLOCK):
                digest.update(block)
                size += len(block)
    except IsADirectoryError:
        raise ImportFileError(f"{path}: is a directory, not a JSONL file") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest(), size


def numbered_lines(path: Path, start: int = 1, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) of every line, blank lines included (callers skip);
    from byte `offset` on, where line `start` begins, when given."""
    try:
        with path.open("rb") as handle:
            if offset:
                handle.seek(offset)
            yield from enumerate(handle, start=start)
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_object(raw: bytes) -> dict[str, Any]:
    """One line as a JSON object, credential-shaped values redacted (`traces.redaction`), or
    LineError saying why it is not one.

    Strict: `NaN`, `Infinity`, numbers beyond a double and nesting too deep to parse are not
    JSON, so no such value can reach a JSON column.
    """
    try:
        value = strict_json.loads(raw)
    except UnicodeDecodeError:
        raise LineError(None, "not UTF-8 text") from None
    except ValueError as exc:
        raise LineError(None, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise LineError(None, f"a JSON {_json_kind(value)}, not an object")
    if holds_token(raw):
        # The whole line, responses and error bodies included: a proxy's log may quote the
        # Authorization header anywhere. Only lines that may hold one pay for the walk.
        scrubbed: dict[str, Any] = _TOKENS.value(value)
        return scrubbed
    return value


def looks_like_json_document(raw: bytes) -> bool:
    """Whether a first line that is not JSON opens a pretty-printed document (`[` or `{`)."""
    return raw.strip() in (b"[", b"{")


def detect(obj: dict[str, Any]) -> LineFormat | None:
    """The format a line is in: K2-Vendor-Verifier results carry `data_index` and `status`."""
    if "data_index" in obj and "status" in obj and "request" in obj:
        return "k2vv"
    if "request" in obj:
        return "exchanges"
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"

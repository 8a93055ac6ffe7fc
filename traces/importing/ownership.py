"""Which worker of a parallel import builds which line of a file.

Every worker reads the whole file but builds only the lines it owns: those of the
conversations it owns (by a hash of their label) and every n-th of the lines that belong to
no conversation (one-step runs: every line of a K2-Vendor-Verifier file). The owner depends
on a line's bytes and number alone, so every worker computes the same one: each line has
exactly one owner.

A run is built by one worker from all of its lines, so the label must be the one reading the
line gives. It is read off the raw line when that is provably what parsing it would give
(see `conversation_label`), by parsing the line otherwise. The invariant, checked on random
files by the tests and on every line a worker builds: when reading a line gives it a run
label (`formats.read_exchange_line`'s `group`), `conversation_label` gives the same one. A
line reading gives no label is a run of its own, which any worker may build.
"""

from __future__ import annotations

import json
import re
import zlib

from traces import strict_json
from traces.importing.lines import LineFormat
from traces.redaction import holds_token, redact_tokens

_KEY = b'"conversation"'
_LETTER_ESCAPE = re.compile(rb"\\u00[67]")
"""How a JSON string can spell a letter of `conversation` (a-v) without writing it."""
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?=[ \t\r\n,}]|$)")
_JSON_SPACE = b" \t\r\n"


def line_owner(raw: bytes, number: int, workers: int, line_format: LineFormat) -> int:
    """The worker (0-based, of `workers`) that builds line `number`, whose bytes are `raw`."""
    if line_format == "k2vv":  # no conversations: every line is a run
        return number % workers
    return owner(conversation_label(raw), number, workers)


def conversation_label(raw: bytes) -> str | None:
    """The run label `formats.read_exchange_line` takes from a line: its top-level
    `conversation` (a string, or an integer as text), None when there is none.

    Read off the bytes when the line holds exactly one key spelled `"conversation"`: in UTF-8
    without `\\u` escapes of ASCII letters (the only other spelling of that key), a key named
    so appears literally, so a single one is either the top-level key or a nested one in a
    line without a top-level label, whose lines any worker may read. Anything else is parsed.
    A label of a line that turns out malformed does not matter (it makes no run).

    Reading a line that holds a credential-shaped token replaces every token in it
    (`lines.parse_object`), the label's included: so does this, or two labels that differ
    only in their token would be one run read in one process and two runs read in two.
    """
    label = _label(raw)
    if label is not None and holds_token(raw):
        return redact_tokens(label)
    return label


def owner(label: str | None, line: int, workers: int) -> int:
    """The worker (0-based) that reads a line: by its conversation's label, else by number."""
    if label is None:
        return line % workers
    return zlib.crc32(label.encode("utf-8", "surrogatepass")) % workers


def _label(raw: bytes) -> str | None:
    """The label as written in the line, before any token in it is replaced."""
    if raw[:1] in (b"\xff", b"\xfe") or b"\x00" in raw[:4]:  # UTF-16/32 for `json.loads`
        return _parsed_label(raw)
    if _LETTER_ESCAPE.search(raw):
        return _parsed_label(raw)
    value_at: int | None = None
    start = 0
    while (at := raw.find(_KEY, start)) >= 0:
        start = at + len(_KEY)
        if _escaped(raw, at):
            continue  # inside a string: `\"conversation"`
        colon = _skip_space(raw, start)
        if raw[colon : colon + 1] != b":":
            continue  # a value, not a key
        if value_at is not None:
            return _parsed_label(raw)  # two keys: only parsing tells the top-level one
        value_at = _skip_space(raw, colon + 1)
    return None if value_at is None else _value_label(raw, value_at)


def _escaped(raw: bytes, at: int) -> bool:
    """Whether the byte at `at` follows an odd run of backslashes."""
    slashes = 0
    while at > slashes and raw[at - slashes - 1] == 0x5C:
        slashes += 1
    return slashes % 2 == 1


def _skip_space(raw: bytes, at: int) -> int:
    while at < len(raw) and raw[at] in _JSON_SPACE:
        at += 1
    return at


def _value_label(raw: bytes, at: int) -> str | None:
    if raw[at : at + 1] == b'"':
        end = at + 1
        while (end := raw.find(b'"', end)) >= 0 and _escaped(raw, end):
            end += 1
        if end < 0:
            return None  # unterminated: the line is malformed
        token = raw[at : end + 1]
        try:
            # Surrogates encoded in UTF-8 pass, as `strict_json` decodes lines.
            value = (
                json.loads(token)
                if b"\\" in token
                else token[1:-1].decode("utf-8", "surrogatepass")
            )
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    match = _INTEGER.match(raw, at)
    if match is None:
        return None  # null, or not a string or an integer (a malformed line)
    try:
        return str(int(match.group()))
    except ValueError:  # beyond Python's digit limit, as `json.loads` refuses it too
        return None


def _parsed_label(raw: bytes) -> str | None:
    try:
        obj = strict_json.loads(raw)  # as `lines.parse_object` parses
    except ValueError:
        return None
    value = obj.get("conversation") if isinstance(obj, dict) else None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None

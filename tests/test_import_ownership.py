"""The invariant a parallel import rests on (`traces.importing.ownership`), on random files.

Each worker reads the whole file and builds the lines `line_owner` gives it. A single
process builds the same rows only if every line is built by exactly one worker and every
line of a run is built by the same one: lines whose label (as reading them gives it:
`parse_object`, then `read_exchange_line`) is equal must share a worker. The labels here are
written every way JSON allows: `\\u` escapes (of letters too, and in the key), surrogate
pairs and lone surrogates, numbers beside the same digits as strings, duplicate keys, nested
keys of the same name, credential-shaped tokens (reading replaces them), odd whitespace.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime

import pytest

from traces.importing.formats import read_exchange_line
from traces.importing.lines import LineError, parse_object
from traces.importing.ownership import conversation_label, line_owner

_NOW = datetime(2025, 1, 1)
_BODY = (
    b'"request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, '
    b'"response": {"choices": [{"index": 0, "message": {"role": "assistant", '
    b'"content": "ok"}, "finish_reason": "stop"}]}'
)
_SPACE = [b"", b" ", b"  ", b"\t", b"\r", b" \t "]
_TOKENS = ["sk-" + "a" * 20, "sk-" + "b" * 20, "Bearer abc12345678", "AIza" + "x" * 32]
_CHARS = [*"aAzZ09 -_./:", '"', "\\", "\t", "é", "中", "😀", "\ud800", "\udfff", "\u2028", "\x7f"]


def _string(text: str, rng: random.Random) -> bytes:
    """`text` as a JSON string, each character spelled one of the ways JSON allows."""
    out = [b'"']
    for char in text:
        code = ord(char)
        choice = rng.random()
        if char in '"\\' or code < 0x20:
            short = {'"': b'\\"', "\\": b"\\\\", "\t": b"\\t"}.get(char)
            out.append(short if short and choice < 0.5 else b"\\u%04x" % code)
        elif choice < 0.25 and code > 0xFFFF:  # a surrogate pair
            high, low = divmod(code - 0x10000, 0x400)
            out.append(b"\\u%04x\\u%04X" % (0xD800 + high, 0xDC00 + low))
        elif choice < 0.25:
            out.append((b"\\u%04x" if choice < 0.15 else b"\\u%04X") % code)
        elif char == "/" and choice < 0.5:
            out.append(b"\\/")
        else:  # lone surrogates too: `strict_json` decodes them (surrogatepass)
            out.append(char.encode("utf-8", "surrogatepass"))
    out.append(b'"')
    return b"".join(out)


def _key(rng: random.Random) -> bytes:
    """`"conversation"`, now and then with letters written as `\\u` escapes."""
    if rng.random() < 0.8:
        return b'"conversation"'
    return _string("conversation", rng)


def _label_value(rng: random.Random, pool: list[str | int]) -> bytes:
    """A label from `pool` (so that labels repeat, spelled differently), or a value that is
    no label: null, a float, a boolean, or one a line is refused for."""
    roll = rng.random()
    if roll < 0.08:
        return rng.choice([b"null", b"1.5", b"true", b"false", b"[1]", b"{}", b"-0", b"1e2"])
    label = rng.choice(pool)
    if isinstance(label, int):
        if rng.random() < 0.5:
            return str(label).encode()
        label = str(label)  # the same run as the integer: labels are compared as text
    return _string(label, rng)


def _line(rng: random.Random, pool: list[str | int]) -> bytes:
    """One line of an exchange log: members in random order, labelled or not."""

    def sp() -> bytes:
        return rng.choice(_SPACE)

    members = [b'"x":' + sp() + b"1", _BODY]
    roll = rng.random()
    if roll < 0.75:
        members.append(_key(rng) + sp() + b":" + sp() + _label_value(rng, pool))
    if roll > 0.6:  # a second label: the last one counts, as in any JSON parser
        members.append(_key(rng) + sp() + b":" + sp() + _label_value(rng, pool))
    if rng.random() < 0.2:  # a nested key of the same name
        members.append(b'"meta": {' + _key(rng) + b": " + _label_value(rng, pool) + b"}")
    if rng.random() < 0.1:  # the key's text inside a string
        members.append(b'"note": "a \\"conversation\\": \\"x\\""')
    if rng.random() < 0.15:  # a credential elsewhere in the line
        members.append(b'"auth": ' + _string(rng.choice(_TOKENS), rng))
    rng.shuffle(members)
    return b"{" + sp() + (b"," + sp()).join(members) + sp() + b"}" + rng.choice([b"\n", b"\r\n"])


def _pool(rng: random.Random) -> list[str | int]:
    """A handful of labels for one file, some of them equal once read."""
    pool: list[str | int] = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.3:
            pool.append(rng.choice([0, 7, -12, 10**20]))
        elif kind < 0.45:
            pool.append(rng.choice(_TOKENS) + rng.choice(["", " run"]))
        else:
            pool.append("".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 6))))
    return pool


def _read_label(raw: bytes, number: int) -> str | None:
    """The run label reading the line gives (None: a run of its own, or no run at all)."""
    try:
        return read_exchange_line(parse_object(raw), number, _NOW).group
    except LineError:
        return None


@pytest.mark.parametrize("seed", range(8))
def test_each_line_has_one_owner_and_a_run_one_worker(seed: int) -> None:
    rng = random.Random(seed)
    labelled = 0
    for _ in range(60):  # files
        pool = _pool(rng)
        lines = [_line(rng, pool) for _ in range(rng.randint(1, 40))]
        read = [_read_label(raw, number) for number, raw in enumerate(lines, start=1)]
        for raw, label in zip(lines, read, strict=True):
            if label is not None:
                labelled += 1
                # Stronger than sharing a worker: the label itself is the one reading gives.
                assert conversation_label(raw) == label, raw
        for workers in (2, 3, 4):
            runs: defaultdict[str, set[int]] = defaultdict(set)
            for number, (raw, label) in enumerate(zip(lines, read, strict=True), start=1):
                # What each worker decides on its own (`worker._work`).
                builders = [
                    me
                    for me in range(workers)
                    if line_owner(raw, number, workers, "exchanges") == me
                ]
                assert len(builders) == 1, raw
                if label is not None:
                    runs[label].update(builders)
            assert all(len(owners) == 1 for owners in runs.values()), dict(runs)
    assert labelled > 500  # the generator makes mostly lines that form runs


def test_the_generator_spells_labels_every_way() -> None:
    """The random lines do reach each branch of `conversation_label`: the raw fast path, the
    parsed one (escaped key, two keys), redaction, and lines that form no run."""
    rng = random.Random(0)
    raws = [_line(rng, _pool(rng)) for _ in range(3000)]
    assert any(b"\\u00" in raw and b'"conversation"' not in raw for raw in raws)
    assert any(raw.count(b'"conversation"') >= 2 for raw in raws)
    assert any(b"\xed\xa0\x80" in raw for raw in raws)  # a lone surrogate, raw
    read = [_read_label(raw, 1) for raw in raws]
    assert any(label is not None and "[redacted]" in label for label in read)
    assert any(label is not None and label.lstrip("-").isdigit() for label in read)
    assert sum(label is None for label in read) > 100

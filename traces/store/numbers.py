"""The message numbers the recorders' writer knows: what it stored, and the next one to draw.

Since migration 14 no index covers `messages.key`, so an insert that looked for a message, or
for its number (`tables.MESSAGE_SEQ_OF_HASH`), or drew the next number after the greatest
stored (`tables.NEXT_MESSAGE_SEQ`) would scan a column of the whole table at every commit:
measured, a recorder's one-step commit doubled at 8 million messages. The writer of a
store's server (`traces.store.writer_process`) is the one writer of recorded steps, and it
keeps instead the number of every message it stored or looked up (a message is never
deleted, nor renumbered) and the next number to draw. A commit then stores the messages it
does not know yet under numbers it binds, and names each step's messages by the numbers it
knows; a message it never saw (stored by an import, or by an earlier server, then resent
by a resumed run) is looked up, once, for the rows that name it.

The counter is read from the store when the writer starts and again whenever another writer
may have stored messages since (a write session of the server committed a statement naming
`messages`: `mark_stale`; a lake, which other processes write, every transaction). Two
writers may still draw one number for two messages: readers join on the number and the key
together (`tables.NEXT_MESSAGE_SEQ`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from traces.store.inserts import json_list
from traces.store.tables import MESSAGE_KEY

KNOWN_LIMIT = 1_000_000
"""Messages whose numbers are kept (about 150 MB at most): past it the older half is
forgotten, and a step naming one of those looks it up (correct, and rare: a step names the
messages its request added, which the same commit or a recent one stored)."""

_HASHES = "unnest(from_json(?, '[\"VARCHAR\"]'))"
_LOOKUP = (
    f"SELECT hash, max(seq) FROM messages WHERE key IN (SELECT {MESSAGE_KEY.format(_HASHES)}) "
    "GROUP BY hash"
)
"""The stored numbers of messages by hash (the greatest, where a message is stored twice: the
copy stored last, near the run's other messages), found by the key: a scan of a fixed-width
column. Another message may share a 64-bit key (`MESSAGE_KEY`): its own hash comes back with
it, which `plan` does not take for one it asked for."""

_GREATEST = "SELECT coalesce(max(seq), 0) FROM messages"


class MessageNumbers:
    """The numbers of the messages one writer stored or looked up, and its counter."""

    def __init__(self, *, always_stale: bool = False) -> None:
        """`always_stale`: read the counter from the store at every transaction (a lake,
        which other processes write)."""
        self.known: dict[str, int] = {}
        self.next: int | None = None
        """The next number to draw, or None to read it from the store first."""
        self.always_stale = always_stale

    def mark_stale(self) -> None:
        """Another writer of the store committed: read the counter again before drawing."""
        self.next = None

    def plan(
        self,
        conn: duckdb.DuckDBPyConnection,
        messages: Sequence[tuple[Any, ...]],
        step_hashes: Sequence[str],
    ) -> Plan:
        """In the transaction of `conn`, the messages (`MessageRow`s) to store, each with the
        number drawn for it, and the numbers of the messages named by `step_hashes` (None for
        one the store lacks). Nothing is remembered until `remember` (after the commit)."""
        if self.next is None or self.always_stale:
            row = conn.execute(_GREATEST).fetchone()
            greatest = int(row[0]) if row else 0
            self.next = max(greatest + 1, self.next or 0)
        drawn: dict[str, int] = {}
        fresh: list[tuple[Any, ...]] = []
        for message in messages:
            digest = message[0]
            if digest in self.known or digest in drawn:
                continue
            drawn[digest] = self.next + len(drawn)
            fresh.append(message)
        missing = [h for h in dict.fromkeys(step_hashes) if h not in drawn and h not in self.known]
        found: dict[str, int] = {}
        if missing:
            asked = set(missing)
            found = {
                digest: int(seq)
                for digest, seq in conn.execute(_LOOKUP, [json_list(missing)]).fetchall()
                if seq is not None and digest in asked
            }
        known = {**found, **drawn}
        numbers: list[int | None] = [
            known[h] if h in known else self.known.get(h) for h in step_hashes
        ]
        return Plan(fresh, [drawn[m[0]] for m in fresh], numbers, known)

    def remember(self, plan: Plan) -> None:
        """The plan's transaction committed: its numbers are the store's."""
        if len(self.known) + len(plan.learned) > KNOWN_LIMIT:
            for digest in list(self.known)[: len(self.known) // 2]:
                del self.known[digest]
        self.known.update(plan.learned)
        if plan.drawn and self.next is not None:
            self.next = max(self.next, max(plan.drawn) + 1)


class Plan:
    """One transaction's messages and numbers (`MessageNumbers.plan`)."""

    __slots__ = ("drawn", "learned", "messages", "step_numbers")

    def __init__(
        self,
        messages: list[tuple[Any, ...]],
        drawn: list[int],
        step_numbers: list[int | None],
        learned: dict[str, int],
    ) -> None:
        self.messages = messages
        """The messages to store: those the writer did not know, each once."""
        self.drawn = drawn
        """Their numbers, in order."""
        self.step_numbers = step_numbers
        """The number of the message each `step_messages` row names."""
        self.learned = learned
        """Numbers drawn or looked up, by hash, to remember once committed."""

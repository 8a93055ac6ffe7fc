"""A session on the store's server that behaves like the DuckDB connection it stands for.

Commands read and write through `conn.execute(sql, params)` and its `fetchone`, `fetchmany`,
`fetchall` and `description`, `executemany`, `close` and `with`: that is what this object
does, each statement run by the server in this session's own cursor (`traces.store.server`).
Results come in chunks, so a large one is never whole in both processes. A DuckDB error
comes back as the same DuckDB exception class with the same text, so every `except
duckdb.CatalogException` and every one-line error message stays as it is with a file opened
directly. Anything else a DuckDB connection offers is refused with a one-line error rather
than half-imitated.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from traces.errors import DatabaseError
from traces.store.rendezvous import Session

_ROLLBACK = re.compile(r"\s*(ROLLBACK|ABORT)\b", re.IGNORECASE)


class RemoteConnection:
    """A read or write session on the store's server (see the module's docstring)."""

    def __init__(self, session: Session, path: Path) -> None:
        """Talk through `session` (already welcomed) about the database at `path`."""
        self._session = session
        self._path = path
        self._description: list[tuple[Any, ...]] | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._more = False
        self._result = False
        self._closed = False
        self._broken = False
        self._owed = False
        """A request was sent whose reply was never read (Ctrl-C while waiting): the next
        message from the server is that reply."""

    @property
    def server_pid(self) -> int:
        """The process serving the store."""
        return self._session.server_pid

    # -- what DuckDB's connection offers ------------------------------------------------------

    def execute(self, query: str, parameters: object = None) -> RemoteConnection:
        """Run one statement (with `?` or `$n` parameters); its result is fetched from self."""
        self._answer(self._call(("execute", query, _plain(parameters))))
        return self

    def executemany(self, query: str, parameters: object = None) -> RemoteConnection:
        """Run one statement once per parameter set."""
        self._answer(self._call(("executemany", query, _plain(parameters))))
        return self

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        """The result's columns: (name, type name, None × 5), as DB-API describes them."""
        return self._description

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row of the result, or None."""
        rows = self._take(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        """At most `size` more rows of the result."""
        return self._take(size)

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every remaining row of the result."""
        return self._take(None)

    def close(self) -> None:
        """End the session (rolling back what it left uncommitted); when it was the server's
        last client, return once the server has closed the file."""
        if self._closed:
            return
        self._closed = True
        last = False
        try:
            self._settle_owed()
            if not self._broken:
                self._session.conn.send(("close",))
                reply = self._session.conn.recv()
                last = bool(reply[1])
        except (EOFError, OSError):
            pass
        finally:
            self._session.close(last=last)

    def __enter__(self) -> RemoteConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Only for what is not defined above: anything else DuckDB's connection has.
        if name.startswith("_"):
            raise AttributeError(name)
        raise DatabaseError(
            f"{self._path}: {name}() is not available on a store another process is "
            "writing; run the command again once it ends"
        )

    # -- the conversation ---------------------------------------------------------------------

    def _call(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._closed:
            raise duckdb.ConnectionException("Connection Error: Connection already closed!")
        if self._broken:
            if message[0] == "execute" and _ROLLBACK.match(message[1]):
                # Cleaning up after the failure: the server rolled back what this session
                # left open when the conversation broke off.
                return ("result", None, [], False)
            raise duckdb.ConnectionException(
                f"Connection Error: {self._path}: the store's server went away"
            )
        try:
            self._settle_owed()
            try:
                self._session.conn.send(message)
            except BaseException:  # half a message may have gone: nothing after it can be read
                self._broken = True
                raise
            self._owed = True  # until read: Ctrl-C may come while waiting
            reply: tuple[Any, ...] = self._session.conn.recv()
            self._owed = False
        except (EOFError, OSError):
            self._broken = True
            raise DatabaseError(
                f"{self._path}: the store's server exited during the command; run it again"
            ) from None
        if reply[0] == "error":
            raise _error(reply[1], reply[2])
        return reply

    def _settle_owed(self) -> None:
        """Read (and drop) the reply to a request interrupted while waiting for it, so the
        conversation is in step again (the server finishes what it was doing first)."""
        if self._owed and not self._broken:
            try:
                self._session.conn.recv()
            except BaseException:
                self._broken = True
                raise
            self._owed = False

    def _answer(self, reply: tuple[Any, ...]) -> None:
        _, self._description, self._rows, self._more = reply
        self._result = True

    def _take(self, size: int | None) -> list[tuple[Any, ...]]:
        if not self._result:
            raise duckdb.InvalidInputException("Invalid Input Error: No open result set")
        while self._more and (size is None or len(self._rows) < size):
            _, rows, self._more = self._call(("fetch",))
            self._rows.extend(rows)
        if size is None or size >= len(self._rows):
            taken, self._rows = self._rows, []
        else:
            taken, self._rows = self._rows[:size], self._rows[size:]
        return taken


def _plain(parameters: object) -> object:
    """Parameters as they pickle: a tuple or other sequence as a list."""
    if parameters is None or isinstance(parameters, (list, dict)):
        return parameters
    if isinstance(parameters, Sequence) and not isinstance(parameters, (str, bytes)):
        return list(parameters)
    return parameters


def _error(name: str, text: str) -> Exception:
    """The exception the server met, as the same class when it is DuckDB's or a builtin."""
    kind = getattr(duckdb, name, None)
    if isinstance(kind, type) and issubclass(kind, duckdb.Error):
        return kind(text)
    if name in ("TypeError", "ValueError", "KeyError", "IndexError", "OverflowError"):
        builtin: type[Exception] = getattr(builtins, name)
        return builtin(text)
    return duckdb.Error(text)

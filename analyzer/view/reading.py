"""The viewer's connections: the store file kept open between requests while nothing else
wants it.

Opening a DuckDB file costs far more than a page's queries (about 100 ms for a store of
20,000 steps on a busy 2-core machine, against a few ms for the newest runs). So while pages
are asked for, the viewer keeps one read-only connection to the file and gives each request
a cursor of its own on it (DuckDB cursors are connections to the same database, one per
thread). It lets go of the file when no request came for `HOLD_S`, and at once when a writer
wants the store: a client starting the store's server holds its spawn lock, a running server
its life lock (`traces.store.rendezvous.wanted`), checked before every request and every
`CHECK_S` in between, well within the `LOCK_WAIT_S` a server waits for the file. While a
server has the store, each request opens and closes its own connection
(`open_for_reading`), a session on the server.

A lake store is held for the viewer's whole life: its writers never wait for a reader
(each commits through the catalog), every query's transaction reads the newest snapshot,
and attaching a lake costs 0.5-2 s (loading extensions, reading the catalog), which
opening it for every request added to every page.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import duckdb

from traces.errors import TracesError
from traces.store import rendezvous
from traces.store.database import Store, is_served, open_for_reading
from traces.store.lake import ALIAS, LakeStore

T = TypeVar("T")

YIELD_TRIES = 5
"""Times long work starts over after a writer took the store from under it."""
HOLD_S = 0.5
"""How long the file stays open after the last request."""
CHECK_S = 0.1
"""How often an idle held file is checked for a writer wanting it."""


class StoreReader:
    """Read connections for the viewer's requests, over one store."""

    def __init__(self, store: Store) -> None:
        """Read `store`; nothing is opened until the first request."""
        self.store = store
        self._lock = threading.Lock()
        self._held: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._yielding: set[duckdb.DuckDBPyConnection] = set()
        self._last_used = 0.0
        self._watcher: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def connection(self, *, yielding: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one request, closed (or given back) when the block ends.
        `yielding`: long work, whose query in progress on the held file is interrupted
        (`duckdb.InterruptException`) when a writer wants the store, which it must then
        read through the store's server (ask again)."""
        cursor: duckdb.DuckDBPyConnection | None = None
        if isinstance(self.store, LakeStore):
            cursor = self._lake_cursor()
        elif isinstance(self.store, Path):
            cursor = self._cursor()
        if cursor is None:
            conn = open_for_reading(self.store)
            try:
                yield conn
            finally:
                conn.close()
            return
        if yielding:
            with self._lock:
                self._yielding.add(cursor)
        try:
            yield cursor
        finally:
            cursor.close()
            with self._lock:
                self._yielding.discard(cursor)
                self._users -= 1
                self._last_used = time.monotonic()

    def _cursor(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor on the held file (opening it if need be), or None when a writer wants
        the store or serves it."""
        if rendezvous.wanted(self.store):
            self._release_when_idle(force=True)
            return None
        with self._lock:
            if self._closed:
                return None
            if self._held is None:
                conn = open_for_reading(self.store)
                if is_served(conn):  # a server started since the check: no file to hold
                    conn.close()
                    return None
                self._held = conn
                self._watch()
            self._users += 1
            try:
                return self._held.cursor()
            except duckdb.Error:
                self._users -= 1
                raise

    def _lake_cursor(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor on the held lake (attaching it if need be), or None once closed."""
        with self._lock:
            if self._closed:
                return None
            if self._held is None:
                self._held = open_for_reading(self.store)
            self._users += 1
            try:
                cursor = self._held.cursor()
                # A cursor starts in the default catalog, not the one its connection uses.
                cursor.execute(f"USE {ALIAS}")
                # One snapshot for the request's every query, so a page is consistent while
                # writers commit (it did not make pages faster: the cost of reading an empty
                # lake table is per query, see the README). Closing rolls it back.
                cursor.execute("BEGIN TRANSACTION")
            except duckdb.Error:
                self._users -= 1
                raise
            return cursor

    def _watch(self) -> None:
        # Called with the lock held.
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(
                target=self._watch_loop, name="traces-view-release", daemon=True
            )
            self._watcher.start()

    def _watch_loop(self) -> None:
        while True:
            time.sleep(CHECK_S)
            wanted = rendezvous.wanted(self.store)
            if self._release_when_idle(force=wanted):
                return
            if wanted:
                with self._lock:
                    for cursor in self._yielding:
                        cursor.interrupt()

    def _release_when_idle(self, *, force: bool) -> bool:
        """Close the held file if no request uses it and it has been idle `HOLD_S` (or
        `force`: a writer wants it); whether nothing is held any more."""
        with self._lock:
            if self._held is None:
                return True
            idle = time.monotonic() - self._last_used >= HOLD_S
            if self._users == 0 and (force or idle):
                self._held.close()
                self._held = None
                return True
            return False

    def close(self) -> None:
        """Let go of the file for good (the viewer stops)."""
        with self._lock:
            self._closed = True
            if self._held is not None:
                self._held.close()
                self._held = None


def read_yielding(reader: StoreReader, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` on a connection that gives way when a writer wants the store: interrupted, it
    starts over (reading through the store's server then)."""
    for _ in range(YIELD_TRIES):
        try:
            with reader.connection(yielding=True) as conn:
                return work(conn)
        except duckdb.InterruptException:
            continue
    raise TracesError("the store kept being written to; this page gave up (reload it)")

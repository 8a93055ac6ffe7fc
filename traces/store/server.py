"""The store's server: the one process that has the database open while anything writes it.

DuckDB lets one process open a file read-write, or many read-only, never both. So the
process that writes a store serves it while it lives: recorders, imports, analyses and
readers all connect to it over a Unix socket (`traces.store.rendezvous` finds or starts it)
and each gets a session of its own, with its own DuckDB cursor, that is its own transaction:

- a recorder's session sends operations that the writer (`traces.store.writer_process`)
  group-commits with every other recorder's;
- a read session runs statements in one read-only transaction, one snapshot of what was
  committed when it began (a `traces runs` sees every step committed before it started and
  nothing half-written; a write in it fails as in a read-only file);
- a write session runs statements in transactions of its own (an import, an analysis
  storing findings): what it has not committed nobody sees, and what it commits is atomic.

Messages are stored once, by hash; no index enforces it (migration 14). The writer's
transactions are short and are never open while another commits (`commit_lock`), and the
writer skips the messages it stored itself (`traces.store.numbers`); a long transaction (an
import) gives way when it commits: the messages it inserted that another transaction
committed in the meantime are dropped from it first, so they are not stored twice. (Before
migration 14 such an insert could fail on the key's index instead:
`lost_to_a_concurrent_commit` names that failure, after which the import starts over, as it
does after a lake's conflict.)

The server exits when its last client leaves (or when none came), after closing the file;
its life lock lets the next server wait for that.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

import duckdb

from traces.errors import DatabaseError
from traces.one_line import exception_line, one_line
from traces.store import lake, rendezvous
from traces.store.compaction import compact_when_it_pays
from traces.store.database import (
    STORAGE_VERSION,
    Store,
    open_file_for_writing,
    open_for_writing,
)
from traces.store.lake import transaction
from traces.store.tables import DEDUPLICATED, MESSAGE_KEY
from traces.store.writer_process import Recording, Writer, mark_dead_runs_interrupted

FIRST_CLIENT_WAIT_S = 30.0
"""How long a server nobody connects to waits before exiting, its starter alive or not."""

STARTER_CHECK_S = 0.25
"""How often a server nobody has connected to yet checks that the command that started it
still lives: one killed before it connected must not leave the file held for long."""

LIFE_LOCK_WAIT_S = 60.0
"""How long a new server waits for the previous one to close the file."""

HELLO_WAIT_S = 10.0
"""How long a client that connected has to prove it knows the key and say hello."""

CHUNK_ROWS = 2048
"""Rows of a result sent at a time: a large result streams rather than sitting whole in
both processes' memory."""

_LOCKDOWN = (
    # Extensions: none installed or loaded, even the ones DuckDB would fetch by itself.
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    # The server's Python variables are not tables.
    "SET python_enable_replacements = false",
)
"""Settings every session runs under. DuckDB's configuration is the whole database's, not a
cursor's: a session cannot lock it for itself (as `traces sql` does on a file it opened), so
the server locks it for all, once. No session reads or writes other files (no COPY, no
read_csv), none reaches the network; the server itself attaches only files of its staging
directory (an analysis's worker outputs)."""

_BEGIN = re.compile(r"\s*(BEGIN|START)\b", re.IGNORECASE)
_COMMIT = re.compile(r"\s*(COMMIT|END)\b", re.IGNORECASE)
_ROLLBACK = re.compile(r"\s*(ROLLBACK|ABORT)\b", re.IGNORECASE)
_MESSAGES = re.compile(r"\bmessages\b", re.IGNORECASE)
"""A statement that names the table `messages` (not `step_messages`): one that may store
messages, and so draw message numbers (an insert names the table it fills)."""


def serve(path: Store, ready: int, starter: int) -> None:
    """Open the store at `path` and serve it until the last client leaves (or, when none
    has come, until process `starter`, which is to be the first, has exited).

    Writes `ready PID` to the pipe `ready` once it listens, or `failed LINE` (the one-line
    error the starting client raises) when it cannot open the database.
    """
    where = rendezvous.address(path)
    try:
        key = rendezvous.prepare(where)
        _hold_life_lock(where, path)
        # A lake takes other writers itself: only its recorders of this host share a server.
        db = open_file_for_writing(path) if isinstance(path, Path) else open_for_writing(path)
        try:
            _configure(db, where, lockdown=isinstance(path, Path))
            transaction(db, lambda: mark_dead_runs_interrupted(db))
            listener = _listen(where)
        except BaseException:
            db.close()
            raise
    except Exception as exc:
        detail = str(exc) if isinstance(exc, DatabaseError) else exception_line(exc)
        if not isinstance(exc, DatabaseError):
            detail = f"{path}: cannot open database: {detail}"
        _tell(ready, f"failed {one_line(detail, None)}")
        return
    server = Server(db, where, key)
    _tell(ready, f"ready {os.getpid()}")
    server.run(listener, starter)
    if isinstance(path, Path):
        # Closed, but still ours: a new server waits for the life lock this process holds.
        compact_when_it_pays(path, STORAGE_VERSION)


def _tell(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):  # the starting client stopped waiting (Ctrl-C)
        os.write(fd, f"{line}\n".encode())
    with contextlib.suppress(OSError):
        os.close(fd)


def _hold_life_lock(where: rendezvous.Address, path: Store) -> None:
    """Take the lock a server holds while it lives (released when this process ends)."""
    fd = os.open(where.life_lock, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LIFE_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return  # kept open: the lock goes with the process
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise DatabaseError(
                    f"{path}: the previous store server did not close the database"
                ) from None
            time.sleep(0.01)


def _configure(db: duckdb.DuckDBPyConnection, where: rendezvous.Address, *, lockdown: bool) -> None:
    # A batch is a few dozen rows: DuckDB's worker threads cannot speed that up, and
    # waking them cost ~12% more CPU on a machine whose cores the agents need.
    db.execute("SET threads = 1")
    if not lockdown:  # a lake's data files are the store: it serves no other session
        return
    for setting in _LOCKDOWN:
        db.execute(setting)
    db.execute("SET allowed_directories = ?", [[f"{where.staging}{os.sep}"]])
    db.execute("SET enable_external_access = false")
    db.execute("SET lock_configuration = true")  # last: no session can undo the above


def _listen(where: rendezvous.Address) -> socket.socket:
    # A server killed with -9 left its socket; the life lock says it is dead.
    where.socket.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(where.socket))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Make reads of the socket fail after `seconds` without data (0: wait for ever)."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)


def _first_local_rowid(db: duckdb.DuckDBPyConnection) -> int | None:
    """The row id DuckDB gives the first row a transaction inserts, before it commits.

    Rows a transaction has not committed are numbered from a fixed, very large id, apart
    from every committed row: that is how a committing session tells the messages it
    inserted from those it found. Asked of DuckDB rather than assumed; None (no
    reconciliation) if it ever stops being so.
    """
    cursor = db.cursor()
    try:
        cursor.execute("CREATE TEMP TABLE rowid_probe (x INTEGER)")
        cursor.execute("BEGIN TRANSACTION")
        cursor.execute("INSERT INTO rowid_probe VALUES (1)")
        row = cursor.execute("SELECT rowid FROM rowid_probe").fetchone()
        cursor.execute("ROLLBACK")
    finally:
        cursor.close()
    return int(row[0]) if row and int(row[0]) >= 2**40 else None


@dataclass
class _Transaction:
    explicit: bool = False
    """Inside BEGIN … COMMIT (a statement outside commits by itself)."""
    messages: bool = False
    """A statement of the transaction named `messages`: its commit may have drawn message
    numbers, which the writer's counter must then be read again after."""


class Server:
    """The clients of one open database, and when to stop."""

    def __init__(self, db: duckdb.DuckDBPyConnection, where: rendezvous.Address, key: bytes):
        """Serve `db` (open read-write, configured) to clients that know `key`."""
        self.db = db
        self.where = where
        self.key = key
        self.lock = threading.Lock()
        """Guards `clients` and `closing`."""
        self.clients = 0
        self.closing = False
        self.commit_lock = threading.Lock()
        """Held around every commit of a write (and the writer's whole transactions)."""
        self.local_rowid = _first_local_rowid(db)
        self.fresh = db.cursor()
        """Sees what is committed now (used under `commit_lock`)."""
        # A lake's connection is the one registered as a lake (its catalog in use, its
        # commits retried on conflicts): the writer, its only user, takes it itself.
        writing = db if lake.is_lake(db) else db.cursor()
        self.writer = Writer(writing, self.commit_lock, lambda _: self.leave())
        self._wake_read, self._wake_write = os.pipe()

    def run(self, sock: socket.socket, starter: int) -> None:
        """Accept clients until the last leaves, then close the database; stop at once if
        none came and process `starter` has exited."""
        try:
            self._accept(sock, starter)
        finally:
            sock.close()
            self.where.socket.unlink(missing_ok=True)
            with self.commit_lock:  # not in the middle of anyone's transaction
                self.fresh.close()
                self.db.close()

    def _accept(self, sock: socket.socket, starter: int) -> None:
        deadline = time.monotonic() + FIRST_CLIENT_WAIT_S
        came = False
        while True:
            wait = None if came else max(0.0, min(STARTER_CHECK_S, deadline - time.monotonic()))
            readable, _, _ = select.select([sock.fileno(), self._wake_read], [], [], wait)
            with self.lock:
                nobody = not came and self.clients == 0 and not readable
                if nobody and (time.monotonic() >= deadline or rendezvous.exited(starter)):
                    self.closing = True
                if self.closing:
                    return
            if self._wake_read in readable:
                os.read(self._wake_read, 64)
            if sock.fileno() not in readable:
                continue
            try:
                client, _ = sock.accept()
            except OSError:
                continue
            with self.lock:
                if self.closing:
                    client.close()
                    return
                self.clients += 1
                came = True
            threading.Thread(target=self._client, args=(client,), daemon=True).start()

    def leave(self) -> bool:
        """A client is gone; whether it was the last (the server then stops)."""
        with self.lock:
            self.clients -= 1
            last = self.clients == 0
            if last:
                self.closing = True
                os.write(self._wake_write, b"x")
        return last

    # -- one client -------------------------------------------------------------------------

    def _client(self, sock: socket.socket) -> None:
        # A client that connects and then says nothing (stopped, or not one of ours) must
        # not keep the server alive: the handshake has a deadline, the session none. The
        # deadline belongs to the socket, which the connection's own descriptor shares.
        with sock:
            _receive_timeout(sock, HELLO_WAIT_S)
            conn = Connection(os.dup(sock.fileno()))
            hello = self._greet(conn)
            if hello is not None:
                _receive_timeout(sock, 0)
        if hello is None:
            conn.close()
            self.leave()
            return
        send_lock = threading.Lock()

        def send(message: tuple[Any, ...]) -> None:
            with send_lock:
                conn.send(message)

        try:
            send(("welcome", {"pid": os.getpid()}))
        except OSError:
            conn.close()
            self.leave()
            return
        if hello["mode"] == rendezvous.RECORD:
            self._recording(conn, send, int(hello["pid"]))
        else:
            self._statements(conn, send, str(hello["mode"]))

    def _greet(self, conn: Connection) -> dict[str, Any] | None:
        """The client's hello once it proved it knows the key; None for anyone else."""
        try:
            deliver_challenge(conn, self.key)
            answer_challenge(conn, self.key)
            kind, hello = conn.recv()
        except Exception:  # a wrong key, a client gone mid-handshake, garbage
            return None
        mode = hello.get("mode") if isinstance(hello, dict) else None
        modes = (rendezvous.READ, rendezvous.WRITE, rendezvous.RECORD)
        if kind != "hello" or hello.get("protocol") != rendezvous.PROTOCOL or mode not in modes:
            with contextlib.suppress(OSError):
                conn.send(("refused", "the store's server speaks another version; retry"))
            return None
        return dict(hello)

    def _recording(self, conn: Connection, send: Any, pid: int) -> None:
        recording = Recording(pid=pid, acknowledge=send)
        while True:
            try:
                messages = [conn.recv()]
                # Everything else it sent while the last commit ran: one commit for all.
                while messages[-1][0] == "ops" and conn.poll():
                    messages.append(conn.recv())
            except (EOFError, OSError):
                self.writer.gone(recording)
                break
            ops = [op for message in messages if message[0] == "ops" for op in message[1]]
            if ops:
                replay = any(message[2] for message in messages if message[0] == "ops")
                self.writer.received(recording, ops, replay)
            if messages[-1][0] == "bye":
                self.writer.bye(recording)
                # It closes once told; until then the connection stays ours to answer on.
                with contextlib.suppress(EOFError, OSError):
                    conn.recv()
                break
        conn.close()

    def _statements(self, conn: Connection, send: Any, mode: str) -> None:
        cursor = self.db.cursor()
        left = False
        try:
            if mode == rendezvous.READ:
                cursor.execute("BEGIN TRANSACTION READ ONLY")
            state = _Transaction()
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "close":
                    cursor.close()  # rolls back what it left open
                    left, last = True, self.leave()
                    with contextlib.suppress(OSError):
                        send(("closed", last))
                    break
                send(self._statement(cursor, mode, state, message))
        except OSError:
            pass  # the client is gone: what it left open is rolled back
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
            conn.close()
            if not left:
                self.leave()

    def _statement(
        self,
        cursor: duckdb.DuckDBPyConnection,
        mode: str,
        state: _Transaction,
        message: tuple[Any, ...],
    ) -> tuple[Any, ...]:
        kind = message[0]
        try:
            if kind == "fetch":
                rows = cursor.fetchmany(CHUNK_ROWS)
                return ("rows", rows, len(rows) == CHUNK_ROWS)
            _, sql, params = message
            if mode == rendezvous.WRITE:
                self._write(cursor, state, kind == "executemany", sql, params)
            else:
                _execute(cursor, kind == "executemany", sql, params)
            description = cursor.description
            if description is None:
                return ("result", None, [], False)
            rows = cursor.fetchmany(CHUNK_ROWS)
            # DuckDB's type objects do not pickle; their names do.
            names = [(d[0], str(d[1]), None, None, None, None, None) for d in description]
            return ("result", names, rows, len(rows) == CHUNK_ROWS)
        except Exception as exc:
            if mode == rendezvous.READ:
                # A failed statement can leave the transaction aborted: start a new one.
                with contextlib.suppress(duckdb.Error):
                    cursor.execute("ROLLBACK")
                with contextlib.suppress(duckdb.Error):
                    cursor.execute("BEGIN TRANSACTION READ ONLY")
            return ("error", type(exc).__name__, str(exc))

    def _write(
        self,
        cursor: duckdb.DuckDBPyConnection,
        state: _Transaction,
        many: bool,
        sql: str,
        params: Any,
    ) -> None:
        if _BEGIN.match(sql):
            _execute(cursor, many, sql, params)
            state.explicit = True
        elif _COMMIT.match(sql):
            try:
                with self.commit_lock:
                    if state.explicit:
                        self._reconcile(cursor)
                    if state.messages:
                        # It may have stored messages: the writer's counter is read again
                        # (a commit of findings alone, at every step of a recording's
                        # checks, leaves it: reading it scans the number column).
                        self.writer.numbers.mark_stale()
                    _execute(cursor, many, sql, params)
            finally:
                state.explicit = state.messages = False
        elif _ROLLBACK.match(sql):
            try:
                _execute(cursor, many, sql, params)
            finally:
                state.explicit = state.messages = False
        elif state.explicit:
            state.messages = state.messages or _MESSAGES.search(sql) is not None
            _execute(cursor, many, sql, params)
        else:
            with self.commit_lock:  # a statement that commits by itself
                if _MESSAGES.search(sql):
                    self.writer.numbers.mark_stale()
                _execute(cursor, many, sql, params)

    def _reconcile(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Before a session's commit: drop from its transaction the rows of deduplicated
        tables (messages) it inserted that another transaction committed meanwhile, so they
        are not stored twice (no index refuses them since migration 14). Called with
        `commit_lock` held."""
        if self.local_rowid is None:
            return
        with contextlib.suppress(duckdb.Error):  # an aborted transaction: COMMIT says why
            for table, (key, _) in DEDUPLICATED.items():
                mine = cursor.execute(
                    f"SELECT {key} FROM {table} WHERE rowid >= ?", [self.local_rowid]
                ).fetchall()
                if not mine:
                    continue
                taken = self.fresh.execute(
                    f"SELECT {key} FROM {table} WHERE {key} IN (SELECT unnest(?))",
                    [[row[0] for row in mine]],
                ).fetchall()
                if taken:
                    hashes = [row[0] for row in taken]
                    # The numbers of the copies about to go, which this session's rows name.
                    dropped = (
                        cursor.execute(
                            "SELECT hash, seq FROM messages "
                            "WHERE rowid >= ? AND hash IN (SELECT unnest(?))",
                            [self.local_rowid, hashes],
                        ).fetchall()
                        if table == "messages"
                        else []
                    )
                    cursor.execute(
                        f"DELETE FROM {table} WHERE rowid >= ? AND {key} IN (SELECT unnest(?))",
                        [self.local_rowid, hashes],
                    )
                    if dropped:
                        self._renumber(cursor, dropped)

    def _renumber(self, cursor: duckdb.DuckDBPyConnection, dropped: list[tuple[str, int]]) -> None:
        """Point this session's `step_message_keys` rows naming the messages `dropped` (hash,
        number), whose copies `_reconcile` just dropped, at the committed copies' numbers
        (migration 13): the session's transaction does not see those, `fresh` does. A row is
        matched by the dropped copy's number and key, never by the key alone: another message
        may share its 64-bit key (`tables.MESSAGE_KEY`)."""
        committed = dict(
            self.fresh.execute(
                "SELECT hash, max(seq) FROM messages WHERE hash IN (SELECT unnest(?)) "
                "GROUP BY hash",
                [[h for h, _ in dropped]],
            ).fetchall()
        )
        moved = [(h, seq, committed[h]) for h, seq in dropped if h in committed]
        if moved:
            cursor.execute(
                "UPDATE step_message_keys SET seq = c.seq FROM (SELECT "
                f"{MESSAGE_KEY.format('unnest($1)')} AS key, unnest($2) AS old, "
                "unnest($3) AS seq) c WHERE step_message_keys.rowid >= $4 "
                "AND step_message_keys.key = c.key AND step_message_keys.seq = c.old",
                [
                    [h for h, _, _ in moved],
                    [old for _, old, _ in moved],
                    [seq for _, _, seq in moved],
                    self.local_rowid,
                ],
            )


def lost_to_a_concurrent_commit(exc: BaseException) -> bool:
    """Whether a served store's long transaction failed on a message (a deduplicated row)
    that another session committed after it began: trying again, in a transaction that sees
    that row and skips it, succeeds. (A file opened by one process has no other session, so
    the same error there is not this one.)"""
    if not isinstance(exc, duckdb.ConstraintException):
        return False
    text = str(exc)
    return "Duplicate key" in text and any(f'"{key}: ' in text for key in _MESSAGE_KEYS)


_MESSAGE_KEYS = ("key", *(key for key, _ in DEDUPLICATED.values()))
"""The columns a deduplicated table's duplicate is reported by: the primary key (`key`, the
128-bit number of `messages`) and the dedup key itself."""


def _execute(cursor: duckdb.DuckDBPyConnection, many: bool, sql: str, params: Any) -> None:
    if many:
        cursor.executemany(sql, params)
    elif params is None:
        cursor.execute(sql)
    else:
        cursor.execute(sql, params)

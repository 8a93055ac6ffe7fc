"""Where a store's server listens, and how a client reaches it or starts it.

DuckDB lets one process open a file read-write, or many read-only, never both. So while
anything writes a store, one process owns it: the store's server (`python -m
traces.store.writer`), which every other command talks to over a Unix socket. This module is
the client side of meeting it:

- the address: a private directory `traces-<uid>` under the system's temporary directory
  (mode 0700, checked), holding the socket named by a hash of the database's real path (a
  socket path must stay under about 100 bytes; the database's may be longer), the key every
  connection authenticates with (`multiprocessing.connection`'s HMAC challenge; a file
  readable only by its owner), the server's log and a staging directory for files it may
  attach (an analysis's worker outputs);
- `connect`: a session on the running server, if one answers;
- `connect_or_start`: the same, starting a server first when none runs. A spawn lock lets
  one client at a time start one; the server itself holds a life lock for as long as it has
  the file open, so a new server waits for the last one to have let go of it.

A server outlives the client that started it while any other is connected, and exits when
the last leaves; a client told it was the last waits for it to have closed the file, so
whatever runs next (a plain `duckdb.connect`, a read-only command) finds it free.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traces import interrupts
from traces.errors import DatabaseError
from traces.processes import child_env
from traces.store import lake
from traces.store.lake import LakeStore

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

Store = Path | LakeStore
"""Where traces are stored (`traces.store.database.Store`, which imports this module)."""

PROTOCOL = 1
"""Version of the messages client and server exchange; a server refuses other versions."""

START_WAIT_S = 60.0
"""How long a client waits for a server it started to open the database (it may first
wait for the previous server to close the file, then for migrations)."""

RELEASE_WAIT_S = 30.0
"""How long the last client waits for the server to close the file (its final checkpoint)."""

CONNECT_ATTEMPTS = 8
"""Attempts to reach or start a server before giving up: each failed one means a server was
just exiting (or one was started by another client at the same moment)."""

READ, WRITE, RECORD = "read", "write", "record"
"""Session modes: a read-only snapshot, statements in transactions of their own, or
operations group-committed with every recorder's (see `traces.store.committer`)."""


@dataclass(frozen=True)
class Address:
    """The files through which clients meet the server of one database."""

    database: str
    """The store as messages name it: a file's real path, a lake's name."""
    directory: Path
    socket: Path
    spawn_lock: Path
    life_lock: Path
    log: Path
    staging: Path
    """Where clients put files the server may attach; its only readable directory besides
    the database's own."""
    key_file: Path


def address(path: Store) -> Address:
    """The address of the server of the store at `path` (nothing is created): a file by its
    real path, a lake by its name and data path."""
    identity = (
        os.path.realpath(path) if isinstance(path, Path) else f"{path}\0{path.data_path or ''}"
    )
    directory = Path(tempfile.gettempdir()) / f"traces-{os.getuid()}"
    name = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return Address(
        database=identity if isinstance(path, Path) else str(path),
        directory=directory,
        socket=directory / f"{name}.sock",
        spawn_lock=directory / f"{name}.spawn",
        life_lock=directory / f"{name}.life",
        log=directory / f"{name}.log",
        staging=directory / f"{name}.staging",
        key_file=directory / "key",
    )


def prepare(where: Address) -> bytes:
    """Create the private directory (and the staging one) if needed; the authentication key.

    Refuses a directory another user owns or others may enter: a socket there could be
    someone else's server.
    """
    try:
        where.directory.mkdir(mode=0o700, exist_ok=True)
        info = where.directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise DatabaseError(f"{where.directory}: not a directory of this user's")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise DatabaseError(
                f"{where.directory}: others may enter it (mode "
                f"{stat.S_IMODE(info.st_mode):o}); make it 700 or remove it"
            )
        where.staging.mkdir(mode=0o700, exist_ok=True)
        return _key(where.key_file)
    except OSError as exc:
        raise DatabaseError(
            f"{where.directory}: cannot prepare the store's socket: {exc}"
        ) from None


def _key(path: Path) -> bytes:
    """The key in `path`, created (readable by its owner only) the first time."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
    key = path.read_bytes()
    if len(key) != 32:  # a creator killed between create and write, or someone else's file
        path.unlink(missing_ok=True)
        return _key(path)
    return key


@dataclass
class Session:
    """An open session with a server: the connection, and who answers on it."""

    conn: Connection
    server_pid: int
    where: Address

    def close(self, *, last: bool) -> None:
        """Close the connection; when the server said this was its last client, wait until
        it has closed the database file."""
        self.conn.close()
        if last:
            wait_exited(self.server_pid, RELEASE_WAIT_S)


def listening(path: Store) -> bool:
    """Whether a server of `path` accepts connections (a killed one's socket does not)."""
    where = address(path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(where.socket))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def wanted(path: Store) -> bool:
    """Whether a server of `path` is starting (a client holds the spawn lock) or has the
    file (its life lock is held): what tells a reader keeping the file open read-only that it
    must let go of it now (`analyzer.view.reading`). Never blocks, creates nothing."""
    where = address(path)
    for lock in (where.spawn_lock, where.life_lock):
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:  # never created: nobody ever started a server of this store here
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # releases the shared lock just taken, if it was
    return False


def connect(path: Store, mode: str) -> Session | None:
    """A session of `mode` on the running server of `path`, or None when none answers."""
    where = address(path)
    if not where.socket.exists():  # the usual case, and cheaper than a refused connect
        return None
    return _try(where, prepare(where), mode)


def connect_or_start(path: Store, mode: str) -> Session:
    """A session of `mode` on the server of `path`, starting one when none runs.

    Raises the one-line DatabaseError a server that could not start gave (the file is
    locked by another program, is not a trace database...).
    """
    where = address(path)
    key = prepare(where)
    for _ in range(CONNECT_ATTEMPTS):
        session = _try(where, key, mode)
        if session is not None:
            return session
        with _locked(where.spawn_lock):
            # Another client may have started one while this one waited for the lock.
            session = _try(where, key, mode)
            if session is not None:
                return session
            _start(where, path)
    raise DatabaseError(f"{path}: the store's server keeps exiting before it can be reached")


def _try(where: Address, key: bytes, mode: str) -> Session | None:
    """Connect and say hello; None when nobody listens or the server is shutting down."""
    # Imported here: a read command on a store nobody serves never needs it (its import
    # costs a reading command's start-up more than the rest of its work).
    from multiprocessing.connection import Client

    try:
        conn = Client(str(where.socket), family="AF_UNIX", authkey=key)
    except (FileNotFoundError, ConnectionError, EOFError):
        return None
    except OSError as exc:
        raise DatabaseError(f"{where.database}: cannot reach the store's server: {exc}") from None
    try:
        conn.send(("hello", {"mode": mode, "pid": os.getpid(), "protocol": PROTOCOL}))
        reply: tuple[str, Any] = conn.recv()
    except (EOFError, OSError):  # it closed its listener between our connect and hello
        conn.close()
        return None
    if reply[0] != "welcome":
        conn.close()
        raise DatabaseError(f"{where.database}: {reply[1]}")
    return Session(conn=conn, server_pid=int(reply[1]["pid"]), where=where)


def _start(where: Address, path: Store) -> None:
    """Start a server of `path` and wait until it listens; raise the line it failed with."""
    import subprocess

    ready_read, ready_write = os.pipe()
    try:
        with where.log.open("ab") as log, interrupts.starting_children():
            # Born with Ctrl-C and SIGTERM blocked, in a session of its own: no signal the
            # terminal sends this command's group reaches it. It forks once at start and
            # the child serves, so it is nobody's child (see `traces.store.writer`).
            starter = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "traces.store.writer",
                    str(path),
                    str(ready_write),
                    str(os.getpid()),
                ],
                pass_fds=(ready_write,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=lake.child_env(path, child_env()),
                start_new_session=True,
            )
    except BaseException:
        os.close(ready_read)
        raise
    finally:
        os.close(ready_write)
    try:
        starter.wait()
        line = _read_line(ready_read, START_WAIT_S)
    finally:
        os.close(ready_read)
    if line.startswith("ready"):
        return
    if line.startswith("failed "):
        raise DatabaseError(line.removeprefix("failed "))
    raise DatabaseError(
        f"{path}: the store's server exited before opening the database (see {where.log})"
    )


def _read_line(fd: int, timeout: float) -> str:
    """The first line written to pipe `fd`, "" when it closes first or nothing comes."""
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").partition("\n")[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def wait_exited(pid: int, timeout: float) -> bool:
    """Wait until process `pid` has exited (True), at most `timeout` seconds (False)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def exited(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie not yet reaped counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return True  # the pid was reused by another user's process: ours is gone
    try:  # a zombie has exited (and closed its files); its parent has not reaped it yet
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"

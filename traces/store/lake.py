"""DuckLake stores: the trace store as a DuckLake — a catalog database and Parquet data files.

A store named `ducklake:…` (`--db`, `$TRACES_DB`) is a DuckLake, named as DuckLake names it:

- `ducklake:postgres:dbname=traces host=… user=…` — the catalog in PostgreSQL, so several
  recorders on several hosts write one store;
- `ducklake:sqlite:PATH` — the catalog in a SQLite file, several processes of one host;
- `ducklake:PATH` — the catalog in a DuckDB file (one writing process at a time).

Its data files (Parquet, zstd) lie under the data path (`--data-path`, `$TRACES_DATA_PATH`),
which only creating a store needs: DuckLake keeps it in the catalog.

The extensions (`ducklake`, `postgres`, `sqlite`) come from PyPI wheels (the `lake` extra),
not from DuckDB's extension repository, which many machines cannot reach: each wheel holds
the extension file for one DuckDB version, loaded here by path.

A password in the connection string is taken out of it when the name is read and handed to
libpq through `PGPASSWORD` in this process's environment (which the writer process and
analysis workers inherit): DuckDB shows an attached database's connection string to any
query (`duckdb_databases()`) and quotes it in its errors, and the string is what `str()` of
the store prints. `~/.pgpass` and `PGPASSWORD` work as for any libpq client.

What DuckLake lacks that a file store relies on, and what is done instead, is in
`traces.store.lake_schema` (constraints, deduplicated inserts) and `commit` below
(another writer's conflicting commit).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import re
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import duckdb

from traces.errors import DatabaseError
from traces.one_line import exception_line

PREFIX = "ducklake:"
DATA_PATH_ENV_VAR = "TRACES_DATA_PATH"
ALIAS = "store"
"""The name the lake is attached under (and made the default database)."""
PASSWORD_ENV_VAR = "PGPASSWORD"

EXTENSIONS = {"ducklake": "ducklake", "postgres": "postgres_scanner", "sqlite": "sqlite_scanner"}
"""Each extension's wheel (`duckdb-extension-NAME`) and the name DuckDB loads it by, which
its file must bear: the entry point is found from the file name."""

INSTALL_HINT = "pip install 'agent-traces[lake]'"

COMMIT_ATTEMPTS = 30
"""Times a transaction is tried when other writers' commits conflict with it."""
_RETRY_WAIT_S = (0.005, 0.25)
"""First and longest pause between attempts (doubling, with jitter so that writers that
collided do not collide again in step)."""

_T = TypeVar("_T")
_LAKES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, LakeStore] = (
    weakref.WeakKeyDictionary()
)
"""Connections to a lake and their store, so that shared code (the inserts, transactions)
does what the lake needs."""


@dataclass(frozen=True)
class LakeStore:
    """A DuckLake store: its catalog as DuckLake names it (what follows `ducklake:`, without
    any password) and the data path given for it (None: the one the catalog holds)."""

    catalog: str
    data_path: str | None = None
    password: str | None = field(default=None, repr=False, compare=False)
    """The password the name held, handed to libpq as `PGPASSWORD` when connecting (never
    part of the name: see the module docstring)."""

    def __str__(self) -> str:
        """The store's name as the user gave it, minus the password."""
        return PREFIX + self.catalog

    @property
    def kind(self) -> str:
        """The catalog's database: `postgres`, `sqlite` or `duckdb`."""
        head = self.catalog.split(":", 1)[0]
        return head if head in ("postgres", "sqlite") else "duckdb"

    @property
    def catalog_file(self) -> Path | None:
        """The catalog's file (SQLite, DuckDB); None for a server."""
        if self.kind == "postgres":
            return None
        return Path(self.catalog.split(":", 1)[1] if self.kind == "sqlite" else self.catalog)

    def exists(self) -> bool:
        """Whether a store may be there: its catalog file exists (a PostgreSQL catalog is
        only known once connected to, so it may)."""
        found = self.catalog_file
        return found is None or found.exists()


CATALOG_TYPES = ("postgres", "sqlite")
"""The catalog databases a lake's name may give before its catalog (none: a DuckDB file)."""
_DATABASE_TYPE = re.compile(r"([A-Za-z0-9_]{2,}):(?!//)")
"""What DuckDB takes for a database type before a path, as it does (`ATTACH 'sqlite:x'`):
two or more word characters and a colon not starting a URL (one letter is a drive)."""


def is_lake_name(name: str) -> bool:
    """Whether a `--db` value names a DuckLake store."""
    return name.startswith(PREFIX)


def parse(name: str, data_path: str | Path | None = None) -> LakeStore:
    """The store `ducklake:…` names; a password in it moves to `PGPASSWORD` (see above)."""
    catalog = name[len(PREFIX) :].strip()
    if not catalog or catalog in ("postgres:", "sqlite:"):
        raise DatabaseError(
            f"{name!r}: name the catalog: ducklake:postgres:CONNINFO, ducklake:sqlite:PATH "
            "or ducklake:PATH"
        )
    head = _DATABASE_TYPE.match(catalog)
    if head is not None and head[1] not in CATALOG_TYPES:
        # DuckDB reads `TYPE:` before a path as the extension that opens it, so a misspelt
        # catalog type would otherwise fail only when written to, naming a missing
        # extension file, and reads would call the store absent.
        raise DatabaseError(
            f"{name!r}: unknown catalog type {head[1]!r}: name the catalog as "
            "ducklake:postgres:CONNINFO, ducklake:sqlite:PATH or ducklake:PATH"
        )
    password = None
    if catalog.startswith("postgres:"):
        catalog, password = _without_password(catalog)
        if password is not None:
            # For this process's connections, and those of the processes it starts.
            os.environ[PASSWORD_ENV_VAR] = password
    if data_path is None:
        data_path = os.environ.get(DATA_PATH_ENV_VAR) or None
    path = None if data_path is None else _data_path(str(data_path))
    return LakeStore(catalog, path, password)


def _data_path(text: str) -> str:
    """A local data path made absolute (every writer, wherever started, must agree on it)
    with the trailing slash DuckLake expects; a URL (`s3://…`) as given."""
    if "://" in text:
        return text if text.endswith("/") else text + "/"
    return os.path.abspath(os.path.expanduser(text)) + os.sep


_PASSWORD_PAIR = re.compile(r"(?:^|\s)password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<pw>[^\s@/]*)@")


def _without_password(catalog: str) -> tuple[str, str | None]:
    """`postgres:CONNINFO` without its password, and the password (None when absent)."""
    from urllib.parse import unquote

    conninfo = catalog[len("postgres:") :]
    found = _URI_PASSWORD.match(conninfo)
    if found is not None:
        return f"postgres:{found['head']}@{conninfo[found.end() :]}", unquote(found["pw"])
    found = _PASSWORD_PAIR.search(conninfo)
    if found is None:
        return catalog, None
    quoted, bare = found.groups()
    password = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    rest = (conninfo[: found.start()] + conninfo[found.end() :]).strip()
    return f"postgres:{' '.join(rest.split())}", password


def child_env(store: object, env: dict[str, str]) -> dict[str, str]:
    """`env` for a process started on `store` by its name (`str(store)`, as the writer
    process is): a lake's data path goes with it, as `$TRACES_DATA_PATH` (its password is in
    the environment already, as `PGPASSWORD`)."""
    if isinstance(store, LakeStore) and store.data_path is not None:
        env[DATA_PATH_ENV_VAR] = store.data_path
    if isinstance(store, LakeStore) and store.password is not None:
        env[PASSWORD_ENV_VAR] = store.password
    return env


# -- extensions -----------------------------------------------------------------------------


def extension_file(name: str) -> Path:
    """The extension file that wheel `duckdb-extension-NAME` installed for this DuckDB."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            f"a lake store needs the DuckDB extension {name!r}, which is not installed "
            f"({INSTALL_HINT})"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    wanted = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if wanted.is_file():
        return wanted
    built = sorted(p.parent.name for p in root.glob(f"v*/{name}.duckdb_extension"))
    raise DatabaseError(
        f"the DuckDB extension {name!r} installed is built for DuckDB "
        f"{', '.join(built) or 'another version'}, and this is DuckDB {duckdb.__version__} "
        f"({INSTALL_HINT} installs the DuckDB version its extensions are built for)"
    )


def _extension_dir() -> Path:
    """A private folder of links to the extension files, each named as DuckDB loads it."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(cache) / "agent-traces" / "duckdb-extensions" / f"v{duckdb.__version__}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home: a folder of this process's own
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="traces-duckdb-extensions-"))
    return folder


def load_extensions(conn: duckdb.DuckDBPyConnection, store: LakeStore) -> None:
    """Load DuckLake and the extension of the store's catalog database into `conn`."""
    names = ["ducklake"] + ([store.kind] if store.kind != "duckdb" else [])
    files = {name: extension_file(name) for name in names}
    folder = _extension_dir()
    for name, target in files.items():
        link = folder / f"{EXTENSIONS[name]}.duckdb_extension"
        with contextlib.suppress(OSError):
            if os.readlink(link) == str(target):
                conn.execute(f"LOAD '{_quoted(link)}'")
                continue
        # Replaced atomically: another process may be loading the old link right now.
        temporary = folder / f".{link.name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        temporary.replace(link)
        conn.execute(f"LOAD '{_quoted(link)}'")


# -- connecting -----------------------------------------------------------------------------


def connect(store: LakeStore, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached as `store` and used by default.

    Raises DatabaseError (one line, no password) when an extension is missing, the catalog
    cannot be reached, or the data path cannot hold the store.
    """
    # Never fetch an extension from DuckDB's repository: they come from the wheels.
    conn = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        load_extensions(conn, store)
        _attach(conn, store, read_only=read_only)
        conn.execute(f"USE {ALIAS}")
    except BaseException:
        conn.close()
        raise
    _LAKES[conn] = store
    return conn


def attach(
    conn: duckdb.DuckDBPyConnection, store: LakeStore, alias: str, *, read_only: bool
) -> None:
    """Attach the lake to an existing connection as `alias` (an analysis worker's)."""
    load_extensions(conn, store)
    _attach(conn, store, read_only=read_only, alias=alias)
    _LAKES[conn] = store


def _attach(
    conn: duckdb.DuckDBPyConnection, store: LakeStore, *, read_only: bool, alias: str = ALIAS
) -> None:
    options = []
    if store.data_path is not None:
        if not read_only:
            _check_data_path(store)
        options.append(f"DATA_PATH '{_quoted(store.data_path)}'")
    if read_only:
        options.append("READ_ONLY")
    if store.kind != "postgres":
        _check_catalog_file(store, read_only=read_only)
    created = store.kind == "sqlite" and not read_only and _create_sqlite_catalog(store)
    clause = f" ({', '.join(options)})" if options else ""
    if store.password is not None:  # its own, should another store's have been set since
        os.environ[PASSWORD_ENV_VAR] = store.password
    try:
        for attempt in range(1, _ATTACH_ATTEMPTS + 1):
            try:
                conn.execute(f"ATTACH '{_quoted(str(store))}' AS {alias}{clause}")
                break
            except duckdb.Error as exc:
                # Writers that open a new lake at once all create DuckLake's own tables in
                # the catalog; all but one fail, and then find the lake made.
                if attempt == _ATTACH_ATTEMPTS or not any(r in str(exc) for r in _RACES):
                    raise
                time.sleep(random.uniform(0.01, 0.1))
    except duckdb.Error as exc:
        if created and store.catalog_file is not None:  # no half-made catalog left behind
            for leftover in ("", "-wal", "-shm"):
                Path(f"{store.catalog_file}{leftover}").unlink(missing_ok=True)
        raise DatabaseError(f"{store}: {_attach_error(store, exc, read_only)}") from None


_ATTACH_ATTEMPTS = 10
_RACES = ("duplicate key value", "already exists")
"""What a catalog says to a writer that lost the race to initialize a new lake."""


def _check_catalog_file(store: LakeStore, *, read_only: bool) -> None:
    found = store.catalog_file
    if found is None:
        return
    if read_only and not found.exists():
        raise DatabaseError(
            f"{store}: no trace store here (record a run first, or pass --db / set $TRACES_DB)"
        )
    if not found.parent.is_dir():
        raise DatabaseError(f"{store}: directory {found.parent} does not exist")


def _create_sqlite_catalog(store: LakeStore) -> bool:
    """Create a new SQLite catalog in WAL mode (a setting the file keeps): readers then
    never block a writer's commit, nor a commit the readers, which SQLite's default
    journal does (a `traces runs` during a recording would fail "database is locked").
    Whether it created it."""
    found = store.catalog_file
    if found is None or found.exists():
        return False
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(found)) as catalog:
            catalog.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as exc:
        raise DatabaseError(f"{store}: cannot create the catalog: {exc}") from None
    return True


def _check_data_path(store: LakeStore) -> None:
    """A local data path must be a directory, or one that can be made in an existing one:
    a typo should not scatter Parquet files into a new tree."""
    path = store.data_path
    if path is None or "://" in path:
        return
    folder = Path(path)
    if folder.is_dir():
        return
    if folder.exists():
        raise DatabaseError(f"{store}: data path {path} is not a directory")
    if not folder.parent.is_dir():
        raise DatabaseError(f"{store}: data path {path}: directory {folder.parent} does not exist")
    try:
        folder.mkdir()
    except OSError as exc:
        raise DatabaseError(f"{store}: data path {path}: {exc.strerror}") from None


def _attach_error(store: LakeStore, exc: duckdb.Error, read_only: bool) -> str:
    text = redacted(str(exc))
    if "data_path is not set" in text:
        return (
            f"no trace store here yet; pass --data-path DIR (or set ${DATA_PATH_ENV_VAR}) "
            "to create one"
        )
    if read_only and ("does not exist" in text or "not initialized" in text.lower()):
        return "no trace store here (record a run first, or pass --db / set $TRACES_DB)"
    # libpq's reason is the end of DuckDB's message, after the connection string it quotes.
    reason = text.split("Unable to connect to Postgres at", 1)
    if len(reason) == 2:
        detail = reason[1].split('":', 1)[-1].strip()
        return f"cannot reach the catalog database: {_first_line(detail)}"
    return f"cannot open the lake: {_first_line(text)}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text


def redacted(text: str) -> str:
    """An error text with any connection-string password in it replaced."""
    from traces.redaction import redact_connection_secrets  # only on the way to an error

    return redact_connection_secrets(text)


def error_line(exc: BaseException) -> str:
    """An exception met on a lake as one line, without any password it quotes. (DuckLake
    gives why a commit failed on the line after saying it did: both are kept.)"""
    line = exception_line(exc)
    if line.endswith("Failed to commit DuckLake transaction."):
        reason = [text.strip() for text in str(exc).splitlines()[1:] if text.strip()]
        line = " ".join([line, *reason[:1]])
    return redacted(line)


def data_folders(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The local folder of the data files of the lake `conn` reads (none for a file store):
    what a connection whose file access is locked down must still be allowed to read."""
    if not is_lake(conn):
        return []
    row = conn.execute(
        f"SELECT value FROM ducklake_options('{ALIAS}') WHERE option_name = 'data_path'"
    ).fetchone()
    path = str(row[0]) if row else ""
    return [path] if path and "://" not in path else []


def is_lake(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether `conn` is a lake's connection (opened by `connect` or given `attach`)."""
    return conn in _LAKES


def _quoted(text: object) -> str:
    return str(text).replace("'", "''")


# -- commits --------------------------------------------------------------------------------


def is_conflict(exc: BaseException) -> bool:
    """Whether a failed commit lost to another writer's, so that trying again can succeed.

    DuckLake settles most concurrent commits itself; what reaches us is a logical conflict
    (two transactions changing one table in ways that cannot both stand: a run inserted
    while another writer updates runs), a SQLite catalog busy with another commit (SQLite
    lets one transaction write at a time, and one whose snapshot went stale cannot), or
    DuckLake's own retries running out.
    """
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc)
    return any(sign in text for sign in _CONFLICTS)


_CONFLICTS = ("Transaction conflict", "database is locked", "maximum retry count")


def attempts(conn: duckdb.DuckDBPyConnection) -> Iterator[int]:
    """Attempt numbers for a transaction on `conn`: one on a file store; on a lake, as many
    as `COMMIT_ATTEMPTS`, pausing between them (the caller retries on `is_conflict`)."""
    yield 1
    if not is_lake(conn):
        return
    wait = _RETRY_WAIT_S[0]
    for attempt in range(2, COMMIT_ATTEMPTS + 1):
        time.sleep(random.uniform(wait / 2, wait))
        wait = min(wait * 2, _RETRY_WAIT_S[1])
        yield attempt


def transaction(conn: duckdb.DuckDBPyConnection, work: Callable[[], _T]) -> _T:
    """`work()` in one transaction, committed; on a lake, done again (from BEGIN) when
    another writer's commit conflicted with it. Raises what the last attempt raised, after
    rolling back."""
    result: _T
    for attempt in attempts(conn):
        with writing_turn(conn):
            conn.execute("BEGIN TRANSACTION")
            try:
                result = work()
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):
                    conn.execute("ROLLBACK")
                if attempt < COMMIT_ATTEMPTS and is_lake(conn) and is_conflict(exc):
                    continue
                raise
        return result
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextlib.contextmanager
def writing_turn(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Around a write transaction on `conn`: on a SQLite catalog, this process's turn.

    SQLite lets one transaction write at a time, and refuses the commit of one that began
    before another's commit ("database is locked"): without turns, writers that commit
    every few milliseconds keep invalidating each other, and one can lose every retry.
    Taking turns on a lock file beside the catalog (released by the system if the process
    dies) makes them wait instead. A PostgreSQL catalog needs none (DuckLake settles
    concurrent commits there); a DuckDB one has one writing process at most.
    """
    store = _LAKES.get(conn)
    found = store.catalog_file if store is not None and store.kind == "sqlite" else None
    if found is None:
        yield
        return
    import fcntl

    with open(f"{found}.writer-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Moving runs between stores: every run of each source that the destination lacks, with
all its rows, in one transaction.

Each source is attached read-only to the destination's connection and copied with one
`INSERT INTO dst.t SELECT … FROM src.t JOIN <runs to copy>` per table (`run_tables` says
which tables and how): no row passes through Python. Statements name both sides by catalog
(`dst.main.t`, `src.main.t`), so a store DuckDB attaches another way (a DuckLake catalog)
is either side as a file is: the destination is opened by `open_for_writing` (its catalog
the connection's default), a lake source attached by `traces.store.lake` (`attach_lake`), a
file source by `attach_file`. On a lake destination the transaction is done again when
another writer's commit conflicts with it (`lake.transaction`).

Runs are matched by id, and by the columns set when a run starts (`run_tables.KEYED`):

- a run whose id the destination holds with the same start is already there: skipped
  (merging twice changes nothing);
- a run whose id the destination holds for a different run (ids are the start second and 32
  random bits: two laptops can, very rarely, draw the same) is copied as `<id>-<8 hex>`, the
  hex from its start columns, so the next merge finds it there under that name;
- runs of an imported file the destination already imported under another import (the same
  bytes, on another laptop) are skipped as duplicates unless `again`;
- a run still `running` in a source nothing writes to any more (a file this merge holds
  locked) lost its recorder: it is copied and ended as `interrupted`, as the next recorder
  on its host would end it. In a source with live writers (`live`), it is left for later.

A source at an older schema version is upgraded in a temporary copy first, by the same
migrations that upgrade any store (a later migration may have rewritten data, not only added
columns, so mapping columns would not read it right); one newer than this code is refused.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from traces.errors import DatabaseError, TracesError
from traces.one_line import one_line
from traces.store import lake
from traces.store.database import (
    LOCK_WAIT_S,
    Store,
    interrupted_statement,
    is_served_now,
    open_file_for_writing,
    open_for_reading,
    open_for_writing,
    remove_created,
)
from traces.store.lake import LakeStore
from traces.store.migrations import current_version, latest_version
from traces.store.run_tables import (
    KEYED,
    REFERENCES,
    RUN_COLUMN,
    RUNS,
    Role,
    classify,
    store_tables,
)
from traces.store.tables import DERIVED, MESSAGE_SEQ, RUN_KEY
from traces.store.writer_process import close_interrupted

IMPORTS = "imports"
RENAMED_HEX = 8
"""Hex digits of the start columns' hash added to a run id the destination holds for
another run."""

StepCallback = Callable[[int, int], None]
"""Called with (tables copied, tables to copy) over every source, after each table."""


@dataclass
class Source:
    """A store attached to the merge's connection, read-only."""

    name: str
    """As the user gave it."""
    catalog: str
    live: bool = False
    """Writers may add to it while it is read (a shared lake store): runs still `running`
    there are left for a later merge instead of being ended as interrupted."""
    upgraded_from: int | None = None
    """Its schema version, when it was read from an upgraded copy."""


@dataclass
class SourceReport:
    """What merging one source did."""

    source: str
    runs: int = 0
    """Runs in the source."""
    copied: int = 0
    """Runs copied, renamed ones included."""
    present: int = 0
    """Runs the destination already held."""
    duplicates: int = 0
    """Runs of files the destination had imported under another import (not copied)."""
    running: int = 0
    """Runs still being recorded in a live source (not copied)."""
    renamed: list[tuple[str, str]] = field(default_factory=list)
    """(id in the source, id in the destination) of each run copied under a new id."""
    interrupted: int = 0
    """Runs copied from `running` and ended as interrupted."""
    outdated: int = 0
    """Runs the destination held whose source copy has since changed (ended, resumed)."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows copied per table."""
    seconds: float = 0.0
    upgraded_from: int | None = None

    @property
    def skipped(self) -> int:
        """Runs of the source not copied, whatever the reason."""
        return self.present + self.duplicates + self.running


def merge_stores(
    sources: Sequence[Store],
    into: Store,
    *,
    again: bool = False,
    on_step: StepCallback | None = None,
) -> list[SourceReport]:
    """Copy every run of `sources` that `into` lacks into `into` (created if missing), in one
    transaction; return what each source gave.

    Raises TracesError (exit 2) for a source named twice or one that is the destination,
    DatabaseError (exit 4) naming the store for a missing, locked, foreign or too new one;
    on any error or Ctrl-C the destination is left as it was (a file removed if this created
    it). Sources and destination are files or lake stores, in any mix.
    """
    _check_names(sources, into)
    existed = into.exists()
    try:
        conn = _open_destination(into)
    except BaseException as exc:  # locked, not ours, or Ctrl-C while creating or migrating it
        if not existed:
            remove_created(into)
        if interrupted_statement(exc):
            raise KeyboardInterrupt from None
        raise
    scratch = Path(tempfile.mkdtemp(prefix="traces-merge-"))
    try:
        reports = _merge(conn, into, sources, scratch, again, on_step)
    except BaseException as exc:
        _abandon(conn, into, existed)
        if interrupted_statement(exc):
            raise KeyboardInterrupt from None
        if isinstance(exc, duckdb.Error):
            detail = one_line(lake.redacted(str(exc)))
            raise DatabaseError(f"{into}: merge failed: {detail}") from None
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    conn.close()
    return reports


def _open_destination(into: Store) -> duckdb.DuckDBPyConnection:
    """The destination opened by this process itself: the sources are attached to its
    connection, which the store's server of a file (reading no other file, loading no
    extension: `traces.store.server`) could not do. A file another traces command is
    writing is refused until it is done."""
    if not isinstance(into, Path):
        return open_for_writing(into)
    if is_served_now(into):
        raise DatabaseError(
            f"{into}: another traces command is writing this store; merge into it once that ends"
        )
    return open_file_for_writing(into)


def _check_names(sources: Sequence[Store], into: Store) -> None:
    """Refuse, before opening anything, a source that is the destination or named twice,
    and a source that does not exist."""
    seen: dict[object, Store] = {}
    target = _identity(into)
    for source in sources:
        if not source.exists():
            raise DatabaseError(f"{source}: no trace database here")
        key = _identity(source)
        if key == target:
            raise TracesError(f"{source}: is the destination --into {into}; nothing to merge")
        if key in seen:
            raise TracesError(f"{source}: given twice (as {seen[key]} before)")
        seen[key] = source


def _identity(path: Store) -> object:
    """The file a path names, whatever the links and spelling (`./a`, a symlink, a hard
    link to the same inode are one file); a path that names none yet, resolved; a lake by
    its catalog's file, or its name."""
    if isinstance(path, LakeStore):
        found = path.catalog_file
        return ("lake", path.catalog) if found is None else ("lake", _identity(found))
    try:
        stat = path.stat()
    except OSError:
        return path.resolve()
    return stat.st_dev, stat.st_ino


def _merge(
    conn: duckdb.DuckDBPyConnection,
    into: Store,
    sources: Sequence[Store],
    scratch: Path,
    again: bool,
    on_step: StepCallback | None,
) -> list[SourceReport]:
    version = current_version(conn)
    if version > latest_version():
        raise DatabaseError(_too_new(into, version))
    row = conn.execute("SELECT current_database()").fetchone()
    dst = str(row[0]) if row else "main"
    tables = store_tables(conn, dst)
    roles = classify(tables)
    # Every source is attached and checked before anything is written: a bad one refuses
    # the merge at once.
    attached = [
        attach_lake(conn, path, f"merge_src_{i}", tables)
        if isinstance(path, LakeStore)
        else attach_file(conn, path, f"merge_src_{i}", scratch, tables)
        for i, path in enumerate(sources)
    ]
    copied = sum(role is not Role.own for role in roles.values())

    def copy_all() -> list[SourceReport]:
        reports = []
        for i, source in enumerate(attached):

            def step(done: int, _: int, before: int = i * copied) -> None:
                if on_step is not None:
                    on_step(before + done, copied * len(attached))

            reports.append(copy_source(conn, source, dst, roles, tables, again, step))
        return reports

    # One transaction; on a lake, begun again if another writer's commit conflicts with it.
    reports = lake.transaction(conn, copy_all)
    for source in attached:
        conn.execute(f"DETACH {source.catalog}")
    return reports


def attach_file(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    catalog: str,
    scratch: Path,
    tables: dict[str, tuple[str, ...]],
) -> Source:
    """Attach the store file at `path` read-only as `catalog`, checked to be a trace store
    whose tables are `tables` (the destination's); one at an older schema version is read
    from an upgraded copy in `scratch`."""
    _attach(conn, path, catalog)
    version = _version(conn, catalog)
    upgraded_from = None
    if version == 0:
        conn.execute(f"DETACH {catalog}")
        raise DatabaseError(f"{path}: not a trace database (no schema_migrations table)")
    if version > latest_version():
        conn.execute(f"DETACH {catalog}")
        raise DatabaseError(_too_new(path, version))
    if version < latest_version():
        # Copied while attached: the read lock keeps any writer out until the copy is whole.
        copy = scratch / f"{catalog}.duckdb"
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        conn.execute(f"DETACH {catalog}")
        try:
            open_file_for_writing(copy).close()  # a private copy: no server needed
        except DatabaseError as exc:
            raise DatabaseError(
                f"{path}: cannot upgrade a copy from schema version {version}: {exc}"
            ) from None
        _attach(conn, copy, catalog, shown=path)
        upgraded_from = version
    found = store_tables(conn, catalog)
    if found != tables:
        conn.execute(f"DETACH {catalog}")
        differ = sorted(t for t in found.keys() | tables.keys() if found.get(t) != tables.get(t))
        raise DatabaseError(
            f"{path}: its tables differ from the destination's at the same schema version "
            f"({', '.join(differ)})"
        )
    return Source(str(path), catalog, upgraded_from=upgraded_from)


def attach_lake(
    conn: duckdb.DuckDBPyConnection,
    store: LakeStore,
    catalog: str,
    tables: dict[str, tuple[str, ...]],
) -> Source:
    """Attach the lake `store` read-only as `catalog`, checked to be a trace store whose
    tables are `tables`. A lake at an older schema version is upgraded in place first, as
    any command that opens it does; other writers may be writing it (`Source.live`)."""
    open_for_reading(store).close()  # one-line errors for a missing or foreign lake
    lake.attach(conn, store, catalog, read_only=True)
    version = _version(conn, catalog)
    if version > latest_version():
        conn.execute(f"DETACH {catalog}")
        raise DatabaseError(_too_new(store, version))
    found = store_tables(conn, catalog)
    if found != tables:
        conn.execute(f"DETACH {catalog}")
        differ = sorted(t for t in found.keys() | tables.keys() if found.get(t) != tables.get(t))
        raise DatabaseError(
            f"{store}: its tables differ from the destination's at the same schema version "
            f"({', '.join(differ)})"
        )
    return Source(str(store), catalog, live=True)


def _attach(
    conn: duckdb.DuckDBPyConnection, path: Path, catalog: str, shown: Path | None = None
) -> None:
    """ATTACH read-only, waiting a little for a writer that is finishing, like opening does."""
    name = shown or path
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            conn.execute(f"ATTACH {_literal(str(path))} AS {catalog} (READ_ONLY)")
            return
        except duckdb.IOException as exc:
            text = one_line(str(exc))
            if "lock" not in text.lower():
                raise DatabaseError(f"{name}: cannot open database: {text}") from None
            if time.monotonic() >= deadline:
                raise DatabaseError(
                    f"{name}: the database is locked by another process (a recording in progress?)"
                ) from None
            time.sleep(0.05)
        except duckdb.Error as exc:
            raise DatabaseError(f"{name}: not a trace database: {one_line(str(exc))}") from None


def _version(conn: duckdb.DuckDBPyConnection, catalog: str) -> int:
    try:
        row = conn.execute(
            f"SELECT coalesce(max(version), 0) FROM {_name(catalog)}.main.schema_migrations"
        ).fetchone()
    except duckdb.CatalogException:
        return 0
    return int(row[0]) if row else 0


def _too_new(path: Store, version: int) -> str:
    return (
        f"{path}: schema version {version} is newer than this traces knows "
        f"({latest_version()}); upgrade agent-traces to merge it"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name(catalog: str) -> str:
    """A catalog's name quoted (a store file's name is its catalog's: `my-store`)."""
    return '"' + catalog.replace('"', '""') + '"'


def _plan_table(table: str) -> str:
    """The temporary table holding the plan for `table` (`_plan`)."""
    return f"temp.main.merge_{table}"


def copy_source(
    conn: duckdb.DuckDBPyConnection,
    source: Source,
    dst: str,
    roles: dict[str, Role],
    tables: dict[str, tuple[str, ...]],
    again: bool = False,
    on_step: StepCallback | None = None,
) -> SourceReport:
    """Copy the runs of `source` that catalog `dst` lacks, inside the caller's transaction."""
    started = time.perf_counter()
    report = SourceReport(source.name, upgraded_from=source.upgraded_from)
    src, into = _name(source.catalog), _name(dst)
    runs, imports = _plan_table(RUNS), _plan_table(IMPORTS)
    _plan(conn, IMPORTS, src, into)
    if not again:  # the same file imported on two machines: its runs once
        conn.execute(
            f"""UPDATE {imports} m SET state = 'duplicate' FROM {src}.main.{IMPORTS} t
            WHERE t.id = m.src_id AND m.state IN ('new', 'renamed')
              AND t.sha256 IN (SELECT sha256 FROM {into}.main.{IMPORTS})"""
        )
    _plan(conn, RUNS, src, into)
    conn.execute(
        f"""UPDATE {runs} m SET state = 'duplicate' FROM {src}.main.{RUNS} t
        JOIN {imports} i ON i.src_id = t.import_id
        WHERE t.id = m.src_id AND m.state IN ('new', 'renamed') AND i.state = 'duplicate'"""
    )
    if source.live:
        conn.execute(
            f"""UPDATE {runs} m SET state = 'running' FROM {src}.main.{RUNS} t
            WHERE t.id = m.src_id AND m.state IN ('new', 'renamed') AND t.status = 'running'"""
        )
    _count(conn, report, src, into)
    _number_runs(conn, src, into)
    copied = [table for table, role in roles.items() if role is not Role.own]
    for table in copied:
        report.rows[table] = _copy_table(conn, table, roles[table], src, into, tables[table])
        if on_step is not None:
            on_step(len(report.rows), len(copied))
    was_running = [
        str(dst_id)
        for (dst_id,) in conn.execute(
            f"""SELECT m.dst_id FROM {runs} m JOIN {src}.main.{RUNS} t ON t.id = m.src_id
            WHERE m.state IN ('new', 'renamed') AND t.status = 'running'"""
        ).fetchall()
    ]
    close_interrupted(conn, was_running)  # in the connection's default catalog: `dst`
    report.interrupted = len(was_running)
    report.seconds = time.perf_counter() - started
    return report


def _plan(conn: duckdb.DuckDBPyConnection, table: str, src: str, dst: str) -> None:
    """Fill the temporary table `_plan_table(table)`: each source row's key, its key in the
    destination and its state: `present` (the destination holds it), `new`, `renamed` (its
    key is taken by another row: copied under `<key>-<hex>`) or `clash` (that name too).
    `src` and `dst` are quoted catalog names."""
    key, identity = KEYED[table].key, KEYED[table].identity
    parts = ", ".join(f"coalesce(CAST(t.{c} AS VARCHAR), '')" for c in identity)
    ident = f"md5(concat_ws('|', {parts}))"
    renamed = f"s.src_id || '-' || left(s.ident, {RENAMED_HEX})"
    plan = _plan_table(table)
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {plan.removeprefix("temp.main.")} AS
        WITH s AS (SELECT t.{key} AS src_id, {ident} AS ident FROM {src}.main.{table} t),
             d AS (SELECT t.{key} AS id, {ident} AS ident FROM {dst}.main.{table} t)
        SELECT s.src_id,
               CASE WHEN a.ident IS NULL OR a.ident = s.ident THEN s.src_id
                    ELSE {renamed} END AS dst_id,
               CASE WHEN a.ident = s.ident OR b.ident = s.ident THEN 'present'
                    WHEN a.ident IS NULL THEN 'new'
                    WHEN b.ident IS NULL THEN 'renamed'
                    ELSE 'clash' END AS state
        FROM s LEFT JOIN d a ON a.id = s.src_id
               LEFT JOIN d b ON b.id = {renamed}
        """
    )
    clash = conn.execute(
        f"SELECT src_id, dst_id FROM {plan} WHERE state = 'clash' LIMIT 1"
    ).fetchone()
    if clash is not None:
        raise DatabaseError(
            f"{table} {clash[0]}: the destination holds other rows under both {clash[0]} "
            f"and {clash[1]}; cannot copy it under either"
        )


def _number_runs(conn: duckdb.DuckDBPyConnection, src: str, dst: str) -> None:
    """Give each run the plan copies its key in the destination (`dst_key`): the numbers
    after the destination's, in the source's order, so that the copied rows, stored in that
    order, keep their runs' keys together (migration 12)."""
    runs = _plan_table(RUNS)
    conn.execute(f"ALTER TABLE {runs} ADD COLUMN dst_key BIGINT")
    conn.execute(
        f"""UPDATE {runs} m SET dst_key = n.dst_key FROM (
            SELECT p.src_id, (SELECT coalesce(max(key), 0) FROM {dst}.main.{RUNS})
                   + row_number() OVER (ORDER BY t.key, t.id) AS dst_key
            FROM {runs} p JOIN {src}.main.{RUNS} t ON t.id = p.src_id
            WHERE p.state IN ('new', 'renamed')
        ) n WHERE n.src_id = m.src_id"""
    )


def _count(conn: duckdb.DuckDBPyConnection, report: SourceReport, src: str, dst: str) -> None:
    """What the plan of `runs` says, into the report."""
    runs = _plan_table(RUNS)
    states = dict(conn.execute(f"SELECT state, count(*) FROM {runs} GROUP BY state").fetchall())
    report.runs = sum(states.values())
    report.copied = states.get("new", 0) + states.get("renamed", 0)
    report.present = states.get("present", 0)
    report.duplicates = states.get("duplicate", 0)
    report.running = states.get("running", 0)
    report.renamed = [
        (str(a), str(b))
        for a, b in conn.execute(
            f"SELECT src_id, dst_id FROM {runs} WHERE state = 'renamed' ORDER BY src_id"
        ).fetchall()
    ]
    # A run merged before that has moved on in the source since (it ended, or was resumed):
    # the destination keeps the copy it has, and the report says so.
    row = conn.execute(
        f"""SELECT count(*) FROM {runs} m JOIN {src}.main.{RUNS} t ON t.id = m.src_id
        JOIN {dst}.main.{RUNS} d ON d.id = m.dst_id
        WHERE m.state = 'present' AND t.status <> 'running'
          AND (t.status IS DISTINCT FROM d.status OR t.steps IS DISTINCT FROM d.steps
               OR t.ended_at IS DISTINCT FROM d.ended_at)"""
    ).fetchone()
    report.outdated = int(row[0]) if row else 0


def _copy_table(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    role: Role,
    src: str,
    dst: str,
    columns: tuple[str, ...],
) -> int:
    """Insert the rows of `table` the plan copies (`src`, `dst`: quoted catalog names);
    returns how many. A content-addressed row the source holds twice (any store may: see
    `traces.store.lake_schema`) is copied once."""
    values = []
    joins = []
    derived = DERIVED.get(table, {})
    for column in columns:
        target = REFERENCES.get((table, column))
        if (table, column) in ((RUNS, "key"), (table, RUN_KEY)) and role is not Role.shared:
            values.append("m.dst_key")  # numbered in the destination (`_number_runs`)
        elif column == MESSAGE_SEQ and table in _NUMBERED:
            values.append(_NUMBERED[table].format(dst=dst, src=src))
        elif column in derived:
            # Computed from the row again, never copied (a lake held a 128-bit key less
            # exactly than the file it came from did, before migration 20).
            values.append(re.sub(rf"\b({'|'.join(columns)})\b", r"t.\1", derived[column]))
        elif target is None:
            values.append(f"t.{column}")
        else:  # the referenced row may have been renamed
            values.append(f"coalesce(r_{column}.dst_id, t.{column})")
            joins.append(
                f"LEFT JOIN {_plan_table(target)} r_{column} ON r_{column}.src_id = t.{column}"
            )
    origin = f"{src}.main.{table} t"
    if role is Role.shared and not KEYED[table].identity:
        # Content-addressed: copied when the destination lacks the key, whichever run
        # refers to it.
        key = KEYED[table].key
        lacking = f"WHERE NOT EXISTS (SELECT 1 FROM {dst}.main.{table} x WHERE x.{key} = t.{key})"
        values[0] = f"DISTINCT ON (t.{key}) {values[0]}"
        return _insert(conn, table, dst, columns, values, f"{origin} {lacking}")
    plan, key = (RUNS, RUN_COLUMN) if role is Role.per_run else (table, KEYED[table].key)
    values[columns.index(key)] = "m.dst_id"
    copied = f"JOIN {_plan_table(plan)} m ON m.src_id = t.{key} AND m.state IN ('new', 'renamed')"
    return _insert(conn, table, dst, columns, values, " ".join([origin, copied, *joins]))


_NUMBERED = {
    # The next numbers of the destination, in the source's order: a run's messages stay
    # neighbours (`tables.NEXT_MESSAGE_SEQ`).
    "messages": f"(SELECT coalesce(max({MESSAGE_SEQ}), 0) FROM {{dst}}.main.messages)"
    f" + row_number() OVER (ORDER BY t.{MESSAGE_SEQ})",
    # The number of the destination's copy of the message, copied before it (tables are
    # copied in the order of their names): its latest, where it holds the message twice.
    # The message is the source's of the row's number and key, compared by hash: another
    # may share its 64-bit key (`tables.MESSAGE_KEY`).
    "step_message_keys": f"(SELECT max(x.{MESSAGE_SEQ}) FROM {{dst}}.main.messages x"
    f" JOIN {{src}}.main.messages y ON y.{MESSAGE_SEQ} = t.{MESSAGE_SEQ} AND y.key = t.key"
    " WHERE x.key = t.key AND x.hash = y.hash)",
}
"""How a merge numbers the rows it copies of the tables with a message number: in the
destination, never as the source numbered them."""


def _insert(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    dst: str,
    columns: tuple[str, ...],
    values: list[str],
    source: str,
) -> int:
    row = conn.execute(
        f"INSERT INTO {dst}.main.{table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM {source}"
    ).fetchone()
    return int(row[0]) if row else 0


def _abandon(conn: duckdb.DuckDBPyConnection, path: Store, existed: bool) -> None:
    """Roll back, close, and remove a database file this merge created."""
    with contextlib.suppress(duckdb.Error, RuntimeError):
        conn.execute("ROLLBACK")
    conn.close()
    if not existed:
        remove_created(path)

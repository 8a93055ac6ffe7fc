"""The one way rows reach the database: the recorder's writer process, imports and the checks.

A batch of rows of a table is inserted with one statement, `INSERT INTO t (…) SELECT …`, each
parameter a whole column. DuckDB's executemany runs a statement once per row (0.4-1 ms
each); one statement over a batch of dozens of rows costs about what two or three single rows
did, and one over thousands a handful of milliseconds.

A column goes as one JSON text, decoded by DuckDB (`from_json`) in C++, whenever JSON carries
its values exactly (text, integers of 64 bits, finite floats, booleans): DuckDB 1.5 looks for
pandas each time it converts a bound Python value, and `traces.store` marks pandas absent so
that each look fails at once, but each still raises and formats an ImportError, two per value.
Bound as lists, the values of a batch cost about 1 µs each, most of an insert; a JSON text is
one value. A column JSON does not carry (timestamps, floats that are not finite, integers
past 64 bits) goes as a list. A column holding a single value throughout goes as that value,
once: as a field of one JSON object carrying all such columns of the batch when JSON carries
it (a recorder's batch of one step: one value for dozens of columns), else on its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import duckdb

from traces.store.tables import (
    COLUMNS,
    DEDUPLICATED,
    DERIVED,
    FROM_ROW,
    LOOKED_UP,
    MESSAGE_SEQ,
    NEXT_RUN_KEY,
    PER_RUN,
    RunUpdate,
    stored_columns,
    written_fields,
)

Shape = str
"""How a column is bound: `CONSTANT` (its one value), `LIST` (a list of Python values), the
`from_json` type of its JSON text (`json_type`), or `CONSTANT` followed by such a type: its
one value as a field of one JSON object that carries every such column of the batch (a
recorder's batch of one step has all its columns but the first constant: one value, not
dozens, to convert)."""
CONSTANT: Shape = "="
LIST: Shape = "list"

_INSERTS: dict[tuple[str, str, tuple[Shape, ...], str, bool, bool], str] = {}
"""Statement text by target table, row type, shapes of the columns (a recorder's batch of one
step has every column but the first constant; an import's batch, a few), way of
deduplicating, whether the message numbers are bound and whether `LOOKED_UP` columns are."""

_ENCODE = json.JSONEncoder(allow_nan=False).encode
"""JSON of a column: ASCII, so that any text (lone surrogates included) goes as it would."""

_INT64 = (-(2**63), 2**63 - 1)

*_ENDING, _KEY = RunUpdate._fields
UPDATE_RUN = f"UPDATE runs SET {', '.join(f'{c} = ?' for c in _ENDING)} WHERE {_KEY} = ?"
"""Ends a recorded run: the parameters are a `RunUpdate`, the run's id last."""


Dedup = Literal["key", "hash", "none"]
"""How rows of a deduplicated table that are stored already are skipped (no store has an index
on them: a lake none, a file none since migration 14): by an anti-join on the fixed-width
column derived from the key and on the key itself (a file: `messages.key` and `hash`, as two
hashes may share a 64-bit key since migration 20), on the key alone (a lake, which held the
derived column as text until then), or not at all: the recorders' writer, which
knows what it stored itself (`traces.store.numbers`) and accepts what another writer or an
earlier process stored, kept twice and read as a set: a scan of the key column at every
commit would grow with the store. Imports and merges, which write in bulk, look (one scan a
batch of thousands of rows)."""


def json_type(column: Sequence[Any]) -> str | None:
    """The `from_json` type whose list JSON `column` decodes to exactly its values, or None
    when JSON does not carry them (anything but text, 64-bit integers, finite floats,
    booleans)."""
    kinds = {type(value) for value in column if value is not None}
    if kinds <= {str}:
        return "VARCHAR"
    if kinds == {bool}:
        return "BOOLEAN"
    if kinds == {int}:
        low, high = _INT64
        if all(v is None or low <= v <= high for v in column):
            return "BIGINT"
        return None
    if kinds <= {int, float} and all(
        v is None or (math.isfinite(v) if type(v) is float else abs(v) <= 2**53) for v in column
    ):
        return "DOUBLE"
    return None


def json_list(values: Sequence[str]) -> str:
    """A list of texts as one JSON value, for `from_json(…, '["VARCHAR"]')` in a statement."""
    return _ENCODE(list(values))


def shape_of(column: list[Any], *, first: bool = False) -> Shape:
    """How `column` is bound (see `Shape`); the `first` column carries the number of rows
    and is never bound as one value."""
    if not first and _constant(column):
        return CONSTANT + (json_type(column[:1]) or "")
    return json_type(column) or LIST


def _packed(shape: Shape) -> bool:
    """Whether a column of this shape is a field of the batch's one JSON object."""
    return shape.startswith(CONSTANT) and shape != CONSTANT


def insert_sql(
    table: str,
    shapes: tuple[Shape, ...],
    into: str | None = None,
    *,
    dedup: Dedup = "key",
    numbered: bool = False,
    look_up: bool = True,
) -> str:
    """The batch insert of `table` (a key of `tables.ROW_TYPES`), all its columns, into the
    base table that stores its rows (`tables.stored_columns`), each column bound as its
    shape says (see `Shape`). `into` names another table of the same columns to insert into
    (e.g. in an attached database). `dedup` applies to the tables of `tables.DEDUPLICATED`
    (see `Dedup`). `numbered`: the message numbers are bound (`tables.written_fields`), not
    computed. Without `look_up`, the columns of `tables.LOOKED_UP` are stored NULL."""
    fields = written_fields(table, numbered=numbered)
    parts = []
    number = 0  # parameters are numbered in order, the packed object's last
    packed = {f: shape[1:] for f, shape in zip(fields, shapes, strict=True) if _packed(shape)}
    # The packed object is decoded once, in a subquery its fields are read from: written
    # into every field's expression instead, DuckDB bound (parsed the type text of) the whole
    # object once per field, which was most of a recorder's commit (23 ms of CPU for one
    # step's row of 39 columns, against 1 ms for the rest).
    decoded = f"from_json(${len(shapes) - len(packed) + 1}, '{_ENCODE(packed)}')"
    source = f" FROM (SELECT {decoded} AS packed)" if packed else ""
    for field, shape in zip(fields, shapes, strict=True):
        if _packed(shape):
            parts.append(f"struct_extract(packed, '{field}')")
            continue
        number += 1
        if shape == CONSTANT:
            parts.append(f"${number}")
        elif shape == LIST:
            parts.append(f"unnest(${number})")
        else:
            parts.append(f"unnest(from_json(${number}, '[\"{shape}\"]'))")
    values = ", ".join(parts) + source
    base, names = stored_columns(table)
    target = into or base
    if names != fields or table in DERIVED:
        # The row's fields under their names, then the stored columns computed from them
        # (some of which may be fields stored as derived: `tables.DERIVED`).
        named = ", ".join(f"{value} AS {name}" for value, name in zip(parts, fields, strict=True))
        named += source
        derived = {**DERIVED.get(table, {}), **({"key": NEXT_RUN_KEY} if table == "runs" else {})}
        if numbered:
            derived.pop(MESSAGE_SEQ)
        rows = f"(SELECT {named}) AS new_row"
        if table in LOOKED_UP or table in FROM_ROW:
            # Looked up (or computed from the row) once per row, in a level of their own
            # that the derived columns read.
            computed = {
                **{c: sql if look_up else "NULL" for c, sql in LOOKED_UP.get(table, {}).items()},
                **FROM_ROW.get(table, {}),
            }
            # A field of the row computed again (a writer's guess the insert checks)
            # replaces the bound value; the others are added.
            again = [f"{sql} AS {c}" for c, sql in computed.items() if c in fields]
            added = [f", {sql} AS {c}" for c, sql in computed.items() if c not in fields]
            replaced = f" REPLACE ({', '.join(again)})" if again else ""
            rows = f"(SELECT *{replaced}{''.join(added)} FROM (SELECT {named}) AS new) AS new_row"
        values = f"{', '.join(derived.get(c, c) for c in names)} FROM {rows}"
    if table not in DEDUPLICATED or dedup == "none":
        return f"INSERT INTO {target} ({', '.join(names)}) SELECT {values}"
    key, fixed = DEDUPLICATED[table]
    match = f"stored.{key} = new.{key}"
    if dedup == "key":
        match = f"stored.{fixed} = new.{fixed} AND {match}"
    # An ANTI JOIN: a third cheaper a commit than `NOT IN (subquery)`, whose NULL rules
    # DuckDB pays for with a mark join (the key is never null).
    return (
        f"INSERT INTO {target} ({', '.join(names)}) "
        f"SELECT DISTINCT ON (new.{key}) new.* FROM (SELECT {values}) AS new ({', '.join(names)}) "
        f"ANTI JOIN {target} AS stored ON {match}"
    )


def parameters(
    columns: Sequence[list[Any]], shapes: Sequence[Shape], fields: Sequence[str]
) -> list[Any]:
    """The parameters of `insert_sql`'s statement for `columns` of these shapes."""
    out: list[Any] = []
    packed: dict[str, Any] = {}
    for column, shape, field in zip(columns, shapes, fields, strict=True):
        if _packed(shape):
            packed[field] = column[0]
        elif shape == CONSTANT:
            out.append(column[0])
        elif shape == LIST:
            out.append(column)
        else:
            out.append(_ENCODE(column))
    if packed:
        out.append(_ENCODE(packed))
    return out


def insert_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[tuple[Any, ...]],
    into: str | None = None,
    *,
    check_stored: bool = True,
    keys: dict[str, int] | None = None,
    numbers: list[int | None] | None = None,
    look_up: bool = True,
) -> None:
    """Insert rows of `table` (its row type's tuples) with one statement (into the table
    `into` of the same columns, when given). Without `check_stored`, rows of a deduplicated
    table are stored without looking for them first (see `Dedup`). `keys`: run keys known in
    this transaction, as `run_keys` takes them. `numbers`: each row's message number
    (`messages`, `step_messages`), bound instead of drawn or looked up by the insert.
    Without `look_up`, nothing of `tables.LOOKED_UP` is looked for (see `insert_sql`)."""
    if rows:
        columns = [list(column) for column in zip(*rows, strict=True)]
        insert_columns(
            conn,
            table,
            columns,
            into,
            check_stored=check_stored,
            keys=keys,
            numbers=numbers,
            look_up=look_up,
        )


def insert_columns(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[list[Any]],
    into: str | None = None,
    *,
    check_stored: bool = True,
    keys: dict[str, int] | None = None,
    numbers: list[int | None] | None = None,
    look_up: bool = True,
) -> None:
    """Insert rows of `table` given as one list per column, in its columns' order, with one
    statement (into the table `into` of the same columns, when given; `check_stored`, `keys`,
    `numbers` and `look_up` as for `insert_rows`). Each column is bound as `shape_of` says."""
    if len(columns) != len(COLUMNS[table]):
        raise ValueError(
            f"{table}: {len(columns)} columns given, the table has {len(COLUMNS[table])}"
        )
    if not columns[0]:
        return
    if table in PER_RUN:
        columns = [*columns, run_keys(conn, columns[COLUMNS[table].index("run_id")], keys)]
    numbered = numbers is not None
    if numbers is not None:
        if len(numbers) != len(columns[0]):
            raise ValueError(f"{table}: {len(numbers)} numbers for {len(columns[0])} rows")
        columns = [*columns, numbers]
    shapes = tuple(shape_of(column, first=not i) for i, column in enumerate(columns))
    dedup: Dedup = "key" if check_stored else "none"
    if table in DEDUPLICATED and check_stored:
        # Imported here: the lake module imports DuckDB, which import workers start without.
        from traces.store.lake import is_lake

        if is_lake(conn):
            dedup = "hash"
    key = (into or table, table, shapes, dedup, numbered, look_up)
    sql = _INSERTS.get(key)
    if sql is None:
        sql = _INSERTS[key] = insert_sql(
            table, shapes, into, dedup=dedup, numbered=numbered, look_up=look_up
        )
    conn.execute(sql, parameters(columns, shapes, written_fields(table, numbered=numbered)))


_KEY_OF_RUN = "SELECT key FROM runs WHERE id = ?"
_KEYS_OF_RUNS = (
    "SELECT id, key FROM runs WHERE id IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]')))"
)


def run_keys(
    conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str], known: dict[str, int] | None = None
) -> list[int | None]:
    """The `runs.key` of each of `run_ids` (None for a run the store lacks), as the rows of a
    per-run table are stored with it (migration 12). Looked up here rather than joined in
    the insert: a join scans every id of `runs` per statement (37 ms for a recorder's one
    step at 50,000 runs), a lookup of one id is one probe of the key's index (0.8 ms of
    CPU). `known`: keys looked up before in the same transaction (a run's key never changes
    once stored), used and completed, so a recorder's step looks its run up once, not once
    per table."""
    found = {} if known is None else known
    missing = [run_id for run_id in dict.fromkeys(run_ids) if run_id not in found]
    if len(missing) == 1:
        row = conn.execute(_KEY_OF_RUN, missing).fetchone()
        if row is not None and row[0] is not None:
            found[missing[0]] = row[0]
    elif missing:
        found.update(
            (run_id, key)
            for run_id, key in conn.execute(_KEYS_OF_RUNS, [json_list(missing)]).fetchall()
            if key is not None
        )
    return [found.get(run_id) for run_id in run_ids]


_REPLAY_STEPS = """
UPDATE step_rows SET
    reasoning = CASE WHEN u.reasoning_replayed THEN NULL ELSE step_rows.reasoning END,
    replay_message_hash = CASE WHEN u.replayed THEN NULL ELSE step_rows.replay_message_hash END,
    replayed = step_rows.replayed OR u.replayed,
    reasoning_replayed = step_rows.reasoning_replayed OR u.reasoning_replayed
FROM (
    SELECT unnest(from_json($1, '["BIGINT"]')) AS run_key,
           unnest(from_json($2, '["VARCHAR"]')) AS run_id,
           unnest(from_json($3, '["BIGINT"]')) AS idx,
           unnest(from_json($4, '["BOOLEAN"]')) AS replayed,
           unnest(from_json($5, '["BOOLEAN"]')) AS reasoning_replayed
) u
WHERE step_rows.run_key = u.run_key AND step_rows.run_id = u.run_id AND step_rows.idx = u.idx
"""
"""Stores recorded steps' reasoning and replayed hash once (`tables.StepReplay`), as an
import does when it writes a step: the values the view `steps` gives stay the same."""


def replay_steps(
    conn: duckdb.DuckDBPyConnection,
    replays: Sequence[tuple[Any, ...]],
    keys: dict[str, int] | None = None,
) -> None:
    """Mark recorded steps whose next request sent back their replayed message or reasoning
    (`tables.StepReplay`s; `keys` as `insert_rows` takes them), in the transaction that stores
    that request's messages: the view `steps` reads them from that message from then on."""
    if not replays:
        return
    run_id, idx, _, replayed, reasoning = (list(column) for column in zip(*replays, strict=True))
    columns = (run_keys(conn, run_id, keys), run_id, idx, replayed, reasoning)
    conn.execute(_REPLAY_STEPS, [_ENCODE(column) for column in columns])


_REPLAY_OUTPUTS = """
UPDATE tool_result_rows SET output = NULL, output_position = u.position
FROM (
    SELECT unnest(from_json($1, '["BIGINT"]')) AS run_key,
           unnest(from_json($2, '["VARCHAR"]')) AS run_id,
           unnest(from_json($3, '["BIGINT"]')) AS step_idx,
           unnest(from_json($4, '["BIGINT"]')) AS call_idx,
           unnest(from_json($5, '["BIGINT"]')) AS position
) u
WHERE tool_result_rows.run_key = u.run_key AND tool_result_rows.run_id = u.run_id
  AND tool_result_rows.step_idx = u.step_idx AND tool_result_rows.call_idx = u.call_idx
"""
"""Stores recorded tool results' outputs once (`tables.OutputReplay`), as an import does when
it writes them: the values the view `tool_results` gives stay the same."""


def replay_outputs(
    conn: duckdb.DuckDBPyConnection,
    replays: Sequence[tuple[Any, ...]],
    keys: dict[str, int] | None = None,
) -> None:
    """Mark recorded tool results whose output the next request sent back in a tool message
    (`tables.OutputReplay`s; `keys` as `insert_rows` takes them), in the transaction that
    stores that request's messages: the view `tool_results` reads them from that message."""
    if not replays:
        return
    run_id, step_idx, call_idx, position = (list(c) for c in zip(*replays, strict=True))
    columns = (run_keys(conn, run_id, keys), run_id, step_idx, call_idx, position)
    conn.execute(_REPLAY_OUTPUTS, [_ENCODE(column) for column in columns])


def update_runs(conn: duckdb.DuckDBPyConnection, updates: Sequence[tuple[Any, ...]]) -> None:
    """Write the endings of recorded runs (`RunUpdate`s)."""
    if updates:
        conn.executemany(UPDATE_RUN, list(updates))


def _constant(column: list[Any]) -> bool:
    """Whether every value of `column` is stored as the first one is. Python's `==` says
    1 == 1.0 == True and 0.0 == -0.0: numbers must be of the same type, and not floats."""
    first = column[0]
    if column.count(first) != len(column):
        return False
    kind = type(first)
    if first is None or kind is str:
        return True
    return kind is not float and all(type(v) is kind for v in column)

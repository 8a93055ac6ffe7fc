"""Reading runs from the store into the plain records the checks take.

`load_runs` reads a whole batch with one query per table, so analyzing 100k imported runs
costs a few dozen queries rather than a few per run; `load_run` is the single-run case.

It is the hot half of `traces analyze` (about half its time over a million steps), so it
works on plain tuples, decodes each distinct JSON text once, and builds records without the
dataclass constructors' per-field cost (`_Builder`); `tests/test_analyze_equivalence.py`
holds what it builds equal to what the constructors and the SQL macro `request_messages`
give.
"""

from __future__ import annotations

import dataclasses
import json
import json.scanner
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from operator import itemgetter
from typing import Any, Generic, TypeVar, cast

import duckdb

from analyzer.checks.choices import with_other_choices
from analyzer.checks.records import Call, Result, Run, Step
from analyzer.cursor_rows import column_names
from traces.store.inserts import json_list
from traces.store.run_batch import BATCH_IDS, RunBatch, of_batch
from traces.store.tables import MESSAGE_KEY

_R = TypeVar("_R")


_RUN_SQL = f"SELECT id, provider, model, settings, termination FROM runs WHERE id IN ({BATCH_IDS})"
# Each query's first columns locate the row; the others are named as the record's fields.
_STEP_SQL = f"""
    SELECT run_id, request_message_count, idx AS "index",
           finish_reason, finish_reason_raw, content, reasoning, reasoning_source,
           prompt_tokens, completion_tokens, reasoning_tokens, reasoning_tokens_source,
           cached_tokens, total_tokens, streamed, http_status, error_kind, error_status,
           error_message, error_body, retry_errors, anomalies, PARAMS AS request_params,
           reasoning_replayed
    FROM step_rows WHERE {of_batch()}
"""
# A run's steps (and a task's runs) mostly send the same request parameters, about 1.6 KB of
# JSON (the tools): fetched for every step, the text was a quarter of the steps' fetch. So
# each step's parameters come as their hash (`PARAMS`), and each distinct text once, by that
# hash; two texts sharing a hash (never seen: 64 bits) bring back every step's text.
_PARAMS_BY_HASH = "hash(request_params)"
_PARAMS_SQL = f"""
    SELECT {_PARAMS_BY_HASH}, request_params FROM step_rows WHERE {of_batch()} GROUP BY ALL
"""
# The base table of the view `steps` (migration 17), as `_RESULT_SQL` reads `tool_result_rows`:
# a reasoning stored once, in the assistant message the run's next request added (at
# `request_message_count`), is taken from that message as `_positions` decoded it; where that
# message is not there (a step message whose number the store lacks) or its field is not a
# text, from the view, for all such steps of the batch at once.
_REASONINGS_SQL = f"""
    SELECT v.run_id, v.idx, v.reasoning FROM steps v
    JOIN (SELECT unnest(from_json($2, '["VARCHAR"]')) AS run_id,
                 unnest(from_json($3, '["BIGINT"]')) AS idx) k
      ON v.run_id = k.run_id AND v.idx = k.idx
    WHERE {of_batch("v")}
"""
# Sorted in Python (`_STEP_ORDER`), not by ORDER BY: DuckDB's sort carries every column of
# the row, a third of the query's cost on a 40,000-step batch, where sorting the fetched
# tuples by their key costs a sixth of that. (`run_id, idx` is the table's key: one order.)
_STEP_ORDER = itemgetter(0, 2)
_STEP_KEY = 2
"""Columns of `_STEP_SQL` before the first of `Step`'s fields (run, request length)."""
_STEP_LISTS = ("retry_errors", "anomalies")
"""Step columns that hold JSON lists (the record holds tuples); `request_params` holds JSON
text too."""
# The base table of the view `tool_calls` (migration 21), whose `arguments_raw` is NULL where
# it is the text of `arguments`: that text is fetched once, not a second time as the view's
# cast of it.
_CALL_SQL = f"""
    SELECT run_id, step_idx, call_idx AS "index", id, id_format, name, arguments_raw,
           arguments_type, arguments, json_valid, schema_valid, schema_error
    FROM tool_call_rows WHERE {of_batch()} ORDER BY run_id, step_idx, call_idx
"""
# The base table of the view `tool_results` (migration 16): an output stored once, in the
# tool message the run's next request added (`output_position`), is taken from that message's
# body as `_positions` decoded it, not extracted again in SQL from the compressed bodies as
# the view does (whose join the batch's filter, made of subqueries, does not reach: every
# body of the store read, measured).
_RESULT_SQL = f"""
    SELECT run_id, step_idx, call_idx AS "index", tool_call_id, name, output, error, error_kind,
           output_position
    FROM tool_result_rows WHERE {of_batch()} ORDER BY run_id, step_idx, call_idx
"""
_OUTPUT = 5
"""Column of `_RESULT_SQL` holding the output when stored in full (its position last)."""
_OUTPUTS_SQL = f"""
    SELECT v.run_id, v.step_idx, v.call_idx, v.output FROM tool_results v
    JOIN (SELECT unnest(from_json($2, '["VARCHAR"]')) AS run_id,
                 unnest(from_json($3, '["BIGINT"]')) AS step_idx,
                 unnest(from_json($4, '["BIGINT"]')) AS call_idx) k
      ON v.run_id = k.run_id AND v.step_idx = k.step_idx AND v.call_idx = k.call_idx
    WHERE {of_batch("v")}
"""
"""The view's value of the fields the stored rows leave to a message (`_REASONINGS_SQL`,
`_OUTPUTS_SQL`), for the batch's keys given as columns: one query a batch, its runs' key
range written in as constants (`of_batch`). Looked up one step at a time, with the run's key
a subquery that does not reach the view's base table, each read every run's rows: on a store
whose step messages lacked their numbers, 7,664 such queries took 15 times the rest of the
analysis (measured, README Analyzing)."""
_KEY = 2
"""Columns of `_CALL_SQL` and `_RESULT_SQL` before the record's fields (run, step)."""
# The base table of the view `step_messages` (migration 10), which names each message by its
# key (64 bits since migration 20) and its number (migration 13): its hash comes from
# `messages` by the two (the key and hash columns of the row groups holding the batch's
# numbers, never the bodies; a lake's duplicate messages give a position twice, with the same
# body). Keys stay in SQL: nothing here needs them in Python.
# The range of the numbers goes in as constants (`_RANGE_SQL`, a scan of the batch's rows):
# from the join alone DuckDB read the whole table (200,600 rows for a run's 600, a million
# steps), from scalar subqueries the whole `step_message_keys` (their batch filter's own
# subqueries are not pushed into the scan).
_POSITION_SQL = f"""
    SELECT s.run_id, s.step_idx, s.position, m.hash, s.seq
    FROM step_message_keys s JOIN messages m ON m.seq = s.seq AND m.key = s.key
    WHERE {of_batch("s")} AND m.seq BETWEEN $2 AND $3
    ORDER BY s.run_id, s.step_idx, s.position
"""
_RANGE_SQL = f"SELECT min(seq), max(seq) FROM step_message_keys WHERE {of_batch()}"
# By `key` (the md5 of the hash, migration 9): its scan is a fixed-width column read with the
# bodies of the matching rows only; the hash is no longer indexed. Another message may share a
# 64-bit key (migration 20): it comes back under its own hash, which `bodies` leaves.
_HASHES = "unnest(from_json(?, '[\"VARCHAR\"]'))"
_MESSAGE_SQL = (
    f"SELECT hash, body FROM messages WHERE key IN (SELECT {MESSAGE_KEY.format(_HASHES)})"
)
# A batch's window: its messages by a semi-join on the numbers its own `step_message_keys`
# rows name (DuckDB hashes them in place), within the range of numbers given, which the scan
# skips every row group outside of. (A number two writers drew at once may bring another
# message too: `bodies` keeps the hashes it asked for.)
_WINDOW_SQL = f"""
    SELECT hash, body FROM messages
    WHERE seq BETWEEN $2 AND $3
      AND seq IN (SELECT s.seq FROM step_message_keys s WHERE {of_batch("s")})
"""

StepKey = tuple[str, int]

_SCAN = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))
"""The JSON decoder's own scanner (C), as `json.loads` runs it."""


def _loads(text: str) -> Any:
    """`json.loads(text)`, a third cheaper on the texts the store holds (a value from the
    first character to the last): the scanner directly, without `json.loads`' Python layers
    (the BOM test, the whitespace matches before and after). Any other text, and any
    error, goes through `json.loads` itself."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


class _Builder(Generic[_R]):
    """Builds instances of a frozen dataclass from field values, as its constructor would.

    A frozen dataclass's `__init__` sets every field through `object.__setattr__`: 3 µs for
    `Step`'s two dozen fields, once per step of a million-step store. Filling the instance's
    `__dict__` (the defaults, then the values) gives the same object, equal and hashing
    alike, in a tenth of that. Classes this cannot build faithfully (slots, `__post_init__`)
    go through their constructor.
    """

    def __init__(self, cls: type[_R], names: Sequence[str]) -> None:
        fields = {f.name: f for f in dataclasses.fields(cast(Any, cls))}
        unknown = [name for name in names if name not in fields]
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
        self.cls = cls
        self.names = tuple(names)
        self.defaults: dict[str, Any] = {}
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        for name, field in fields.items():
            if name in names:
                continue
            if field.default is not dataclasses.MISSING:
                self.defaults[name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                self.factories.append((name, field.default_factory))
            else:
                self.defaults[name] = dataclasses.MISSING  # required: the constructor says so
        self.direct = (
            "__slots__" not in vars(cls)
            and not hasattr(cls, "__post_init__")
            and dataclasses.MISSING not in self.defaults.values()
        )

    def function(self) -> Callable[[Sequence[Any]], _R]:
        """A function building what calling the builder builds from a sequence of exactly
        `names`' values: generated, as dataclasses generate `__init__`, with one store a
        field by a constant key and nothing left to test per record. A third of the cost of
        filling the dict from `zip` (whose pairs CPython handles one generic item at a time),
        once per step, call and result of a million-step store."""
        if not self.direct or self.factories:
            return self.__call__
        # Defaults first, then the values, as `__call__` fills them: the same dict.
        lines = [f"    attributes[{name!r}] = default_{i}" for i, name in enumerate(self.defaults)]
        lines += [f"    attributes[{name!r}] = values[{i}]" for i, name in enumerate(self.names)]
        bound = {f"default_{i}": value for i, value in enumerate(self.defaults.values())}
        parameters = "".join(f", {name}={name}" for name in ("new", "cls", *bound))
        source = "\n".join(
            [
                f"def build(values{parameters}):",
                "    record = new(cls)",
                "    attributes = record.__dict__",
                *lines,
                "    return record",
            ]
        )
        namespace: dict[str, Any] = {"new": object.__new__, "cls": self.cls, **bound}
        exec(source, namespace)  # the keys are field names (`dataclasses.fields`), repr-quoted
        return cast(Callable[[Sequence[Any]], _R], namespace["build"])

    def __call__(self, values: Iterable[Any]) -> _R:
        """The instance whose fields `names` take `values`, the others their defaults."""
        if not self.direct:
            return self.cls(**dict(zip(self.names, values, strict=True)))
        record = object.__new__(self.cls)
        attributes = record.__dict__
        attributes.update(self.defaults)
        for name, factory in self.factories:
            attributes[name] = factory()
        attributes.update(zip(self.names, values, strict=True))
        return record


class _Decoded:
    """JSON texts decoded once per distinct text. Checks never mutate what they read, so
    every step (and every run of a task) repeating its request parameters or its empty
    lists of anomalies shares one decoded value (`convert`ed once too, if given)."""

    def __init__(self, convert: Callable[[Any], Any] | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.last: tuple[str | None, Any] = (None, None)
        self.convert = convert

    def __call__(self, text: Any) -> Any:
        if not isinstance(text, str):
            return text
        # Consecutive steps mostly repeat the text (a run's tools): comparing it with the
        # last one is a memcmp, where a dictionary lookup hashes all 2 KB of it.
        last, value = self.last
        if text == last:
            return value
        value = self.values.get(text)
        if value is None:
            value = _loads(text)
            if self.convert is not None:
                value = self.convert(value)
            self.values[text] = value
        self.last = (text, value)
        return value


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if value else ()


def _calls(conn: duckdb.DuckDBPyConnection, batch: RunBatch) -> dict[StepKey, list[Call]]:
    cursor = batch.execute(conn, _CALL_SQL)
    names = column_names(cursor)[_KEY:]
    build = _Builder(Call, names).function()
    arguments, raw = names.index("arguments"), names.index("arguments_raw")
    json_valid = names.index("json_valid")
    calls: dict[StepKey, list[Call]] = {}
    for row in cursor.fetchall():
        values = list(row[_KEY:])
        text = values[arguments]
        if values[raw] is None:
            values[raw] = text
        if isinstance(text, str):
            values[arguments] = _loads(text)
        values[json_valid] = bool(values[json_valid])
        key = (row[0], row[1])
        group = calls.get(key)
        if group is None:
            group = calls[key] = []
        group.append(build(values))
    return calls


def _results(
    conn: duckdb.DuckDBPyConnection,
    batch: RunBatch,
    positions: dict[StepKey, list[tuple[int, dict[str, Any]]]],
) -> dict[StepKey, list[Result]]:
    """Each step's tool results; an output stored in its tool message only is that message's
    `content`, from the next step's decoded messages (`positions`), or, when that is not a
    text (the view's extraction then gives JSON text), from the view."""
    cursor = batch.execute(conn, _RESULT_SQL)
    build = _Builder(Result, column_names(cursor)[_KEY:-1]).function()
    results: dict[StepKey, list[Result]] = {}
    left: list[tuple[tuple[str, int, int], Result]] = []
    """Results whose output no decoded message gives: the view's, looked up together."""
    for row in cursor.fetchall():
        key = (row[0], row[1])
        values = row[_KEY:-1]
        if row[_OUTPUT] is None and row[-1] is not None:
            content = _next_stored(positions, key, row[-1], "content")
            values = (*values[: _OUTPUT - _KEY], content, *values[_OUTPUT - _KEY + 1 :])
            result = build(values)
            if not isinstance(content, str):
                left.append((row[:3], result))
        else:
            result = build(values)
        group = results.get(key)
        if group is None:
            group = results[key] = []
        group.append(result)
    if left:
        outputs = _looked_up(conn, batch, _OUTPUTS_SQL, [k for k, _ in left])
        for found, result in left:
            result.__dict__["output"] = outputs.get(found)
    return results


def _looked_up(
    conn: duckdb.DuckDBPyConnection,
    batch: RunBatch,
    sql: str,
    keys: list[tuple[Any, ...]],
) -> dict[tuple[Any, ...], Any]:
    """The view's value (`_OUTPUTS_SQL`, `_REASONINGS_SQL`) of each of the batch's rows
    `keys` (run id, then numbers), by key; a key the view lacks is left out."""
    columns = [json.dumps(list(column)) for column in zip(*keys, strict=True)]
    return {row[:-1]: row[-1] for row in batch.execute(conn, sql, *columns).fetchall()}


class Messages:
    """Finds the message bodies of one analysis's batches, decoded once per distinct hash.

    Each message has its number in the order messages were first stored (`messages.seq`,
    migration 13), and a message is stored with the step that first sends it: a batch's own
    messages have neighbouring numbers, and the row groups holding them are all a lookup by
    number reads. A few are older: messages earlier runs stored first (a task's system
    prompt), whose numbers would widen the range to the whole table. So the window read first
    is the range of numbers below the batch's greatest that its messages could fill
    (`WINDOW` numbers at least, twice its count of messages); hashes not found there are
    looked up in the whole table by key, and kept for later batches. Whatever the window,
    every body is found: the result is the whole-table lookup's.
    """

    SHARED = 20_000
    """Bodies found outside a window kept for later batches, at most."""
    WINDOW = 122_880
    """Numbers a window spans at least: one of DuckDB's row groups."""
    windowed = True
    """Whether a window is read first (else every body is looked up in the whole table)."""

    def __init__(self) -> None:
        self.shared: dict[str, dict[str, Any]] = {}

    def bodies(
        self, conn: duckdb.DuckDBPyConnection, numbers: dict[str, int], batch: RunBatch
    ) -> dict[str, dict[str, Any]]:
        """The decoded body of each hash of `numbers` that the table holds, given the number
        (`seq`) the batch's `step_message_keys` rows name it by, and the batch of runs whose
        rows those are (`RunBatch`)."""
        found = {h: self.shared[h] for h in numbers if h in self.shared}
        wanted = {h: n for h, n in numbers.items() if h not in found and n is not None}
        if wanted and self.windowed:
            last = max(wanted.values())
            first = max(min(wanted.values()), last - max(self.WINDOW, 2 * len(wanted)))
            for digest, body in batch.execute(conn, _WINDOW_SQL, first, last).fetchall():
                if digest in numbers and digest not in found:
                    found[digest] = _loads(body)
        outside = [h for h in numbers if h not in found]
        if outside:
            asked = set(outside)
            bodies = {
                digest: _loads(body)
                for digest, body in conn.execute(_MESSAGE_SQL, [json_list(outside)]).fetchall()
                if digest in asked
            }
            if len(self.shared) + len(bodies) > self.SHARED:
                self.shared.clear()
            self.shared.update(bodies)
            found.update(bodies)
        return found


def _decoded(cursor: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    return {digest: _loads(body) for digest, body in cursor.fetchall()}


def _positions(
    conn: duckdb.DuckDBPyConnection, batch: RunBatch, messages: Messages
) -> dict[StepKey, list[tuple[int, dict[str, Any]]]]:
    """(position, message) pairs each step stored, messages decoded once per distinct hash:
    a message repeated across steps or runs is one shared dict."""
    row = batch.execute(conn, _RANGE_SQL).fetchone()
    if row is None or row[0] is None:
        return {}
    positions = batch.execute(conn, _POSITION_SQL, *row).fetchall()
    if not positions:
        return {}
    numbers = {row[3]: row[4] for row in positions}
    bodies = messages.bodies(conn, numbers, batch)
    stored: dict[StepKey, list[tuple[int, dict[str, Any]]]] = {}
    for run_id, step_idx, position, digest, _ in positions:
        body = bodies.get(digest)
        if body is not None:
            key = (run_id, step_idx)
            group = stored.get(key)
            if group is None:
                group = stored[key] = []
            group.append((position, body))
    return stored


class _Requests:
    """Rebuilds each step's request progressively, with the semantics of the SQL macro
    `request_messages(run_id, idx)`: every position takes the message the latest step up to
    this one stored there, cut at the step's `request_message_count`."""

    def __init__(self) -> None:
        self.latest: list[dict[str, Any] | None] = []
        self.holes = 0
        """Positions of `latest` no step stored yet (None): mostly none, and then no request
        needs looking through for them."""

    def request(
        self, stored: list[tuple[int, dict[str, Any]]], count: int
    ) -> tuple[dict[str, Any], ...]:
        latest = self.latest
        for position, message in stored:
            size = len(latest)
            if position == size:  # the common case: a step stores what it appended
                latest.append(message)
            elif position < size:
                if latest[position] is None:
                    self.holes -= 1
                latest[position] = message
            else:
                self.holes += position - size
                latest.extend([None] * (position - size))
                latest.append(message)
        window = latest[:count]
        # A position no step stored: left out, as the macro's join does.
        if self.holes and None in window:
            return tuple(m for m in window if m is not None)
        return tuple(cast(list[dict[str, Any]], window))


def _params_by_hash(
    conn: duckdb.DuckDBPyConnection, batch: RunBatch
) -> dict[int, dict[str, Any]] | None:
    """The batch's distinct request parameters, decoded, by their hash (`_PARAMS_SQL`); None
    when two of them share a hash."""
    rows = batch.execute(conn, _PARAMS_SQL).fetchall()
    decoded = {
        digest: (_loads(text) if isinstance(text, str) else text) or {} for digest, text in rows
    }
    return decoded if len(decoded) == len(rows) else None


def _steps(
    conn: duckdb.DuckDBPyConnection,
    batch: RunBatch,
    calls: dict[StepKey, list[Call]],
    results: dict[StepKey, list[Result]],
    positions: dict[StepKey, list[tuple[int, dict[str, Any]]]],
) -> dict[str, list[Step]]:
    params_of = _params_by_hash(conn, batch)
    fetched = "request_params" if params_of is None else _PARAMS_BY_HASH
    cursor = batch.execute(conn, _STEP_SQL.replace("PARAMS", fetched))
    names = [*column_names(cursor)[_STEP_KEY:-1], "calls", "results", "request_messages"]
    reasoning_at, source_at = names.index("reasoning"), names.index("reasoning_source")
    build = _Builder(Step, names).function()
    params_at, decode_params = names.index("request_params"), _Decoded()
    # The record's tuples themselves, shared as the decoded lists are.
    lists = [(names.index(name), _Decoded(_as_tuple)) for name in _STEP_LISTS]
    # `Step.tools` and `max_tokens` are functions of the request parameters, which every step
    # of a run (and every run of a task) repeats: computed once per distinct value and handed
    # to the steps, as their cached properties would have held them; `failed`, read a dozen
    # times a step, is filled in too.
    per_params: dict[int, dict[str, Any]] = {}
    empty: tuple[Any, ...] = ()
    steps: dict[str, list[Step]] = {}
    run_steps: list[Step] = []
    requests = _Requests()
    current = None
    left: list[tuple[StepKey, Step]] = []
    """Steps whose replayed reasoning no decoded message gives: the view's, looked up
    together (`_REASONINGS_SQL`)."""
    rows = cursor.fetchall()
    rows.sort(key=_STEP_ORDER)
    for row in rows:
        run_id, count, index = row[0], row[1], row[2]
        if run_id != current:
            current = run_id
            run_steps = steps[run_id] = []
            requests = _Requests()
        key = (run_id, index)
        values = [
            *row[_STEP_KEY:-1],
            tuple(calls.get(key, empty)),
            tuple(results.get(key, empty)),
            requests.request(positions.get(key, []), count),
        ]
        reasoning = None
        if row[-1]:
            # Stored in the assistant message the next step added at `count`; when it is
            # not a text there, the view's is looked up (`left`).
            reasoning = values[reasoning_at] = _next_stored(
                positions, key, count, values[source_at]
            )
        for at, decode in lists:
            values[at] = decode(values[at]) or empty
        params = values[params_at] = (
            decode_params(values[params_at]) or {}
            if params_of is None
            else params_of[values[params_at]]
        )
        step = build(values)
        attributes = step.__dict__
        shared = per_params.get(id(params))
        if shared is None:
            shared = per_params[id(params)] = {
                name: derive.func(step) for name, derive in _OF_PARAMS.items()
            }
        attributes.update(shared)
        attributes["failed"] = _FAILED.func(step)
        if row[-1] and not isinstance(reasoning, str):
            left.append((key, step))
        run_steps.append(step)
    if left:
        found = _looked_up(conn, batch, _REASONINGS_SQL, [k for k, _ in left])
        for key, step in left:
            step.__dict__["reasoning"] = found.get(key)
    return steps


def _cached(name: str) -> cached_property[Any]:
    derive = vars(Step)[name]
    assert isinstance(derive, cached_property), f"Step.{name} is filled in as a cached property"
    return derive


_OF_PARAMS = {name: _cached(name) for name in ("tools", "max_tokens")}
"""`Step`'s cached properties that depend on its request parameters alone."""
_FAILED = _cached("failed")


def _next_stored(
    positions: dict[StepKey, list[tuple[int, dict[str, Any]]]],
    key: StepKey,
    position: int,
    field: str,
) -> Any:
    """Field `field` of the message the step after `key` stored at `position`, if any: where
    a step's reasoning (in the assistant message at its request's length) or a tool output
    is stored once. (A loop, not `next` over a generator: once per step.)"""
    for at, message in positions.get((key[0], key[1] + 1), ()):
        if at == position:
            return message.get(field)
    return None


def load_runs(
    conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str], messages: Messages | None = None
) -> list[Run]:
    """The runs `run_ids` (in that order) with every step, call, result and request message.

    One query per table for the whole batch; ids that do not exist are left out. Loading
    batch after batch, pass the same `messages` (`Messages()`) to each.
    """
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return []
    batch = RunBatch(conn, ids)
    heads = {row[0]: row for row in conn.execute(_RUN_SQL, batch.params).fetchall()}
    positions = _positions(conn, batch, messages or Messages())
    results = _results(conn, batch, positions)
    steps = _steps(conn, batch, _calls(conn, batch), results, positions)
    steps = with_other_choices(conn, steps)  # the choices of `n` beyond choice 0, where any
    runs = []
    for run_id in ids:
        head = heads.get(run_id)
        if head is None:
            continue
        _, provider, model, text, termination = head
        settings = (json.loads(text) if isinstance(text, str) else text) or {}
        settings = settings if isinstance(settings, dict) else {}
        dialect = settings.get("dialect")
        runs.append(
            Run(
                id=run_id,
                provider=provider,
                model=model,
                dialect=dialect if isinstance(dialect, str) else None,
                termination=termination,
                steps=tuple(steps.get(run_id, ())),
                raw_text=settings.get("variant") == "raw",
                parameter_probe=bool(settings.get("parameters")),
            )
        )
    return runs


def load_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> Run:
    """The run `run_id` with every step, call and result; KeyError when it does not exist."""
    found = load_runs(conn, [run_id])
    if not found:
        raise KeyError(run_id)
    return found[0]

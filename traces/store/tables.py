"""The rows the write side stores: one typed tuple per table, its fields the table's columns.

Each table's columns are declared here once, in the order the migrations create them (a test
compares every row type with a freshly migrated database), and every row is built by field
name (`traces.store.rows`), so no writer depends on a column's position. A row is still a
tuple: it pickles to the writer process and transposes into columns for a bulk insert
(`traces.store.inserts`) as cheaply as a plain one.

This module imports nothing of the trace model: the writer process unpickles these rows
and starts without it.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class RunRow(NamedTuple):
    """A `runs` row: the run as it starts (recorded) or as it ended (imported)."""

    id: str
    task: str
    task_path: str
    task_sha256: str
    provider: str
    model: str
    base_url: str
    settings: str
    seed: int
    status: str
    termination: str | None
    success: bool | None
    success_detail: str | None
    final_answer: str | None
    error: str | None
    started_at: datetime
    ended_at: datetime | None
    steps: int
    tool_calls: int
    tool_errors: int
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    recorder_pid: int
    recorder_host: str
    origin: str
    import_id: str | None
    conversation: str | None
    # Written by the checks (`traces analyze`), never by a recorder or an import.
    failure_summary: str | None = None
    findings_by_kind: str | None = None
    # Added by migration 8, hence last.
    resumptions: int = 0
    """Times `traces record --resume` took the run up again (0 for a run never resumed)."""
    retry_of: str | None = None
    """The failed run this run records again (`traces record --retry-failed`)."""
    # Added by migration 11.
    sample: str | None = None
    """The id of the dataset sample the run answers (a task with a `[dataset]`)."""


class RunUpdate(NamedTuple):
    """The `runs` columns set when a recorded run ends, then the id of the run they update."""

    status: str
    termination: str | None
    success: bool | None
    success_detail: str | None
    final_answer: str | None
    error: str | None
    ended_at: datetime | None
    steps: int
    tool_calls: int
    tool_errors: int
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    id: str


class MessageRow(NamedTuple):
    """A `messages` row: one distinct message, stored once by its hash."""

    hash: str
    role: str
    body: str


class StepRow(NamedTuple):
    """A `steps` row: one request and its response."""

    run_id: str
    idx: int
    started_at: datetime
    latency_ms: float
    ttft_reasoning_ms: float | None
    ttft_content_ms: float | None
    ttft_tool_call_ms: float | None
    streamed: bool
    http_status: int | None
    request_id: str | None
    response_headers: str | None
    request_params: str | None
    request_message_count: int
    request_prefix: int
    response_body: str | None
    stream_events: str | None
    finish_reason_raw: str | None
    finish_reason: str
    reasoning: str | None
    reasoning_source: str
    content: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    reasoning_tokens_source: str
    cached_tokens: int | None
    total_tokens: int | None
    usage_raw: str | None
    replay_message_hash: str | None
    error_kind: str | None
    error_status: int | None
    error_message: str | None
    error_body: str | None
    retries: int
    retry_errors: str | None
    anomalies: str | None
    request_hash: str | None
    upstream_provider: str | None
    resumption: int | None = None
    """Added by migration 8, hence last: set on the first step a resumption sent."""
    # Added by migration 17, hence last: kept by the base table `step_rows` only (`STORED`).
    replayed: bool = False
    """`replay_message_hash` names the message at position `request_message_count` among
    those the run's step `idx + 1` added: the store keeps the hash there only."""
    reasoning_replayed: bool = False
    """`reasoning` is byte for byte that message's `reasoning_source` field (a text field,
    `REPLAYED_REASONING`): the store keeps the text there only."""
    # Added by migration 21, hence last: kept by the base table `step_rows` only.
    usage_from: int | None = None
    """Where the response holds `usage_raw` (`stored_usage`): the writer's guess, which the
    insert keeps only where that place gives the text back byte for byte (`DERIVED`)."""


class StepReplay(NamedTuple):
    """What the request of a recorded run's step `idx + 1` sent back of step `idx` (a
    recorder's `step_replays`, committed with that request's step): the fields the base table
    `step_rows` keeps only for an import when it writes the step (`StepRow.replayed`,
    `StepRow.reasoning_replayed`), which a recorder learns one step later."""

    run_id: str
    idx: int
    position: int
    """The replayed message's position in step `idx + 1`'s request (step `idx`'s
    `request_message_count`)."""
    replayed: bool
    reasoning_replayed: bool


class OutputReplay(NamedTuple):
    """A recorded tool result whose output the run's next request sent back in a tool message
    (a recorder's `output_replays`, committed with that request's step): the base table
    `tool_result_rows` then keeps the output there only (migration 16), as an import's."""

    run_id: str
    step_idx: int
    call_idx: int
    position: int
    """The tool message's position in step `step_idx + 1`'s request (`output_position`)."""


class StepMessageRow(NamedTuple):
    """A `step_messages` row: a message a step's request added, at its position."""

    run_id: str
    step_idx: int
    position: int
    hash: str


class ToolCallRow(NamedTuple):
    """A `tool_calls` row: one call a step's response asked for."""

    run_id: str
    step_idx: int
    call_idx: int
    id: str | None
    id_format: str
    name: str
    arguments_raw: str
    arguments_type: str
    arguments: str | None
    json_valid: bool
    schema_valid: bool | None
    schema_error: str | None


class ToolResultRow(NamedTuple):
    """A `tool_results` row: what one tool call returned."""

    run_id: str
    step_idx: int
    call_idx: int
    tool_call_id: str | None
    name: str
    output: str
    error: str | None
    started_at: datetime
    duration_ms: float
    error_kind: str | None
    """Added by migration 4, hence after the others."""
    structured: str | None = None
    """An MCP tool's structured content as JSON text (migration 11)."""


class ImportRow(NamedTuple):
    """An `imports` row: one file an import read."""

    id: str
    path: str
    sha256: str
    format: str
    provider: str | None
    lines: int
    exchanges: int
    runs: int
    skipped: int
    skipped_lines: str | None
    imported_at: datetime


class FindingRow(NamedTuple):
    """A `findings` row: one thing a check noticed (written by the read side's checks)."""

    run_id: str
    step_idx: int | None
    kind: str
    severity: str
    layer: str
    evidence: str
    """JSON text."""
    created_at: datetime
    confidence: float | None = None
    """How likely the finding is right (0..1) when a check inferred it; None when certain."""


class LedgerRow(NamedTuple):
    """A `ledgers` row: what one run's host kept of the history (written by the checks)."""

    run_id: str
    chain_steps: int
    token_ratio: float
    reasoning_sent_tokens: float | None
    reasoning_kept_tokens: float | None
    reasoning_behaviour: str | None
    reasoning_probability: float | None
    tool_results_sent_tokens: float | None
    tool_results_kept_tokens: float | None
    tool_results_behaviour: str | None
    tool_results_probability: float | None
    per_result_tokens: float | None
    per_turn_tokens: float | None
    noise_scale: float | None
    first_prompt_tokens: int | None
    first_sent_tokens: float | None
    check_version: int
    created_at: datetime


ROW_TYPES: dict[str, type[tuple[object, ...]]] = {
    "runs": RunRow,
    "messages": MessageRow,
    "steps": StepRow,
    "step_messages": StepMessageRow,
    "tool_calls": ToolCallRow,
    "tool_results": ToolResultRow,
    "imports": ImportRow,
    "findings": FindingRow,
    "ledgers": LedgerRow,
}
"""The tables the write side inserts into, in the order a transaction inserts them (a run
before its steps), each with the type of its rows."""

DEDUPLICATED = {"messages": ("hash", "key")}
"""Tables whose rows may already be stored (a message is stored once, by hash), each with its
key column and the fixed-width column derived from it (`DERIVED`): an insert that looks skips
the rows whose key is stored (`traces.store.inserts.Dedup`; the derived column narrows the
match, the key decides it: two keys may share a 64-bit number). No store has an index on them
(a file none since migration 14, a lake never): a message two writers stored at once may be
stored twice, identical, and every reader reads `messages` as a set."""

MESSAGE_KEY = "md5_number_lower({})"
"""A message's `key` (migration 20; 128 bits before it), SQL of its hash (`{}`): the high 64
bits of the md5 of the hash as DuckDB's `md5_number` gives them. Not unique: whatever finds a
message by it compares the hash as well, unless it also matches `seq` (two messages sharing
both need two writers drawing one number and a 64-bit collision)."""

MESSAGE_SEQ = "seq"
"""The column of `messages` and `step_message_keys` that numbers messages (migration 13)."""

NEXT_MESSAGE_SEQ = "(SELECT coalesce(max(seq), 0) FROM messages) + row_number() OVER ()"
"""A new message's `seq` (migration 13): the next numbers, in the order the messages are
stored, so that a run's messages, stored together, have neighbouring numbers. Who draws them:
the transaction that stores the message, from what it sees. The server of a file is its only
writer, but its sessions (a recorder's writer, an import) hold transactions at once, and two
writers of a lake share no sequence (DuckLake has none): two transactions may draw the same
number for two messages. Readers join on `seq` and `key` together, so a shared number costs
them a row group more to read, never a wrong message (as `NEXT_RUN_KEY`). Rows an anti-join
skips leave a gap, which nothing minds. The recorders' writer draws from a counter of its
own instead (`traces.store.numbers`): this scans the column, whose cost grows with the
store."""

MESSAGE_SEQ_OF_HASH = (
    "(SELECT max(m.seq) FROM messages m "
    f"WHERE m.key = {MESSAGE_KEY.format('new_row.hash')} AND m.hash = new_row.hash)"
)
"""The `seq` a `step_messages` row names: its message's, stored before it in the same
transaction or earlier (the greatest, where a lake holds the message twice: the copy this
writer stored last, near the run's other messages). `new_row`: the row being inserted
(`inserts.insert_sql`). The key finds the candidates, the hash the message (`MESSAGE_KEY`)."""

TOOL_OUTPUT_POSITION = """(
    SELECT min(s.position)
    FROM step_message_keys s JOIN messages m ON m.seq = s.seq AND m.key = s.key
    WHERE s.run_key = new.run_key AND s.run_id = new.run_id
      AND s.step_idx = new.step_idx::BIGINT + 1
      AND m.role = 'tool' AND json_extract_string(m.body, '$.content') = new.output
)"""
"""The position of the tool message the run's next request added holding a tool result's
output exactly (the text the view `tool_results` gives back, byte for byte: compared by the
very extraction the view makes), else NULL (migration 16). `new`: the row being inserted,
its run's key included. Reads the run's rows only: its key filters `step_message_keys`, the
numbers found there `messages` (as the view's read of one run)."""

LOOKED_UP: dict[str, dict[str, str]] = {"tool_results": {"output_position": TOOL_OUTPUT_POSITION}}
"""Columns a base table stores beyond its row type's fields that an insert looks up in the
store (by this SQL over the row, named `new`), before the `DERIVED` ones, which may use them.
An insert that does not look (`inserts.insert_sql(look_up=False)`) stores NULL."""


def _usage_text(json: str) -> str:
    """SQL of the usage object of the JSON text `json` (a response body, an SSE line's data)
    as a writer serializes it (`rows.to_json`: `", "` and `": "` between items): DuckDB
    gives JSON back without spaces, which these two replacements put where Python does. Only
    compared, never trusted: a usage they do not give back byte for byte is kept in full."""
    usage = f"json_extract({json}, '$.usage')::VARCHAR"
    return f"replace(replace({usage}, '\":', '\": '), ',\"', ', \"')"


def _sse_line(row: str, back: str) -> str:
    """SQL of the SSE line `back` lines from the end of the step's stored stream (`[[t_ms,
    line], …]`; the row's columns under the alias `row`)."""
    return f"json_extract_string({row}.stream_events, '$[*][1]')[-({back})]"


USAGE_LINES = (1, 2, 3)
"""Where a streamed step's usage may be read from (`step_rows.usage_from`): the SSE line
this many lines from the end (the usage chunk comes last, before `data: [DONE]` or not)."""


def stored_usage(row: str) -> str:
    """SQL of a step's `usage_raw` as the view `steps` gives it back (the row's columns under
    the alias `row`, of `step_rows`): the column where `usage_from` is NULL, else the
    response's usage: a step with a body, the body's `$.usage`; a stream, the data of the SSE
    line `usage_from` lines from the end (`USAGE_LINES`). One extraction, so that a query
    binds little (a view's expressions are bound by every query that reads the view). Also
    the text of the view `steps` (migration 21): change it only with a migration that
    defines that view again."""
    return (
        f"CASE WHEN {row}.usage_from IS NULL THEN {row}.usage_raw "
        f"ELSE ({_usage_text(_usage_source(row))})::JSON END"
    )


def _usage_source(row: str) -> str:
    """SQL of the JSON text `usage_from` names (the row's columns under the alias `row`):
    the body of a step with one, else the data of that SSE line."""
    return (
        f"CASE WHEN {row}.response_body IS NOT NULL THEN {row}.response_body "
        f"ELSE substr({_sse_line(row, f'{row}.usage_from::INTEGER')}, 7) END"
    )


def usage_found(row: str) -> str:
    """SQL of `step_rows.usage_from` for a step (its columns under the alias `row`): where
    `stored_usage` gives the step's `usage_raw` back from byte for byte (a step with a body,
    from the body only: 1), else NULL (kept in full). A body or line that is not JSON is
    never extracted from."""
    body = f"{row}.response_body"
    found = [
        f"WHEN {body} IS NOT NULL THEN CASE WHEN json_valid({body}) "
        f"AND {_usage_text(body)} = {row}.usage_raw THEN 1 END"
    ]
    for back in USAGE_LINES:
        line = _sse_line(row, str(back))
        found.append(
            f"WHEN {row}.stream_events IS NOT NULL AND starts_with({line}, 'data: ') "
            f"AND json_valid(substr({line}, 7)) "
            f"AND {_usage_text(f'substr({line}, 7)')} = {row}.usage_raw THEN {back}"
        )
    return f"CASE WHEN {row}.usage_raw IS NULL THEN NULL {' '.join(found)} END"


def request_id_of(row: str) -> str:
    """SQL of the request id a step's stored response headers name (the row's columns under
    the alias `row`): their `x-request-id`, where `traces.normalize` reads it first (a
    `request-id` header alone, its fallback, is not looked at: the insert binds less)."""
    return f"json_extract_string({row}.response_headers, '$.\"x-request-id\"')"


def stored_request_id(row: str) -> str:
    """SQL of a step's `request_id` as the view `steps` gives it back (the row's columns
    under the alias `row`, of `step_rows`). Also the text of the view `steps` (migration
    21)."""
    return (
        f"CASE WHEN {row}.request_id_in_headers THEN {request_id_of(row)} ELSE {row}.request_id END"
    )


def usage_checked(row: str) -> str:
    """SQL of `step_rows.usage_from` as an insert stores it (the row's columns under the
    alias `row`, its `usage_from` the writer's guess): the guess where `stored_usage` gives
    the step's `usage_raw` back from there byte for byte, else NULL (kept in full). One
    place tried, not `usage_found`'s every one: a recorder's commit binds and runs this."""
    source = _usage_source(row)
    return (
        f"CASE WHEN {row}.usage_raw IS NULL OR {row}.usage_from IS NULL THEN NULL "
        f"WHEN json_valid({source}) AND {_usage_text(source)} = {row}.usage_raw "
        f"THEN {row}.usage_from::INTEGER END"
    )


FROM_ROW: dict[str, dict[str, str]] = {
    "steps": {
        "usage_from": usage_checked("new"),
        "request_id_in_headers": f"coalesce({request_id_of('new')} = new.request_id, false)",
    },
}
"""Columns a base table stores beyond its row type's fields that every insert computes from
the row itself (by this SQL over the row, named `new`), in the level of `LOOKED_UP`, before
the `DERIVED` ones, which use them: where a step's usage and request id are found in its
response (migration 21)."""

DERIVED: dict[str, dict[str, str]] = {
    "messages": {"key": MESSAGE_KEY.format("hash"), "seq": NEXT_MESSAGE_SEQ},
    "step_messages": {"key": MESSAGE_KEY.format("hash"), "seq": MESSAGE_SEQ_OF_HASH},
    "tool_results": {"output": "CASE WHEN output_position IS NULL THEN output END"},
    "steps": {
        "reasoning": "CASE WHEN reasoning_replayed THEN NULL ELSE reasoning END",
        "replay_message_hash": "CASE WHEN replayed THEN NULL ELSE replay_message_hash END",
        "usage_raw": "CASE WHEN usage_from IS NULL THEN usage_raw END",
        "request_id": "CASE WHEN request_id_in_headers THEN NULL ELSE request_id END",
    },
    "tool_calls": {
        "arguments_raw": "CASE WHEN arguments_raw = arguments THEN NULL ELSE arguments_raw END",
    },
}
"""Columns a table has beyond its row type's fields, which every insert computes in SQL from
the row (by this expression over its columns' names), after the row's own columns: the key of a
message (migration 9; 64 bits since 20, `MESSAGE_KEY`) is a function of its hash, so no writer
computes or ships it; its number (migration 13) is drawn or looked up by the insert, unless the
writer binds the numbers it knows (`numbered`: the recorders' writer, `traces.store.numbers`);
a tool's output is stored only where no message holds it (migration 16), a step's reasoning and
replayed message's hash only where the replayed message does not give them (17). A column of
the row type that is derived too is stored as derived."""


RUN_KEY = "run_key"
"""The column of every per-run table that holds its run's `runs.key` (migration 12)."""

NEXT_RUN_KEY = "(SELECT coalesce(max(key), 0) FROM runs) + row_number() OVER ()"
"""A new run's `key`: the next numbers, in the order the runs are stored. Two writers of one
lake may draw the same number; readers filter on the run's id as well, so a shared key
costs them a row group more to read, never a wrong row."""


class Stored(NamedTuple):
    """Where the rows of a table of `ROW_TYPES` that is a view over a base table go."""

    table: str
    """The base table."""
    dropped: tuple[str, ...]
    """Fields of the row type the base table does not keep (the view rebuilds them)."""
    hidden: tuple[str, ...] = ()
    """Fields of the row type the base table keeps but the view does not give (how the
    view rebuilds the others)."""


STORED: dict[str, Stored] = {
    "step_messages": Stored("step_message_keys", ("hash",)),
    "tool_results": Stored("tool_result_rows", ()),
    "steps": Stored("step_rows", (), ("replayed", "reasoning_replayed", "usage_from")),
    "tool_calls": Stored("tool_call_rows", ()),
}
"""Row types stored under another table: `step_messages` rows keep their message's key (8 bytes
since migration 20) and number instead of its 64-character hash, which the view `step_messages`
gives back from `messages` (migration 10); `tool_results` rows keep no output where the tool
message the run's next request added holds it, naming its position instead (`output_position`),
from which the view `tool_results` gives the output back (migration 16); `steps` rows keep no
reasoning and no replayed message's hash where the assistant message the run's next request
added holds them (`replayed`, `reasoning_replayed`), from which the view `steps` gives them
back (migration 17), nor a usage or a request id where the step's response gives them back
(`usage_from`, `request_id_in_headers`: `FROM_ROW`, migration 21); `tool_calls` rows keep
no raw arguments where they are the text of the parsed ones (21), which the view
`tool_calls` gives back."""

REPLAYED_REASONING = ("reasoning_content", "reasoning")
"""The reasoning sources a replayed assistant message may hold the reasoning under, as a text
field of that name (`StepRow.reasoning_replayed`); any other is kept in full."""


def written_fields(table: str, *, numbered: bool = False) -> tuple[str, ...]:
    """The values an insert of `table` (a key of `ROW_TYPES`) binds: its row's fields, then,
    for a per-run table, its run's key, then, `numbered`, the message numbers (`MESSAGE_SEQ`)
    the writer drew or knows instead of the insert's `DERIVED` expression."""
    fields = (*COLUMNS[table], RUN_KEY) if table in PER_RUN else COLUMNS[table]
    return (*fields, MESSAGE_SEQ) if numbered else fields


def stored_columns(table: str) -> tuple[str, tuple[str, ...]]:
    """The base table the rows of `table` (a key of `ROW_TYPES`) are inserted into, and its
    columns in order: the row's fields it keeps, then the `LOOKED_UP` and `DERIVED` ones
    that are not among them, then the run key
    (a per-run table's `run_key`, bound by the insert; a new run's `key`, computed by it),
    then the message number (`MESSAGE_SEQ`, derived too)."""
    stored = STORED.get(table)
    base, dropped = (table, ()) if stored is None else stored[:2]
    kept = tuple(c for c in COLUMNS[table] if c not in dropped)
    # Added by migration 12, hence after the derived columns of before.
    keys = (RUN_KEY,) if table in PER_RUN else ("key",) if table == "runs" else ()
    computed = (*LOOKED_UP.get(table, {}), *FROM_ROW.get(table, {}), *DERIVED.get(table, {}))
    derived = tuple(c for c in computed if c not in kept)
    # Added by migration 13, hence last.
    numbers = tuple(c for c in derived if c == MESSAGE_SEQ)
    return base, (*kept, *(c for c in derived if c != MESSAGE_SEQ), *keys, *numbers)


COLUMNS: dict[str, tuple[str, ...]] = {
    table: row_type._fields  # type: ignore[attr-defined]
    for table, row_type in ROW_TYPES.items()
}
"""The columns of each table of `ROW_TYPES`, in the order of its rows' fields."""

PER_RUN = frozenset(table for table, fields in COLUMNS.items() if "run_id" in fields)
"""The tables of `ROW_TYPES` whose rows belong to a run: each is stored with its run's key,
which an insert looks up (`traces.store.inserts`), after the row's own columns."""

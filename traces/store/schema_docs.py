"""Documentation of every table, view and column, stored in the database as SQL comments.

Keeping the words inside DuckDB (`COMMENT ON`) means `traces schema` and any SQL client
(`SELECT comment FROM duckdb_columns()`) read the same documentation. A test fails when a
column exists without a description here.
"""

from __future__ import annotations

import contextlib

import duckdb

TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "schema_migrations": (
        "Migrations applied to this file, one row each (append-only).",
        {
            "version": "Migration number.",
            "name": "What the migration did.",
            "applied_at": "When it was applied (UTC).",
        },
    ),
    "runs": (
        "One agent episode: a task run against one endpoint until an answer, a limit or an error.",
        {
            "id": "Run id (time-ordered).",
            "task": "Task name from the task file.",
            "task_path": "Task file the run was built from.",
            "task_sha256": "sha256 of the task file bytes, to tell edited tasks apart.",
            "provider": "Provider label: `sim` (embedded simulator), `custom` (--base-url).",
            "model": "Model id sent in every request.",
            "base_url": "Endpoint base URL, credentials and query stripped.",
            "settings": "Run settings as JSON: stream, max_steps, seed, concurrency, replay..., "
            "and `endpoint`, how to reach the endpoint again (`record --resume`).",
            "seed": "Seed of the task world (and the request `seed` field).",
            "status": "running | completed | failed | interrupted.",
            "termination": "Why it stopped: completed, max_steps, model_error, provider_error, "
            "interrupted, context_overflow, client_error.",
            "success": "Verdict of the task's success check (null when no final answer).",
            "success_detail": "One sentence explaining the verdict.",
            "final_answer": "The model's final answer text.",
            "error": "One line on what stopped the run, when it was not a final answer.",
            "started_at": "When the run started (UTC).",
            "ended_at": "When the run ended (UTC); null while running or if the recorder died.",
            "steps": "Model calls recorded.",
            "tool_calls": "Tool calls the model made.",
            "tool_errors": "Tool calls whose execution returned an error to the model.",
            "prompt_tokens": "Sum of reported prompt tokens over the answered steps (those "
            "without an error); null (unknown, never 0) unless every one of them reported it, "
            "and while no step has answered yet.",
            "completion_tokens": "Sum of reported completion tokens over the answered steps; "
            "null unless every one of them reported it.",
            "reasoning_tokens": "Sum of reasoning tokens (reported or estimated) over the "
            "answered steps; null unless every one of them has a count.",
            "recorder_pid": "Process id of the recorder (runs of dead recorders are interrupted).",
            "recorder_host": "Host name of the recorder.",
            "origin": "recorded (by `traces record`), imported (by `traces import`), probe "
            "(one probe request of `traces probe`; `task` is `probe:NAME`, `settings` names "
            "the probe set version), proxy (a conversation a client held through "
            "`traces proxy`; `task` is `proxy`, `settings.proxy` names the upstream and the "
            "client) or replay (one request of a suite sent by `traces replay`; `task` is the "
            "suite's name, `settings.replay` names the line, request hash and repeat).",
            "import_id": "The `imports` row an imported run came from; null when recorded.",
            "conversation": "The `conversation` label of an imported run, or the first user "
            "message of a proxied one (null when recorded).",
            "failure_summary": "One line: findings by severity and kind, most severe first "
            "(null until analyzed, empty when clean).",
            "findings_by_kind": "Findings counted by kind, as a JSON object.",
            "resumptions": "Times `traces record --resume` took the run up again after an "
            "interruption (0: never); its steps continue the numbering, and the first step "
            "each resumption sent carries its number (`steps.resumption`).",
            "retry_of": "The run this one records again (`traces record --retry-failed`): a "
            "run that ended with a provider error, kept for comparison; null otherwise.",
            "sample": "The id of the dataset sample the run answers (a task with a "
            "`[dataset]`; its scorer's verdict is `success`, its explanation "
            "`success_detail`); null otherwise.",
            "key": "The run's number in this store, in the order runs were stored: rows of a "
            "run carry it as `run_key`, which reads of one run filter on (not unique across "
            "writers of one lake; the id is).",
        },
    ),
    "messages": (
        "Chat messages, content-addressed: each distinct message stored once (two writers may "
        "store one twice, identical: read it as a set), referenced by hash from step_messages.",
        {
            "hash": "sha256 of the message's canonical JSON (sorted keys, compact).",
            "role": "system | user | assistant | tool.",
            "body": "The message exactly as sent, as JSON.",
            "key": "`md5_number_lower(hash)`: 64 bits of the md5 of `hash` (not indexed: a "
            "fixed-width column to scan), which `step_message_keys` names it by with `seq`. Not "
            "unique: look a message up by `key` and `hash` together.",
            "seq": "The message's number in the order messages were first stored: a run's "
            "new messages have neighbouring numbers, which reads of a run join on (with `key`: "
            "two writers at once may draw one number for two messages).",
        },
    ),
    "steps": (
        "One model call: the exact request, the raw response and its normalized reading.",
        {
            "run_id": "Run the step belongs to.",
            "idx": "Step number within the run, from 0.",
            "started_at": "When the request was sent (UTC).",
            "latency_ms": "Time from sending the request to the end of the response body.",
            "ttft_reasoning_ms": "Time to the first reasoning chunk (streams).",
            "ttft_content_ms": "Time to the first content chunk (streams).",
            "ttft_tool_call_ms": "Time to the first tool-call chunk (streams).",
            "streamed": "Whether the response was streamed.",
            "http_status": "HTTP status of the last attempt.",
            "request_id": "Provider request id (x-request-id and similar headers).",
            "response_headers": "Kept response headers: request ids, rate limits, timing.",
            "request_params": "The request body exactly as sent, minus `messages`.",
            "request_message_count": "Messages in the request.",
            "request_prefix": "Leading messages shared with the previous step's request (only "
            "the rest is in step_messages); rebuild with `request_messages(run_id, idx)`.",
            "response_body": "Raw response body (non-streaming responses and errors).",
            "stream_events": "Every raw SSE line with its arrival time in ms (to the µs), as JSON.",
            "finish_reason_raw": "finish_reason exactly as sent.",
            "finish_reason": "Normalized: stop, tool_calls, length, content_filter, error, other, "
            "none.",
            "reasoning": "Reasoning text, normalized.",
            "reasoning_source": "Where reasoning came from: reasoning_content, reasoning, "
            "reasoning_details, think_tag, think_close (a lone `</think>` in content: the prompt "
            "opened the tag), harmony, none.",
            "content": "Visible answer text, normalized (think blocks removed).",
            "prompt_tokens": "usage.prompt_tokens as reported.",
            "completion_tokens": "usage.completion_tokens as reported.",
            "reasoning_tokens": "Reasoning tokens, reported or estimated.",
            "reasoning_tokens_source": "reported | estimated | missing.",
            "cached_tokens": "Cached prompt tokens (cached_tokens or prompt_cache_hit_tokens).",
            "total_tokens": "usage.total_tokens as reported.",
            "usage_raw": "The usage block exactly as sent.",
            "replay_message_hash": "Hash of the assistant message the harness sent back next.",
            "error_kind": "Error class of a failed call: rate_limit, server_error, timeout, "
            "connection, context_overflow, bad_request, auth, not_found, invalid_response, "
            "empty_response (200 with nothing generated), cancelled (a client of `traces "
            "proxy` hung up before the answer ended), other.",
            "error_status": "HTTP status of the failed call.",
            "error_message": "One-line error description.",
            "error_body": "Raw error body.",
            "retries": "Failed attempts before this one (429/5xx/timeouts are retried).",
            "retry_errors": "The errors of those failed attempts, as JSON.",
            "anomalies": "Irregularities noticed while reading the response, as JSON: stream "
            "quirks, and choices or logprobs the request asked for and the answer lacks.",
            "request_hash": "sha256 over the request's message hashes, tools and tool_choice: "
            "pairs the same request across providers.",
            "upstream_provider": "Host that served the call behind a router (OpenRouter's "
            "`provider` field).",
            "resumption": "On the first step a `traces record --resume` sent: which "
            "resumption of the run it was (1, 2, …); null on every other step. The request "
            "was rebuilt from the store and the tools' state replayed from the recorded calls.",
            "run_key": "The run's `runs.key`: what a read of one run filters on.",
        },
    ),
    "step_messages": (
        "Which messages each request added, by position: a request is its previous step's "
        "request up to `request_prefix`, then these. The table macro "
        "`request_messages(run_id, idx)` rebuilds it in order.",
        {
            "run_id": "Run of the step.",
            "step_idx": "Step whose request added the message.",
            "position": "Position of the message in the request (0-based).",
            "hash": "Message hash (join `messages`).",
        },
    ),
    "step_message_keys": (
        "The rows of the view step_messages as stored: each message named by its 8-byte key "
        "(`messages.key`) and its number (`messages.seq`) instead of its 64-character hash.",
        {
            "run_id": "Run of the step.",
            "step_idx": "Step whose request added the message.",
            "position": "Position of the message in the request (0-based).",
            "key": "The message's `messages.key` (64 bits of the md5 of its hash).",
            "run_key": "The run's `runs.key`.",
            "seq": "The message's `messages.seq`: a run's reads join `messages` on it and "
            "`key`, and read only the row groups holding the run's messages.",
        },
    ),
    "tool_result_rows": (
        "The rows of the view tool_results as stored: an output is kept once, in the tool "
        "message the run's next request added, when that message holds it exactly.",
        {
            "run_id": "Run of the call.",
            "step_idx": "Step whose call this answers.",
            "call_idx": "Position of the call within that step.",
            "tool_call_id": "As tool_results.tool_call_id.",
            "name": "Function executed.",
            "output": "Text returned to the model; null when the message at `output_position` "
            "holds it (its `content`, byte for byte: the view tool_results gives it back).",
            "error": "As tool_results.error.",
            "started_at": "When execution began (UTC).",
            "duration_ms": "Execution wall time.",
            "error_kind": "As tool_results.error_kind.",
            "structured": "As tool_results.structured.",
            "output_position": "Position of the tool message holding the output among those "
            "step `step_idx` + 1 of the run added (`step_message_keys`); null when `output` "
            "holds it (a recorder stores a result before the request that sends it back).",
            "run_key": "The run's `runs.key`.",
        },
    ),
    "tool_calls": (
        "One tool call the model made, raw and parsed.",
        {
            "run_id": "Run of the call.",
            "step_idx": "Step that made the call.",
            "call_idx": "Position within the step (parallel calls share a step).",
            "id": "Tool-call id exactly as sent.",
            "id_format": "openai (`call_…`), kimi (`functions.NAME:IDX`), other or missing.",
            "name": "Function name as sent.",
            "arguments_raw": "Arguments exactly as sent (string, or JSON text of an object).",
            "arguments_type": "string (OpenAI form), object, or missing.",
            "arguments": "Parsed arguments as JSON; null when invalid.",
            "json_valid": "Whether the arguments parse as a JSON object.",
            "schema_valid": "Whether they validate against the declared tool schema.",
            "schema_error": "First schema error as `path: message`.",
            "run_key": "The run's `runs.key`.",
        },
    ),
    "tool_results": (
        "What the harness executed for a tool call and returned to the model.",
        {
            "run_id": "Run of the call.",
            "step_idx": "Step whose call this answers.",
            "call_idx": "Position of the call within that step.",
            "tool_call_id": "Id the result answers, as sent back.",
            "name": "Function executed.",
            "output": "Text returned to the model.",
            "error": "Error text when the call failed (bad arguments, refused path...).",
            "error_kind": "Why the call failed: not_found (undeclared tool), invalid_arguments "
            "(not a JSON object, or off the schema), missing (no such box, document or file), "
            "sandbox (path refused), rejected (the tool answered with an error about the "
            "request: locked box, a directory, over a limit), timeout, crashed (the tool "
            "raised). Null when it did not fail, and for imported results and those recorded "
            "before the column existed (unknown).",
            "started_at": "When execution began (UTC).",
            "duration_ms": "Execution wall time.",
            "structured": "An MCP tool's `structuredContent`, as the server sent it, beside "
            "the text it returned (`output`); null for other tools and when a server sent none.",
            "run_key": "The run's `runs.key`.",
        },
    ),
    "imports": (
        "One `traces import` of a file: what was read, what became runs, what was skipped.",
        {
            "id": "Import id (time-ordered).",
            "path": "File imported, as given.",
            "sha256": "sha256 of the file bytes.",
            "format": "exchanges (JSONL request/response logs) or k2vv (K2-Vendor-Verifier).",
            "provider": "Provider label given with --provider, when the file did not say.",
            "lines": "Non-empty lines read.",
            "exchanges": "Exchanges imported as steps.",
            "runs": "Runs created (one per conversation, or per line without one).",
            "skipped": "Malformed lines skipped.",
            "skipped_lines": "The skipped lines as JSON: line number and reason.",
            "imported_at": "When the import was committed (UTC).",
        },
    ),
    "findings": (
        "Things checks noticed on a step or run (filled by the checks).",
        {
            "run_id": "Run concerned.",
            "step_idx": "Step concerned; null for run-level findings.",
            "kind": "What was noticed (e.g. leaked_special_tokens).",
            "severity": "info | warning | error.",
            "layer": "Who is at fault: model, tool, provider or client.",
            "evidence": "Matched text, field and numbers, as JSON.",
            "created_at": "When the check ran (UTC).",
            "confidence": "How likely an inferred finding is right, 0 to 1 (from the strength "
            "of its evidence); null when the check observed it directly.",
            "run_key": "The run's `runs.key`.",
        },
    ),
    "findings_so_far": (
        "Runs whose stored findings are partial: checked while the run was still being "
        "recorded (`traces record`, `compare --suite`, `probe` and `proxy` check their running "
        "runs every few seconds; `traces analyze` stores a running run's findings the same way). "
        "The check of the ended run replaces its findings and deletes its row; a run left "
        "interrupted keeps both until analyzed again.",
        {
            "run_id": "Run concerned.",
            "through_step": "The last step checked (`steps.idx`); null when it had none yet.",
            "checked_at": "When the check ran (UTC).",
        },
    ),
    "ledgers": (
        "What each run's host kept of the history, measured from its prompt_tokens (filled by "
        "the checks; `traces show RUN --ledger` shows it step by step). Token counts are the "
        "host's where it reported them, else estimated; sums over the requests of the run's "
        "tool-chain steps, so a turn sent back with every later request counts each time.",
        {
            "run_id": "Run concerned.",
            "chain_steps": "Tool-chain steps fitted (a request adding one assistant turn with "
            "calls and its results to the previous one).",
            "token_ratio": "Host tokens per estimated token of the run's reasoning (1 when "
            "no reasoning tokens were reported).",
            "reasoning_sent_tokens": "Reasoning tokens sent back in those requests; null when "
            "none was sent, too few steps to fit, or the retention is undecided (the "
            "behaviours keeping the most probable one's share within 10 points hold less "
            "than 0.7 of the probability).",
            "reasoning_kept_tokens": "Of those, the tokens the host counted, under the decided "
            "behaviour (null with the sent tokens).",
            "reasoning_behaviour": "kept, newest_only (only the latest turn's), none, or "
            "partial (a fitted share): the most probable, decided or not.",
            "reasoning_probability": "Posterior probability of that behaviour, 0 to 1.",
            "tool_results_sent_tokens": "Tool-result tokens in those requests (estimated); "
            "null as reasoning_sent_tokens.",
            "tool_results_kept_tokens": "Of those, the tokens the host counted.",
            "tool_results_behaviour": "kept, dropped, truncated, or partial (the most probable, "
            "decided or not).",
            "tool_results_probability": "Posterior probability of that behaviour, 0 to 1.",
            "per_result_tokens": "Template tokens around each tool result, learned from the "
            "run; null when every step added one result (per_turn_tokens holds both).",
            "per_turn_tokens": "Template tokens per chain step beyond those, learned from the run.",
            "noise_scale": "The fit's misfit per degree of freedom against the assumed noise "
            "(about 1 or less for a host that behaves the same on every request).",
            "first_prompt_tokens": "prompt_tokens of the run's first request.",
            "first_sent_tokens": "Everything that request sent (messages and tool "
            "declarations), estimated in host tokens.",
            "check_version": "Version of the checks that wrote the row.",
            "created_at": "When the checks ran (UTC).",
            "run_key": "The run's `runs.key`.",
        },
    ),
    "step_counts": (
        "Step-count distribution of finished runs by task, provider and model.",
        {
            "task": "Task name.",
            "provider": "Provider label.",
            "model": "Model id.",
            "runs": "Finished runs.",
            "succeeded": "Runs whose success check passed.",
            "min_steps": "Fewest steps.",
            "median_steps": "Median steps.",
            "p90_steps": "90th percentile of steps.",
            "max_steps": "Most steps.",
            "mean_steps": "Mean steps.",
        },
    ),
    "failures": (
        "Finished runs that did not succeed: ended otherwise than `completed`, or failed the "
        "task's success check (imported and probe runs have no check), by termination reason.",
        {
            "task": "Task name.",
            "provider": "Provider label.",
            "model": "Model id.",
            "termination": "Why the runs stopped.",
            "runs": "How many runs.",
            "example_error": "One of their error lines.",
        },
    ),
    "provider_summary": (
        "Totals per provider and model.",
        {
            "provider": "Provider label.",
            "model": "Model id.",
            "runs": "Runs recorded.",
            "success_rate": "Share of runs whose success check passed.",
            "steps": "Steps recorded.",
            "tool_calls": "Tool calls made.",
            "tool_errors": "Tool calls that returned an error.",
            "prompt_tokens": "Prompt tokens over the runs with usage (known prompt and "
            "completion totals); null when none has.",
            "completion_tokens": "Completion tokens over the same runs.",
            "reasoning_tokens": "Reasoning tokens over the runs whose total is known.",
            "runs_without_usage": "Runs left out of the prompt and completion sums: their "
            "totals are unknown (a step answered without usage, or none answered yet).",
            "runs_without_reasoning_tokens": "Runs left out of the reasoning sum (unknown total).",
        },
    ),
}
"""table or view -> (description, column -> description)."""


def _step_rows() -> tuple[str, dict[str, str]]:
    """The base table of the view steps (migration 17): its columns, and how it keeps two."""
    columns = {name: f"As steps.{name}." for name in TABLES["steps"][1]}
    columns["reasoning"] = (
        "As steps.reasoning; null where `reasoning_replayed` (the view steps gives it back)."
    )
    columns["replay_message_hash"] = (
        "As steps.replay_message_hash; null where `replayed` (the view steps gives it back)."
    )
    columns["run_key"] = "The run's `runs.key`."
    columns["replayed"] = (
        "The replayed assistant message is the one at position `request_message_count` among "
        "those step `idx` + 1 of the run added (`step_message_keys`): its hash is not kept here."
    )
    columns["reasoning_replayed"] = (
        "That message holds `reasoning` byte for byte in its field named by `reasoning_source` "
        "(reasoning_content or reasoning): the text is not kept here. Only an import knows "
        "(a recorder stores a step before the request that sends it back: kept in full)."
    )
    columns["usage_raw"] = (
        "As steps.usage_raw; null where `usage_from` names where the response holds it "
        "(the view steps gives it back)."
    )
    columns["request_id"] = (
        "As steps.request_id; null where `request_id_in_headers` (the view steps gives it back)."
    )
    columns["usage_from"] = (
        "Where the response holds `usage_raw` byte for byte, as the writer serialized it "
        "(migration 21): the body's `usage` in a step with a body (1), else the `usage` of "
        "the SSE line this many from the end (`stream_events`); null when `usage_raw` "
        "holds it (or there is none)."
    )
    columns["request_id_in_headers"] = (
        "The response headers name `request_id` (`x-request-id`): the id "
        "is not kept here (migration 21)."
    )
    order = [*TABLES["steps"][1]]
    at = order.index("run_key")
    order[at:at] = ["replayed", "reasoning_replayed", "usage_from", "request_id_in_headers"]
    return (
        "The rows of the view steps as stored: a step's reasoning and the hash of the "
        "assistant message sent back are kept once, in that message, when it holds them; "
        "its usage and request id, in its response, when it holds them (migration 21).",
        {name: columns[name] for name in order},
    )


TABLES["step_rows"] = _step_rows()


TABLES["tool_call_rows"] = (
    "The rows of the view tool_calls as stored: the raw arguments are kept once, as the "
    "parsed ones, when they are their text.",
    {
        name: f"As tool_calls.{name}."
        if name != "arguments_raw"
        else "As tool_calls.arguments_raw; null where it is the text of `arguments` byte for "
        "byte (the view tool_calls gives it back)."
        for name in TABLES["tool_calls"][1]
    },
)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_sql(conn: duckdb.DuckDBPyConnection, *, view_columns: bool = True) -> str:
    """The statements that write the documentation above into the database as table, view
    and column comments (a view's columns left out without `view_columns`: DuckLake cannot
    hold them)."""
    views = {row[0] for row in conn.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    statements: list[str] = []
    for table, (description, columns) in TABLES.items():
        kind = "VIEW" if table in views else "TABLE"
        statements.append(f"COMMENT ON {kind} {table} IS {_quote(description)}")
        if kind == "VIEW" and not view_columns:
            continue
        statements.extend(
            f"COMMENT ON COLUMN {table}.{column} IS {_quote(text)}"
            for column, text in columns.items()
        )
    return ";\n".join(statements)


def apply_comments(conn: duckdb.DuckDBPyConnection) -> None:
    """Write the documentation above into the database as table, view and column comments."""
    statements = comment_sql(conn)
    # One transaction: committed one by one, the comments took up to half a second of every
    # new store's creation.
    conn.execute("BEGIN")
    try:
        conn.execute(statements)
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # Ctrl-C may have ended it already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

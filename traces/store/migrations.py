"""Append-only schema migrations for the trace database.

Never edit a migration that has shipped: add a new one. Each runs in its own transaction and
is recorded in `schema_migrations`, so opening an old database upgrades it in place.
"""

from __future__ import annotations

import contextlib

import duckdb

from traces.store.tables import request_id_of, stored_request_id, stored_usage, usage_found

_CALL_COLUMNS = """run_id, step_idx, call_idx, id, id_format, "name", {arguments_raw},
            arguments_type, arguments, json_valid, schema_valid, schema_error, run_key"""
"""The columns of `tool_calls` (the table of migrations 1 and 12, the view of 21) in order."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial trace model",
        """
        CREATE TABLE runs (
            id VARCHAR PRIMARY KEY,
            task VARCHAR NOT NULL,
            task_path VARCHAR NOT NULL,
            task_sha256 VARCHAR NOT NULL,
            provider VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            base_url VARCHAR NOT NULL,
            settings JSON NOT NULL,
            seed BIGINT NOT NULL,
            status VARCHAR NOT NULL,
            termination VARCHAR,
            success BOOLEAN,
            success_detail VARCHAR,
            final_answer VARCHAR,
            error VARCHAR,
            started_at TIMESTAMP NOT NULL,
            ended_at TIMESTAMP,
            steps INTEGER NOT NULL DEFAULT 0,
            tool_calls INTEGER NOT NULL DEFAULT 0,
            tool_errors INTEGER NOT NULL DEFAULT 0,
            prompt_tokens BIGINT NOT NULL DEFAULT 0,
            completion_tokens BIGINT NOT NULL DEFAULT 0,
            reasoning_tokens BIGINT NOT NULL DEFAULT 0,
            recorder_pid INTEGER NOT NULL,
            recorder_host VARCHAR NOT NULL
        );
        CREATE TABLE messages (
            hash VARCHAR PRIMARY KEY,
            role VARCHAR NOT NULL,
            body JSON NOT NULL
        );
        CREATE TABLE steps (
            run_id VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE NOT NULL,
            ttft_reasoning_ms DOUBLE,
            ttft_content_ms DOUBLE,
            ttft_tool_call_ms DOUBLE,
            streamed BOOLEAN NOT NULL,
            http_status INTEGER,
            request_id VARCHAR,
            response_headers JSON,
            request_params JSON NOT NULL,
            request_message_count INTEGER NOT NULL,
            request_prefix INTEGER NOT NULL,
            response_body VARCHAR,
            stream_events JSON,
            finish_reason_raw VARCHAR,
            finish_reason VARCHAR NOT NULL,
            reasoning VARCHAR,
            reasoning_source VARCHAR NOT NULL,
            content VARCHAR,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            reasoning_tokens INTEGER,
            reasoning_tokens_source VARCHAR NOT NULL,
            cached_tokens INTEGER,
            total_tokens INTEGER,
            usage_raw JSON,
            replay_message_hash VARCHAR,
            error_kind VARCHAR,
            error_status INTEGER,
            error_message VARCHAR,
            error_body VARCHAR,
            retries INTEGER NOT NULL DEFAULT 0,
            retry_errors JSON,
            anomalies JSON,
            PRIMARY KEY (run_id, idx)
        );
        CREATE TABLE step_messages (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            position INTEGER NOT NULL,
            hash VARCHAR NOT NULL
        );
        CREATE MACRO request_messages(rid, i) AS TABLE
            SELECT p.position, m.role, m.body, p.hash
            FROM (
                SELECT position, arg_max(hash, step_idx) AS hash
                FROM step_messages
                WHERE run_id = rid AND step_idx <= i
                  AND position < (SELECT request_message_count FROM steps
                                  WHERE run_id = rid AND idx = i)
                GROUP BY position
            ) p
            JOIN messages m ON m.hash = p.hash
            ORDER BY p.position;
        CREATE TABLE tool_calls (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            call_idx INTEGER NOT NULL,
            id VARCHAR,
            id_format VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            arguments_raw VARCHAR NOT NULL,
            arguments_type VARCHAR NOT NULL,
            arguments JSON,
            json_valid BOOLEAN NOT NULL,
            schema_valid BOOLEAN,
            schema_error VARCHAR
        );
        CREATE TABLE tool_results (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            call_idx INTEGER NOT NULL,
            tool_call_id VARCHAR,
            name VARCHAR NOT NULL,
            output VARCHAR NOT NULL,
            error VARCHAR,
            started_at TIMESTAMP NOT NULL,
            duration_ms DOUBLE NOT NULL
        );
        CREATE TABLE findings (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER,
            kind VARCHAR NOT NULL,
            severity VARCHAR NOT NULL,
            layer VARCHAR NOT NULL,
            evidence JSON NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE VIEW step_counts AS
            SELECT task, provider, model,
                   count(*) AS runs,
                   count(*) FILTER (WHERE success) AS succeeded,
                   min(steps) AS min_steps,
                   quantile_cont(steps, 0.5) AS median_steps,
                   quantile_cont(steps, 0.9) AS p90_steps,
                   max(steps) AS max_steps,
                   avg(steps) AS mean_steps
            FROM runs
            WHERE status <> 'running'
            GROUP BY task, provider, model;
        CREATE VIEW failures AS
            SELECT task, provider, model, termination, count(*) AS runs,
                   any_value(error) AS example_error
            FROM runs
            WHERE status <> 'running' AND (termination <> 'completed' OR success IS NOT TRUE)
            GROUP BY task, provider, model, termination;
        CREATE VIEW provider_summary AS
            SELECT provider, model,
                   count(*) AS runs,
                   avg(CASE WHEN success THEN 1.0 ELSE 0.0 END) AS success_rate,
                   sum(steps) AS steps,
                   sum(tool_calls) AS tool_calls,
                   sum(tool_errors) AS tool_errors,
                   sum(prompt_tokens) AS prompt_tokens,
                   sum(completion_tokens) AS completion_tokens,
                   sum(reasoning_tokens) AS reasoning_tokens
            FROM runs
            GROUP BY provider, model;
        """,
    ),
    (
        2,
        "imports, failure summaries, request pairing, upstream hosts",
        """
        ALTER TABLE runs ADD COLUMN origin VARCHAR DEFAULT 'recorded';
        ALTER TABLE runs ADD COLUMN import_id VARCHAR;
        ALTER TABLE runs ADD COLUMN conversation VARCHAR;
        ALTER TABLE runs ADD COLUMN failure_summary VARCHAR;
        ALTER TABLE runs ADD COLUMN findings_by_kind JSON;
        ALTER TABLE steps ADD COLUMN request_hash VARCHAR;
        ALTER TABLE steps ADD COLUMN upstream_provider VARCHAR;
        CREATE TABLE imports (
            id VARCHAR PRIMARY KEY,
            path VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            provider VARCHAR,
            lines INTEGER NOT NULL,
            exchanges INTEGER NOT NULL,
            runs INTEGER NOT NULL,
            skipped INTEGER NOT NULL,
            skipped_lines JSON,
            imported_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        3,
        "failures view: a run without a task verdict is not a failure",
        # Imported and probe runs have no success check (success is null); only a verdict of
        # false or an ending other than `completed` makes a run a failure.
        """
        CREATE OR REPLACE VIEW failures AS
            SELECT task, provider, model, termination, count(*) AS runs,
                   any_value(error) AS example_error
            FROM runs
            WHERE status <> 'running' AND (termination <> 'completed' OR success = false)
            GROUP BY task, provider, model, termination;
        """,
    ),
    (
        4,
        "tool results: the kind of a tool error",
        # Rows stored before this migration keep a null kind: their error text is all there
        # is, and guessing a kind from it would pass a guess off as a recorded fact.
        """
        ALTER TABLE tool_results ADD COLUMN error_kind VARCHAR;
        """,
    ),
    (
        5,
        "findings: the confidence of an inferred finding",
        # Findings stored before this migration keep a null confidence, which reads as
        # "certain"; `traces analyze` recomputes them with the current checks.
        """
        ALTER TABLE findings ADD COLUMN confidence DOUBLE;
        """,
    ),
    (
        6,
        "runs: token totals unknown (null) unless every answered step reported them",
        # Until now a step without usage added 0, so a run whose host sent no usage read as
        # a run that used no tokens. Every run's totals are summed again from its steps by
        # the rule of `traces.token_totals` (written out here: a migration never changes
        # once shipped, whatever that module later becomes), and `provider_summary` sums the
        # known totals only and counts the runs left out.
        """
        ALTER TABLE runs ALTER COLUMN prompt_tokens DROP NOT NULL;
        ALTER TABLE runs ALTER COLUMN prompt_tokens DROP DEFAULT;
        ALTER TABLE runs ALTER COLUMN completion_tokens DROP NOT NULL;
        ALTER TABLE runs ALTER COLUMN completion_tokens DROP DEFAULT;
        ALTER TABLE runs ALTER COLUMN reasoning_tokens DROP NOT NULL;
        ALTER TABLE runs ALTER COLUMN reasoning_tokens DROP DEFAULT;
        UPDATE runs SET prompt_tokens = NULL, completion_tokens = NULL, reasoning_tokens = NULL;
        UPDATE runs
        SET prompt_tokens = t.prompt_tokens, completion_tokens = t.completion_tokens,
            reasoning_tokens = t.reasoning_tokens
        FROM (
            SELECT run_id,
                   CASE WHEN count(*) FILTER (WHERE error_kind IS NULL) > 0
                        AND count(prompt_tokens) FILTER (WHERE error_kind IS NULL)
                            = count(*) FILTER (WHERE error_kind IS NULL)
                        THEN sum(prompt_tokens) FILTER (WHERE error_kind IS NULL)
                   END AS prompt_tokens,
                   CASE WHEN count(*) FILTER (WHERE error_kind IS NULL) > 0
                        AND count(completion_tokens) FILTER (WHERE error_kind IS NULL)
                            = count(*) FILTER (WHERE error_kind IS NULL)
                        THEN sum(completion_tokens) FILTER (WHERE error_kind IS NULL)
                   END AS completion_tokens,
                   CASE WHEN count(*) FILTER (WHERE error_kind IS NULL) > 0
                        AND count(reasoning_tokens) FILTER (WHERE error_kind IS NULL)
                            = count(*) FILTER (WHERE error_kind IS NULL)
                        THEN sum(reasoning_tokens) FILTER (WHERE error_kind IS NULL)
                   END AS reasoning_tokens
            FROM steps GROUP BY run_id
        ) t
        WHERE runs.id = t.run_id;
        CREATE OR REPLACE VIEW provider_summary AS
            SELECT provider, model,
                   count(*) AS runs,
                   avg(CASE WHEN success THEN 1.0 ELSE 0.0 END) AS success_rate,
                   sum(steps) AS steps,
                   sum(tool_calls) AS tool_calls,
                   sum(tool_errors) AS tool_errors,
                   -- Over the runs with usage only: a run without is counted, never summed
                   -- as 0, and a group with none has no total at all (NULL).
                   sum(prompt_tokens) FILTER (WHERE prompt_tokens IS NOT NULL
                                              AND completion_tokens IS NOT NULL)
                       AS prompt_tokens,
                   sum(completion_tokens) FILTER (WHERE prompt_tokens IS NOT NULL
                                                  AND completion_tokens IS NOT NULL)
                       AS completion_tokens,
                   sum(reasoning_tokens) AS reasoning_tokens,
                   count(*) FILTER (WHERE prompt_tokens IS NULL OR completion_tokens IS NULL)
                       AS runs_without_usage,
                   count(*) FILTER (WHERE reasoning_tokens IS NULL)
                       AS runs_without_reasoning_tokens
            FROM runs
            GROUP BY provider, model;
        """,
    ),
    (
        7,
        "ledgers: what each run's host kept of the history",
        # Filled by the checks like `findings`: runs analyzed before this migration have no
        # row until `traces analyze` runs again.
        """
        CREATE TABLE ledgers (
            run_id VARCHAR NOT NULL,
            chain_steps INTEGER NOT NULL,
            token_ratio DOUBLE NOT NULL,
            reasoning_sent_tokens DOUBLE,
            reasoning_kept_tokens DOUBLE,
            reasoning_behaviour VARCHAR,
            reasoning_probability DOUBLE,
            tool_results_sent_tokens DOUBLE,
            tool_results_kept_tokens DOUBLE,
            tool_results_behaviour VARCHAR,
            tool_results_probability DOUBLE,
            per_result_tokens DOUBLE,
            per_turn_tokens DOUBLE,
            noise_scale DOUBLE,
            first_prompt_tokens INTEGER,
            first_sent_tokens DOUBLE,
            check_version INTEGER NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        8,
        "resume and retry: resumptions of a run, the run a retry records again",
        # Runs and steps stored before this migration were never resumed nor retried: 0 and
        # null say exactly that.
        """
        ALTER TABLE runs ADD COLUMN resumptions INTEGER DEFAULT 0;
        ALTER TABLE runs ADD COLUMN retry_of VARCHAR;
        ALTER TABLE steps ADD COLUMN resumption INTEGER;
        """,
    ),
    (
        9,
        "compact storage: zstd for raw bodies and SSE lines, a 128-bit dedup key for messages",
        # Measured (benchmarks/bench_storage.py): DuckDB's default string compression (a
        # dictionary, else FSST, per segment) kept SSE lines, raw bodies and message bodies
        # at 3-7x their zstd size, and the primary-key index on the 64-character
        # `messages.hash` cost about 120 bytes a message, more than the message itself. The
        # columns keep their names, types and values: only how DuckDB stores them changes,
        # so every reader, view and macro reads what it read. A column's compression is set
        # when its table is created, so those tables are rebuilt, in their own row order
        # (the analyzer's rowid windows stay meaningful). Messages are now deduplicated on
        # `key`, the md5 of the hash as a 128-bit number (a collision is as likely as one of
        # sha256's first 128 bits), whose index costs a third of the hash's.
        """
        CREATE TABLE messages_v9 (
            hash VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            body JSON NOT NULL USING COMPRESSION ZSTD,
            key UHUGEINT PRIMARY KEY
        );
        INSERT INTO messages_v9 SELECT hash, role, body, md5_number(hash)
            FROM messages ORDER BY rowid;
        DROP TABLE messages;
        ALTER TABLE messages_v9 RENAME TO messages;
        CREATE TABLE steps_v9 (
            run_id VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE NOT NULL,
            ttft_reasoning_ms DOUBLE,
            ttft_content_ms DOUBLE,
            ttft_tool_call_ms DOUBLE,
            streamed BOOLEAN NOT NULL,
            http_status INTEGER,
            request_id VARCHAR,
            response_headers JSON USING COMPRESSION ZSTD,
            request_params JSON NOT NULL,
            request_message_count INTEGER NOT NULL,
            request_prefix INTEGER NOT NULL,
            response_body VARCHAR USING COMPRESSION ZSTD,
            stream_events JSON USING COMPRESSION ZSTD,
            finish_reason_raw VARCHAR,
            finish_reason VARCHAR NOT NULL,
            reasoning VARCHAR USING COMPRESSION ZSTD,
            reasoning_source VARCHAR NOT NULL,
            content VARCHAR,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            reasoning_tokens INTEGER,
            reasoning_tokens_source VARCHAR NOT NULL,
            cached_tokens INTEGER,
            total_tokens INTEGER,
            usage_raw JSON USING COMPRESSION ZSTD,
            replay_message_hash VARCHAR,
            error_kind VARCHAR,
            error_status INTEGER,
            error_message VARCHAR,
            error_body VARCHAR,
            retries INTEGER NOT NULL DEFAULT 0,
            retry_errors JSON,
            anomalies JSON,
            request_hash VARCHAR,
            upstream_provider VARCHAR,
            resumption INTEGER,
            PRIMARY KEY (run_id, idx)
        );
        INSERT INTO steps_v9 SELECT * FROM steps ORDER BY rowid;
        DROP TABLE steps;
        ALTER TABLE steps_v9 RENAME TO steps;
        CREATE TABLE tool_results_v9 (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            call_idx INTEGER NOT NULL,
            tool_call_id VARCHAR,
            name VARCHAR NOT NULL,
            output VARCHAR NOT NULL USING COMPRESSION ZSTD,
            error VARCHAR,
            started_at TIMESTAMP NOT NULL,
            duration_ms DOUBLE NOT NULL,
            error_kind VARCHAR
        );
        INSERT INTO tool_results_v9 SELECT * FROM tool_results ORDER BY rowid;
        DROP TABLE tool_results;
        ALTER TABLE tool_results_v9 RENAME TO tool_results;
        -- The same rows as before, found by the key: a zstd column has no cheap partial
        -- read, and a join on the hash (no longer indexed) read every body of the table.
        CREATE OR REPLACE MACRO request_messages(rid, i) AS TABLE
            SELECT p.position, m.role, m.body, p.hash
            FROM (
                SELECT position, arg_max(hash, step_idx) AS hash
                FROM step_messages
                WHERE run_id = rid AND step_idx <= i
                  AND position < (SELECT request_message_count FROM steps
                                  WHERE run_id = rid AND idx = i)
                GROUP BY position
            ) p
            JOIN messages m ON m.key = md5_number(p.hash)
            ORDER BY p.position;
        """,
    ),
    (
        10,
        "compact storage: step_messages by the 16-byte message key",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): each `step_messages` row
        # kept the 64-character hash of its message (random, ~35 bytes compressed) where the
        # 16-byte key names it as well. The rows are stored in `step_message_keys` with the key
        # instead of the hash; `step_messages` becomes the view that gives the hash back, so
        # its columns keep their names and values. Rows are copied in their own order (the
        # analyzer's rowid windows stay meaningful). The index on `messages.key` stays: without
        # it (46 bytes a message less) `request_messages`, whose join by key it serves, took
        # 3.6 times as long (every message body scanned).
        """
        CREATE TABLE step_message_keys (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            position INTEGER NOT NULL,
            key UHUGEINT NOT NULL
        );
        INSERT INTO step_message_keys
            SELECT run_id, step_idx, position, md5_number(hash) FROM step_messages ORDER BY rowid;
        DROP TABLE step_messages;
        -- A left join: a row stays a row even if its message were missing. Distinct keys: a
        -- lake may hold a message twice (see traces/store/lake_schema.py).
        CREATE VIEW step_messages AS
            SELECT s.run_id, s.step_idx, s.position, m.hash
            FROM step_message_keys s
            LEFT JOIN (SELECT DISTINCT key, hash FROM messages) m ON m.key = s.key;
        -- One row per position whatever the duplicates of a lake's `messages`, found by key.
        CREATE OR REPLACE MACRO request_messages(rid, i) AS TABLE
            SELECT DISTINCT ON (p.position) p.position, m.role, m.body, m.hash
            FROM (
                SELECT position, arg_max(key, step_idx) AS key
                FROM step_message_keys
                WHERE run_id = rid AND step_idx <= i
                  AND position < (SELECT request_message_count FROM steps
                                  WHERE run_id = rid AND idx = i)
                GROUP BY position
            ) p
            JOIN messages m ON m.key = p.key
            ORDER BY p.position;
        """,
    ),
    (
        11,
        "dataset samples, structured tool results",
        """
        ALTER TABLE runs ADD COLUMN sample VARCHAR;
        ALTER TABLE tool_results ADD COLUMN structured JSON;
        """,
    ),
    (
        12,
        "run keys: an integer per run in every per-run table, which reads of one run filter on",
        # Measured (README "Reads at scale"): a read of one run filtered on `run_id` scanned
        # the whole column of its table (1,000,000 rows of `steps` for 20), as DuckDB's zone
        # maps keep only 8 bytes of a string and every run id starts with its date. `key`
        # numbers the runs in the order they were stored (ties never: `rowid`), each per-run
        # row carries its run's as `run_key`, and since rows are stored about in the order
        # of their runs, a row group's min/max of `run_key` is narrow: a read that filters
        # on it (and on `run_id`, so a key two lake writers happened to share stays right)
        # scans the row groups holding the run only. Filled in place (ALTER and UPDATE, as a
        # lake takes them): no table is rebuilt.
        """
        ALTER TABLE runs ADD COLUMN key BIGINT;
        UPDATE runs SET key = k.key
            FROM (SELECT id, row_number() OVER (ORDER BY rowid) AS key FROM runs) k
            WHERE k.id = runs.id;
        ALTER TABLE steps ADD COLUMN run_key BIGINT;
        UPDATE steps SET run_key = r.key FROM runs r WHERE r.id = steps.run_id;
        ALTER TABLE step_message_keys ADD COLUMN run_key BIGINT;
        UPDATE step_message_keys SET run_key = r.key FROM runs r
            WHERE r.id = step_message_keys.run_id;
        ALTER TABLE tool_calls ADD COLUMN run_key BIGINT;
        UPDATE tool_calls SET run_key = r.key FROM runs r WHERE r.id = tool_calls.run_id;
        ALTER TABLE tool_results ADD COLUMN run_key BIGINT;
        UPDATE tool_results SET run_key = r.key FROM runs r WHERE r.id = tool_results.run_id;
        ALTER TABLE findings ADD COLUMN run_key BIGINT;
        UPDATE findings SET run_key = r.key FROM runs r WHERE r.id = findings.run_id;
        ALTER TABLE ledgers ADD COLUMN run_key BIGINT;
        UPDATE ledgers SET run_key = r.key FROM runs r WHERE r.id = ledgers.run_id;
        -- As migration 10's, the run's rows found by its key. The request's length is
        -- compared after the grouping (the same positions): inside it, beside the key's
        -- subquery, DuckDB no longer pushed the key into the scan (2,000,600 rows of
        -- `step_message_keys` read for a run's 600, measured).
        CREATE OR REPLACE MACRO request_messages(rid, i) AS TABLE
            SELECT DISTINCT ON (p.position) p.position, m.role, m.body, m.hash
            FROM (
                SELECT position, arg_max(key, step_idx) AS key
                FROM step_message_keys
                WHERE run_key = (SELECT key FROM runs WHERE id = rid)
                  AND run_id = rid AND step_idx <= i
                GROUP BY position
            ) p
            JOIN messages m ON m.key = p.key
            WHERE p.position < (SELECT request_message_count FROM steps
                                WHERE run_key = (SELECT key FROM runs WHERE id = rid)
                                  AND run_id = rid AND idx = i)
            ORDER BY p.position;
        """,
    ),
    (
        13,
        "message numbers: each message's stored order, which reads of a run's messages join on",
        # Measured (README "Reads at scale"): a run's messages were joined by `key`, the md5
        # of their hash: random, so no zone map skipped a row group of `messages`, and each
        # read of one run scanned the whole key column (200,600 keys for a run's 600 at a
        # million steps; `request_messages` 115 ms of CPU). `seq` numbers the messages in
        # the order they were first stored (`rowid` order here; then the next numbers, as
        # `tables.NEXT_MESSAGE_SEQ` draws them), and each `step_message_keys` row carries its
        # message's as `seq`. A run stores its new messages together, so the numbers its
        # rows name are close, and the join on `seq` (DuckDB pushes the range of the run's
        # numbers into the scan of `messages`) reads the row groups holding them only.
        # Joins also match `key`: two transactions that draw numbers at once (sessions of a
        # store's server, writers of a lake) may give two messages the same `seq`, which
        # then costs a row group more to read, never a wrong message (as `runs.key`).
        # Filled in place (ALTER and UPDATE, as a lake takes them); a message a lake holds
        # twice gets two numbers, and its references the least.
        """
        ALTER TABLE messages ADD COLUMN seq BIGINT;
        UPDATE messages SET seq = n.seq
            FROM (SELECT rowid AS stored, row_number() OVER (ORDER BY rowid) AS seq
                  FROM messages) n
            WHERE n.stored = messages.rowid;
        ALTER TABLE step_message_keys ADD COLUMN seq BIGINT;
        UPDATE step_message_keys SET seq = m.seq
            FROM (SELECT key, min(seq) AS seq FROM messages GROUP BY key) m
            WHERE m.key = step_message_keys.key;
        -- As migration 10's, a left join: a row stays a row even if its message were
        -- missing; duplicates a lake holds with the same number give one row.
        CREATE OR REPLACE VIEW step_messages AS
            SELECT s.run_id, s.step_idx, s.position, m.hash
            FROM step_message_keys s
            LEFT JOIN (SELECT DISTINCT seq, key, hash FROM messages) m
                ON m.seq = s.seq AND m.key = s.key;
        -- As migration 12's, each position's latest message found by its number and key.
        CREATE OR REPLACE MACRO request_messages(rid, i) AS TABLE
            SELECT DISTINCT ON (p.position) p.position, m.role, m.body, m.hash
            FROM (
                SELECT position, arg_max(seq, step_idx) AS seq, arg_max(key, step_idx) AS key
                FROM step_message_keys
                WHERE run_key = (SELECT key FROM runs WHERE id = rid)
                  AND run_id = rid AND step_idx <= i
                GROUP BY position
            ) p
            JOIN messages m ON m.seq = p.seq AND m.key = p.key
            WHERE p.position < (SELECT request_message_count FROM steps
                                WHERE run_key = (SELECT key FROM runs WHERE id = rid)
                                  AND run_id = rid AND idx = i)
            ORDER BY p.position;
        """,
    ),
    (
        14,
        "compact storage: no index on messages.key",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): the primary-key index on
        # `messages.key` cost about 46 bytes a message, a tenth of a store, and served writes
        # only since migration 13 (reads of a run's messages join on `seq`, then `key`).
        # Without it a message may be stored twice, identical, as a lake already may (two
        # recorders' writers that each stored a task's system prompt): the recorders' writer
        # knows the numbers of what it stored and skips those messages itself, drawing new
        # numbers from a counter (`traces.store.numbers`), so its commit looks nothing up
        # and costs the same into a large store as into an empty one; imports and merges
        # skip the keys already stored by an anti-join on the key column, once a batch
        # (`traces.store.inserts.Dedup`); every reader already reads `messages` as a set
        # (for a lake's sake). Rows are copied in their own order; a lake, which never had
        # the index, takes nothing of this (`lake_schema.LAKE_FORMS`).
        """
        CREATE TABLE messages_v14 (
            hash VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            body JSON NOT NULL USING COMPRESSION ZSTD,
            key UHUGEINT NOT NULL,
            seq BIGINT
        );
        INSERT INTO messages_v14 SELECT hash, role, body, key, seq FROM messages ORDER BY rowid;
        DROP TABLE messages;
        ALTER TABLE messages_v14 RENAME TO messages;
        """,
    ),
    (
        15,
        "findings so far: which runs' stored findings are a running run's, up to which step",
        # A table of its own rather than a column of `runs`: a recorder never writes it, an
        # analysis of ended runs only deletes from it (empty, almost always), and the runs'
        # row type stays what recorders, imports and merges insert. A run has a row while its
        # stored findings come from a check of the steps it had then (`traces record` checks
        # its running runs every few seconds); the analysis of the ended run deletes it, in
        # the transaction that replaces the findings.
        """
        CREATE TABLE findings_so_far (
            run_id VARCHAR NOT NULL,
            through_step INTEGER,
            checked_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        16,
        "compact storage: a tool's output stored once, in the tool message sent back",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): an imported tool's output
        # was stored twice, in `tool_results.output` and in the tool message the run's next
        # request added. The rows are stored in `tool_result_rows`, whose `output` is NULL
        # where that request added a tool message holding the text exactly (compared by the
        # very extraction the view makes, `tables.TOOL_OUTPUT_POSITION`) and whose
        # `output_position` names that message's position; `tool_results` becomes the view
        # that gives the text back, so its columns keep their names and values. The message
        # is named by the run, step and position `step_message_keys` has it under, not by
        # its key: a small integer, and a merge that copies the run's rows keeps it right.
        # The view's read joins on the run's key, then on `seq` and `key` (zone maps prune
        # both): a read of one run stays one run's. Rows are copied in their own order.
        """
        CREATE TABLE tool_result_rows (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            call_idx INTEGER NOT NULL,
            tool_call_id VARCHAR,
            name VARCHAR NOT NULL,
            output VARCHAR USING COMPRESSION ZSTD,
            error VARCHAR,
            started_at TIMESTAMP NOT NULL,
            duration_ms DOUBLE NOT NULL,
            error_kind VARCHAR,
            structured JSON,
            output_position INTEGER,
            run_key BIGINT
        );
        INSERT INTO tool_result_rows
            SELECT t.run_id, t.step_idx, t.call_idx, t.tool_call_id, t.name,
                   CASE WHEN f.position IS NULL THEN t.output END, t.error, t.started_at,
                   t.duration_ms, t.error_kind, t.structured, f.position, t.run_key
            FROM tool_results t
            LEFT JOIN (
                SELECT s.run_key, s.run_id, s.step_idx::BIGINT - 1 AS step_idx,
                       json_extract_string(m.body, '$.content') AS output,
                       min(s.position) AS position
                FROM step_message_keys s JOIN messages m ON m.seq = s.seq AND m.key = s.key
                WHERE m.role = 'tool'
                GROUP BY ALL
            ) f ON f.run_key = t.run_key AND f.run_id = t.run_id AND f.step_idx = t.step_idx
                AND f.output = t.output
            ORDER BY t.rowid;
        DROP TABLE tool_results;
        -- The text from the message the position names (any one of a lake's copies: equal).
        CREATE VIEW tool_results AS
            SELECT t.run_id, t.step_idx, t.call_idx, t.tool_call_id, t.name,
                   coalesce(t.output, (
                       SELECT json_extract_string(any_value(m.body), '$.content')
                       FROM step_message_keys s
                       JOIN messages m ON m.seq = s.seq AND m.key = s.key
                       WHERE s.run_key = t.run_key AND s.run_id = t.run_id
                         AND s.step_idx = t.step_idx::BIGINT + 1 AND s.position = t.output_position
                   )) AS output,
                   t.error, t.started_at, t.duration_ms, t.error_kind, t.structured, t.run_key
            FROM tool_result_rows t;
        """,
    ),
    (
        17,
        "compact storage: a step's reasoning and replayed message stored once, in that message",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): an imported step's
        # reasoning was stored twice, in `steps.reasoning` and in the assistant message the
        # run's next request sent back (its `reasoning_content` or `reasoning` field), and
        # `steps.replay_message_hash` named that message by its 64-character hash where its
        # position names it: the one at `request_message_count` among those step `idx + 1`
        # added. The rows are stored in `step_rows`, whose `reasoning` is NULL where that
        # message's field (`reasoning_source`) holds the text exactly (`reasoning_replayed`,
        # compared by the very extraction the view makes) and whose `replay_message_hash` is
        # NULL where that message is the one it names (`replayed`); `steps` becomes the view
        # that gives both back, so its columns keep their names and values. As migration
        # 16's, the message is named by run, step and position (a merge that copies the
        # run's rows keeps it right) and the view joins on the run's key, then on `seq` and
        # `key`: a read of one run stays one run's. Rows are copied in their own order.
        """
        CREATE TABLE step_rows (
            run_id VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE NOT NULL,
            ttft_reasoning_ms DOUBLE,
            ttft_content_ms DOUBLE,
            ttft_tool_call_ms DOUBLE,
            streamed BOOLEAN NOT NULL,
            http_status INTEGER,
            request_id VARCHAR,
            response_headers JSON USING COMPRESSION ZSTD,
            request_params JSON NOT NULL,
            request_message_count INTEGER NOT NULL,
            request_prefix INTEGER NOT NULL,
            response_body VARCHAR USING COMPRESSION ZSTD,
            stream_events JSON USING COMPRESSION ZSTD,
            finish_reason_raw VARCHAR,
            finish_reason VARCHAR NOT NULL,
            reasoning VARCHAR USING COMPRESSION ZSTD,
            reasoning_source VARCHAR NOT NULL,
            content VARCHAR,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            reasoning_tokens INTEGER,
            reasoning_tokens_source VARCHAR NOT NULL,
            cached_tokens INTEGER,
            total_tokens INTEGER,
            usage_raw JSON USING COMPRESSION ZSTD,
            replay_message_hash VARCHAR,
            error_kind VARCHAR,
            error_status INTEGER,
            error_message VARCHAR,
            error_body VARCHAR,
            retries INTEGER NOT NULL DEFAULT 0,
            retry_errors JSON,
            anomalies JSON,
            request_hash VARCHAR,
            upstream_provider VARCHAR,
            resumption INTEGER,
            replayed BOOLEAN NOT NULL DEFAULT false,
            reasoning_replayed BOOLEAN NOT NULL DEFAULT false,
            run_key BIGINT,
            PRIMARY KEY (run_id, idx)
        );
        INSERT INTO step_rows
            SELECT t.run_id, t.idx, t.started_at, t.latency_ms, t.ttft_reasoning_ms,
                   t.ttft_content_ms, t.ttft_tool_call_ms, t.streamed, t.http_status,
                   t.request_id, t.response_headers, t.request_params,
                   t.request_message_count, t.request_prefix, t.response_body,
                   t.stream_events, t.finish_reason_raw, t.finish_reason,
                   CASE WHEN f.reasoning THEN NULL ELSE t.reasoning END,
                   t.reasoning_source, t.content, t.prompt_tokens, t.completion_tokens,
                   t.reasoning_tokens, t.reasoning_tokens_source, t.cached_tokens,
                   t.total_tokens, t.usage_raw,
                   CASE WHEN f.replayed THEN NULL ELSE t.replay_message_hash END,
                   t.error_kind, t.error_status, t.error_message, t.error_body, t.retries,
                   t.retry_errors, t.anomalies, t.request_hash, t.upstream_provider,
                   t.resumption, coalesce(f.replayed, false), coalesce(f.reasoning, false),
                   t.run_key
            FROM steps t
            LEFT JOIN (
                SELECT s.run_key, s.run_id, s.step_idx, s.position,
                       bool_or(m.hash = t.replay_message_hash) AS replayed,
                       bool_or(t.reasoning_source IN ('reasoning_content', 'reasoning')
                               AND json_extract_string(m.body, '$.' || t.reasoning_source)
                                   = t.reasoning) AS reasoning
                FROM steps t
                JOIN step_message_keys s ON s.run_key = t.run_key AND s.run_id = t.run_id
                    AND s.step_idx = t.idx::BIGINT + 1 AND s.position = t.request_message_count
                JOIN messages m ON m.seq = s.seq AND m.key = s.key
                WHERE m.role = 'assistant'
                GROUP BY ALL
            ) f ON f.run_key = t.run_key AND f.run_id = t.run_id
                AND f.step_idx = t.idx::BIGINT + 1 AND f.position = t.request_message_count
            ORDER BY t.rowid;
        DROP TABLE steps;
        -- The replayed message (any one of a lake's copies: equal), by a lateral join on
        -- the run's key, then its number and key, as the view tool_results: a read of one
        -- run reads that run's rows (a join of the whole tables, grouped, read every
        -- message: measured).
        CREATE VIEW steps AS
            SELECT t.run_id, t.idx, t.started_at, t.latency_ms, t.ttft_reasoning_ms,
                   t.ttft_content_ms, t.ttft_tool_call_ms, t.streamed, t.http_status,
                   t.request_id, t.response_headers, t.request_params,
                   t.request_message_count, t.request_prefix, t.response_body,
                   t.stream_events, t.finish_reason_raw, t.finish_reason,
                   CASE WHEN t.reasoning_replayed
                        THEN json_extract_string(sent.body, '$.' || t.reasoning_source)
                        ELSE t.reasoning END AS reasoning,
                   t.reasoning_source, t."content", t.prompt_tokens, t.completion_tokens,
                   t.reasoning_tokens, t.reasoning_tokens_source, t.cached_tokens,
                   t.total_tokens, t.usage_raw,
                   CASE WHEN t.replayed THEN sent.hash ELSE t.replay_message_hash END
                   AS replay_message_hash,
                   t.error_kind, t.error_status, t.error_message, t.error_body, t.retries,
                   t.retry_errors, t.anomalies, t.request_hash, t.upstream_provider,
                   t.resumption, t.run_key
            FROM step_rows t
            LEFT JOIN LATERAL (
                SELECT any_value(m.hash) AS hash, any_value(m.body) AS body
                FROM step_message_keys s JOIN messages m ON m.seq = s.seq AND m.key = s.key
                WHERE s.run_key = t.run_key AND s.run_id = t.run_id
                  AND s.step_idx = t.idx::BIGINT + 1 AND s.position = t.request_message_count
            ) sent ON true;
        -- As migration 13's, the request's length read from the base table: through the
        -- view, the run's key looked up by a subquery no longer prunes the scan.
        CREATE OR REPLACE MACRO request_messages(rid, i) AS TABLE
            SELECT DISTINCT ON (p.position) p.position, m.role, m.body, m.hash
            FROM (
                SELECT position, arg_max(seq, step_idx) AS seq, arg_max(key, step_idx) AS key
                FROM step_message_keys
                WHERE run_key = (SELECT key FROM runs WHERE id = rid)
                  AND run_id = rid AND step_idx <= i
                GROUP BY position
            ) p
            JOIN messages m ON m.seq = p.seq AND m.key = p.key
            WHERE p.position < (SELECT request_message_count FROM step_rows
                                WHERE run_key = (SELECT key FROM runs WHERE id = rid)
                                  AND run_id = rid AND idx = i)
            ORDER BY p.position;
        """,
    ),
    (
        18,
        "compact storage: no primary key on step_rows",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): the index of the key
        # (run_id, idx) cost 22 bytes a step on a recording, 40 on an import, and served no
        # read (reads of a run go by its `run_key`, whose zone maps prune). No writer repeats
        # a step: a recorder's resent operation is skipped when its step is stored
        # (`writer_process._stored`), an import or a merge writes runs the store lacks, as on
        # a lake, which never had the key (`lake_schema`). Rows are copied in their order.
        """
        CREATE TABLE step_rows_v18 (
            run_id VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE NOT NULL,
            ttft_reasoning_ms DOUBLE,
            ttft_content_ms DOUBLE,
            ttft_tool_call_ms DOUBLE,
            streamed BOOLEAN NOT NULL,
            http_status INTEGER,
            request_id VARCHAR,
            response_headers JSON USING COMPRESSION ZSTD,
            request_params JSON NOT NULL,
            request_message_count INTEGER NOT NULL,
            request_prefix INTEGER NOT NULL,
            response_body VARCHAR USING COMPRESSION ZSTD,
            stream_events JSON USING COMPRESSION ZSTD,
            finish_reason_raw VARCHAR,
            finish_reason VARCHAR NOT NULL,
            reasoning VARCHAR USING COMPRESSION ZSTD,
            reasoning_source VARCHAR NOT NULL,
            content VARCHAR,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            reasoning_tokens INTEGER,
            reasoning_tokens_source VARCHAR NOT NULL,
            cached_tokens INTEGER,
            total_tokens INTEGER,
            usage_raw JSON USING COMPRESSION ZSTD,
            replay_message_hash VARCHAR,
            error_kind VARCHAR,
            error_status INTEGER,
            error_message VARCHAR,
            error_body VARCHAR,
            retries INTEGER NOT NULL DEFAULT 0,
            retry_errors JSON,
            anomalies JSON,
            request_hash VARCHAR,
            upstream_provider VARCHAR,
            resumption INTEGER,
            replayed BOOLEAN NOT NULL DEFAULT false,
            reasoning_replayed BOOLEAN NOT NULL DEFAULT false,
            run_key BIGINT
        );
        INSERT INTO step_rows_v18 SELECT * FROM step_rows ORDER BY rowid;
        DROP TABLE step_rows;
        ALTER TABLE step_rows_v18 RENAME TO step_rows;
        """,
    ),
    (
        19,
        "repair: step messages a parallel import left without their message's number",
        # Until this release the parallel import (`traces.importing.parallel`) could insert a
        # batch's step messages before the messages its lines sent, which it held back for
        # file order: their `seq`, looked up as each row was inserted
        # (`tables.MESSAGE_SEQ_OF_HASH`), stayed NULL, and every reader, joining on it, lost
        # those messages (45% of the rows of a generated 20,000-step store). Each is given its
        # message's number, as the insert would have (the greatest, where a lake holds the
        # message twice). A store without such rows is left as it is.
        """
        UPDATE step_message_keys SET seq = m.seq
        FROM (SELECT key, max(seq) AS seq FROM messages GROUP BY key) m
        WHERE step_message_keys.seq IS NULL AND m.key = step_message_keys.key;
        """,
    ),
    (
        20,
        "compact storage: 64-bit message keys",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): the 128-bit `key` of
        # `messages` and `step_message_keys` cost 32 and 34 bytes a step of an import (random
        # numbers: no compression). 64 bits do what the key does: with `seq`, name a message
        # (two writers may draw one number, and then the key tells their messages apart), and
        # narrow a dedup's or a lookup's scan to a fixed-width column. A 64-bit collision
        # (about n²/2^65: one in 3,700 at 10^8 messages) must never pick a wrong message, so
        # whatever looks a message up by its key compares its hash as well (`inserts.Dedup`,
        # `tables.MESSAGE_SEQ_OF_HASH`, `traces.store.numbers`, merge, the server's
        # reconciliation); a join on `seq` and `key` needs a collision of both.
        # The new key is `md5_number_lower(hash)`: the high half of the old one, so each
        # `step_message_keys` row is converted without its message (it has no hash); any
        # text hashes (the sha256's own first 64 bits would need every hash to be hex).
        # `UINT128` is DuckDB's other name of UHUGEINT, spelt so because a lake's migration
        # takes that name for its text (`lake_schema.adapt`): on a lake, which held the key as
        # its decimal text, the cast reads the number back; on a file it is none.
        # Both tables are rebuilt in their row order, with their columns in their order (as
        # a lake takes it: no type change of a column).
        """
        CREATE TABLE messages_v20 (
            hash VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            body JSON NOT NULL USING COMPRESSION ZSTD,
            key UBIGINT NOT NULL,
            seq BIGINT
        );
        INSERT INTO messages_v20
            SELECT hash, role, body, (CAST(key AS UINT128) >> 64)::UBIGINT, seq
            FROM messages ORDER BY rowid;
        DROP TABLE messages;
        ALTER TABLE messages_v20 RENAME TO messages;
        CREATE TABLE step_message_keys_v20 (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            position INTEGER NOT NULL,
            key UBIGINT NOT NULL,
            run_key BIGINT,
            seq BIGINT
        );
        INSERT INTO step_message_keys_v20
            SELECT run_id, step_idx, position, (CAST(key AS UINT128) >> 64)::UBIGINT, run_key, seq
            FROM step_message_keys ORDER BY rowid;
        DROP TABLE step_message_keys;
        ALTER TABLE step_message_keys_v20 RENAME TO step_message_keys;
        """,
    ),
    (
        21,
        "compact storage: a step's usage and request id, a call's raw arguments stored once",
        # Measured (benchmarks/bench_storage.py, README "Disk use"): a step's `usage_raw` was
        # stored twice, in its own column and in the response (the body's `usage`, or the
        # usage chunk of the stream, near its end), its `request_id` twice (the response
        # headers' `x-request-id`), and a tool call's `arguments_raw` twice where the model
        # sent the very text of the parsed `arguments`. `step_rows` keeps the usage NULL
        # where `usage_from` says where the response holds it byte for byte (the body of a
        # step with one, else the SSE line that many from the end) and the id NULL where
        # `request_id_in_headers`; the view `steps` gives both back. The calls are stored
        # in `tool_call_rows`, NULL where the raw arguments are the text of `arguments`;
        # `tool_calls` becomes the view that gives them back, its columns keeping their
        # names and values. The decision is the row's own (no other row, no later
        # request), taken by every insert in SQL by the very extraction the views make
        # (`tables.FROM_ROW`, `tables.DERIVED`): a lake stores them once too. The view
        # `steps` is migration 17's with the two columns given back. Rows are copied in
        # their own order.
        f"""
        CREATE TABLE step_rows_v21 (
            run_id VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE NOT NULL,
            ttft_reasoning_ms DOUBLE,
            ttft_content_ms DOUBLE,
            ttft_tool_call_ms DOUBLE,
            streamed BOOLEAN NOT NULL,
            http_status INTEGER,
            request_id VARCHAR,
            response_headers JSON USING COMPRESSION ZSTD,
            request_params JSON NOT NULL,
            request_message_count INTEGER NOT NULL,
            request_prefix INTEGER NOT NULL,
            response_body VARCHAR USING COMPRESSION ZSTD,
            stream_events JSON USING COMPRESSION ZSTD,
            finish_reason_raw VARCHAR,
            finish_reason VARCHAR NOT NULL,
            reasoning VARCHAR USING COMPRESSION ZSTD,
            reasoning_source VARCHAR NOT NULL,
            content VARCHAR,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            reasoning_tokens INTEGER,
            reasoning_tokens_source VARCHAR NOT NULL,
            cached_tokens INTEGER,
            total_tokens INTEGER,
            usage_raw JSON,
            replay_message_hash VARCHAR,
            error_kind VARCHAR,
            error_status INTEGER,
            error_message VARCHAR,
            error_body VARCHAR,
            retries INTEGER NOT NULL DEFAULT 0,
            retry_errors JSON,
            anomalies JSON,
            request_hash VARCHAR,
            upstream_provider VARCHAR,
            resumption INTEGER,
            replayed BOOLEAN NOT NULL DEFAULT false,
            reasoning_replayed BOOLEAN NOT NULL DEFAULT false,
            usage_from TINYINT,
            request_id_in_headers BOOLEAN NOT NULL DEFAULT false,
            run_key BIGINT
        );
        INSERT INTO step_rows_v21
            SELECT * EXCLUDE (stored_order, run_key)
                   REPLACE (CASE WHEN request_id_in_headers THEN NULL ELSE request_id END
                            AS request_id,
                            CASE WHEN usage_from IS NULL THEN usage_raw END AS usage_raw),
                   run_key
            FROM (
                SELECT *, {usage_found("t")} AS usage_from,
                       coalesce({request_id_of("t")} = t.request_id, false)
                       AS request_id_in_headers,
                       t.rowid AS stored_order
                FROM step_rows t
            )
            ORDER BY stored_order;
        DROP TABLE step_rows;
        ALTER TABLE step_rows_v21 RENAME TO step_rows;
        -- Migration 17's view, the usage and the request id given back.
        CREATE OR REPLACE VIEW steps AS
            SELECT t.run_id, t.idx, t.started_at, t.latency_ms, t.ttft_reasoning_ms,
                   t.ttft_content_ms, t.ttft_tool_call_ms, t.streamed, t.http_status,
                   {stored_request_id("t")} AS request_id,
                   t.response_headers, t.request_params,
                   t.request_message_count, t.request_prefix, t.response_body,
                   t.stream_events, t.finish_reason_raw, t.finish_reason,
                   CASE WHEN t.reasoning_replayed
                        THEN json_extract_string(sent.body, '$.' || t.reasoning_source)
                        ELSE t.reasoning END AS reasoning,
                   t.reasoning_source, t."content", t.prompt_tokens, t.completion_tokens,
                   t.reasoning_tokens, t.reasoning_tokens_source, t.cached_tokens,
                   t.total_tokens, {stored_usage("t")} AS usage_raw,
                   CASE WHEN t.replayed THEN sent.hash ELSE t.replay_message_hash END
                   AS replay_message_hash,
                   t.error_kind, t.error_status, t.error_message, t.error_body, t.retries,
                   t.retry_errors, t.anomalies, t.request_hash, t.upstream_provider,
                   t.resumption, t.run_key
            FROM step_rows t
            LEFT JOIN LATERAL (
                SELECT any_value(m.hash) AS hash, any_value(m.body) AS body
                FROM step_message_keys s JOIN messages m ON m.seq = s.seq AND m.key = s.key
                WHERE s.run_key = t.run_key AND s.run_id = t.run_id
                  AND s.step_idx = t.idx::BIGINT + 1 AND s.position = t.request_message_count
            ) sent ON true;
        CREATE TABLE tool_call_rows (
            run_id VARCHAR NOT NULL,
            step_idx INTEGER NOT NULL,
            call_idx INTEGER NOT NULL,
            id VARCHAR,
            id_format VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            arguments_raw VARCHAR,
            arguments_type VARCHAR NOT NULL,
            arguments JSON,
            json_valid BOOLEAN NOT NULL,
            schema_valid BOOLEAN,
            schema_error VARCHAR,
            run_key BIGINT
        );
        INSERT INTO tool_call_rows
            SELECT {
            _CALL_COLUMNS.format(
                arguments_raw="CASE WHEN arguments_raw = arguments::VARCHAR THEN NULL "
                "ELSE arguments_raw END"
            )
        }
            FROM tool_calls ORDER BY rowid;
        DROP TABLE tool_calls;
        CREATE VIEW tool_calls AS
            SELECT {
            _CALL_COLUMNS.format(
                arguments_raw="coalesce(arguments_raw, arguments::VARCHAR) AS arguments_raw"
            )
        }
            FROM tool_call_rows;
        """,
    ),
]
"""(version, name, SQL) in the order they apply. Append only."""


def current_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The highest migration applied to this database (0 for a new file)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: duckdb.DuckDBPyConnection) -> int:
    """Apply every pending migration, each atomically; return the resulting version."""
    version = current_version(conn)
    for number, name, sql in MIGRATIONS:
        if number <= version:
            continue
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)", [number, name]
            )
            conn.execute("COMMIT")
        except BaseException:
            # A statement Ctrl-C stopped has already ended the transaction: the rollback then
            # fails, and must not hide why the migration stopped.
            with contextlib.suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise
        version = number
    return version


def latest_version() -> int:
    """The version a fully migrated database has."""
    return MIGRATIONS[-1][0]

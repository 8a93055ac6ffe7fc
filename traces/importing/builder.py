"""Turning logged exchanges into runs, steps, tool calls and tool results.

Each exchange goes through the live recorder's reading (`traces.normalize`): the same
assistant-message reading, schema validation against the request's own tools, usage and
finish-reason normalization, and the same `StepRecord` and row builders. What a log adds:

- Lines of one conversation are steps of one run, in file order. A step is held back until
  the next request of its conversation arrives, because that request says what became of
  it: the assistant message sent back (`replay_message_hash`) and the tool messages that
  answer its calls (recorded as `tool_results`).
- Each request stores only what it added to the previous one (longest common prefix of
  messages), exactly as recording does, so `request_messages(run, idx)` rebuilds it.
- A failed call followed by the very same request is a retry: it is folded into the step
  that follows (`retries`, `retry_errors`), as the harness records its own retries.
- A run is named after the line it starts on (`<import id>-<line>`), so its id does not
  depend on what else was read before it: a file split over worker processes by
  conversation (`parallel`) gets the very ids a single process gives.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from traces.conversation_runs import Tally, run_outcome, tool_results
from traces.importing.formats import LoggedExchange
from traces.importing.toolsets import ToolSets
from traces.importing.writer import RowSink
from traces.model import (
    ExchangeError,
    RunRecord,
    StepRecord,
    ToolResultRecord,
    digest_request,
    message_hash,
    request_suffix,
)
from traces.normalize import SchemaValidator, read_message, step_from_exchange
from traces.store.rows import (
    holds_reasoning,
    message_row,
    run_row,
    step_message_rows,
    step_row,
    to_json,
    tool_call_rows,
    tool_result_rows,
)
from traces.store.tables import ToolResultRow

_PARAMS_CACHE = 256


@dataclass(frozen=True)
class _Params:
    """A request's params (the body minus messages), read once per distinct value."""

    params: dict[str, Any]
    text: str
    """Their JSON text, as the recorder stores it."""
    extra: bytes
    """What `request_hash` digests after the message hashes."""
    validate: SchemaValidator | None


@dataclass
class _OpenRun:
    """A run still being read: its held-back step and the request that step sent."""

    run_id: str
    first: LoggedExchange
    next_index: int = 0
    pending: StepRecord | None = None
    pending_log: LoggedExchange | None = None
    pending_hashes: list[str] = field(default_factory=list)
    params: _Params | None = None
    """The latest request's params (steps of a conversation send the same tools)."""
    pending_params: _Params | None = None
    last: StepRecord | None = None
    tally: Tally = field(default_factory=Tally)
    held_results: list[ToolResultRow] = field(default_factory=list)
    """The emitted step's tool result rows, written after the next step's messages: a result
    the tool message that step sent back holds is then stored once (migration 16)."""


class RunBuilder:
    """Builds the runs of one file and hands their rows to the writer."""

    def __init__(
        self,
        writer: RowSink,
        *,
        import_id: str,
        path: str,
        sha256: str,
        file_format: str,
        provider: str | None,
        model: str | None,
        known_messages: set[str],
        tool_sets: ToolSets,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        """Prepare to read one file; `known_messages` is shared by every file of the import.

        `host` and `pid` are the importing process's (a worker's builder is given its
        parent's); they default to this process's.
        """
        self.writer = writer
        self.import_id = import_id
        self.path = path
        self.sha256 = sha256
        self.format = file_format
        self.provider = provider
        self.model = model
        self.known = known_messages
        self.tool_sets = tool_sets
        self._params: dict[str, _Params] = {}
        self.host = socket.gethostname() if host is None else host
        self.pid = os.getpid() if pid is None else pid
        self.open: dict[str, _OpenRun] = {}
        self.runs: list[tuple[int, str]] = []
        """(first line, id) of every run, in the order they start."""
        self.defaulted = 0
        """Runs whose lines name no provider (labelled with `provider`, else `unknown`)."""
        self.exchanges = 0

    def add(self, logged: LoggedExchange) -> None:
        """Take the next exchange of the file."""
        self.exchanges += 1
        if logged.group is None:
            lone = self._new_run(logged)
            self._take(lone, logged)
            self._close(lone)
            return
        run = self.open.get(logged.group)
        if run is None:
            run = self.open[logged.group] = self._new_run(logged)
        self._take(run, logged)

    def finish(self) -> list[tuple[int, str]]:
        """End every open run (the file is read); (first line, id) of all runs, in order."""
        for run in self.open.values():
            self._close(run)
        self.open.clear()
        return self.runs

    # -- steps ------------------------------------------------------------------------------

    def _new_run(self, logged: LoggedExchange) -> _OpenRun:
        run_id = f"{self.import_id}-{logged.line:06d}"
        self.runs.append((logged.line, run_id))
        return _OpenRun(run_id=run_id, first=logged)

    def _take(self, run: _OpenRun, logged: LoggedExchange) -> None:
        messages = logged.messages
        pending = run.pending
        previous = run.pending_log.messages if run.pending_log is not None else []
        # Longest common prefix with the previous request. Dict equality runs in C and is
        # far cheaper than the canonical JSON a hash needs, so only the new suffix is hashed.
        shared = 0
        limit = min(len(previous), len(messages))
        while shared < limit and messages[shared] == previous[shared]:
            shared += 1
        hashes = run.pending_hashes[:shared]
        hashes.extend(message_hash(m) for m in messages[shared:])
        exchange = logged.exchange
        params = {k: v for k, v in exchange.request_body.items() if k != "messages"}
        # Steps of a conversation send the same params (the tools, mostly), and so do many
        # single-step runs: read each distinct value once.
        if run.params is None or params != run.params.params:
            run.params = self._read_params(params)
        read = run.params
        retry_errors: list[ExchangeError] = []
        if (
            pending is not None
            and pending.error is not None
            and shared == len(previous) == len(messages)
            and params == pending.request_params
        ):
            # The same request again after a failure: a retry, folded into this step.
            assert pending.error is not None
            retry_errors = [*pending.retry_errors, pending.error]
            index, prefix = pending.index, pending.request_prefix
        else:
            if pending is not None:
                self._emit(run, logged, hashes, shared)
            index, prefix = run.next_index, shared
        for position in range(shared, len(messages)):
            digest = hashes[position]
            if digest not in self.known:
                self.known.add(digest)
                self.writer.add("messages", message_row(digest, messages[position]))
        answer = exchange.message if exchange.error is None else None
        reading = read_message(answer, read.validate) if answer is not None else None
        run.pending = step_from_exchange(
            run.run_id,
            index,
            exchange,
            reading,
            message_hashes=hashes,
            prefix=prefix,
            retry_errors=retry_errors,
            pairing_hash=digest_request(hashes, read.extra),
        )
        run.pending_log = logged
        run.pending_hashes = hashes
        run.pending_params = read

    def _read_params(self, params: dict[str, Any]) -> _Params:
        text = to_json(params)
        found = self._params.get(text)
        if found is None:
            if len(self._params) >= _PARAMS_CACHE:
                self._params.clear()
            tool_set = self.tool_sets.get(params.get("tools"))
            extra = request_suffix(tool_set.canonical, params.get("tool_choice"))
            found = self._params[text] = _Params(params, text, extra, tool_set.validate)
        return found

    def _emit(
        self,
        run: _OpenRun,
        following: LoggedExchange | None,
        hashes: list[str],
        shared: int,
    ) -> None:
        """Store the held-back step; `following` is the next request of its run, if any."""
        step, logged = run.pending, run.pending_log
        assert step is not None and logged is not None
        results: list[ToolResultRecord] = []
        sent = len(logged.messages)
        replayed = reasoning_replayed = False
        if following is not None and step.error is None and shared == sent:
            after = following.messages
            if len(after) > sent and after[sent].get("role") == "assistant":
                step.replay_message_hash = hashes[sent]
                results = _tool_results(step, logged, following)
                # The message at `sent` is one the next step adds (its prefix is `shared`):
                # the store names it by that position (migration 17).
                replayed = True
                reasoning_replayed = holds_reasoning(
                    after[sent], step.reasoning, step.reasoning_source
                )
        assert run.pending_params is not None
        writer = self.writer
        writer.add(
            "steps",
            # The log has the stream's lines but not when each arrived; the params were
            # encoded once by `_read_params`.
            step_row(
                step,
                params_text=run.pending_params.text,
                stream_lines=logged.stream_lines,
                replayed=replayed,
                reasoning_replayed=reasoning_replayed,
            ),
        )
        for row in step_message_rows(step):
            writer.add("step_messages", row)
        for call in tool_call_rows(step):
            writer.add("tool_calls", call)
        # The previous step's results after this step's messages (a writer inserts a batch's
        # tables in order, step messages first): the insert finds the tool messages that
        # hold their outputs (`tables.TOOL_OUTPUT_POSITION`). This step's wait for the next.
        for result in run.held_results:
            writer.add("tool_results", result)
        run.held_results = tool_result_rows(run.run_id, step.index, results)
        run.tally.add(step)
        run.last = step
        run.next_index = step.index + 1
        run.pending = None

    # -- runs -------------------------------------------------------------------------------

    def _close(self, run: _OpenRun) -> None:
        if run.pending is not None:
            self._emit(run, None, [], 0)
        for result in run.held_results:
            self.writer.add("tool_results", result)
        run.held_results = []
        last = run.last
        assert last is not None
        first = run.first
        if first.provider is None:
            self.defaulted += 1
        provider = first.provider or self.provider
        request = first.exchange.request_body
        seed = request.get("seed")
        record = RunRecord(
            id=run.run_id,
            task="import",
            task_path=self.path,
            task_sha256=self.sha256,
            provider=provider or "unknown",
            model=first.model or self.model or "unknown",
            base_url="",
            settings={
                "import": {"format": self.format, "line": first.line},
                "stream": bool(request.get("stream")),
                **first.settings,
            },
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else 0,
            started_at=first.exchange.started_at,
            recorder_pid=self.pid,
            recorder_host=self.host,
            origin="imported",
            import_id=self.import_id,
            conversation=first.conversation,
        )
        self.writer.add("runs", run_row(record, run_outcome(last, run.tally, "the log ends")))


def _tool_results(
    step: StepRecord, logged: LoggedExchange, following: LoggedExchange
) -> list[ToolResultRecord]:
    """The tool results the next logged request sends back for the step's calls."""
    ended = step.started_at + timedelta(milliseconds=step.latency_ms)
    # The log says when the response ended and the next request left; the tools ran in
    # between, so that gap bounds their duration (0 when the log has no times).
    gap = (following.exchange.started_at - ended).total_seconds() * 1000
    duration = gap if logged.timed and following.timed and gap > 0 else 0.0
    return tool_results(step, following.messages, len(logged.messages), duration)

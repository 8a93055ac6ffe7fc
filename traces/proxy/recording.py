"""Recording what passes through the proxy as runs and steps, through the store's server.

Each chat-completions exchange becomes a step of the run its conversation makes
(`conversations`), with the rows `traces record` writes: the request (only the messages it
adds to the run's previous one), the raw answer or SSE lines with arrival times, the
normalized reading, usage and errors (`traces.normalize`, as live recording and imports do).
The next request of the run says what the client did with the step: the tool results it
sends back are stored as the step's `tool_results` (`traces.conversation_runs`, shared with
imports). A failed step is held back until the run's next request: the very same request
again is the client's retry, folded into one step with the failed attempt in its
`retry_errors`, as the harness records its own retries.

Text completions and Responses API exchanges are steps too, grouped by `chains`: their
request is stored whole among the step's parameters (they carry no message list), their
answer read as `readings` says; a Responses API request's `function_call_output` items are
the previous step's tool results. A conversation belongs to one upstream: the same messages
sent to two hosts make two runs, each labelled with its host, its client (named from the
`User-Agent`, as the run's task) and its first user message.

A run is begun (its row committed as `running`) when its first request arrives, without
holding the request for the commit (the relay starts a step once the request has gone
upstream, while the upstream works on it). An ended answer is read and stored a little
later (`later`): before the next request is placed in a conversation, before a run ends, or
after `LATER_S` if nothing else comes, so that reading it is not on the path of a request
that follows at once; steps are queued as their answers end, so `traces runs`
shows them while the proxy runs. A run ends after `idle_s` seconds without a request, or
when the proxy stops; `on_end` is then told (the command hands it to the checks).
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from traces.conversation_runs import Tally, run_outcome, tool_results
from traces.errors import DatabaseError
from traces.exchange import Exchange
from traces.importing.toolsets import ToolSets
from traces.model import (
    ExchangeError,
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    Termination,
    message_hash,
    new_run_id,
)
from traces.normalize import read_message, step_from_exchange
from traces.one_line import one_line
from traces.proxy.chains import Chains, content_text
from traces.proxy.clients import client_name
from traces.proxy.conversations import Conversations, Thread, canon, canon_all, tool_names
from traces.proxy.paths import Kind
from traces.proxy.readings import ResponsesReading, chat_tools
from traces.proxy.routing import Route
from traces.proxy.upstream import Upstream
from traces.store.recorder import Recorder

_LABEL_CHARS = 120
"""How much of a conversation's first user message labels its run."""
LATER_S = 0.005
"""How long an ended answer may wait to be read and stored when no request comes."""


@dataclass
class _Run:
    thread: Thread
    record: RunRecord
    kind: Kind = "chat"
    next_index: int = 0
    previous: list[Any] = field(default_factory=list)
    """The messages of the run's latest stored request (only what follows them is stored)."""
    previous_hashes: list[str] = field(default_factory=list)
    held: tuple[StepRecord, list[Any], list[str]] | None = None
    """A failed step not stored yet (its request's messages and their hashes with it)."""
    last: StepRecord | None = None
    last_sent: int = 0
    tally: Tally = field(default_factory=Tally)


@dataclass
class Ticket:
    """A request on its way: the run and step it will be recorded as."""

    run: _Run
    index: int
    messages: list[Any]
    retry_errors: list[ExchangeError]
    body: dict[str, Any] | None = None
    """The request body (text completions and Responses API requests: `chains` reads it)."""
    responses: ResponsesReading | None = None
    """What was read of a Responses API answer (set by the relay)."""


_PATHS: dict[Kind, str] = {
    "chat": "/v1/chat/completions",
    "completion": "/v1/completions",
    "responses": "/v1/responses",
}
_GROUPED_BY: dict[Kind, str] = {
    "chat": "messages",
    "completion": "prompt",
    "responses": "input",
}


def _grouped_by(explicit: str | None, route: Route | None, kind: Kind) -> str:
    """How a run's requests were told apart: a name the client gave (`X-Traces-Run`, or a
    `/r/NAME` path), or the conversations themselves (by kind)."""
    if explicit is None:
        return _GROUPED_BY[kind]
    return "path" if route is not None and route.group == explicit else "header"


def _routed_by(route: Route | None) -> str:
    if route is None:
        return "default"
    return "prefix" if route.prefixed else "model" if route.by_model else "default"


def _first_text(value: Any) -> str | None:
    """The label of a text-completion or Responses API run: its prompt, or the first user
    text of its input."""
    if isinstance(value, str):
        return one_line(value)[:_LABEL_CHARS] or None
    if isinstance(value, list):
        for entry in value:
            if isinstance(entry, dict) and entry.get("role") == "user":
                return one_line(content_text(entry.get("content")))[:_LABEL_CHARS] or None
    return None


def _first_user_text(messages: list[Any]) -> str | None:
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            text = canon(message)[1]
            if text:
                return one_line(str(text))[:_LABEL_CHARS]
    return None


class ProxyRecorder:
    """Turns relayed exchanges into runs and steps of one store."""

    def __init__(
        self,
        recorder: Recorder,
        upstream: Upstream,
        *,
        idle_s: float,
        on_end: Callable[[str], None] | None = None,
        listen: str = "",
    ) -> None:
        """Record through `recorder`; runs end after `idle_s` quiet seconds."""
        self.recorder = recorder
        self.upstream = upstream
        self.idle_s = idle_s
        self.on_end = on_end
        self.listen = listen
        self.conversations = Conversations()
        self.chains = Chains()
        self.runs: dict[str, _Run] = {}
        self.ended: list[str] = []
        self.steps = 0
        self._tool_sets = ToolSets()
        self._queued: set[asyncio.Future[None]] = set()
        self._failure: str | None = None
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._later: collections.deque[Callable[[], None]] = collections.deque()
        self._later_timer: asyncio.TimerHandle | None = None
        self._catching_up = False

    # -- work put off -----------------------------------------------------------------------

    def later(self, work: Callable[[], None]) -> None:
        """Do `work` (read an ended answer and store its step) before anything that depends
        on it, or after `LATER_S` (on the event loop)."""
        self._later.append(work)
        if self._later_timer is None:
            self._later_timer = asyncio.get_running_loop().call_later(LATER_S, self.catch_up)

    def catch_up(self) -> None:
        """Do all the work put off, in order. A failure is reported on one line and does not
        stop the rest (nor the request that happens to come next)."""
        if self._catching_up:
            return  # called from the work itself (a step begun late): the loop goes on in order
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        self._catching_up = True
        try:
            while self._later:
                work = self._later.popleft()
                try:
                    work()
                except Exception as exc:  # a bug reading one answer must not lose the others
                    sys.stderr.write(f"error: recording a step: {one_line(repr(exc))}\n")
        finally:
            self._catching_up = False

    # -- requests ---------------------------------------------------------------------------

    def start(
        self,
        body: dict[str, Any],
        explicit: str | None,
        client: str | None,
        *,
        kind: Kind = "chat",
        route: Route | None = None,
    ) -> Ticket | None:
        """A request of a recorded kind arrives: the run and step it makes (None: a chat
        request whose body holds no message list, relayed but making no step). `route` says
        where it goes (None: the default upstream)."""
        self.catch_up()  # the answers before this request: it may continue one
        upstream = route.upstream if route is not None else self.upstream
        if kind != "chat":
            return self._start_other(body, explicit, client, kind, route, upstream)
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        now = time.monotonic()
        canons = canon_all(messages)
        # The upstream joins the tools in what tells conversations apart: one sent to two
        # hosts is two runs.
        tools = tool_names(body) | {f"\0{upstream.label}"}
        thread, retry = self.conversations.place(canons, tools, explicit, now)
        run = self.runs.get(thread.run_id) if thread is not None else None
        if run is None:
            label = _first_user_text(messages)
            run = self._open(body, label, tools, explicit, client, now, kind, route, upstream)
        retry_errors: list[ExchangeError] = []
        if retry and run.held is not None:
            held = run.held[0]
            assert held.error is not None
            retry_errors = [*held.retry_errors, held.error]
            index = held.index
            run.held = None
        else:
            if run.held is not None:
                self._store_held(run)
            index = run.next_index
            run.next_index += 1
            if thread is not None:
                self._tool_results(run, messages)
        self.conversations.sending(run.thread, canons, now)
        return Ticket(run=run, index=index, messages=messages, retry_errors=retry_errors)

    def _start_other(
        self,
        body: dict[str, Any],
        explicit: str | None,
        client: str | None,
        kind: Kind,
        route: Route | None,
        upstream: Upstream,
    ) -> Ticket:
        """A text-completion or Responses API request: grouped by `chains` (or the header);
        its request is stored whole, as its parameters."""
        now = time.monotonic()
        scope = frozenset({f"\0{kind} {upstream.label}"})
        if explicit is not None:
            thread = self.conversations.place([], scope, explicit, now)[0]
        else:
            run_id = self.chains.place(kind, upstream.label, body)
            thread = self.conversations.threads.get(run_id) if run_id is not None else None
        run = self.runs.get(thread.run_id) if thread is not None else None
        if run is None:
            label = _first_text(body.get("prompt") if kind == "completion" else body.get("input"))
            run = self._open(body, label, scope, explicit, client, now, kind, route, upstream)
        if run.held is not None:
            self._store_held(run)
        index = run.next_index
        run.next_index += 1
        if thread is not None and kind == "responses":
            self._function_outputs(run, body)
        self.conversations.sending(run.thread, [], now)
        return Ticket(run=run, index=index, messages=[], retry_errors=[], body=body)

    def finish(self, ticket: Ticket, exchange: Exchange) -> None:
        """The request's answer ended (or failed, or was cancelled): store its step."""
        run = ticket.run
        messages = ticket.messages
        previous = run.previous
        shared = 0
        limit = min(len(previous), len(messages))
        while shared < limit and messages[shared] == previous[shared]:
            shared += 1
        hashes = run.previous_hashes[:shared]
        hashes.extend(message_hash(m) for m in messages[shared:])
        answer = exchange.message if exchange.error is None else None
        tools = exchange.request_body.get("tools")
        if run.kind != "chat":
            tools = chat_tools(tools) if run.kind == "responses" else None
        validate = self._tool_sets.get(tools).validate
        reading = read_message(answer, validate) if answer is not None else None
        step = step_from_exchange(
            run.record.id,
            ticket.index,
            exchange,
            reading,
            message_hashes=hashes,
            prefix=shared,
            retry_errors=ticket.retry_errors,
        )
        self.conversations.answered(run.thread, answer, time.monotonic())
        if run.kind != "chat" and exchange.error is None and ticket.body is not None:
            responses = ticket.responses
            said = answer.get("content") if answer is not None else None
            self.chains.answered(
                run.record.id,
                run.kind,
                run.record.provider,
                ticket.body,
                said if isinstance(said, str) else None,  # the text as sent, think and all
                responses.final if responses is not None else None,
                responses.response_id if responses is not None else None,
            )
        if exchange.error is not None and exchange.error.kind != "cancelled":
            run.held = (step, messages, hashes)  # a retry may follow: decided by the next request
            return
        self._store(run, step, messages, hashes)

    # -- runs -------------------------------------------------------------------------------

    def _open(
        self,
        body: dict[str, Any],
        label: str | None,
        scope: frozenset[str],
        explicit: str | None,
        client: str | None,
        now: float,
        kind: Kind,
        route: Route | None,
        upstream: Upstream,
    ) -> _Run:
        run_id = new_run_id()
        thread = self.conversations.open(run_id, scope, explicit, now)
        seed = body.get("seed")
        name = client_name(client)
        proxy: dict[str, Any] = {
            "upstream": upstream.label,
            "upstream_url": upstream.shown_url,
            "routed_by": _routed_by(route),
            "path": _PATHS[kind],
            "client": client,
            "client_name": name,
            "grouped_by": _grouped_by(explicit, route, kind),
            "listen": self.listen,
        }
        if explicit is not None:
            proxy["run_header"] = explicit  # the name, from the header or the path
        settings: dict[str, Any] = {"proxy": proxy, "stream": body.get("stream") is True}
        record = RunRecord(
            id=run_id,
            # What a proxied run did is what its client did: the client names its task.
            task=name or "proxy",
            task_path="",
            task_sha256="",
            provider=upstream.label,
            model=str(body.get("model") or "unknown"),
            base_url=upstream.shown_url,
            settings=settings,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else 0,
            started_at=datetime.now(UTC).replace(tzinfo=None),
            recorder_pid=self._pid,
            recorder_host=self._host,
            origin="proxy",
            conversation=label,
        )
        run = self.runs[run_id] = _Run(thread=thread, record=record, kind=kind)
        self._track(self.recorder.queue_run(record))
        return run

    def _tool_results(self, run: _Run, messages: list[Any]) -> None:
        """The request continues the run: store what it sends back for the last step's
        calls."""
        last = run.last
        sent = run.last_sent
        if last is None or not last.tool_calls or last.error is not None:
            return
        if len(messages) <= sent or not isinstance(messages[sent], dict):
            return
        if messages[sent].get("role") != "assistant":
            return
        self._store_results(run, last, messages, sent)

    def _function_outputs(self, run: _Run, body: dict[str, Any]) -> None:
        """A Responses API request continues the run: its `function_call_output` items for
        the last step's calls are that step's tool results (read as the tool messages of a
        chat request would be)."""
        last = run.last
        if last is None or not last.tool_calls or last.error is not None:
            return
        given = body.get("input")
        ids = [call.id for call in last.tool_calls]
        outputs = [
            {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
            for item in (given if isinstance(given, list) else [])
            if isinstance(item, dict)
            and item.get("type") == "function_call_output"
            and item.get("call_id") in ids
        ]
        if outputs:
            replay = {"role": "assistant", "tool_calls": [{"id": i} for i in ids]}
            self._store_results(run, last, [replay, *outputs], 0)

    def _store_results(self, run: _Run, last: StepRecord, messages: list[Any], sent: int) -> None:
        ended = last.started_at + timedelta(milliseconds=last.latency_ms)
        gap = (datetime.now(UTC).replace(tzinfo=None) - ended).total_seconds() * 1000
        results = tool_results(last, messages, sent, max(gap, 0.0))
        if results:
            self._track(
                asyncio.ensure_future(
                    self.recorder.record_tool_results(run.record.id, last.index, results)
                )
            )

    def _store_held(self, run: _Run) -> None:
        assert run.held is not None
        step, messages, hashes = run.held
        run.held = None
        self._store(run, step, messages, hashes)

    def _store(self, run: _Run, step: StepRecord, messages: list[Any], hashes: list[str]) -> None:
        new = {hashes[i]: messages[i] for i in range(step.request_prefix, len(messages))}
        self._track(self.recorder.queue_step(step, new))
        run.previous, run.previous_hashes = messages, hashes
        run.last, run.last_sent = step, len(messages)
        run.tally.add(step)
        self.steps += 1

    def end(self, thread: Thread, ends: str, *, notify: bool = True) -> None:
        """End a run: store its held step, then its outcome; `ends` says why it ended.
        `on_end` is told unless `notify` is false (the proxy stopping: its caller checks
        the runs it ended itself)."""
        self.catch_up()
        self.conversations.close(thread)
        self.chains.forget(thread.run_id)
        run = self.runs.pop(thread.run_id, None)
        if run is None:
            return
        if run.held is not None:
            self._store_held(run)
        outcome = _outcome(run, ends)
        self._track(asyncio.ensure_future(self.recorder.end_run(run.record.id, outcome)))
        self.ended.append(run.record.id)
        if notify and self.on_end is not None:
            self.on_end(run.record.id)

    async def sweep(self) -> None:
        """End the runs that went quiet, for as long as the proxy runs."""
        period = min(max(self.idle_s / 4, 0.05), 1.0)
        while True:
            await asyncio.sleep(period)
            self.catch_up()  # an answer not stored yet: its run is not idle
            for thread in self.conversations.idle(time.monotonic(), self.idle_s):
                # `idle` closed it already; `end` stores the rest.
                self.end(thread, f"the client sent nothing for {self.idle_s:g} s")

    async def close(self) -> None:
        """The proxy stops: end every open run and wait until everything is committed."""
        self.catch_up()
        for thread in list(self.conversations.threads.values()):
            self.end(thread, "the proxy stopped", notify=False)
        while self._queued:
            await asyncio.gather(*self._queued, return_exceptions=True)
        if self._failure is not None:
            raise DatabaseError(self._failure)

    def _track(self, future: asyncio.Future[None]) -> None:
        self._queued.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._queued.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None and self._failure is None:
            self._failure = str(error)
            sys.stderr.write(f"error: {one_line(str(error))}\n")


def _outcome(run: _Run, ends: str) -> RunOutcome:
    last = run.last
    now = datetime.now(UTC).replace(tzinfo=None)
    if last is None:
        return RunOutcome(
            status=RunStatus.INTERRUPTED,
            termination=Termination.INTERRUPTED,
            ended_at=now,
            error=f"{ends} before any answer of the run ended",
        )
    if last.error is not None and last.error.kind == "cancelled":
        outcome = run_outcome(last, run.tally, ends)
        return outcome.model_copy(
            update={
                "status": RunStatus.INTERRUPTED,
                "termination": Termination.INTERRUPTED,
                "final_answer": None,
                "error": f"the client cancelled step {last.index}: it disconnected before the "
                "answer ended",
            }
        )
    return run_outcome(last, run.tally, ends)

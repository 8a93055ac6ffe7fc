"""`traces proxy` end to end over loopback: the real `openai` client (and raw HTTP) through the
proxy to the simulator, whose answers are tapped to compare with what the client received;
what was recorded is read back from the store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from proxy_setup import proxy_to, tapped_sim

from traces.proxy.upstream import Upstream
from traces.sim.config import SimConfig
from traces.store.database import open_for_reading, resolve_db_path

from conftest import query_rows

KEY = "sk-proxytest-0123456789abcdef"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up.",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string"}},
                "required": ["word"],
            },
        },
    }
]


def _client(base_url: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, **kwargs)


def _steps(db: Path) -> list[dict[str, Any]]:
    return query_rows(db, "SELECT * FROM steps ORDER BY started_at")


def _runs(db: Path) -> list[dict[str, Any]]:
    return query_rows(db, "SELECT * FROM runs ORDER BY started_at")


def _spaced(app: Any) -> Any:
    """The simulator's app, its body pieces sent 10 ms apart (as a model's tokens come)."""

    async def spaced(scope: Any, receive: Any, send: Any) -> None:
        async def later(message: Any) -> None:
            if message["type"] == "http.response.body" and message.get("more_body"):
                await asyncio.sleep(0.01)
            await send(message)

        await app(scope, receive, later)

    return spaced


@pytest.mark.parametrize("speedups", ["1", "0"])
def test_bytes_relayed_unchanged_and_recorded(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, speedups: str
) -> None:
    """What the client receives is byte for byte what the simulator sent, whole bodies and
    streams alike, with status and headers; the recorded raw body and SSE lines are those
    bytes too. Events that come apart are relayed apart (what arrives together may be relayed
    in one write). With uvloop and httptools (when installed) and without."""
    monkeypatch.setenv("TRACES_PROXY_SPEEDUPS", speedups)
    body = {"model": "m", "messages": [{"role": "user", "content": "Spell cat."}], "seed": 4}
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0), in_front=_spaced) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        whole = httpx2.post(f"{proxy.base_url}/chat/completions", json=body)
        with httpx2.stream(
            "POST", f"{proxy.base_url}/chat/completions", json={**body, "stream": True}
        ) as streamed:
            pieces = list(streamed.iter_raw())
        stream_headers = dict(streamed.headers)
    first, second = tap.sent
    assert whole.status_code == first.status == 200
    assert whole.content == first.body
    assert b"".join(pieces) == second.body
    assert len(pieces) > 3  # relayed as the events came, not as one buffer
    for name in ("x-request-id", "x-sim-dialect", "x-ratelimit-remaining-requests"):
        assert whole.headers[name] == first.headers[name]
        assert stream_headers[name] == second.headers[name]
    assert stream_headers["content-type"].startswith("text/event-stream")
    plain, stream = _steps(db_path)
    assert plain["response_body"] == first.body.decode()
    lines = [line for _, line in json.loads(stream["stream_events"])]
    assert lines == [line for line in second.body.decode().split("\n") if line]
    assert stream["streamed"] and not plain["streamed"]
    assert plain["content"] and stream["content"]
    assert plain["prompt_tokens"] is not None
    runs = _runs(db_path)
    assert [r["origin"] for r in runs] == ["proxy", "proxy"]
    assert {r["conversation"] for r in runs} == {"Spell cat."}
    assert all(r["status"] == "completed" for r in runs)


def _tool_turn(client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any) -> Any:
    return client.chat.completions.create(
        model="sim-model",
        messages=messages,
        tools=TOOLS,
        **extra,  # type: ignore[arg-type]
    )


def _sent_back(message: Any, *, rewrite: bool) -> dict[str, Any]:
    """The assistant message as a client sends it back; `rewrite` does what agents do:
    reasoning dropped, content as a list of parts, tool-call ids of its own."""
    sent = message.model_dump(exclude_none=True)
    if not rewrite:
        return sent
    sent.pop("reasoning_content", None)
    sent["content"] = [{"type": "text", "text": message.content or ""}]
    for number, call in enumerate(sent.get("tool_calls", [])):
        call["id"] = f"call_local_{number}"
    return sent


@pytest.mark.parametrize("rewrite", [False, True])
def test_a_conversation_is_one_run_with_tool_results(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, rewrite: bool
) -> None:
    """Each request that sends back the previous answer and the tool results continues the
    run, also when the client rewrites what it sends back; the tool results are recorded."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, _),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = _client(proxy.base_url)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You look words up."},
            {"role": "user", "content": "Look up the word 'cat'."},
        ]
        turns = 0
        while turns < 6:
            turns += 1
            answer = _tool_turn(client, messages, stream=False).choices[0]
            if not answer.message.tool_calls:
                break
            messages.append(_sent_back(answer.message, rewrite=rewrite))
            for number, call in enumerate(answer.message.tool_calls):
                call_id = f"call_local_{number}" if rewrite else call.id
                messages.append({"role": "tool", "tool_call_id": call_id, "content": "a pet"})
    assert turns >= 2, "the simulator was expected to call the tool first"
    runs = _runs(db_path)
    assert len(runs) == 1
    assert runs[0]["steps"] == turns
    assert runs[0]["status"] == "completed"
    steps = _steps(db_path)
    assert [s["idx"] for s in steps] == list(range(turns))
    assert all(s["request_prefix"] > 0 for s in steps[1:])
    results = query_rows(db_path, "SELECT * FROM tool_results ORDER BY step_idx, call_idx")
    assert results and all(r["output"] == "a pet" for r in results)
    assert {r["name"] for r in results} == {"lookup"}


def test_conversations_kept_apart(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """Two sessions of one prompt, interleaved, and a side call without the tools are three
    runs; a header groups unrelated requests into one."""
    prompt = [{"role": "user", "content": "Look up the word 'dog'."}]
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, _),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = _client(proxy.base_url)
        first_a = _tool_turn(client, prompt).choices[0].message
        first_b = _tool_turn(client, prompt).choices[0].message
        for first in (first_a, first_b):
            assert first.tool_calls
            follow = [
                *prompt,
                first.model_dump(exclude_none=True),
                *(
                    {"role": "tool", "tool_call_id": c.id, "content": "a pet"}
                    for c in first.tool_calls
                ),
            ]
            _tool_turn(client, follow)
        client.chat.completions.create(
            model="sim-model",
            messages=[{"role": "user", "content": "Title for: Look up the word 'dog'."}],
        )
        named = _client(proxy.base_url, default_headers={"X-Traces-Run": "session-7"})
        for text in ("One thing.", "Another, unrelated."):
            named.chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": text}]
            )
    runs = _runs(db_path)
    assert sorted(r["steps"] for r in runs) == [1, 2, 2, 2]
    named_run = [r for r in runs if json.loads(r["settings"])["proxy"]["grouped_by"] == "header"]
    assert len(named_run) == 1 and named_run[0]["steps"] == 2
    assert json.loads(named_run[0]["settings"])["proxy"]["run_header"] == "session-7"


def test_a_run_named_in_the_path_groups_like_the_header(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """A client that can set a base URL but no header names its run with `/r/NAME/v1`
    (after any `/p/PROVIDER`): unrelated requests under one name are one run, the upstream
    gets the path without the prefix, and the header wins when both are given."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        root = proxy.base_url.removesuffix("/v1")
        for base in (f"{root}/r/agent-a/v1", f"{root}/r/agent-a/v1", f"{root}/r/agent-b/v1"):
            _client(base).chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": f"From {base}."}]
            )
        _client(
            f"{root}/r/agent-b/v1", default_headers={"X-Traces-Run": "agent-c"}
        ).chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "Both named."}]
        )
    assert [sent.path for sent in tap.sent] == ["/v1/chat/completions"] * 4
    proxies = [json.loads(r["settings"])["proxy"] for r in _runs(db_path)]
    assert [(p["run_header"], p["grouped_by"]) for p in proxies] == [
        ("agent-a", "path"),
        ("agent-b", "path"),
        ("agent-c", "header"),
    ]
    assert sorted(r["steps"] for r in _runs(db_path)) == [1, 1, 2]


def test_idle_runs_end_and_are_checked_while_serving(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """A conversation quiet for the idle time ends while the proxy goes on: its row says
    so at once, and the command is told (to check it)."""
    ended: list[str] = []
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, _),
        proxy_to(sim.base_url, db_path, idle_s=0.3, ended=ended) as proxy,
    ):
        _client(proxy.base_url).chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "Hello."}]
        )
        deadline = time.monotonic() + 10
        while not ended and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ended) == 1
        # Read while the proxy records, as `traces runs` does: through the store's server.
        live: list[Any] = []
        while live != [("completed", 1)] and time.monotonic() < deadline:
            with open_for_reading(resolve_db_path(str(db_path), None)) as conn:
                query = "SELECT status, steps FROM runs WHERE id = ?"
                live = conn.execute(query, [ended[0]]).fetchall()
        assert live == [("completed", 1)]


def _all_text(db: Path) -> str:
    """Every value of every table, as text: where a key must not be."""
    tables = [r["table_name"] for r in query_rows(db, "SELECT table_name FROM duckdb_tables()")]
    return "\n".join(
        json.dumps(rows, default=str)
        for table in tables
        for rows in [query_rows(db, f'SELECT * FROM "{table}"')]
    )


@pytest.mark.parametrize("fault", ["auth_echoed", "auth_echoed_in_error"])
def test_keys_never_stored(monkeypatch: pytest.MonkeyPatch, db_path: Path, fault: str) -> None:
    """The client's key goes upstream; a host that echoes it (in headers, reasoning, content,
    error bodies) gets it to the client, never into the store."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults={fault: 1.0})) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = _client(proxy.base_url)
        for stream in (False, True):
            try:
                reply = client.chat.completions.create(
                    model="sim-model",
                    messages=[{"role": "user", "content": "Hi."}],
                    stream=stream,
                )
                if stream:
                    list(reply)  # type: ignore[arg-type]
            except openai.APIStatusError as exc:
                assert exc.status_code == 401
    assert all(KEY.encode() in s.body or KEY in str(s.headers) for s in tap.sent)
    assert len(_steps(db_path)) >= 1
    stored = _all_text(db_path)
    assert KEY not in stored
    assert "[redacted]" in stored


def test_profile_key_replaces_the_clients(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """With a profile whose key variable is set, that key goes upstream instead of whatever
    the client sent, and neither is stored."""
    profile_key = "sk-profile-fedcba9876543210"
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults={"auth_echoed": 1.0})) as (sim, tap),
    ):
        upstream = Upstream(label="simprofile", base_url=sim.base_url, key=profile_key)
        with proxy_to(upstream, db_path) as proxy:
            _client(proxy.base_url).chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "Hi."}]
            )
    assert profile_key.encode() in tap.sent[0].body
    assert KEY.encode() not in tap.sent[0].body
    stored = _all_text(db_path)
    assert profile_key not in stored and KEY not in stored
    assert _runs(db_path)[0]["provider"] == "simprofile"


def test_client_hanging_up_cancels_upstream(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """A client that disconnects mid-stream: the upstream request is cancelled (the
    simulator sees the hang-up) and the step is recorded as cancelled by the client, with
    what had arrived; no finding blames anyone for it."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults={"endless_response": 1.0})) as (
            sim,
            tap,
        ),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        stream = _client(proxy.base_url).chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "Hi."}], stream=True
        )
        for number, _ in enumerate(stream):
            if number == 5:
                break
        stream.close()
        deadline = time.monotonic() + 10
        while not tap.sent[0].hung_up and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tap.sent[0].hung_up
    (step,) = _steps(db_path)
    assert step["error_kind"] == "cancelled"
    assert len(json.loads(step["stream_events"])) >= 5
    (run,) = _runs(db_path)
    assert run["status"] == "interrupted"
    assert "cancelled" in run["error"]


def test_upstream_errors_relayed_and_retries_folded(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """An upstream 429 reaches the client unchanged; the client's own retries of the same
    request are one step whose failed attempts are its retry errors."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults={"rate_limit_429": 1.0})) as (
            sim,
            tap,
        ),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "Hi."}]}
        raw = httpx2.post(f"{proxy.base_url}/chat/completions", json=body)
        assert raw.status_code == 429
        assert raw.content == tap.sent[0].body
        assert raw.headers["retry-after"] == tap.sent[0].headers["retry-after"]
        client = openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=2)
        with pytest.raises(openai.RateLimitError):
            client.with_options(timeout=30).chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "Other."}]
            )
    steps = _steps(db_path)
    assert [(s["error_kind"], s["retries"]) for s in steps] == [
        ("rate_limit", 0),
        ("rate_limit", 2),
    ]
    assert all(s["http_status"] == 429 for s in steps)


def test_unreachable_upstream_and_cut_bodies(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """Nothing listening upstream: a 502 in the OpenAI error shape, recorded as a connection
    error. An upstream that drops the connection mid-body: the client's is dropped too."""
    with proxy_to("http://127.0.0.1:9/v1", db_path) as proxy:
        with pytest.raises(openai.APIStatusError) as refused:
            _client(proxy.base_url).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hi."}]
            )
        assert refused.value.status_code == 502
    (step,) = _steps(db_path)
    assert step["error_kind"] == "connection"
    second = db_path.with_name("cut.duckdb")
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults={"connection_reset": 1.0})) as (sim, _),
        proxy_to(sim.base_url, second) as proxy,
        pytest.raises(openai.APIConnectionError),
    ):
        list(
            _client(proxy.base_url).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hi."}], stream=True
            )
        )
    (cut,) = _steps(second)
    assert cut["error_kind"] == "connection"


def test_models_and_other_paths_pass_through(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """`/v1/models` is relayed; any other path too (`/v1/embeddings`), logged and not
    recorded."""
    logged: list[str] = []
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path, logged=logged) as proxy,
    ):
        models = _client(proxy.base_url).models.list()
        other = httpx2.post(f"{proxy.base_url}/embeddings", json={"input": "hi"})
    assert [m.id for m in models] == [SimConfig().model]
    assert other.status_code == 404 and other.content == tap.sent[1].body
    assert logged == ["POST /v1/embeddings: relayed, not recorded"]
    assert _steps(db_path) == []


def test_proxy_token(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """With a token, a request without it is refused; it may come in its own header or as
    the client's key (then it is not forwarded)."""
    token = "proxy-token-0123456789"
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults={"auth_echoed": 1.0})) as (sim, tap),
        proxy_to(sim.base_url, db_path, token=token) as proxy,
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "Hi."}]}
        url = f"{proxy.base_url}/chat/completions"
        refused = httpx2.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert refused.status_code == 401 and len(tap.sent) == 0
        odd = httpx2.post(
            url, json=body, headers={"Authorization": "Bearer k\xe9y".encode("latin-1")}
        )
        assert odd.status_code == 401 and len(tap.sent) == 0
        by_header = httpx2.post(url, json=body, headers={"X-Traces-Token": token})
        as_key = httpx2.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert by_header.status_code == as_key.status_code == 200
    assert all(token.encode() not in sent.body for sent in tap.sent)
    assert token not in _all_text(db_path)


def test_secrets_in_the_request_are_not_stored(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """A credential field in the body is dropped and the key in use, pasted into a message,
    is redacted from what is recorded; the upstream still gets the request as sent."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, _),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        body = {
            "model": "m",
            "api_key": "sk-inbody-0123456789abcdef",
            "messages": [{"role": "user", "content": f"My key is {KEY}, keep it."}],
        }
        sent = httpx2.post(
            f"{proxy.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert sent.status_code == 200
    stored = _all_text(db_path)
    assert KEY not in stored and "sk-inbody" not in stored
    assert "My key is [redacted], keep it." in stored


def test_the_start_up_line_says_what_the_proxy_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from traces.proxy.speedups import described

    assert described() == "uvloop+httptools"  # the `fast` extra is installed for the tests
    monkeypatch.setenv("TRACES_PROXY_SPEEDUPS", "0")
    assert described() == "asyncio+h11, $TRACES_PROXY_SPEEDUPS is off"

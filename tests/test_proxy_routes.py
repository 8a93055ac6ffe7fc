"""One `traces proxy` in front of several hosts: routing by path prefix and by model name,
the refusals (an unknown provider, an ambiguous model), whose key goes where, and that no
key, nor anything a host echoes of one, is stored. Two simulators as the hosts, each tapped;
the real `openai` client through the proxy."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from proxy_setup import proxy_to, start_proxy_command, tapped_sim
from proxy_wire import wire_sim

from traces.proxy.routing import Routes
from traces.sim.config import SimConfig

from conftest import CliRun, query_rows

CLIENT_KEY = "sk-routes-client-0123456789abcdef"
ALPHA_KEY = "sk-routes-alpha-fedcba9876543210"
DELTA_KEY = "sk-routes-delta-5555666677778888"


def _providers(tmp_path: Path, alpha: str, beta: str) -> Path:
    path = tmp_path / "providers.toml"
    path.write_text(
        f'[alpha]\nbase_url = "{alpha}"\napi_key_env = "ROUTES_ALPHA_KEY"\n'
        'models = ["alpha-model"]\ndialect = "openai"\n\n'
        f'[beta]\nbase_url = "{beta}"\napi_key_env = "ROUTES_BETA_KEY"\n'
        'models = ["beta-model", "shared-model"]\ndialect = "openai"\n\n'
        f'[gamma]\nbase_url = "{beta}"\n'
        'models = ["shared-model"]\ndialect = "openai"\n\n'
        f'[delta]\nbase_url = "{alpha}"\napi_key_env = "ROUTES_DELTA_KEY"\n'
        'models = ["delta-model"]\ndialect = "openai"\n'
    )
    return path


def _ask(base_url: str, model: str, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Hello {model}."}], **extra
    )


def _all_text(db: Path) -> str:
    tables = [r["table_name"] for r in query_rows(db, "SELECT table_name FROM duckdb_tables()")]
    return "\n".join(
        json.dumps(query_rows(db, f'SELECT * FROM "{table}"'), default=str) for table in tables
    )


def test_routes_by_prefix_and_model(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, tmp_path: Path
) -> None:
    """A prefix names the host (any profile of the file, even one not given as an
    `--upstream`); else a model one `--upstream` lists goes there; else the first. A model
    two list, or a prefix naming nothing, is refused with one line and goes nowhere. Each
    host gets its profile's key when its variable is set, else the client's; the hosts
    echo the keys (headers, content, error bodies) and none is stored."""
    monkeypatch.setenv("ROUTES_ALPHA_KEY", ALPHA_KEY)
    monkeypatch.delenv("ROUTES_BETA_KEY", raising=False)
    monkeypatch.setenv("ROUTES_DELTA_KEY", DELTA_KEY)
    echo = {"auth_echoed": 1.0}
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, model="alpha-model", faults=echo)) as (a, tap_a),
        tapped_sim(monkeypatch, SimConfig(seed=1, model="beta-model", faults=echo)) as (b, tap_b),
    ):
        providers = _providers(tmp_path, a.base_url, b.base_url)
        routes = Routes.from_specs(["alpha", "beta", "gamma"], providers, 30.0)
        assert routes.ambiguous() == {"shared-model": ["beta", "gamma"]}
        logged: list[str] = []
        with proxy_to(routes, db_path, logged=logged) as proxy:
            root = proxy.base_url.removesuffix("/v1")
            _ask(proxy.base_url, "beta-model")  # by model -> beta
            _ask(proxy.base_url, "unlisted-model")  # the default -> alpha
            _ask(f"{root}/p/beta/v1", "alpha-model", stream=True).close()  # prefix wins
            _ask(f"{root}/p/delta/v1", "delta-model")  # a profile named by prefix only
            with pytest.raises(openai.BadRequestError) as ambiguous:
                _ask(proxy.base_url, "shared-model")
            with pytest.raises(openai.NotFoundError) as unknown:
                _ask(f"{root}/p/nowhere/v1", "alpha-model")
            models = httpx2.get(f"{root}/p/beta/v1/models")
    assert "'shared-model' is served by beta, gamma" in str(ambiguous.value)
    assert "/p/beta/v1 or /p/gamma/v1" in str(ambiguous.value)
    assert "unknown provider 'nowhere'" in str(unknown.value)
    assert len(logged) == 2 and all("refused" in line for line in logged)
    assert models.json()["data"][0]["id"] == "beta-model"
    # Where each request went, and with which key.
    assert [s.path for s in tap_b.sent] == ["/v1/chat/completions"] * 2 + ["/v1/models"]
    assert [s.path for s in tap_a.sent] == ["/v1/chat/completions"] * 2
    assert CLIENT_KEY.encode() in tap_b.sent[0].body  # beta's variable is unset
    assert (
        ALPHA_KEY.encode() in tap_a.sent[0].body and CLIENT_KEY.encode() not in tap_a.sent[0].body
    )
    assert DELTA_KEY.encode() in tap_a.sent[1].body
    runs = query_rows(db_path, "SELECT provider, model, settings FROM runs ORDER BY started_at")
    assert [(r["provider"], r["model"]) for r in runs] == [
        ("beta", "beta-model"),
        ("alpha", "unlisted-model"),
        ("beta", "alpha-model"),
        ("delta", "delta-model"),
    ]
    routed = [json.loads(r["settings"])["proxy"]["routed_by"] for r in runs]
    assert routed == ["model", "default", "prefix", "prefix"]
    stored = _all_text(db_path)
    for key in (CLIENT_KEY, ALPHA_KEY, DELTA_KEY):
        assert key not in stored
    assert "[redacted]" in stored


def test_the_model_list_without_a_prefix_is_every_upstreams(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """`GET /v1/models` in front of several `--upstream`s lists each one's models, each id
    once, in upstream order, the real openai client reading it; an upstream that cannot
    answer is left out and logged; when none can, the client gets the first one's failure.
    A prefix still lists that host's models alone."""
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, model="alpha-model")) as (a, _),
        tapped_sim(monkeypatch, SimConfig(seed=1, model="beta-model")) as (b, _),
    ):
        routes = Routes.from_specs(
            [f"alpha={a.base_url}", f"down={dead}", f"beta={b.base_url}", f"again={a.base_url}"],
            None,
            5.0,
        )
        logged: list[str] = []
        with proxy_to(routes, db_path, logged=logged) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
            listed = [model.id for model in client.models.list()]
            root = proxy.base_url.removesuffix("/v1")
            alone = httpx2.get(f"{root}/p/beta/v1/models").json()
        only_dead = Routes.from_specs([f"down={dead}", f"gone={dead}"], None, 5.0)
        with proxy_to(only_dead, db_path) as proxy:
            failed = httpx2.get(f"{proxy.base_url}/models")
    assert listed == ["alpha-model", "beta-model"]
    assert [line.split(" (")[0] for line in logged] == ["GET /v1/models: down left out of the list"]
    assert [model["id"] for model in alone["data"]] == ["beta-model"]
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "proxy_upstream"


def test_same_conversation_to_two_hosts_is_two_runs(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, tmp_path: Path
) -> None:
    """The same prompt sent to two hosts, then continued on each: two runs, one per host,
    even when both answered alike."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (a, _),
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (b, _),
    ):
        routes = Routes.from_specs([f"one={a.base_url}", f"two={b.base_url}"], None, 30.0)
        with proxy_to(routes, db_path) as proxy:
            root = proxy.base_url.removesuffix("/v1")
            for name in ("one", "two"):
                client = openai.OpenAI(
                    base_url=f"{root}/p/{name}/v1", api_key=CLIENT_KEY, max_retries=0
                )
                asked: list[Any] = [{"role": "user", "content": "Say something."}]
                answer = client.chat.completions.create(model="m", messages=asked)
                asked += [
                    answer.choices[0].message.model_dump(exclude_none=True),
                    {"role": "user", "content": "More."},
                ]
                client.chat.completions.create(model="m", messages=asked)
    runs = query_rows(db_path, "SELECT provider, steps FROM runs ORDER BY started_at")
    assert [(r["provider"], r["steps"]) for r in runs] == [("one", 2), ("two", 2)]


def test_responses_echoing_the_key_store_none(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """A Responses API host that writes the client's key into its answer (whole and
    streamed): the client gets it, the store never."""
    with (
        wire_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
        whole = client.responses.create(model="m", input="Hi.", metadata={"echo": "auth"})
        events = list(
            client.responses.create(
                model="m", input="Hi again.", metadata={"echo": "auth"}, stream=True
            )
        )
    assert CLIENT_KEY in whole.output_text
    assert all(CLIENT_KEY.encode() in s.body for s in tap.sent) and events
    assert len(query_rows(db_path, "SELECT idx FROM steps")) == 2
    stored = _all_text(db_path)
    assert CLIENT_KEY not in stored and "[redacted]" in stored


@pytest.mark.parametrize(
    ("upstreams", "says"),
    [
        (("alpha", "alpha"), "--upstream 'alpha': named twice"),
        (("alpha", "nowhere"), "--upstream 'nowhere': neither an http(s) URL nor a profile"),
        (("bad name=http://127.0.0.1:1/v1",), "a name is letters, digits"),
        (("x=ftp://127.0.0.1/v1",), "must start with http:// or https://"),
    ],
)
def test_bad_upstreams_one_line(
    cli: CliRun, tmp_path: Path, upstreams: tuple[str, ...], says: str
) -> None:
    """A repeated name, an unknown profile among several, a bad NAME=URL: one line, exit 2,
    nothing served or written."""
    providers = _providers(tmp_path, "http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1")
    db = tmp_path / "t.duckdb"
    args = [a for u in upstreams for a in ("--upstream", u)]
    done = cli("proxy", *args, "--providers", str(providers), "--db", str(db))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert not db.exists()


# Slow (a proxy command with three upstreams, stopped by a signal: 8 s at a load of 8): the
# fast path keeps the routing itself (the tests above) and the command's one-line errors.
@pytest.mark.slow
def test_command_with_several_upstreams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`traces proxy --upstream A --upstream B --upstream C`: stderr names each prefix and
    host and warns of a model two of them list; requests are routed and recorded; a signal
    stops it with everything recorded (exit 130)."""
    db = tmp_path / "proxy.duckdb"
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, model="alpha-model")) as (a, tap_a),
        tapped_sim(monkeypatch, SimConfig(seed=1, model="beta-model")) as (b, tap_b),
    ):
        providers = _providers(tmp_path, a.base_url, b.base_url)
        process, url, lines = start_proxy_command(
            *("--port", "0", "--db", str(db), "--providers", str(providers)),
            *("--upstream", "alpha", "--upstream", "beta", "--upstream", "gamma"),
            env={"ROUTES_ALPHA_KEY": ALPHA_KEY},
        )
        try:
            root = url.removesuffix("/v1")
            _ask(url, "beta-model")
            _ask(f"{root}/p/gamma/v1", "alpha-model")
            _ask(url, "alpha-model")
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(60)
    time.sleep(0.2)  # the reader thread takes the last lines
    text = "\n".join(lines)
    assert code == 130, text
    assert f"proxy serving {url} -> {a.base_url} (key: $ROUTES_ALPHA_KEY)" in text
    assert "; on uvloop+httptools; Ctrl-C stops" in text  # the `fast` extra, installed here
    assert f"and {root}/p/beta/v1 -> {b.base_url}" in text
    assert f"and {root}/p/gamma/v1 -> {b.base_url}" in text
    assert "model 'shared-model' is served by beta, gamma: requests for it need a prefix" in text
    assert ALPHA_KEY not in text
    assert (len(tap_a.sent), len(tap_b.sent)) == (1, 2)
    runs = query_rows(db, "SELECT provider FROM runs ORDER BY started_at")
    assert [r["provider"] for r in runs] == ["beta", "gamma", "alpha"]

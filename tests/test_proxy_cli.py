"""`traces proxy` as a user runs it: bad options, live reading, Ctrl-C and SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import openai
import pytest
from proxy_setup import start_proxy_command

from traces.sim.server import SimServer

from conftest import CliRun, query_rows, run_cli


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "Missing option '--upstream'"),
        (("--upstream", "nowhere"), "neither an http(s) URL nor a profile"),
        (("--upstream", "ftp://example.com/v1"), "--upstream"),
        (("--upstream", "http://127.0.0.1:1/v1", "--host", "0.0.0.0"), "TRACES_PROXY_TOKEN"),
        (("--upstream", "http://127.0.0.1:1/v1", "--idle", "0"), "--idle"),
    ],
)
def test_bad_options_one_line(
    cli: CliRun, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    """Each bad option is one line on stderr and exit 2, nothing served or written."""
    db = tmp_path / "t.duckdb"
    done = cli("proxy", *args, "--db", str(db), env={"TRACES_PROXY_TOKEN": ""})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert not db.exists()


def test_port_taken(cli: CliRun, tmp_path: Path, sim: SimServer) -> None:
    """A port another server holds: one line, exit 2."""
    done = cli(
        "proxy", "--upstream", sim.base_url, "--port", str(sim.port), "--db", str(tmp_path / "t")
    )
    assert done.returncode == 2 and "cannot serve on" in done.stderr, done.stderr


def _start(sim: SimServer, db: Path, *extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    return start_proxy_command("--upstream", sim.base_url, "--port", "0", "--db", str(db), *extra)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serves_records_and_stops_on_signal(
    sim: SimServer, tmp_path: Path, stop: signal.Signals
) -> None:
    """Requests are recorded; an idle run ends and is checked while the proxy serves, and
    `traces runs` lists it meanwhile; a signal ends the open runs, checks them, and exits 130
    with one line, everything committed."""
    db = tmp_path / "proxy.duckdb"
    process, url, lines = _start(sim, db, "--idle", "1")
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), lines
        client = openai.OpenAI(base_url=url, api_key="sk-cli-test-0123456789", max_retries=0)
        client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "First."}]
        )
        deadline = time.monotonic() + 30
        while not any("ended; checking it" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        listed = run_cli("runs", "--origin", "proxy", "--db", str(db), "-f", "json")
        assert listed.returncode == 0, listed.stderr
        assert [r["status"] for r in json.loads(listed.stdout)] == ["completed"]
        stream = client.chat.completions.create(
            model="sim-model",
            messages=[{"role": "user", "content": "Second."}],
            stream=True,
            stream_options={"include_usage": True},
        )
        assert list(stream)
    finally:
        process.send_signal(stop)
        code = process.wait(60)
    time.sleep(0.2)  # the reader thread takes the last line
    assert code == 130, lines
    assert lines[-1] == "interrupted: proxy stopped; 2 runs, 2 steps recorded and checked", lines
    assert not any("Traceback" in line for line in lines)
    runs = query_rows(db, "SELECT id, status, steps FROM runs ORDER BY started_at")
    assert [(r["status"], r["steps"]) for r in runs] == [("completed", 1), ("completed", 1)]
    # A run the checks read has a ledger row (its requests report usage).
    checked = query_rows(db, "SELECT DISTINCT run_id FROM ledgers")
    assert {r["run_id"] for r in checked} == {r["id"] for r in runs}


def test_profile_upstream(sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--upstream NAME` takes the profile's URL and key variable (the key is never shown);
    runs are labelled with the profile's name; an unset variable falls back to the client's
    header; a client's `/v1/X` goes to the profile's base URL + `/X`."""
    from traces.proxy.upstream import resolve_upstream

    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[local]\nbase_url = "{sim.base_url}"\napi_key_env = "LOCAL_PROXY_KEY"\n'
        'models = ["sim-model"]\ndialect = "openai"\n'
    )
    monkeypatch.setenv("LOCAL_PROXY_KEY", "sk-local-0123456789abcdef")
    upstream = resolve_upstream("local", providers, 30.0)
    assert (upstream.label, upstream.base_url) == ("local", sim.base_url)
    assert upstream.key == "sk-local-0123456789abcdef"
    assert upstream.key_source == "$LOCAL_PROXY_KEY"
    assert "sk-local" not in repr(upstream)
    monkeypatch.delenv("LOCAL_PROXY_KEY")
    unset = resolve_upstream("local", providers, 30.0)
    assert unset.key is None and "is not set" in unset.key_source
    assert unset.url_for("/v1/chat/completions", b"a=1") == f"{sim.base_url}/chat/completions?a=1"


@pytest.mark.slow
def test_signal_during_a_stream_records_it(tmp_path: Path) -> None:
    """SIGTERM while an answer streams: the proxy waits a moment for it, then cuts it; the
    step is recorded with what had arrived, as cancelled, and the run is ended."""
    from traces.sim.config import SimConfig

    db = tmp_path / "proxy.duckdb"
    with SimServer(SimConfig(seed=0, faults={"endless_response": 1.0})) as endless:
        process, url, lines = _start(endless, db)
        try:
            client = openai.OpenAI(base_url=url, api_key="sk-cli-test-0123456789", max_retries=0)
            stream = client.chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "Go."}], stream=True
            )
            for number, _ in enumerate(stream):
                if number == 3:
                    break
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
    assert code == 130, lines
    (step,) = query_rows(db, "SELECT error_kind, stream_events FROM steps")
    assert step["error_kind"] == "cancelled"
    assert len(json.loads(step["stream_events"])) >= 3
    (run,) = query_rows(db, "SELECT status FROM runs")
    assert run["status"] == "interrupted"

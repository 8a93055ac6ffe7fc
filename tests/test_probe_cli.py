"""`traces probe` as a user runs it: probing, reporting stored probes, a host that rejects
object arguments and serves no `/v1/completions`, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

from traces.probes.catalogue import PROBES

from conftest import run_cli

# Slow as a whole, outside the fast path `pytest -m "not slow"`: probe sets sent to several
# simulators.
pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).parent / "fixtures" / "probes" / "sim-kimi.jinja"
OBJECT_ARGS_ERROR = "messages[2].tool_calls[0].function.arguments must be a string"


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err


class _StrictHost(BaseHTTPRequestHandler):
    """A chat-only host that wants arguments as strings: 400 for objects, 404 on
    `/v1/completions`, a plain answer otherwise."""

    def do_GET(self) -> None:
        self._reply(200, {"object": "list", "data": []})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._reply(404, {"error": {"message": f"Unknown request URL: POST {self.path}"}})
            return
        for message in body["messages"]:
            for call in message.get("tool_calls") or []:
                if not isinstance(call["function"]["arguments"], str):
                    self._reply(400, {"error": {"message": OBJECT_ARGS_ERROR}})
                    return
        prompt = len(json.dumps(body["messages"])) // 4
        self._reply(
            200,
            {
                "id": "chatcmpl-strict",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "It rains in Lyon."},
                    }
                ],
                "usage": {"prompt_tokens": prompt, "completion_tokens": 5},
            },
        )

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def strict_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StrictHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_probe_then_report_only_compares_stored_probings(db_path: Path) -> None:
    first = run_cli("probe", "--dialect", "moonshot", "--db", str(db_path), "-f", "json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["probe_set_version"] == "2"
    assert [p["provider"] for p in report["providers"]] == ["sim-moonshot"]
    assert report["providers"][0]["reasoning_counted"] == "yes"
    assert report["sets_apart"] == []
    parameters = report["providers"][0]["parameters"]
    assert {name: p["verdict"] for name, p in parameters.items()} == dict.fromkeys(
        ["max_tokens", "stop", "n", "logprobs", "json_object", "json_schema", "seed"], "honoured"
    )

    second = run_cli(
        "probe",
        "--dialect",
        "moonshot",
        "--fault",
        "reasoning_dropped_from_history",
        "--db",
        str(db_path),
        "-f",
        "json",
    )
    assert second.returncode == 0, second.stderr
    # The report covers what this probing probed, under a label naming the fault.
    only = json.loads(second.stdout)["providers"]
    assert [p["provider"] for p in only] == ["sim-moonshot+reasoning_dropped_from_history=1"]

    table = run_cli("probe", "--report-only", "--db", str(db_path))
    assert table.returncode == 0, table.stderr
    assert "sets apart" in table.stdout
    assert "secret recalled" in table.stdout
    assert "parameters: honoured, refused, or silently ignored" in table.stdout

    rows = run_cli("probe", "--report-only", "--db", str(db_path), "-f", "csv")
    assert rows.returncode == 0, rows.stderr
    parsed = {row["provider"]: row for row in csv.DictReader(io.StringIO(rows.stdout))}
    assert set(parsed) == {"sim-moonshot", "sim-moonshot+reasoning_dropped_from_history=1"}
    assert parsed["sim-moonshot"]["secret_recalled"] == "yes"
    assert parsed["sim-moonshot+reasoning_dropped_from_history=1"]["secret_recalled"] == "no"
    fingerprints = {row["fingerprint"] for row in parsed.values()}
    assert len(fingerprints) == 2


def test_host_rejecting_object_args_and_serving_no_completions(
    db_path: Path, strict_host: str
) -> None:
    done = run_cli(
        "probe",
        "--provider",
        "strict",
        "--base-url",
        strict_host,
        "--model",
        "strict-1",
        "--template",
        str(TEMPLATE),
        "--db",
        str(db_path),
        "-f",
        "json",
        env={"OPENAI_API_KEY": "test-key"},
    )
    assert done.returncode == 0, done.stderr
    [verdict] = json.loads(done.stdout)["providers"]
    assert verdict["provider"] == "strict"
    assert verdict["object_args"] == "rejected (HTTP 400)"
    assert verdict["rejects"] == [f"history_object_args: HTTP 400: {OBJECT_ARGS_ERROR}"]
    assert verdict["raw"] == "not served"
    assert verdict["vector"]["args"] == "x"
    # An answer without the code: the planted secret was not recalled.
    assert verdict["secret_recalled"] == "no"
    # A host that answers one fixed line whatever is asked: what it cannot honour shows.
    verdicts = {name: p["verdict"] for name, p in verdict["parameters"].items()}
    assert verdicts["n"] == verdicts["logprobs"] == verdicts["json_object"] == "ignored"
    assert verdicts["stop"] == "unknown" and verdicts["seed"] == "honoured"
    conn = duckdb.connect(str(db_path), read_only=True)
    try:
        # `traces probe` checks its runs: the ignored parameters are stored findings.
        stored = {
            kind
            for (kind,) in conn.execute(
                "SELECT f.kind FROM findings f JOIN runs r ON r.id = f.run_id"
            ).fetchall()
        }
    finally:
        conn.close()
    assert {"n_ignored", "logprobs_ignored", "response_format_ignored"} <= stored

    conn = duckdb.connect(str(db_path), read_only=True)
    try:
        runs = conn.execute(
            "SELECT task, status, success_detail FROM runs WHERE origin = 'probe' ORDER BY task"
        ).fetchall()
    finally:
        conn.close()
    raw = [run for run in runs if run[0].endswith(":raw")]
    # The first raw probe finds the route missing; the others are not sent, and the missing
    # route is a fact about the host, not a failed run.
    assert len(raw) == 1
    assert raw[0][1] == "completed"
    assert raw[0][2].startswith("not served: HTTP 404")
    chat = {task: status for task, status, _ in runs if not task.endswith(":raw")}
    assert len(chat) == len(PROBES)
    assert chat.pop("probe:history_object_args") == "failed"
    assert set(chat.values()) == {"completed"}


def test_unknown_provider_is_one_line(db_path: Path) -> None:
    done = run_cli("probe", "--provider", "nosuch", "--db", str(db_path))
    _one_line_error(done, 2, "nosuch")
    assert not db_path.exists()


def test_unreachable_endpoint_is_one_line(db_path: Path) -> None:
    done = run_cli(
        "probe",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--db",
        str(db_path),
        env={"OPENAI_API_KEY": "test-key"},
    )
    _one_line_error(done, 3, "cannot connect")
    assert not db_path.exists()


def test_report_only_for_a_provider_never_probed_is_one_line(db_path: Path) -> None:
    first = run_cli("probe", "--db", str(db_path), "-f", "json")
    assert first.returncode == 0, first.stderr
    assert [p["provider"] for p in json.loads(first.stdout)["providers"]] == ["sim"]
    done = run_cli("probe", "--report-only", "--provider", "nosuch", "--db", str(db_path))
    _one_line_error(done, 2, "nosuch", "no probe runs")

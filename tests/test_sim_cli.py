"""`traces sim` with dialects and faults, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from traces.dialects import DIALECTS
from traces.families import FAMILIES
from traces.sim.faults import FAULTS
from traces.sim.faults.selection import TRANSIENT
from traces.sim.faults.spec import fault_label, parse_faults, split_fault_list

from conftest import REPO, CliRun


def test_list_prints_every_dialect_and_fault(cli: CliRun) -> None:
    table = cli("sim", "--list")
    assert table.returncode == 0, table.stderr
    for name in [*DIALECTS, *FAULTS]:
        assert name in table.stdout
    listed = cli("sim", "--list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    catalogue = json.loads(listed.stdout)
    assert [d["dialect"] for d in catalogue["dialects"]] == list(DIALECTS)
    assert [f["fault"] for f in catalogue["faults"]] == list(FAULTS)
    assert [f["family"] for f in catalogue["families"]] == list(FAMILIES)
    assert {f["blame"] for f in catalogue["faults"]} == {"model", "provider"}
    assert {f["fault"] for f in catalogue["faults"] if f["transient"]} == TRANSIENT


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--fault", "nope=0.5"], ["unknown fault 'nope'", "dropped_call"]),
        (["--fault", "dropped_call=1.5"], ["dropped_call=1.5", "[0, 1]"]),
        (["--fault", "dropped_call="], ["NAME=RATE"]),
        (["--fault", "dropped_call=often"], ["NAME=RATE"]),
        (["--dialect", "nowhere"], ["unknown dialect 'nowhere'", "moonshot"]),
    ],
)
def test_bad_dialects_and_faults_are_one_line_errors(
    args: list[str], fragments: list[str], cli: CliRun
) -> None:
    done = cli("sim", "--port", "0", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ")
    for fragment in fragments:
        assert fragment in error


def test_a_bare_fault_name_means_every_request() -> None:
    """One fault syntax for every command: `NAME` is `NAME=1`, blanks in a list are skipped."""
    assert parse_faults(["dropped_call", "rate_limit_429=0.25"]) == {
        "dropped_call": 1.0,
        "rate_limit_429": 0.25,
    }
    assert split_fault_list(" dropped_call, ,rate_limit_429=0.25") == [
        "dropped_call",
        "rate_limit_429=0.25",
    ]
    assert fault_label(parse_faults(["rate_limit_429=0.25", "dropped_call"])) == (
        "dropped_call=1,rate_limit_429=0.25"
    )


def test_sim_serves_the_chosen_dialect_with_faults() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analyzer.cli",
            "sim",
            "--port",
            "0",
            "--dialect",
            "moonshot",
            "--fault",
            "reasoning_tokens_missing=1",
            "--fault",
            "missing_ids=0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="sim-reasoner-1", messages=[{"role": "user", "content": "Say hi."}]
        )
        assert raw.headers["x-sim-dialect"] == "moonshot"
        assert raw.headers["x-sim-faults"] == "reasoning_tokens_missing"
        reply = raw.parse()
        assert (reply.choices[0].message.model_extra or {}).get("reasoning_content")
        assert reply.usage is not None and reply.usage.completion_tokens_details is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)

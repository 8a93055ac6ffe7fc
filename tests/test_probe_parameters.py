"""Parameter probes over real HTTP: a host that honours `max_tokens`, `stop`, `n`, `logprobs`,
`response_format` and `seed`/temperature 0 (the simulator, every dialect), one that silently
ignores each (a simulator fault), one that refuses them with a 400, and hosts whose answers
cannot tell: every verdict, and the findings stored for the ignored ones only."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analyzer.checks.persist import analyze_recorded
from analyzer.probes import ProviderVerdict, probe_report
from traces.client import EndpointConfig
from traces.dialects import DIALECTS
from traces.probes.catalogue import MAX_TOKENS_CAP, PARAMETER_PROBES
from traces.probes.runner import ProbePlan, ProbeTarget, probe_targets
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.recorder import Recorder

from scripted_endpoint import Reply, ScriptedEndpoint, error

# Slow as a whole, outside the fast path `pytest -m "not slow"`: the parameter probes sent to
# two dozen hosts.
pytestmark = pytest.mark.slow

PARAMETER_OF = {probe.name: probe.parameter for probe in PARAMETER_PROBES}

FAULTS: dict[str, tuple[str, str]] = {
    "max_tokens_ignored": ("max_tokens", "max_tokens_ignored"),
    "stop_ignored": ("stop", "stop_ignored"),
    "n_ignored": ("n", "n_ignored"),
    "logprobs_ignored": ("logprobs", "logprobs_ignored"),
    "response_format_ignored": ("response_format", "response_format_ignored"),
    "seed_ignored": ("seed", "nondeterministic_output"),
}
"""Simulator fault -> (the parameter it makes the host ignore, the finding that says so)."""

_SET_BY_PROBE = ("n", "logprobs", "stop", "response_format", "temperature")


def _asked(body: dict[str, Any]) -> str:
    """The parameter a parameter probe's request sets (each sets one)."""
    for name in _SET_BY_PROBE:
        if name in body:
            return name
    return "max_tokens"


def _refusing(body: dict[str, Any]) -> Reply:
    """OpenAI's way: a 400 whose message and `param` name the parameter."""
    name = _asked(body)
    return 400, {
        "error": {
            "message": f"Unsupported parameter: '{name}' is not supported with this model.",
            "type": "invalid_request_error",
            "param": name,
            "code": "unsupported_parameter",
        }
    }


def _parrot(body: dict[str, Any]) -> Reply:
    """A host that answers every request the same short line, with no usage and one choice."""
    return 200, {
        "id": "chatcmpl-parrot",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Sure, here it is."},
            }
        ],
    }


SIMULATED: dict[str, SimConfig] = {
    **{f"clean-{name}": SimConfig(dialect=name) for name in DIALECTS},
    **{f"ignores-{fault}": SimConfig(dialect="moonshot", faults={fault: 1.0}) for fault in FAULTS},
}
SCRIPTED: dict[str, ScriptedEndpoint] = {
    "refuses": ScriptedEndpoint([], respond=_refusing),
    "refuses-vaguely": ScriptedEndpoint([error(400, "Bad Request")]),
    "broken": ScriptedEndpoint([error(500, "Internal Server Error")]),
    "parrot": ScriptedEndpoint([], respond=_parrot),
}


class Probed:
    """One probing of every host above with the parameter probes, checked and reported."""

    def __init__(self, db: Path) -> None:
        self.db = db
        conn = duckdb.connect(str(db), read_only=True)
        try:
            verdicts, _ = probe_report(conn)
            rows = conn.execute(
                "SELECT r.provider, json_extract_string(r.settings, '$.probe'), f.kind, "
                "f.layer, f.confidence, f.evidence FROM findings f JOIN runs r ON r.id = f.run_id"
            ).fetchall()
        finally:
            conn.close()
        self.verdicts: dict[str, ProviderVerdict] = {v.provider: v for v in verdicts}
        self.findings: dict[str, list[tuple[str, str, str, float | None, dict[str, Any]]]] = {}
        for provider, probe, kind, layer, confidence, evidence in rows:
            self.findings.setdefault(provider, []).append(
                (probe, kind, layer, confidence, json.loads(evidence))
            )

    def verdicts_of(self, provider: str) -> dict[str, str]:
        """probe -> verdict of one host."""
        return {name: v.verdict for name, v in self.verdicts[provider].parameters.items()}


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Probed:
    db = tmp_path_factory.mktemp("parameters") / "t.duckdb"
    with contextlib.ExitStack() as stack:
        targets = []
        for name, config in SIMULATED.items():
            server = stack.enter_context(SimServer(config))
            targets.append(_target(name, server.base_url, config.dialect))
        for name, endpoint in SCRIPTED.items():
            stack.enter_context(endpoint.serving())
            targets.append(_target(name, endpoint.base_url, None))
        plan = ProbePlan(targets=targets, probes=list(PARAMETER_PROBES), max_tokens=512)
        recorder = Recorder(db)
        try:
            runs = asyncio.run(probe_targets(plan, recorder))
        finally:
            recorder.close()
    # As `traces probe` does: the probe runs are checked like any recorded run.
    analyze_recorded(db, [run.run_id for run in runs])
    return Probed(db)


def _target(provider: str, base_url: str, dialect: str | None) -> ProbeTarget:
    endpoint = EndpointConfig(base_url=base_url, api_key_env=None, api_key="test-key")
    return ProbeTarget(
        provider=provider, model="sim-reasoner-1", endpoint=endpoint, dialect=dialect
    )


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_faithful_host_honours_every_parameter(probed: Probed, dialect: str) -> None:
    provider = f"clean-{dialect}"
    assert probed.verdicts_of(provider) == dict.fromkeys(PARAMETER_OF, "honoured")
    assert provider not in probed.findings
    parameters = probed.verdicts[provider].parameters
    assert parameters["max_tokens"].detail.startswith(f"{MAX_TOKENS_CAP} tokens for a cap of")
    assert parameters["stop"].detail == "the answer ends right before 'charlie', finish_reason stop"
    assert parameters["json_schema"].detail == "a JSON object (json_schema) with keys city, country"
    assert parameters["seed"].detail == "3 identical answers to the same request"


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_host_ignoring_a_parameter_is_found_out(probed: Probed, fault: str) -> None:
    parameter, kind = FAULTS[fault]
    provider = f"ignores-{fault}"
    probes = {name for name, p in PARAMETER_OF.items() if p == parameter}
    verdicts = probed.verdicts_of(provider)
    # Only the parameter the host drops is ignored; it honours the others.
    assert {name for name, v in verdicts.items() if v != "honoured"} == probes
    for name in probes:
        verdict = probed.verdicts[provider].parameters[name]
        assert (verdict.verdict, verdict.finding) == ("ignored", kind)
        assert verdict.evidence and verdict.detail
    stored = probed.findings[provider]
    # One finding per ignoring probe run, blamed on the host, stored with its evidence.
    assert sorted((probe, k, layer) for probe, k, layer, _, _ in stored) == sorted(
        (name, kind, "provider") for name in probes
    )


def test_ignored_verdicts_carry_their_evidence(probed: Probed) -> None:
    def parameter(fault: str, probe: str) -> Any:
        return probed.verdicts[f"ignores-{fault}"].parameters[probe]

    budget = parameter("max_tokens_ignored", "max_tokens")
    assert budget.evidence["max_tokens"] == MAX_TOKENS_CAP
    assert budget.evidence["completion_tokens"] > MAX_TOKENS_CAP
    assert budget.confidence == 1.0  # usage says so directly
    stop = parameter("stop_ignored", "stop")
    assert stop.evidence["found"] == "charlie" and "charlie" in stop.evidence["excerpt"]
    assert parameter("n_ignored", "n").evidence == {"requested": 2, "received": 1}
    assert parameter("logprobs_ignored", "logprobs").evidence["top_logprobs"] == 2
    assert (
        parameter("response_format_ignored", "json_schema")
        .evidence["problem"]
        .startswith("not JSON")
    )
    seed = parameter("seed_ignored", "seed")
    assert seed.evidence["steps"] == [0, 1, 2] and seed.evidence["distinct_answers"] >= 2
    # The answers part at once: the sampler ignored the request, not batched numerics.
    assert seed.confidence is not None and seed.confidence >= 0.9


def test_a_host_refusing_the_parameters_is_fair(probed: Probed) -> None:
    assert probed.verdicts_of("refuses") == dict.fromkeys(PARAMETER_OF, "refused")
    for name, verdict in probed.verdicts["refuses"].parameters.items():
        assert verdict.detail.startswith("HTTP 400: Unsupported parameter"), name
        assert "does not name" not in verdict.detail, name
        assert verdict.finding is None and verdict.confidence is None
    # A refusal is an answer: no finding at all, not even a client-layer 400.
    assert "refuses" not in probed.findings
    vague = probed.verdicts["refuses-vaguely"].parameters
    assert {v.verdict for v in vague.values()} == {"refused"}
    assert vague["n"].detail == "HTTP 400: Bad Request (the error does not name n)"
    assert "refuses-vaguely" not in probed.findings


def test_a_failing_host_leaves_the_parameters_unknown(probed: Probed) -> None:
    broken = probed.verdicts["broken"].parameters
    assert {v.verdict for v in broken.values()} == {"unknown"}
    assert broken["stop"].detail.startswith("HTTP 500")
    # The host's own failure is still reported, on the host.
    assert {(kind, layer) for _, kind, layer, _, _ in probed.findings["broken"]} == {
        ("http_server_error", "provider")
    }


def test_answers_that_cannot_tell_stay_unknown(probed: Probed) -> None:
    parrot = probed.verdicts["parrot"].parameters
    assert probed.verdicts_of("parrot") == {
        "max_tokens": "unknown",  # no usage and it ended on its own
        "stop": "unknown",  # it never wrote the line that holds the stop sequence
        "n": "ignored",
        "logprobs": "ignored",
        "json_object": "ignored",
        "json_schema": "ignored",
        "seed": "honoured",  # the same line three times
    }
    assert parrot["max_tokens"].detail == (
        "no usage and finish_reason stop: the cap cannot be checked"
    )
    assert parrot["stop"].detail == "the answer never got as far as 'charlie'"


def test_json_output_lists_each_verdict(probed: Probed) -> None:
    row = probed.verdicts["ignores-seed_ignored"].as_row()
    seed = row["parameters"]["seed"]
    assert seed["verdict"] == "ignored" and seed["finding"] == "nondeterministic_output"
    assert 0 < seed["confidence"] <= 1
    json.dumps(row)  # plain data all the way down


ALL_PARAMETERS: dict[str, Any] = {
    "n": 2,
    "logprobs": True,
    "top_logprobs": 1,
    "stop": ["never-generated-zulu"],
    "response_format": {"type": "json_object"},
}
"""Every sampling parameter at once, on a recorded agent run (max_tokens set beside them)."""


@pytest.mark.parametrize("stream", [False, True])
def test_agent_runs_setting_every_parameter_on_a_faithful_host_are_silent(
    tmp_path: Path, stream: bool
) -> None:
    """The checks read every recorded step that sets a parameter, not only probes: on each
    dialect, streamed or not, a host that honours them all gives no finding at all."""
    from analyzer.checks.persist import analyze_runs
    from traces.replay import ReplayPolicy
    from traces.store.database import open_for_writing

    from recording import Recording, record_many

    recordings = {
        name: Recording(
            sim=SimConfig(dialect=name),
            stream=stream,
            dialect=name,
            settings={
                "replay": ReplayPolicy.for_dialect(dialect),
                "max_tokens": 4096,
                "extra_body": {**dialect.extra_body, **ALL_PARAMETERS},
            },
        )
        for name, dialect in DIALECTS.items()
    }
    db = tmp_path / "t.duckdb"
    summaries = record_many(db, recordings)
    conn = open_for_writing(db)
    try:
        found = analyze_runs(conn, [s.id for s in summaries.values()])
        kept = conn.execute("SELECT count(*) FROM steps WHERE anomalies IS NOT NULL").fetchone()
    finally:
        conn.close()
    assert all(s.outcome.steps >= 5 for s in summaries.values()), summaries
    assert not any(found.values()), {k: v for k, v in found.items() if v}
    assert kept == (0,)

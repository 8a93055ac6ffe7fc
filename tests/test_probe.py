"""Probes over real HTTP against the simulator: the report tells a host that keeps reasoning
from one that drops it and one that rewrites ids, and stores every probe as a run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import openai
import pytest

from analyzer.probes import ProviderVerdict, probe_report
from traces.client import EndpointConfig
from traces.probes.catalogue import (
    PROBE_SET_VERSION,
    PROBES,
    PROBES_BY_NAME,
    TEMPLATE_PROBES,
    Wire,
)
from traces.probes.raw import load_renderer, raw_wire
from traces.probes.runner import ProbePlan, ProbeTarget, probe_targets
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.sim.tokenizer import count_tokens
from traces.store.recorder import Recorder
from traces.wire_forms import ReplayLocation

TEMPLATE = Path(__file__).parent / "fixtures" / "probes" / "sim-kimi.jinja"

TARGETS = {
    "clean": SimConfig(dialect="moonshot"),
    "clean-twin": SimConfig(dialect="moonshot"),
    "dropped": SimConfig(dialect="moonshot", faults={"reasoning_dropped_from_history": 1.0}),
    "rewritten": SimConfig(dialect="moonshot", faults={"rewritten_ids": 1.0}),
    "deepseek": SimConfig(dialect="deepseek"),
}


class Probed:
    """One probing of every target in `TARGETS`, and its report."""

    def __init__(self, db: Path) -> None:
        self.db = db
        conn = duckdb.connect(str(db), read_only=True)
        try:
            verdicts, self.apart = probe_report(conn)
        finally:
            conn.close()
        self.verdicts: dict[str, ProviderVerdict] = {v.provider: v for v in verdicts}

    def apart_of(self, provider: str) -> dict[str, str]:
        """feature -> value of the rows that set `provider` apart."""
        return {r["feature"]: r["value"] for r in self.apart if r["provider"] == provider}


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Probed:
    db = tmp_path_factory.mktemp("probe") / "t.duckdb"
    with contextlib.ExitStack() as stack:
        targets = [
            ProbeTarget(
                provider=name,
                model="sim-reasoner-1",
                endpoint=EndpointConfig(
                    base_url=stack.enter_context(SimServer(config)).base_url,
                    api_key_env=None,
                    api_key="test-key",
                ),
                dialect=config.dialect,
            )
            for name, config in TARGETS.items()
        ]
        plan = ProbePlan(
            targets=targets, renderer=load_renderer(TEMPLATE), template_origin=str(TEMPLATE)
        )
        recorder = Recorder(db)
        try:
            runs = asyncio.run(probe_targets(plan, recorder))
        finally:
            recorder.close()
    # Parameter probes have no raw variant: a parameter is the chat endpoint's to honour.
    assert len(runs) == len(TARGETS) * (len(PROBES) + len(TEMPLATE_PROBES))
    return Probed(db)


def test_report_tells_kept_reasoning_from_dropped(probed: Probed) -> None:
    clean, dropped = probed.verdicts["clean"], probed.verdicts["dropped"]
    assert clean.reasoning_counted == "yes"
    assert isinstance(clean.vector["reasoning"], int) and clean.vector["reasoning"] > 0
    assert clean.secret_recalled == "yes (raw: yes)"
    # Dropped: the reasoning sent back costs nothing and the model cannot use it, while the
    # same conversation rendered client-side still reaches it: the host is to blame.
    assert dropped.reasoning_counted == "no"
    assert dropped.vector["reasoning"] == 0
    assert dropped.secret_recalled == "no (raw: yes)"


def test_report_tells_rewritten_ids(probed: Probed) -> None:
    clean, rewritten = probed.verdicts["clean"], probed.verdicts["rewritten"]
    assert (clean.ids_emitted, clean.ids_rewritten) == ("kimi", "no")
    assert rewritten.ids_emitted == "openai"
    assert rewritten.ids_rewritten == "yes (openai where kimi is expected)"
    # Rewriting happens in the reply: the template, hence the fingerprint, is untouched.
    assert rewritten.reasoning_counted == "yes"


def test_fingerprints_equal_for_identical_templates_and_differ_otherwise(
    probed: Probed,
) -> None:
    v = probed.verdicts
    assert v["clean"].fingerprint == v["clean-twin"].fingerprint == v["rewritten"].fingerprint
    assert v["clean"].vector == v["clean-twin"].vector
    assert v["dropped"].fingerprint != v["clean"].fingerprint
    assert v["deepseek"].fingerprint != v["clean"].fingerprint
    # Kimi's template renders call ids, DeepSeek's does not.
    assert v["clean"].vector["ids"] != 0
    assert v["deepseek"].vector["ids"] == 0


def test_sets_apart_names_the_odd_provider_and_its_probe(probed: Probed) -> None:
    assert probed.apart_of("dropped") == {
        "Δ reasoning": "0",
        "reasoning counted": "no",
        "secret recalled": "no (raw: yes)",
        "raw vs chat": probed.verdicts["dropped"].raw,
    }
    assert probed.apart_of("rewritten") == {"ids emitted": "openai"}
    assert probed.apart_of("clean") == {}
    assert probed.apart_of("clean-twin") == {}
    deepseek = probed.apart_of("deepseek")
    assert deepseek["reasoning counted"] == "required"
    assert deepseek["outcome history_no_reasoning"] == "HTTP 400"


def test_rejected_inputs_are_listed_with_their_error_line(probed: Probed) -> None:
    deepseek = probed.verdicts["deepseek"]
    assert deepseek.reasoning_counted == "required"
    # Only the chat endpoint checks history; the raw route takes any prompt.
    assert deepseek.rejects == [
        "history_no_reasoning: HTTP 400: Missing `reasoning_content` field in the assistant "
        "message at message index 2. For more information, please refer to "
        "https://api-docs.deepseek.com/guides/thinking_mode#tool-calls"
    ]
    assert probed.verdicts["clean"].rejects == []


def test_raw_completions_match_chat_when_the_template_matches(probed: Probed) -> None:
    clean, dropped = probed.verdicts["clean"], probed.verdicts["dropped"]
    assert clean.raw_deltas == {probe.name: 0 for probe in TEMPLATE_PROBES}
    assert clean.raw == f"matches on {len(TEMPLATE_PROBES)} probes"
    # The host that strips reasoning counts fewer tokens than the official rendering.
    assert dropped.raw_deltas["history_reasoning"] == -reasoning_delta(clean)
    assert dropped.raw_deltas["history_no_reasoning"] == 0
    assert dropped.raw.startswith("chat differs: history_reasoning -")


def reasoning_delta(verdict: ProviderVerdict) -> int:
    """The prompt tokens the history reasoning adds for a host that keeps it."""
    value = verdict.vector["reasoning"]
    assert isinstance(value, int)
    return value


def test_probe_runs_store_one_step_per_request(probed: Probed) -> None:
    conn = duckdb.connect(str(probed.db), read_only=True)
    try:
        rows = conn.execute(
            "SELECT id, task, origin, settings, status, steps FROM runs WHERE provider = 'clean'"
        ).fetchall()
        assert {row[2] for row in rows} == {"probe"}
        assert {row[1] for row in rows} == {f"probe:{p.name}" for p in PROBES} | {
            f"probe:{p.name}:raw" for p in TEMPLATE_PROBES
        }
        # One step per request: the seed probe sends the same request three times.
        assert {(row[1], row[5]) for row in rows if row[5] != 1} == {("probe:seed", 3)}
        assert {row[4] for row in rows} == {"completed"}
        renderer = load_renderer(TEMPLATE)
        for run_id, task, _, settings_json, _, steps in rows:
            settings: dict[str, Any] = json.loads(settings_json)
            probe = PROBES_BY_NAME[settings["probe"]]
            assert settings["probe_set_version"] == PROBE_SET_VERSION
            assert settings["dialect"] == "moonshot"
            assert settings["ids_expected"] == "kimi"
            wire = Wire(**settings["wire"])
            request = probe.request(wire)
            if settings["variant"] == "chat":
                assert task == f"probe:{probe.name}"
                assert settings["parameters"] == probe.params
                for idx in range(steps):
                    stored = [
                        json.loads(body)
                        for (body,) in conn.execute(
                            "SELECT body FROM request_messages(?, ?)", [run_id, idx]
                        ).fetchall()
                    ]
                    assert stored == request.messages
                    row = conn.execute(
                        "SELECT request_params FROM steps WHERE run_id = ? AND idx = ?",
                        [run_id, idx],
                    ).fetchone()
                    assert row is not None
                    sent = json.loads(row[0])
                    # The probe's own parameters go out as it sets them.
                    assert {k: sent[k] for k in probe.params or {}} == (probe.params or {})
            else:
                assert settings["template"] == str(TEMPLATE)
                assert wire == raw_wire(Wire(ids="kimi"))
                row = conn.execute(
                    "SELECT request_params FROM steps WHERE run_id = ?", [run_id]
                ).fetchone()
                assert row is not None
                prompt = json.loads(row[0])["prompt"]
                assert prompt == renderer(request.messages, request.tools)
    finally:
        conn.close()


def test_paired_probes_differ_in_exactly_one_thing() -> None:
    wire = Wire()

    def messages(name: str) -> list[dict[str, Any]]:
        return PROBES_BY_NAME[name].request(wire).messages

    base = messages("history_reasoning")
    assert PROBES_BY_NAME["tools"].request(wire).messages == messages("plain")
    assert PROBES_BY_NAME["tools"].request(wire).tools
    assert PROBES_BY_NAME["plain"].request(wire).tools is None

    no_reasoning = [dict(m) for m in base]
    del no_reasoning[2]["reasoning_content"]
    assert messages("history_no_reasoning") == no_reasoning

    kimi = json.loads(json.dumps(messages("history_kimi_ids")))
    kimi[2]["tool_calls"][0]["id"] = base[2]["tool_calls"][0]["id"]
    kimi[3]["tool_call_id"] = base[3]["tool_call_id"]
    assert kimi == base

    objects = json.loads(json.dumps(messages("history_object_args")))
    arguments = objects[2]["tool_calls"][0]["function"]["arguments"]
    assert isinstance(arguments, dict)
    objects[2]["tool_calls"][0]["function"]["arguments"] = json.dumps(arguments)
    assert objects == base


def test_planted_secret_lives_only_in_reasoning() -> None:
    probe = PROBES_BY_NAME["planted_secret"]
    assert probe.expect_answer is not None
    places: list[ReplayLocation] = [
        "reasoning_content",
        "reasoning",
        "reasoning_details",
        "think_tag",
    ]
    for place in places:
        messages = probe.request(Wire(reasoning=place)).messages
        holding = [m for m in messages if probe.expect_answer in json.dumps(m)]
        assert len(holding) == 1 and holding[0]["role"] == "assistant"
        call = holding[0]["tool_calls"][0]
        assert probe.expect_answer not in json.dumps(call)
        visible = holding[0]["content"]
        assert place == "think_tag" or probe.expect_answer not in visible


def test_sim_serves_raw_completions_counted_like_its_chat(sim: SimServer) -> None:
    client = openai.OpenAI(base_url=sim.base_url, api_key="test-key", max_retries=0)
    prompt = "<|im_start|>user\nWhat is the weather in Lyon?<|im_end|>\n<|im_start|>assistant\n"
    done = client.completions.create(model="sim-reasoner-1", prompt=prompt)
    assert done.object == "text_completion"
    assert done.usage is not None and done.usage.prompt_tokens == count_tokens(prompt)
    # Reasoning inline in the family's format; the stop token is not part of the text.
    text = done.choices[0].text
    assert text.startswith("<think>") and not text.endswith("<|im_end|>")
    assert done.choices[0].finish_reason == "stop"
    # The planted secret is answered from the prompt text, as the chat endpoint does from its
    # own rendering: present only when the rendering kept the reasoning.
    sealed = "seal_vault … <think>the vault code is 4821</think> … sealed"
    kept = client.completions.create(model="sim-reasoner-1", prompt=sealed)
    assert "The code I picked is 4821." in kept.choices[0].text
    lost = client.completions.create(model="sim-reasoner-1", prompt="seal_vault … sealed")
    assert "no longer know the code" in lost.choices[0].text
    with pytest.raises(openai.BadRequestError, match="does not stream"):
        client.completions.create(model="sim-reasoner-1", prompt=prompt, stream=True)
    with pytest.raises(openai.BadRequestError, match="prompt"):
        client.completions.create(model="sim-reasoner-1", prompt=[1, 2, 3])
    request = urllib.request.Request(f"{sim.base_url}/completions", method="GET")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_raw_probe_runs_get_no_chat_findings(probed: Probed) -> None:
    """A raw `/completions` answer is plain text: checks that read chat messages must not
    blame the host for reasoning in the text or usage without reasoning tokens."""
    from analyzer.checks.persist import analyze_runs
    from traces.store.database import open_for_writing

    conn = open_for_writing(probed.db)
    try:
        ids = [
            r[0] for r in conn.execute("SELECT id FROM runs WHERE provider = 'clean'").fetchall()
        ]
        findings = analyze_runs(conn, ids)
        raw_ids = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM runs WHERE provider = 'clean' AND task LIKE '%:raw'"
            ).fetchall()
        }
    finally:
        conn.close()
    assert raw_ids
    assert {kind for rid in raw_ids for kind in (f.kind for f in findings[rid])} == set()
    # The chat probes of a clean host are clean too.
    assert all(not findings[rid] for rid in ids)

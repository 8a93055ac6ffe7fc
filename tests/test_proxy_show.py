"""What `traces runs --origin proxy` and `traces show` say of proxied conversations: the
client (named from its User-Agent) as the task, the upstream as the provider, the first
user message as the label; `show` says how the run was routed and grouped."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import openai
import pytest
from proxy_setup import proxy_to, tapped_sim

from traces.proxy.clients import client_name
from traces.sim.config import SimConfig

from conftest import run_cli

QWEN_AGENT = "QwenCode/0.2.1 (linux; x64)"


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        ("OpenAI/Python 1.99.1", "openai-python"),
        ("OpenAI/JS 5.12.0", "openai-js"),
        (QWEN_AGENT, "qwencode"),
        ("codex_cli_rs/0.40.0 (Ubuntu 24.4.0; x86_64) xterm", "codex_cli_rs"),
        ("opencode/0.15.0 ai-sdk/provider-utils/3.0.9", "opencode"),
        ("python-httpx/0.28.1", "python-httpx"),
        ("", None),
        ("(compatible)", None),
        (None, None),
    ],
)
def test_client_names(agent: str | None, name: str | None) -> None:
    """The first product of the User-Agent, lower-case; an SDK's own with its language."""
    assert client_name(agent) == name


def test_runs_and_show_say_what_happened(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """Two clients through the proxy: each run's task is its client's name, its provider
    the upstream, its label the first user message, in `runs` (table and JSON) and `show`."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, _),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-show-0123456789", max_retries=0)
        client.chat.completions.create(
            model="sim-model",
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Fix the failing test in src/app.py, please."},
            ],
        )
        sent = httpx2.post(
            f"{proxy.base_url}/chat/completions",
            headers={"User-Agent": QWEN_AGENT},
            json={"model": "sim-model", "messages": [{"role": "user", "content": "List files."}]},
        )
        assert sent.status_code == 200
    upstream = sim.base_url.removeprefix("http://").removesuffix("/v1")
    listed = run_cli("runs", "--origin", "proxy", "--db", str(db_path), "-f", "json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["task"], r["provider"], r["conversation"]) for r in runs] == [
        ("qwencode", upstream, "List files."),
        ("openai-python", upstream, "Fix the failing test in src/app.py, please."),
    ]
    table = run_cli("runs", "--origin", "proxy", "--db", str(db_path), "--wide")
    assert table.returncode == 0, table.stderr
    assert "conversation" in table.stdout and "qwencode" in table.stdout
    shown = run_cli("show", runs[0]["id"], "--db", str(db_path))
    assert shown.returncode == 0, shown.stderr
    assert f"proxied: client qwencode ({QWEN_AGENT}) → upstream {upstream}" in shown.stdout
    assert "/v1/chat/completions, routed by default, grouped by messages" in shown.stdout
    assert "conversation: List files." in shown.stdout

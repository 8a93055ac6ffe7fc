"""Model families: resolved once from the model id, on every host.

The family (template, id style) comes from the weights, the dialect (reasoning fields,
argument form) from the host: Kimi served by vLLM gets Kimi's ids back, whatever ids vLLM
hands out. Checked on the table itself, on the replay policy, and end to end over HTTP with
the simulator emulating vLLM serving Kimi.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from traces.dialects import DIALECTS, Dialect
from traces.families import (
    FAMILIES,
    TemplateFamily,
    expected_id_style,
    family_named,
    model_name,
    resolve_family,
)
from traces.profiles import load_profiles
from traces.replay import ReplayPolicy
from traces.sample_files import providers_file
from traces.sim.templates import TEMPLATES

from conftest import TASKS, run_cli

KIMI = "moonshotai/Kimi-K2-Thinking"


@pytest.mark.parametrize(
    ("model", "family"),
    [
        # Hugging Face ids, as vLLM and SGLang serve them.
        (KIMI, "kimi"),
        ("moonshotai/Kimi-K2-Instruct-0905", "kimi"),
        ("deepseek-ai/DeepSeek-V3.1", "deepseek"),
        ("zai-org/GLM-4.6", "glm"),
        ("MiniMaxAI/MiniMax-M2", "minimax"),
        ("Qwen/Qwen3-8B", "qwen"),
        ("openai/gpt-oss-120b", "gpt-oss"),
        # OpenRouter and other routers: lower case, `vendor/name`.
        ("moonshotai/kimi-k2-thinking", "kimi"),
        ("minimax/minimax-m2", "minimax"),
        ("z-ai/glm-4.6", "glm"),
        ("deepseek/deepseek-v3.2-exp", "deepseek"),
        # First-party APIs and vendor paths.
        ("kimi-k2-0905-preview", "kimi"),
        ("deepseek-reasoner", "deepseek"),
        ("glm-4.6", "glm"),
        ("accounts/fireworks/models/kimi-k2-thinking", "kimi"),
        ("accounts/fireworks/models/glm-4p6", "glm"),
        # Local paths, as `vllm serve /path` and llama.cpp name the model.
        ("/srv/models/Kimi-K2-Thinking/", "kimi"),
        ("/models/kimi-k2-thinking-Q4_K_M.gguf", "kimi"),
        ("C:\\models\\Qwen3-30B-A3B", "qwen"),
        # A distill speaks its teacher's template.
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek"),
    ],
)
def test_model_ids_name_their_family(model: str, family: str) -> None:
    found = family_named(model)
    assert found is not None and found.name == family, (model, found)


@pytest.mark.parametrize(
    "model",
    [
        "sim-reasoner-1",  # the simulator's own model
        "local",  # llama.cpp's default alias
        "",
        "moonshotai/Kimi-K3",  # K3 writes no ids of its own: nothing of K2 applies
        "/home/qwen/models/llama-3-8b",  # a directory name never decides
        "moonshotai/some-finetune",  # nor does the organisation
    ],
)
def test_ids_naming_no_family(model: str) -> None:
    assert family_named(model) is None


def test_model_name_is_the_last_segment() -> None:
    assert model_name("moonshotai/Kimi-K2") == "Kimi-K2"
    assert model_name("/srv/models/Kimi-K2/") == "Kimi-K2"
    assert model_name("Kimi-K2") == "Kimi-K2"


def test_resolution_falls_back_to_the_host_family() -> None:
    assert resolve_family("sim-reasoner-1", "kimi").name == "kimi"
    assert resolve_family(None, "qwen").name == "qwen"
    # The model id wins over the host: Kimi on vLLM is Kimi.
    assert resolve_family(KIMI, DIALECTS["vllm"].family).name == "kimi"


def test_family_set_is_declared_once_and_fully_templated() -> None:
    assert set(get_args(TemplateFamily)) == set(FAMILIES)
    assert set(TEMPLATES) == set(FAMILIES)  # the simulator renders every family
    assert {d.family for d in DIALECTS.values()} <= set(FAMILIES)


def test_every_shipped_profile_model_has_a_family() -> None:
    for profile in load_profiles(providers_file()).values():
        fallback = DIALECTS[profile.dialect].family
        for model in profile.models:
            family = resolve_family(model, fallback)
            # Every model a profile names is one of the families it is shipped for.
            assert family_named(model) is not None or profile.name == "llamacpp", model
            assert family.name in FAMILIES


@pytest.mark.parametrize("host", sorted(DIALECTS))
def test_kimi_ids_go_back_in_kimi_form_on_every_host(host: str) -> None:
    dialect = DIALECTS[host]
    policy = ReplayPolicy.for_dialect(dialect, KIMI)
    assert policy.ids == "kimi"
    # Where reasoning and arguments go stays the host's business.
    assert policy.arguments == dialect.arguments_back
    assert policy.reasoning == ReplayPolicy.for_dialect(dialect).reasoning


def test_other_families_keep_the_ids_they_got() -> None:
    assert ReplayPolicy.for_dialect(DIALECTS["vllm"], "Qwen/Qwen3-8B").ids == "as_received"
    assert ReplayPolicy.for_dialect(DIALECTS["moonshot"]).ids == "kimi"  # its own family
    # A custom endpoint of unknown dialect: reasoning where it came, ids by family.
    assert ReplayPolicy.for_dialect(None, KIMI) == ReplayPolicy(ids="kimi")
    assert ReplayPolicy.for_dialect(None, "local") == ReplayPolicy()


def test_a_host_that_maps_ids_itself_overrides_the_family() -> None:
    host = DIALECTS["vllm"].model_copy(update={"ids_back": "as_received"})
    assert isinstance(host, Dialect)
    assert ReplayPolicy.for_dialect(host, KIMI).ids == "as_received"


def test_expected_id_style() -> None:
    assert expected_id_style(KIMI, None) == "kimi"  # the family alone decides
    assert expected_id_style(KIMI, "qwen") == "kimi"
    assert expected_id_style("Qwen/Qwen3-8B", "qwen") == "openai"  # the host mints
    assert expected_id_style("sim-reasoner-1", "kimi") == "kimi"  # the host's own family
    assert expected_id_style("Qwen/Qwen3-8B", None) is None  # neither known


def _record_vllm_kimi(db: Path, *faults: str) -> dict[str, object]:
    fault_args = [arg for fault in faults for arg in ("--fault", fault)]
    done = run_cli(
        "record",
        "--task",
        str(TASKS / "chain_short.toml"),
        "--dialect",
        "vllm",
        "--model",
        KIMI,
        *fault_args,
        "--db",
        str(db),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert isinstance(row, dict)
    return row


def _sql(db: Path, query: str) -> list[dict[str, object]]:
    done = run_cli("sql", query, "--db", str(db), "-f", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    return rows


@pytest.mark.slow
def test_vllm_serving_kimi_gets_kimi_ids_back_over_http(tmp_path: Path) -> None:
    """vLLM hands out `call_…` ids (the rewritten_ids fault); Kimi's template renders ids, so
    the history must carry `functions.NAME:IDX` and the tool results answer those."""
    db = tmp_path / "t.duckdb"
    row = _record_vllm_kimi(db, "rewritten_ids=1")
    calls = _sql(db, "select step_idx, id, id_format from tool_calls order by step_idx")
    assert calls and all(c["id_format"] == "openai" for c in calls)  # recorded as received
    last = _sql(db, "select max(idx) as idx from steps")[0]["idx"]
    assert isinstance(last, int)
    bodies = _sql(db, f"select body from request_messages('{row['id']}', {last})")
    messages = [json.loads(str(b["body"])) for b in bodies]
    sent = [m["tool_calls"][0]["id"] for m in messages if m["role"] == "assistant"]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    expected = [f"functions.open_box:{n}" for n in range(len(sent))]
    assert sent and sent == expected and answered == expected
    # The check knows the family too: the host's `call_…` ids are the wrong form for Kimi.
    kinds = {f["kind"] for f in _sql(db, "select kind from findings")}
    assert "tool_call_id_format" in kinds


@pytest.mark.slow
def test_simulated_vllm_serving_kimi_speaks_kimi(tmp_path: Path) -> None:
    """Without faults the simulated vLLM passes Kimi's own ids through, in `reasoning`."""
    db = tmp_path / "t.duckdb"
    _record_vllm_kimi(db)
    calls = _sql(db, "select id, id_format from tool_calls order by step_idx")
    assert calls and all(c["id_format"] == "kimi" for c in calls)
    sources = _sql(db, "select distinct reasoning_source from steps")
    assert sources == [{"reasoning_source": "reasoning"}]  # the host's field, not Moonshot's
    assert _sql(db, "select kind from findings where kind like 'tool_call_id%'") == []

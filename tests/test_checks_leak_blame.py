"""Who leaked call markup is blamed on depends on whose syntax it is: a family's own special
tokens are its host's to parse, `<tool_call>` tags are the host's for a family that calls that
way (Qwen, GLM, Hermes, generic ChatML) and the model's for a family that calls otherwise
(Kimi, DeepSeek, MiniMax, gpt-oss, Llama, Mistral). Every finding states its confidence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analyzer.checks.catalogue import KINDS
from analyzer.checks.leaks import (
    FOREIGN_TAG_CONFIDENCE,
    OWN_TAG_CONFIDENCE,
    SPECIAL_CONFIDENCE,
    UNKNOWN_FAMILY_CONFIDENCE,
    leaked_special_tokens,
)
from analyzer.checks.records import Finding, Run
from analyzer.checks.registry import run_checks

from check_builders import answer_step, clean_run, kinds

TAGGED = '<tool_call>\n{"name": "open_box", "arguments": {"box_id": "box-4"}}\n</tool_call>'
"""A call in Hermes' format, as Qwen's template asks for it."""

OWN_TAG = [
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", None, "qwen"),
    ("zai-org/GLM-4.5", None, "glm"),
    ("NousResearch/Hermes-3-Llama-3.1-8B", None, "chatml"),  # Hermes, not Llama's JSON
    ("sim-reasoner-1", "openai", "chatml"),  # a model of no family: the host's own
    ("my-finetune", "vllm", "qwen"),
]
"""(model id, dialect, family) of runs whose own calls are `<tool_call>` blocks."""

FOREIGN_TAG = [
    ("moonshotai/Kimi-K2-Instruct-0905", None, "kimi"),
    ("deepseek-ai/DeepSeek-V3.1", None, "deepseek"),
    ("MiniMaxAI/MiniMax-M2", "openai", "minimax"),  # the id beats the dialect's fallback
    ("openai/gpt-oss-120b", None, "gpt-oss"),
    ("meta-llama/Llama-3.3-70B-Instruct", "reasoning-field", "llama"),
    ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", None, "mistral"),
    ("model", "moonshot", "kimi"),  # no family in the id: the dialect's
]
"""(model id, dialect, family) of runs whose own calls are written otherwise."""

OWN_SPECIAL = [
    (
        "moonshotai/Kimi-K2-Thinking",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.open_box:0"
        '<|tool_call_argument_begin|>{"box_id": "box-4"}<|tool_call_end|>'
        "<|tool_calls_section_end|>",
    ),
    (
        "deepseek-ai/DeepSeek-R1",
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>open_box<｜tool▁sep｜>{"box_id": "box-4"}'
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    ),
    (
        "MiniMaxAI/MiniMax-M2",
        '<minimax:tool_call>\n<invoke name="open_box">\n<parameter name="box_id">box-4'
        "</parameter>\n</invoke>\n</minimax:tool_call>",
    ),
    (
        "zai-org/GLM-4.6",
        "<tool_call>open_box\n<arg_key>box_id</arg_key>\n<arg_value>box-4</arg_value>\n"
        "</tool_call>",
    ),
    ("Qwen/Qwen3-8B", f"{TAGGED}<|im_end|>"),
]
"""(model id, text) of each family's own call markup, special tokens included."""


def _run(model: str, dialect: str | None, content: str | None, **step: object) -> Run:
    last = answer_step(4, content=content, **step)
    run = clean_run(model=model, dialect=dialect)
    return replace(run, steps=(*run.steps[:-1], last))


def _leaks(run: Run) -> list[Finding]:
    return list(leaked_special_tokens(run.steps[-1], run))


@pytest.mark.parametrize(("model", "dialect", "family"), OWN_TAG)
def test_tags_of_a_family_that_calls_so_are_the_hosts(
    model: str, dialect: str | None, family: str
) -> None:
    [finding] = _leaks(_run(model, dialect, TAGGED))
    assert (finding.layer, finding.severity) == ("provider", "error")
    assert finding.confidence == OWN_TAG_CONFIDENCE
    assert finding.evidence["run_family"] == family
    assert finding.evidence["syntax"] == "own_tag"
    assert finding.evidence["families"] == ["hermes"]


@pytest.mark.parametrize(("model", "dialect", "family"), FOREIGN_TAG)
def test_tags_of_a_family_that_calls_otherwise_are_the_models(
    model: str, dialect: str | None, family: str
) -> None:
    run = _run(model, dialect, f"Opening it.\n{TAGGED}")
    [finding] = _leaks(run)
    assert (finding.layer, finding.severity) == ("model", "error")
    assert finding.confidence == FOREIGN_TAG_CONFIDENCE
    assert (finding.evidence["run_family"], finding.evidence["syntax"]) == (family, "foreign_tag")
    assert finding.evidence["tokens"] == ["</tool_call>", "<tool_call>"]
    # One failure, one finding: the call as text is left to the leak.
    assert "tool_call_as_text" not in kinds(run_checks(run))


def test_tags_in_reasoning_are_blamed_the_same_way_as_a_warning() -> None:
    kimi = _run("moonshotai/Kimi-K2-Thinking", None, "Done.", reasoning=f"I will call {TAGGED}")
    qwen = _run("Qwen/Qwen3-8B", None, "Done.", reasoning=f"I will call {TAGGED}")
    [foreign], [own] = _leaks(kimi), _leaks(qwen)
    assert (foreign.layer, foreign.severity, foreign.evidence["field"]) == (
        "model",
        "warning",
        "reasoning",
    )
    assert (own.layer, own.severity) == ("provider", "warning")


def test_tags_from_a_model_of_no_known_family_stay_the_hosts_with_less_confidence() -> None:
    [finding] = _leaks(_run("acme-large-2", None, TAGGED))
    assert finding.layer == "provider"
    assert finding.confidence == UNKNOWN_FAMILY_CONFIDENCE < OWN_TAG_CONFIDENCE
    assert (finding.evidence["run_family"], finding.evidence["syntax"]) == (None, "unknown_tag")


@pytest.mark.parametrize(("model", "text"), OWN_SPECIAL, ids=[m for m, _ in OWN_SPECIAL])
def test_a_familys_special_tokens_are_its_hosts(model: str, text: str) -> None:
    [finding] = _leaks(_run(model, None, text))
    assert finding.layer == "provider" and finding.confidence == SPECIAL_CONFIDENCE
    assert finding.evidence["syntax"] == "special"


def test_special_tokens_beside_foreign_tags_are_the_hosts() -> None:
    """Qwen's `<|im_end|>` beside the tags from a run labelled Kimi: no Kimi model writes a
    Qwen special token, so the host serves another model than it says, or its parser missed."""
    [finding] = _leaks(_run("moonshotai/Kimi-K2-Instruct", None, f"{TAGGED}<|im_end|>"))
    assert finding.layer == "provider" and finding.evidence["syntax"] == "special"


@pytest.mark.parametrize(
    ("model", "dialect"),
    [(m, d) for m, d, _ in OWN_TAG + FOREIGN_TAG] + [("acme-large-2", None)],
)
@pytest.mark.parametrize(
    "content",
    [
        "The treasure is rusty-falcon-886.",
        "I would use a tool_call here, but the answer is known: rusty-falcon-886.",
        "Tags look like <tool> or <call>; the answer is rusty-falcon-886.",
    ],
)
def test_text_without_markup_is_no_leak_for_any_family(
    model: str, dialect: str | None, content: str
) -> None:
    assert _leaks(_run(model, dialect, content)) == []


def test_every_leak_states_its_confidence() -> None:
    assert KINDS["leaked_special_tokens"].inferred
    runs = [_run(m, d, TAGGED) for m, d, _ in OWN_TAG + FOREIGN_TAG]
    runs += [_run(m, None, text) for m, text in OWN_SPECIAL]
    for run in runs:
        for finding in _leaks(run):
            assert finding.confidence is not None and 0 < finding.confidence <= 1, finding

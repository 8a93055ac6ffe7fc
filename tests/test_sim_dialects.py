"""The simulator emulating each host: reasoning placement, id styles, family chat templates,
what each dialect reads back, and DeepSeek's 400 — over real HTTP with the `openai` client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
from reference_conversation import TOOLS, conversation

from traces.dialects import DIALECTS, Dialect
from traces.families import FAMILIES
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.sim.templates import TEMPLATES, template_for
from traces.sim.tokenizer import count_tokens, count_tokens_cached
from traces.wire_forms import ReasoningLocation

from conftest import EXTERNAL, python_calls, reference_missing

CHAIN_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "open_box",
            "description": "Open a box by id.",
            "parameters": {
                "type": "object",
                "properties": {"box_id": {"type": "string", "pattern": "^box-[0-9a-f]{6}$"}},
                "required": ["box_id"],
            },
        },
    }
]
START: list[Any] = [
    {"role": "system", "content": "You open boxes."},
    {"role": "user", "content": "Start with box-1a2b3c and report the treasure."},
]
RESULT = '{"box_id": "box-1a2b3c", "opened": 1, "remaining": 3, "next_box_id": "box-4d5e6f"}'
THOUGHT = "I considered many alternatives carefully before choosing this box"
OPENAI_ID = re.compile(r"^call_[0-9a-f]{24}$")
KIMI_ID = re.compile(r"^functions\.open_box:(\d+)$")
REASONING_FIELDS: tuple[ReasoningLocation, ...] = (
    "reasoning_content",
    "reasoning",
    "reasoning_details",
)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, SimServer]]:
    """One simulator per dialect (small chunks, so streams have many deltas)."""
    started: dict[str, SimServer] = {}
    try:
        for name in DIALECTS:
            started[name] = SimServer(SimConfig(dialect=name, chunk_chars=9)).start()
        yield started
    finally:
        # Together: each waits for its event loop's next tick (a tenth of a second) to stop.
        with ThreadPoolExecutor(max(1, len(started))) as stopping:
            list(stopping.map(SimServer.stop, started.values()))


def _client(server: SimServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def _post(server: SimServer, messages: list[Any], **extra: Any) -> dict[str, Any]:
    raw = _client(server).chat.completions.with_raw_response.create(
        model="m", messages=messages, **extra
    )
    body: dict[str, Any] = raw.http_response.json()
    return body


def _reasoning_of(message: dict[str, Any], dialect: Dialect) -> tuple[str, str]:
    """(reasoning, answer) read from a response message the way `dialect` places them."""
    content = message.get("content") or ""
    location = dialect.reasoning_out
    if location == "think_tag":
        assert content.startswith("<think>\n"), content
        head, _, rest = content.partition("\n</think>\n\n")
        return head[len("<think>\n") :], rest
    if location == "harmony":
        assert content.startswith("<|channel|>analysis<|message|>"), content
        body = content[len("<|channel|>analysis<|message|>") :]
        analysis, _, rest = body.partition("<|end|>")
        return analysis, rest.removeprefix("<|start|>assistant<|channel|>final<|message|>")
    if location == "reasoning_details":
        (detail,) = message["reasoning_details"]
        assert detail["type"] == "reasoning.text"
        return str(detail["text"]), content
    return str(message[location]), content


def _assert_only_dialect_fields(message: dict[str, Any], dialect: Dialect) -> None:
    allowed = {dialect.reasoning_out, *dialect.reasoning_copies}
    for field in REASONING_FIELDS:
        assert (field in message) is (field in allowed), (field, message)


@pytest.mark.parametrize("name", list(DIALECTS))
def test_each_dialect_places_reasoning_and_ids_in_its_style(
    servers: dict[str, SimServer], name: str
) -> None:
    dialect = DIALECTS[name]
    server = servers[name]
    message = _post(server, START, tools=CHAIN_TOOLS)["choices"][0]["message"]
    reasoning, answer = _reasoning_of(message, dialect)
    assert "box-1a2b3c" in reasoning and answer == ""
    _assert_only_dialect_fields(message, dialect)
    for copy in dialect.reasoning_copies:
        assert message[copy] == reasoning
    (call,) = message["tool_calls"]  # harmony hosts still return structured calls
    assert json.loads(call["function"]["arguments"]) == {"box_id": "box-1a2b3c"}
    # The simulator's own model names no family: the host serves its own.
    pattern = KIMI_ID if FAMILIES[dialect.family].id_style == "kimi" else OPENAI_ID
    assert pattern.match(call["id"]), call["id"]

    plain = _post(server, [{"role": "user", "content": "Say hello."}])
    reasoning, answer = _reasoning_of(plain["choices"][0]["message"], dialect)
    assert reasoning and "Say hello." in answer


def _stream(server: SimServer, messages: list[Any], **extra: Any) -> dict[str, Any]:
    """Reassemble a stream from the SDK's chunks, keeping every dialect field."""
    stream = _client(server).chat.completions.create(
        model="m", messages=messages, stream=True, **extra
    )
    fields: dict[str, Any] = {"content": ""}
    calls: dict[int, dict[str, str]] = {}
    for chunk in stream:
        delta = chunk.choices[0].delta
        fields["content"] += delta.content or ""
        for key, value in (delta.model_extra or {}).items():
            if isinstance(value, str):
                fields[key] = fields.get(key, "") + value
            elif isinstance(value, list):
                fields.setdefault(key, []).extend(value)
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += tc.id or ""
            if tc.function is not None:
                entry["name"] += tc.function.name or ""
                entry["arguments"] += tc.function.arguments or ""
    fields["calls"] = [calls[i] for i in sorted(calls)]
    return fields


@pytest.mark.parametrize("name", list(DIALECTS))
def test_each_dialect_streams_reasoning_where_it_says(
    servers: dict[str, SimServer], name: str
) -> None:
    dialect = DIALECTS[name]
    server = servers[name]
    whole = _post(server, START, tools=CHAIN_TOOLS)["choices"][0]["message"]
    parts = _stream(server, START, tools=CHAIN_TOOLS)
    for field in REASONING_FIELDS:
        assert (field in parts) is (field in {dialect.reasoning_out, *dialect.reasoning_copies})
    if "reasoning_details" in parts:
        assert all(d["type"] == "reasoning.text" for d in parts["reasoning_details"])
        parts["reasoning_details"] = [
            {
                "type": "reasoning.text",
                "text": "".join(d["text"] for d in parts["reasoning_details"]),
            }
        ]
    streamed = {key: value for key, value in parts.items() if key != "calls"}
    streamed["content"] = streamed["content"] or None
    assert streamed == {k: v for k, v in whole.items() if k in streamed}
    assert parts["calls"] == [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in whole["tool_calls"]
    ]


def _assistant_call(call_id: str, box: str = "box-1a2b3c") -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "open_box", "arguments": json.dumps({"box_id": box})},
    }


def test_kimi_ids_count_every_call_of_the_conversation(servers: dict[str, SimServer]) -> None:
    messages = [
        *START,
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "a",
            "tool_calls": [
                _assistant_call("functions.open_box:0"),
                _assistant_call("functions.open_box:1"),
            ],
        },
        {"role": "tool", "tool_call_id": "functions.open_box:0", "content": RESULT},
        {"role": "tool", "tool_call_id": "functions.open_box:1", "content": RESULT},
    ]
    message = _post(servers["moonshot"], messages, tools=CHAIN_TOOLS)["choices"][0]["message"]
    assert [c["id"] for c in message["tool_calls"]] == ["functions.open_box:2"]


def _with_reasoning(
    message: dict[str, Any], location: ReasoningLocation, text: str
) -> dict[str, Any]:
    """`message` carrying `text` as reasoning in `location`, as a client would send it."""
    placed = dict(message)
    content = placed.get("content") or ""
    if location == "think_tag":
        placed["content"] = f"<think>\n{text}\n</think>\n\n{content}"
    elif location == "harmony":
        placed["content"] = f"<|channel|>analysis<|message|>{text}<|end|>{content}"
    elif location == "reasoning_details":
        placed["reasoning_details"] = [{"type": "reasoning.text", "text": text}]
    else:
        placed[location] = text
    return placed


def _chain(assistant: dict[str, Any]) -> list[Any]:
    return [*START, assistant, {"role": "tool", "tool_call_id": "call_x", "content": RESULT}]


def _prompt_tokens(server: SimServer, messages: list[Any]) -> int:
    return int(_post(server, messages, tools=CHAIN_TOOLS)["usage"]["prompt_tokens"])


@pytest.mark.parametrize(
    "name", [name for name, d in DIALECTS.items() if not d.requires_reasoning_back]
)
def test_reasoning_counts_only_when_sent_back_where_the_dialect_reads(
    servers: dict[str, SimServer], name: str
) -> None:
    dialect = DIALECTS[name]
    bare = {"role": "assistant", "content": None, "tool_calls": [_assistant_call("call_x")]}
    right = _prompt_tokens(
        servers[name], _chain(_with_reasoning(bare, dialect.reasoning_back, THOUGHT))
    )
    wrong_field = next(f for f in REASONING_FIELDS if f not in dialect.reasoning_in)
    wrong = _prompt_tokens(servers[name], _chain(_with_reasoning(bare, wrong_field, THOUGHT)))
    assert wrong == _prompt_tokens(servers[name], _chain(bare))
    assert right > wrong + count_tokens(THOUGHT) - 1


def test_vllm_ignores_reasoning_content_on_input(servers: dict[str, SimServer]) -> None:
    bare = {"role": "assistant", "content": None, "tool_calls": [_assistant_call("call_x")]}
    sent_back = _prompt_tokens(servers["vllm"], _chain(_with_reasoning(bare, "reasoning", THOUGHT)))
    ignored = _prompt_tokens(
        servers["vllm"], _chain(_with_reasoning(bare, "reasoning_content", THOUGHT))
    )
    assert sent_back > ignored == _prompt_tokens(servers["vllm"], _chain(bare))


def test_deepseek_refuses_a_chain_without_its_reasoning(servers: dict[str, SimServer]) -> None:
    client = _client(servers["deepseek"])
    bare = {"role": "assistant", "content": None, "tool_calls": [_assistant_call("call_x")]}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="m", messages=_chain(bare), tools=CHAIN_TOOLS)
    assert refused.value.status_code == 400
    body = refused.value.response.json()
    assert body["error"]["message"] == (
        "Missing `reasoning_content` field in the assistant message at message index 2. For "
        "more information, please refer to "
        "https://api-docs.deepseek.com/guides/thinking_mode#tool-calls"
    )
    assert body["error"]["type"] == body["error"]["code"] == "invalid_request_error"
    # Reasoning in a field DeepSeek does not read does not count either.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m",
            messages=_chain(_with_reasoning(bare, "reasoning", THOUGHT)),
            tools=CHAIN_TOOLS,
        )
    kept = _with_reasoning(bare, "reasoning_content", THOUGHT)
    ok = client.chat.completions.create(model="m", messages=_chain(kept), tools=CHAIN_TOOLS)
    assert ok.choices[0].finish_reason == "tool_calls"
    # Turns before the last user message are not part of the current chain.
    later = [*_chain(bare), {"role": "user", "content": "Start again with box-1a2b3c."}]
    assert client.chat.completions.create(model="m", messages=later, tools=CHAIN_TOOLS).choices


def test_dialect_extra_body_is_accepted(servers: dict[str, SimServer]) -> None:
    dialect = DIALECTS["minimax-split"]
    response = _client(servers["minimax-split"]).chat.completions.create(
        model="m", messages=START, tools=CHAIN_TOOLS, extra_body=dialect.extra_body
    )
    assert (response.choices[0].message.model_extra or {})["reasoning_details"]


def test_config_rejects_unknown_dialects_and_faults() -> None:
    with pytest.raises(pydantic.ValidationError, match="known: openai, moonshot"):
        SimConfig(dialect="nowhere")
    with pytest.raises(pydantic.ValidationError, match=r"unknown fault .nope..*dropped_call"):
        SimConfig(faults={"nope": 0.5})
    with pytest.raises(pydantic.ValidationError, match=r"within \[0, 1\]"):
        SimConfig(faults={"dropped_call": 1.5})


# --- family templates -------------------------------------------------------------------


def _call(call_id: str, name: str, arguments: dict[str, Any], as_object: bool) -> dict[str, Any]:
    args: Any = arguments if as_object else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


GOLDEN: dict[str, list[str]] = {
    "chatml": [
        "<|im_start|>system\nYou are a coding agent.\n\n# Tools",
        "<|im_start|>assistant\n<think>\nREASONING-STEP-1",
        '<tool_call>\n{"name": "list_dir", "arguments": {"path": "."}}\n</tool_call><|im_end|>',
        "<|im_start|>tool\nREADME.md",
    ],
    "qwen": [
        "<|im_start|>user\nList the files",
        "<|im_start|>assistant\n<think>\nREASONING-STEP-2: README.md exists, read it.\n</think>",
        "<|im_start|>user\n<tool_response>\n# Demo project\n</tool_response><|im_end|>",
    ],
    "kimi": [
        "<|im_system|>tool_declare<|im_middle|>[{",
        "<|im_user|>user<|im_middle|>List the files",
        "<|im_assistant|>assistant<|im_middle|><think>REASONING-STEP-1",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.list_dir:0"
        '<|tool_call_argument_begin|>{"path": "."}<|tool_call_end|><|tool_calls_section_end|>',
        "<|im_system|>read_file<|im_middle|>## Return of functions.read_file:1\n# Demo project",
    ],
    "deepseek": [
        "<｜begin▁of▁sentence｜>You are a coding agent.",
        "<｜User｜>List the files, then read the README.<｜Assistant｜><think>REASONING-STEP-1",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>list_dir<｜tool▁sep｜>"
        '{"path": "."}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
        "<｜tool▁output▁begin｜>README.md\nsrc/<｜tool▁output▁end｜><think>REASONING-STEP-2",
    ],
    "minimax": [
        "]~!b[]~b]system\nYou are a coding agent.",
        "]~b]ai\n<think>\nREASONING-STEP-1",
        '<minimax:tool_call>\n<invoke name="read_file">\n<parameter name="path">README.md'
        '</parameter>\n<parameter name="limit">20</parameter>\n</invoke>\n</minimax:tool_call>[e~[',
        "]~b]tool\n<response># Demo project</response>[e~[\n]~b]ai\n<think>\n",
    ],
    "glm": [
        "[gMASK]<sop><|system|>\n# Tools",
        "<|assistant|>\n<think>REASONING-STEP-1",
        "<tool_call>list_dir\n<arg_key>path</arg_key>\n<arg_value>.</arg_value>\n</tool_call>",
        "<|observation|>\n<tool_response>\nREADME.md\nsrc/\n</tool_response><|assistant|>",
    ],
    "gpt-oss": [
        "<|start|>developer<|message|># Instructions\n\nYou are a coding agent.",
        "<|start|>assistant<|channel|>analysis<|message|>REASONING-STEP-1",
        '<|start|>assistant to=functions.list_dir<|channel|>commentary json<|message|>{"path": "."}'
        "<|call|>",
        "<|start|>functions.read_file to=assistant<|channel|>commentary<|message|># Demo project",
    ],
}


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_family_template_renders_its_token_format(family: str) -> None:
    prompt = template_for(family).render(  # type: ignore[arg-type]
        conversation(), TOOLS, ("reasoning_content",)
    )
    for fragment in GOLDEN[family]:
        assert fragment in prompt.text, (family, fragment)
    assert prompt.reasoning_kept == 2
    assert "REASONING-STEP-2" in prompt.text


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_family_template_reads_reasoning_only_from_reasoning_in(family: str) -> None:
    template = template_for(family)  # type: ignore[arg-type]
    elsewhere = conversation(field="reasoning")
    assert "REASONING-STEP" not in template.render(elsewhere, TOOLS, ("reasoning_content",)).text
    assert "REASONING-STEP-2" in template.render(elsewhere, TOOLS, ("reasoning",)).text
    stripped = template.render(
        conversation(), TOOLS, ("reasoning_content",), history_reasoning=False
    )
    assert "REASONING-STEP" not in stripped.text and stripped.reasoning_suppressed == 2


def _new_question(messages: list[dict[str, Any]], answered: bool) -> list[dict[str, Any]]:
    follow = [{"role": "user", "content": "Now summarise it."}]
    if answered:
        follow.insert(0, {"role": "assistant", "content": "The README says: Demo project."})
    return [*messages, *follow]


@pytest.mark.parametrize("family", ["chatml", "qwen", "deepseek", "minimax", "glm"])
def test_reasoning_before_the_last_user_turn_is_dropped(family: str) -> None:
    template = template_for(family)  # type: ignore[arg-type]
    for answered in (False, True):
        prompt = template.render(
            _new_question(conversation(), answered), TOOLS, ("reasoning_content",)
        )
        assert "REASONING-STEP" not in prompt.text and prompt.reasoning_kept == 0


@pytest.mark.parametrize("family", ["kimi", "gpt-oss"])
def test_kimi_and_harmony_keep_reasoning_until_a_final_answer(family: str) -> None:
    """K2 Thinking and gpt-oss drop reasoning only before the last answer without tool calls."""
    template = template_for(family)  # type: ignore[arg-type]
    unanswered = template.render(
        _new_question(conversation(), answered=False), TOOLS, ("reasoning_content",)
    )
    assert "REASONING-STEP-1" in unanswered.text and unanswered.reasoning_kept == 2
    answered = template.render(
        _new_question(conversation(), answered=True), TOOLS, ("reasoning_content",)
    )
    assert "REASONING-STEP" not in answered.text and answered.reasoning_kept == 0


def test_think_blocks_in_content_are_moved_or_stripped_never_doubled() -> None:
    minimax = template_for("minimax")
    messages = conversation(reasoning=False)
    for index in (2, 4):
        messages[index]["content"] = f"<think>\nTHINK-{index}\n</think>\n\n"
    prompt = minimax.render(messages, TOOLS, ("think_tag", "reasoning_content"))
    assert prompt.text.count("THINK-2") == prompt.text.count("THINK-4") == 1
    later = minimax.render(_new_question(messages, True), TOOLS, ("think_tag",))
    assert "THINK-" not in later.text


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_segment_counts_add_up_to_the_whole_prompt(family: str) -> None:
    template = template_for(family)  # type: ignore[arg-type]
    for messages in (
        conversation(),
        conversation(as_object=True),
        _new_question(conversation(), answered=True),
    ):
        segments = template.render(messages, TOOLS, ("reasoning_content",)).segments
        whole = count_tokens("".join(segments))
        assert sum(count_tokens(s) for s in segments) == whole
        assert sum(count_tokens_cached(s) for s in segments) == whole
    completion = template.completion("thinking 123", "answer 456", [])
    assert count_tokens(completion) > 4


@pytest.mark.parametrize(
    "token",
    [
        "<|im_start|>",
        "<|tool_calls_section_begin|>",
        "<|tool_call_argument_begin|>",
        "<｜tool▁calls▁begin｜>",
        "<｜begin▁of▁sentence｜>",
        "]~!b[",
        "]~b]",
        "[e~[",
        "<minimax:tool_call>",
        "[gMASK]",
        "<sop>",
        "<arg_key>",
        "</arg_value>",
        "<|observation|>",
        "<|channel|>",
        "<|constrain|>",
    ],
)
def test_tokenizer_keeps_each_family_special_token_whole(token: str) -> None:
    assert count_tokens(token) == 1
    assert count_tokens(f"word{token}word") == 3


def test_family_rendering_is_linear_in_the_conversation() -> None:
    def conversation(steps: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
        for step in range(steps):
            call_id = f"functions.open_box:{step}"
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": f"step {step} reasoning",
                    "tool_calls": [_call(call_id, "open_box", {"box_id": "box-aaaaaa"}, False)],
                }
            )
            messages.append({"role": "tool", "tool_call_id": call_id, "content": f"result {step}"})
        return messages

    small, large = conversation(100), conversation(800)
    for template in TEMPLATES.values():

        def cost(messages: list[dict[str, Any]], template: Any = template) -> int:
            return python_calls(
                lambda: template.render(messages, CHAIN_TOOLS, ("reasoning_content",))
            )

        # 8x the conversation must cost about 8x, nowhere near 64x (quadratic).
        assert cost(large) < 12 * cost(small), template.family


# --- against the reference renderings (skipped when the reference folder is absent) -----

REFERENCE = EXTERNAL / "dialects"
_RENDERED = {
    "kimi": (
        "llamacpp-moonshotai-Kimi-K2-Thinking",
        "A_reasoning_kept_args_string",
        "B_reasoning_dropped_args_string",
        "<|im_user|>",
        False,
    ),
    "qwen": (
        "llamacpp-Qwen-Qwen3-0.6B",
        "A_reasoning_kept_args_string",
        "B_reasoning_dropped_args_string",
        "<|im_start|>user",
        False,
    ),
    "minimax": (
        "llamacpp-MiniMax-M2",
        "C_reasoning_kept_args_object",
        "E_reasoning_dropped_args_object",
        "]~b]user",
        True,
    ),
    "glm": (
        "llamacpp-GLM-4.6",
        "C_reasoning_kept_args_object",
        "E_reasoning_dropped_args_object",
        "<|user|>",
        True,
    ),
}


def _reference(path: Path) -> str:
    if not path.is_file():
        reference_missing(path)
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("family", list(_RENDERED))
@pytest.mark.parametrize("kept", [True, False], ids=["kept", "dropped"])
def test_conversation_matches_the_reference_rendering(family: str, kept: bool) -> None:
    """From the first user turn on, our template renders the reference conversation byte for
    byte like the family's real template (the tool and system prose before it is our own).
    """
    stem, kept_variant, dropped_variant, first_user, as_object = _RENDERED[family]
    variant = kept_variant if kept else dropped_variant
    reference = _reference(REFERENCE / "rendered" / f"{stem}__{variant}.txt")
    ours = template_for(family).render(  # type: ignore[arg-type]
        conversation(reasoning=kept, as_object=as_object), TOOLS, ("reasoning_content",)
    )
    assert ours.text[ours.text.index(first_user) :] == reference[reference.index(first_user) :]


def test_deepseek_400_matches_the_observed_error() -> None:
    lines = _reference(REFERENCE / "raw_outputs" / "observed_failures.jsonl").splitlines()
    observed = [
        json.loads(line)
        for line in lines
        if line.strip() and json.loads(line)["id"] == "deepseek.api.missing_reasoning_content_400"
    ]
    assert observed, "the reference no longer has DeepSeek's 400"
    with SimServer(SimConfig(dialect="deepseek")) as server:
        bare = {"role": "assistant", "content": None, "tool_calls": [_assistant_call("call_x")]}
        with pytest.raises(openai.BadRequestError) as refused:
            _client(server).chat.completions.create(
                model="m", messages=_chain(bare), tools=CHAIN_TOOLS
            )
    message = refused.value.response.json()["error"]["message"]
    assert f"{refused.value.status_code} {message}" == observed[0]["excerpt"]

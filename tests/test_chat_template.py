"""Chat templates rendered the way Hugging Face renders them: the real templates against
their reference renderings, transformers' Jinja semantics one by one, loading a template
from a file or a model folder, tokenizers, the variants a host may render, and the
project's own templates against the simulator's Python renderings."""

from __future__ import annotations

import copy
import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reference_conversation import TOOLS, conversation
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from traces.chat_template import (
    ChatTemplate,
    HFTokenizer,
    SimTokenCounter,
    TemplateLoadError,
    TemplateRenderError,
    TokenizerLoadError,
    iter_variants,
    load_template,
    render,
    variants_of,
)
from traces.chat_template.variants import (
    arguments_as_objects,
    arguments_as_strings,
    as_parsed,
    drop_reasoning,
    keep_last_reasoning,
    rewrite_ids,
)
from traces.families import TemplateFamily
from traces.sim.templates import template_for
from traces.sim.tokenizer import count_tokens
from traces.wire_forms import ReasoningLocation

from conftest import EXTERNAL, reference_missing

REFERENCE = EXTERNAL / "dialects"
FIXTURES = Path(__file__).parent / "fixtures" / "templates"
PINNED = datetime(2025, 11, 20, 9, 30)
"""The reference renderings fixed `strftime_now` to this day."""

# --- the fixed conversation of shared/external/dialects/rendered (its README.txt) ----------

VARIANTS = {
    "A_reasoning_kept_args_string": {},
    "B_reasoning_dropped_args_string": {"reasoning": False},
    "C_reasoning_kept_args_object": {"as_object": True},
    "D_reasoning_kept_openai_style_ids": {"openai_ids": True},
    "E_reasoning_dropped_args_object": {"reasoning": False, "as_object": True},
}
RENDER_KWARGS: dict[str, Any] = {
    "enable_thinking": True,
    "thinking": True,
    "bos_token": "<｜begin▁of▁sentence｜>",
    "eos_token": "<｜end▁of▁sentence｜>",
}


def _summary() -> dict[str, Any]:
    path = REFERENCE / "rendered" / "_render_summary.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return data


_CASES = [
    (stem, variant)
    for stem, entries in _summary().items()
    for variant in VARIANTS
    if variant in entries
] or [("absent", "absent")]


def _pinned(path: Path, **options: Any) -> ChatTemplate:
    template = load_template(path)
    return ChatTemplate(template.source, template.origin, clock=lambda: PINNED, **options)


@functools.cache
def _reference(stem: str) -> ChatTemplate:
    """A reference template, compiled once for all the conversations rendered with it."""
    return _pinned(REFERENCE / "templates" / f"{stem}.jinja")


@pytest.mark.parametrize(("stem", "variant"), _CASES)
def test_real_templates_render_like_the_reference(stem: str, variant: str) -> None:
    """Byte for byte what the reference rendering holds, or the same class of error."""
    if stem == "absent":
        reference_missing(REFERENCE)
    entry = _summary()[stem][variant]
    template = _reference(stem)
    messages = conversation(**VARIANTS[variant])
    if "render_error" in entry:
        _, _, expected = entry["render_error"].partition(": ")
        kind, _, detail = expected.partition(": ")
        with pytest.raises(TemplateRenderError) as failed:
            template.render(messages, TOOLS, **RENDER_KWARGS)
        if detail.startswith("template raised: "):  # the reference's name for raise_exception
            assert failed.value.raised
            assert failed.value.detail == detail.removeprefix("template raised: ")
        else:
            assert not failed.value.raised
            assert (failed.value.kind, failed.value.detail) == (kind, detail)
        assert failed.value.line is not None and str(failed.value).startswith(template.origin)
        return
    reference = (REFERENCE / "rendered" / f"{stem}__{variant}.txt").read_text(encoding="utf-8")
    assert template.render(messages, TOOLS, **RENDER_KWARGS) == reference
    if entry["env"] == "mutable_sandbox":
        # transformers itself refuses these llama.cpp templates: they call list.append.
        strict = _pinned(REFERENCE / "templates" / f"{stem}.jinja", allow_mutation=False)
        with pytest.raises(TemplateRenderError, match=r"SecurityError: .*append"):
            strict.render(messages, TOOLS, **RENDER_KWARGS)


# --- transformers' Jinja semantics ------------------------------------------------------


def _render(source: str, **variables: Any) -> str:
    return ChatTemplate(source, origin="t.jinja", clock=lambda: PINNED).render([], **variables)


def test_tojson_keeps_non_ascii_and_markup_characters() -> None:
    value = {"名前": "café <b>&'</b>", "n": 1}
    assert _render("{{ v | tojson }}", v=value) == json.dumps(value, ensure_ascii=False)
    assert "\\u" not in _render("{{ v | tojson }}", v=value)
    assert _render("{{ v | tojson(ensure_ascii=True) }}", v=value) == json.dumps(value)


def test_tojson_options() -> None:
    value = {"b": [1, 2], "a": None}
    assert _render("{{ v | tojson(indent=2) }}", v=value) == json.dumps(value, indent=2)
    assert _render("{{ v | tojson(separators=(',', ':')) }}", v=value) == '{"b":[1,2],"a":null}'
    assert _render("{{ v | tojson(sort_keys=true) }}", v=value) == '{"a": null, "b": [1, 2]}'


def test_raise_exception_names_the_template_line() -> None:
    source = (
        "first line\n{% for m in messages %}\n{{ raise_exception('no ' ~ m.role) }}\n{% endfor %}"
    )
    template = ChatTemplate(source, origin="t.jinja")
    with pytest.raises(TemplateRenderError) as failed:
        template.render([{"role": "tool"}])
    assert str(failed.value) == "t.jinja, line 3: template raised: no tool"
    assert failed.value.raised and failed.value.line == 3


def test_other_template_errors_keep_their_class() -> None:
    template = ChatTemplate("ok\n{{ messages[0].content.items() }}", origin="t.jinja")
    with pytest.raises(TemplateRenderError) as failed:
        template.render([{"content": "text"}])
    assert str(failed.value) == (
        "t.jinja, line 2: UndefinedError: 'str object' has no attribute 'items'"
    )
    assert not failed.value.raised


def test_strftime_now_reads_the_clock() -> None:
    assert _render("{{ strftime_now('%d %B %Y') }}") == "20 November 2025"
    now = ChatTemplate("{{ strftime_now('%Y') }}").render([])
    assert now == str(datetime.now().year)


def test_loop_controls() -> None:
    source = (
        "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}"
        "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"
    )
    assert _render(source) == "023"


def test_trim_and_lstrip_blocks() -> None:
    source = "<a>\n    {% if true %}\n    x\n    {% endif %}\n<b>"
    # lstrip_blocks eats the indentation before a tag, trim_blocks the newline after it.
    assert _render(source) == "<a>\n    x\n<b>"


def test_the_sandbox_is_immutable_unless_mutation_is_allowed() -> None:
    source = "{% set seen = [] %}{% set _ = seen.append(1) %}{{ seen | length }}"
    assert ChatTemplate(source).render([]) == "1"
    with pytest.raises(TemplateRenderError, match="SecurityError"):
        ChatTemplate(source, allow_mutation=False).render([])
    with pytest.raises(TemplateRenderError, match="SecurityError"):
        ChatTemplate("{{ messages.__class__.__mro__ }}").render([])


def test_render_passes_what_apply_chat_template_passes() -> None:
    source = (
        "{{ bos_token }}|{{ tools is none }}|{{ documents is none }}|"
        "{{ add_generation_prompt }}|{{ enable_thinking }}|{{ messages | length }}"
    )
    template = ChatTemplate(source, special_tokens={"bos_token": "<s>"})
    assert render(template, [{"role": "user"}], None, False, enable_thinking=True) == (
        "<s>|True|True|False|True|1"
    )
    assert template.render([], [], enable_thinking=False).split("|")[1] == "True"


# --- loading ----------------------------------------------------------------------------


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_jinja_file_and_model_folders(tmp_path: Path) -> None:
    source = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"
    loose = _write(tmp_path / "plain.jinja", source)
    assert load_template(loose).render([{"content": "hi"}]) == "hi"

    folder = tmp_path / "model"
    folder.mkdir()
    config = {
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False},
        "eos_token": "</s>",
        "pad_token": None,
        "chat_template": "config:" + source,
    }
    _write(folder / "tokenizer_config.json", config)
    from_config = load_template(folder)
    assert from_config.render([{"content": "hi"}]) == "config:<s>hi</s>"
    assert from_config.origin.endswith("tokenizer_config.json:chat_template")
    # A separate template file wins over the config's field, as in transformers.
    _write(folder / "chat_template.jinja", "file:" + source)
    assert load_template(folder).render([{"content": "hi"}]) == "file:<s>hi</s>"


def test_named_templates(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "tokenizer_config.json",
        {
            "chat_template": [
                {"name": "default", "template": "default"},
                {"name": "tool_use", "template": "tools"},
                {"name": "rag", "template": "rag"},
            ]
        },
    )
    assert load_template(config).render([]) == "tools"  # a request with tools
    assert load_template(config, "rag").render([]) == "rag"
    with pytest.raises(TemplateLoadError, match=r"no chat template named 'nope' \(has: default"):
        load_template(config, "nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"tokenizer_config.json: not valid JSON \(line 1"),
        ([1, 2], r"tokenizer_config.json: expected a JSON object"),
        ({"chat_template": 3}, r"field `chat_template` must be a string or a list"),
        ({"chat_template": [{"name": "x"}]}, r"field `chat_template\[0\]` must have string"),
        ({"chat_template": "x", "bos_token": 5}, r"field `bos_token` must be a string or an"),
        ({"bos_token": "<s>"}, r"model: no chat_template.jinja, chat_template.json or"),
        ({"chat_template": "{% if %}"}, r"chat_template, line 1: template syntax error"),
    ],
)
def test_bad_templates_get_one_line_errors(tmp_path: Path, content: Any, message: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    _write(folder / "tokenizer_config.json", content)
    with pytest.raises(TemplateLoadError, match=message) as failed:
        load_template(folder)
    assert "\n" not in str(failed.value)


def test_missing_and_broken_template_files(tmp_path: Path) -> None:
    with pytest.raises(TemplateLoadError, match=r"nowhere.jinja: no such file or folder"):
        load_template(tmp_path / "nowhere.jinja")
    broken = _write(tmp_path / "broken.jinja", "line one\n{% for m in messages %}\n")
    with pytest.raises(TemplateLoadError, match=r"broken.jinja, line \d: template syntax error"):
        load_template(broken)
    binary = tmp_path / "binary.jinja"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TemplateLoadError, match=r"binary.jinja: not UTF-8 text"):
        load_template(binary)


# --- tokenizers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny word-level tokenizer trained here, with ChatML's turn markers as special tokens."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        special_tokens=["[UNK]", "<|im_start|>", "<|im_end|>"], min_frequency=1
    )
    corpus = ["system You are a helpful agent .", "user List the files .", "assistant Done ."]
    tokenizer.train_from_iterator(corpus, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_hf_tokenizer_counts_special_tokens_whole(tokenizer_file: Path) -> None:
    counter = HFTokenizer.load(tokenizer_file.parent)  # a folder holding tokenizer.json
    assert counter.name == str(tokenizer_file)
    prompt = load_template(FIXTURES / "chatml.jinja").render(
        [
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": "List the files."},
        ]
    )
    # <|im_start|> system You are a helpful agent . <|im_end|> ... assistant
    assert counter.count(prompt) == 18
    ids = counter.encode(prompt)
    assert len(ids) == 18 and ids[0] == ids[9] == ids[16]  # every <|im_start|> is one id
    assert counter.count("<|im_start|><|im_end|>") == 2


def test_tokenizer_load_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerLoadError, match=r"tokenizer.json: no such file"):
        HFTokenizer.load(tmp_path)
    bad = _write(tmp_path / "tokenizer.json", {"model": "nothing like a tokenizer"})
    with pytest.raises(
        TokenizerLoadError, match=r"tokenizer.json: not a tokenizers JSON file \("
    ) as e:
        HFTokenizer.load(bad)
    assert "\n" not in str(e.value)


def test_sim_counter_counts_like_the_simulator() -> None:
    text = "<|im_start|>user\nOpen box-1a2b3c, then 12345!<|im_end|>"
    assert SimTokenCounter().count(text) == count_tokens(text) == 17
    assert SimTokenCounter().name == "sim"


# --- variants ---------------------------------------------------------------------------


def test_variants_in_order_of_simplicity_and_only_when_they_change_something() -> None:
    messages = conversation()
    names = [v.name for v in variants_of(messages)]
    assert names[:5] == [
        "as sent",
        "reasoning dropped",
        "last reasoning only",
        "ids rewritten",
        "arguments as objects",
    ]
    assert "reasoning dropped + ids rewritten + arguments as objects" in names
    # Dropping all reasoning already drops the latest turn's: never listed twice.
    assert "reasoning dropped + last reasoning only" not in names
    bare = [{"role": "user", "content": "hi"}]
    assert [v.name for v in variants_of(bare)] == ["as sent"]
    without = conversation(reasoning=False, as_object=True)
    assert [v.name for v in variants_of(without)][:3] == [
        "as sent",
        "ids rewritten",
        "arguments as strings",
    ]


def test_combinations_with_inert_rewrites_are_skipped() -> None:
    inert: set[str] = set()
    names = []
    for variant in iter_variants(conversation(), inert):
        names.append(variant.name)
        if variant.name == "ids rewritten":
            inert.add(variant.name)  # as a template that never prints ids would show
    assert not any("ids rewritten +" in n or "+ ids rewritten" in n for n in names)
    assert "reasoning dropped + arguments as objects" in names


def test_variants_never_modify_the_request() -> None:
    messages = conversation()
    messages[2]["content"] = None
    before = copy.deepcopy(messages)
    for variant in variants_of(messages):
        assert variant.messages[2]["content"] == ""  # what every server's parser hands over
    assert messages == before


def test_dropping_reasoning_takes_fields_and_think_blocks() -> None:
    messages = conversation()
    messages[4]["content"] = "<think>\nthought in content\n</think>\n\nanswer"
    messages[4]["reasoning"] = "r"
    dropped = drop_reasoning(messages)
    assert not any(k in m for m in dropped for k in ("reasoning_content", "reasoning"))
    assert dropped[4]["content"] == "answer"
    last = keep_last_reasoning(messages)
    assert "reasoning_content" not in last[2] and last[4]["reasoning_content"].startswith("REASON")
    assert last[4]["content"] == messages[4]["content"]


def test_ids_are_rewritten_both_ways_and_results_follow() -> None:
    kimi = conversation()
    to_openai = rewrite_ids(kimi)
    first = to_openai[2]["tool_calls"][0]["id"]
    assert first.startswith("call_") and len(first) == 29
    assert to_openai[3]["tool_call_id"] == first
    assert rewrite_ids(to_openai)[2]["tool_calls"][0]["id"] == "functions.list_dir:0"
    openai = conversation(openai_ids=True)
    back = rewrite_ids(openai)
    assert [back[i]["tool_calls"][0]["id"] for i in (2, 4)] == [
        "functions.list_dir:0",
        "functions.read_file:1",
    ]
    assert back[5]["tool_call_id"] == "functions.read_file:1"
    reused = copy.deepcopy(openai)  # a client that numbers each turn's calls from 1 again
    for message in reused[2:]:
        for call in message.get("tool_calls", []):
            call["id"] = "call_1"
        if message["role"] == "tool":
            message["tool_call_id"] = "call_1"
    renamed = rewrite_ids(reused)
    assert [renamed[i].get("tool_call_id") for i in (3, 5)] == [
        "functions.list_dir:0",
        "functions.read_file:1",
    ]


def test_arguments_are_reencoded_both_ways() -> None:
    as_strings = conversation()
    objects = arguments_as_objects(as_strings)
    assert objects[4]["tool_calls"][0]["function"]["arguments"] == {
        "path": "README.md",
        "limit": 20,
    }
    assert arguments_as_strings(objects) == as_strings
    broken = copy.deepcopy(as_strings)
    broken[2]["tool_calls"][0]["function"]["arguments"] = '{"path": '
    assert arguments_as_objects(broken)[2]["tool_calls"][0]["function"]["arguments"] == '{"path": '


# --- the project's templates are the simulator's, in Jinja -------------------------------

TWINS: dict[str, tuple[TemplateFamily, tuple[ReasoningLocation, ...]]] = {
    "chatml.jinja": ("chatml", ("reasoning_content",)),
    "qwen.jinja": ("qwen", ("reasoning_content",)),
    "kimi.jinja": ("kimi", ("reasoning_content",)),
    "deepseek.jinja": ("deepseek", ("reasoning_content",)),
    "glm.jinja": ("glm", ("reasoning_content",)),
    "minimax.jinja": ("minimax", ("think_tag", "reasoning_content")),
}


def _conversations() -> dict[str, list[dict[str, Any]]]:
    base = conversation()
    answered = [
        *base,
        {"role": "assistant", "content": "The README says: Demo project."},
        {"role": "user", "content": "Now summarise it."},
    ]
    think = conversation(reasoning=False)
    for index in (2, 4):
        think[index]["content"] = f"<think>\nTHINK-{index}\n</think>\n\n"
    two_results = [
        *base[:3],
        {"role": "tool", "tool_call_id": "functions.list_dir:0", "content": "a"},
        {"role": "tool", "tool_call_id": "functions.list_dir:0", "content": "b"},
    ]
    return {
        "kept": base,
        "dropped": conversation(reasoning=False),
        "objects": conversation(as_object=True),
        "openai ids": conversation(openai_ids=True),
        "unanswered question": [*base, {"role": "user", "content": "Now summarise it."}],
        "answered question": answered,
        "no system": base[1:],
        "null content": [dict(m, content=None) if m["role"] == "assistant" else m for m in base],
        "unnamed results": [{k: v for k, v in m.items() if k != "name"} for m in base],
        "two results": two_results,
        "content and calls": [
            dict(m, content="Let me look.") if m["role"] == "assistant" else m for m in base
        ],
        "think blocks": think,
        "later system": [*base, {"role": "system", "content": "Be brief."}],
        "text parts": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
    }


@pytest.mark.parametrize("file", list(TWINS))
def test_project_templates_render_like_the_simulator(file: str) -> None:
    """Byte for byte, so `traces expect` with these templates and the sim's counter must
    reproduce the simulator's prompt_tokens exactly."""
    family, reads = TWINS[file]
    template = load_template(FIXTURES / file)
    for name, messages in _conversations().items():
        for tools in (TOOLS, None):
            ours = template.render(as_parsed(messages), tools)
            sims = template_for(family).render(messages, tools, reads).text
            assert ours == sims, (file, name, tools is not None)

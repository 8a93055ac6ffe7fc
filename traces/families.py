"""Model families: what the weights decide, whoever serves them.

pydantic-ai separates model profiles from provider profiles; so does this module. A family
(Kimi K2, DeepSeek, MiniMax, GLM, Qwen, gpt-oss) fixes the chat template and the tool-call
id style the template renders back; the host (`traces.dialects`) fixes where reasoning
travels and how the wire carries arguments. The family is resolved once, from the model id,
so Kimi served by vLLM is still Kimi.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from traces.wire_forms import IdStyle

TemplateFamily = Literal["kimi", "deepseek", "minimax", "glm", "qwen", "gpt-oss", "chatml"]
"""Chat-template family whose rendering decides what of the history reaches the model."""


class Family(BaseModel):
    """The properties one family of open weights has on every host."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: TemplateFamily = Field(description="Family name, as dialects and templates name it.")
    description: str = Field(description="Which models, in one line.")
    model_ids: tuple[str, ...] = Field(
        default=(),
        description="Regular expressions (case-insensitive) matched against the model's own "
        "name: the last segment of a model id, whether `org/name`, a router's `org/name` or "
        "a local path.",
    )
    id_style: IdStyle | None = Field(
        default=None,
        description="Tool-call ids the model writes itself and its template renders back "
        "verbatim, so they must reach it in this form whatever the host hands out; None "
        "when the host mints opaque ids the template never shows the model.",
    )
    special_tokens: tuple[tuple[str, str], ...] = Field(
        default=(),
        description="(label, regular expression) of the family's call and turn markup: in "
        "content or reasoning they mean a host's parser missed them. A `-stripped` label is "
        "the form left when a detokenizer drops the special tokens but keeps the words.",
    )
    tool_call_tag: bool = Field(
        default=False,
        description="Whether the family's own calls are `<tool_call>…</tool_call>` blocks "
        "(Hermes' format), so its host's tool parser is the one that reads that tag; the tag "
        "is plain text to any other family, whose model may still write it.",
    )


TOOL_CALL_TAG = "hermes"
"""Label of `<tool_call>`/`</tool_call>` among the special tokens: Hermes' call wrapper, the
call format of every family with `tool_call_tag` (Qwen, GLM, generic ChatML)."""

_FAMILIES = [
    # Order matters: the first family whose pattern matches wins (a DeepSeek distill of
    # Qwen speaks DeepSeek's template).
    Family(
        name="kimi",
        description="Moonshot Kimi K2 (K2, K2.5, K2 Thinking): functions.NAME:IDX ids",
        # K2 only: K3 carries no id in its wire format, so nothing of the family is known.
        model_ids=(r"kimi[-_ ]?k2",),
        id_style="kimi",
        special_tokens=(
            # Section and call delimiters; the observed leaks sometimes lose the closing `>`.
            ("kimi", r"<\|tool_calls?_(?:section_)?(?:begin|end)\|>?"),
            ("kimi", r"<\|tool_call_argument_begin\|>?"),
            ("kimi", r"<\|im_(?:end|middle|user|assistant|system)\|>"),
            ("kimi-stripped", r"functions\.[A-Za-z0-9_\-]+:\d+\s*(?=[{<])"),
        ),
    ),
    Family(
        name="deepseek",
        description="DeepSeek V3.x and R1",
        model_ids=(r"deepseek",),
        # Fullwidth bars and U+2581 for spaces; V3.2's DSML markup opens with one
        # bar-delimited word and closes like an XML tag.
        special_tokens=(("deepseek", r"<｜[^｜\n]{1,40}｜>|</?｜DSML｜\w+"),),
    ),
    Family(
        name="minimax",
        description="MiniMax M1/M2",
        model_ids=(r"minimax",),
        special_tokens=(("minimax", r"</?minimax:tool_call>|<invoke name=\"|</invoke>"),),
    ),
    Family(
        name="glm",
        description="Zhipu GLM-4.x",
        model_ids=(r"glm[-_]?\d",),
        special_tokens=(
            ("glm", r"</?arg_(?:key|value)>|<\|(?:observation|user|assistant|system)\|>"),
        ),
        # `<tool_call>NAME<arg_key>…</tool_call>`: GLM-4.5's parser keys off the same tag.
        tool_call_tag=True,
    ),
    Family(
        name="gpt-oss",
        description="OpenAI gpt-oss (harmony)",
        model_ids=(r"gpt-oss",),
        special_tokens=(
            ("harmony", r"<\|(?:channel|message|start|end|call|constrain|return)\|>"),
            ("harmony-stripped", r"assistant(?:final|commentary|analysis)|to=functions\.[\w.\-]+"),
        ),
    ),
    Family(
        name="qwen",
        description="Qwen3 hybrid thinking",
        model_ids=(r"qwen",),
        special_tokens=(
            (TOOL_CALL_TAG, r"</?tool_call>"),
            ("qwen", r"<\|im_(?:start|end)\|>|<\|endoftext\|>"),
            # Qwen3-Coder's XML calls; models often skip the opening <tool_call>.
            ("qwen", r"<(?:function|parameter)=[\w.\-]{1,64}>"),
        ),
        tool_call_tag=True,
    ),
    Family(
        name="chatml",
        description="Hermes and any other model: plain ChatML, <tool_call> JSON calls",
        # Nous Hermes defined the `<tool_call>` format; named so that a Hermes fine-tune of
        # Llama is not read as speaking Llama's JSON calls.
        model_ids=(r"hermes",),
        tool_call_tag=True,
    ),
]

FAMILIES: dict[TemplateFamily, Family] = {f.name: f for f in _FAMILIES}
"""Every known family by name."""

_MATCHERS = [
    (family, re.compile(pattern, re.IGNORECASE))
    for family in _FAMILIES
    for pattern in family.model_ids
]


def model_name(model: str) -> str:
    """The model's own name inside an id: `moonshotai/Kimi-K2` and `/srv/models/Kimi-K2/` both
    give `Kimi-K2`, so directory and organisation names never decide the family."""
    trimmed = model.strip().rstrip("/\\")
    return re.split(r"[/\\]", trimmed)[-1] if trimmed else ""


def family_named(model: str | None) -> Family | None:
    """The family a model id names, or None when it names none of the known ones."""
    if not model:
        return None
    name = model_name(model)
    return next((family for family, pattern in _MATCHERS if pattern.search(name)), None)


def resolve_family(model: str | None, fallback: TemplateFamily) -> Family:
    """The family of `model`, else `fallback` (the family a host serves when the id names
    none, e.g. the simulator's own model)."""
    return family_named(model) or FAMILIES[fallback]


def expected_id_style(model: str | None, host_family: TemplateFamily | None) -> IdStyle | None:
    """The ids a model's tool calls should carry: its family's own (Kimi's), else the
    `call_…` ids a known host mints (`host_family`: the family the host serves when the id
    names none), else None when neither the family nor the host is known."""
    named = family_named(model)
    if named is not None and named.id_style is not None:
        return named.id_style
    if host_family is None:
        return None
    return (named or FAMILIES[host_family]).id_style or "openai"


KIMI_ID = re.compile(r"^functions\.[\w\-.]+:\d+$")
"""A tool-call id in Kimi K2's own form, `functions.NAME:IDX`."""


class JsonCallSyntax(BaseModel):
    """A family whose own tool calls are plain JSON in the generated text.

    Its host's tool parser (vLLM's `llama3_json`, `mistral`) turns that JSON into
    `tool_calls`; when the JSON reaches the client as content instead, exactly as the family
    writes it, the host did not parse it. Kept apart from `FAMILIES`: the simulator has no
    template for these, and their special token (`<|python_tag|>`, `[TOOL_CALLS]`) may be
    stripped by the detokenizer, leaving nothing but the JSON.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Family name, as evidence reports it.")
    model_ids: tuple[str, ...] = Field(
        description="Regular expressions (case-insensitive) matched against the model's own "
        "name, as `Family.model_ids`."
    )
    prefix: str = Field(description="The special token the family writes before its calls.")
    prefix_required: bool = Field(
        description="Whether the host's parser keys off that token: without it in the text "
        "the model may never have written it, so the JSON alone is not the family's syntax."
    )
    as_list: bool = Field(description="Calls are one JSON list, not one object per call.")
    arguments_keys: tuple[str, ...] = Field(
        description="Keys that hold a call's arguments beside `name`."
    )


JSON_CALL_SYNTAXES = (
    # Llama 3.1+ JSON tool calling: `{"name": …, "parameters": …}` (`<|python_tag|>` first in
    # ipython mode); vLLM's llama3_json parser also takes `arguments`. Llama 4's JSON template
    # asks for the same.
    JsonCallSyntax(
        name="llama",
        model_ids=(r"llama[-_ ]?[34]",),
        prefix="<|python_tag|>",
        prefix_required=False,
        as_list=False,
        arguments_keys=("parameters", "arguments"),
    ),
    # Mistral v0.3 / Nemo / Small / Mixtral: `[TOOL_CALLS][{"name": …, "arguments": …}]`; its
    # parser starts at the token, so a bare list may be the model's own slip.
    JsonCallSyntax(
        name="mistral",
        model_ids=(r"mistral|mixtral|ministral|magistral|devstral|codestral|pixtral",),
        prefix="[TOOL_CALLS]",
        prefix_required=True,
        as_list=True,
        arguments_keys=("arguments",),
    ),
)
"""Families whose own call syntax is plain JSON, by name pattern."""

_JSON_MATCHERS = [
    (syntax, re.compile(pattern, re.IGNORECASE))
    for syntax in JSON_CALL_SYNTAXES
    for pattern in syntax.model_ids
]


def json_call_syntax(model: str | None) -> JsonCallSyntax | None:
    """The plain-JSON call syntax of the family `model` names, if it is one of those; None
    when the id names a family of `FAMILIES` (a DeepSeek distill of Llama speaks DeepSeek's
    template) or no known family at all."""
    if not model or family_named(model) is not None:
        return None
    name = model_name(model)
    return next((syntax for syntax, pattern in _JSON_MATCHERS if pattern.search(name)), None)

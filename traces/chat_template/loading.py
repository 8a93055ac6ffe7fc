"""Finding a chat template on disk: a `.jinja` file, or a model folder as Hugging Face lays
it out (`chat_template.jinja`, `chat_template.json`, or the `chat_template` field of
`tokenizer_config.json`, with the tokenizer's special tokens beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from traces.chat_template.errors import TemplateLoadError
from traces.chat_template.template import ChatTemplate

TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
TEMPLATE_JSON = "chat_template.json"

SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
"""The named special tokens transformers passes to every chat-template render."""


def load_template(path: Path, name: str | None = None) -> ChatTemplate:
    """The chat template at `path` (a Jinja file, a JSON config, or a model folder).

    `name` picks one of several named templates (`tokenizer_config.json` may hold a list of
    `{name, template}`); without it, transformers' choice for a request with tools:
    `tool_use` if there is one, else `default`.
    """
    if path.is_dir():
        return _from_folder(path, name)
    if not path.is_file():
        raise TemplateLoadError(f"{path}: no such file or folder")
    if path.suffix == ".json":
        return _from_json(path, name, _special_tokens(path) if _is_config(path) else {})
    special = _special_tokens(path.parent / TOKENIZER_CONFIG)
    return ChatTemplate(_read(path), origin=str(path), special_tokens=special)


def _is_config(path: Path) -> bool:
    return path.name == TOKENIZER_CONFIG


def _from_folder(folder: Path, name: str | None) -> ChatTemplate:
    config = folder / TOKENIZER_CONFIG
    special = _special_tokens(config)
    # transformers reads a separate template file first; the config's field is the fallback.
    if (folder / TEMPLATE_FILE).is_file():
        path = folder / TEMPLATE_FILE
        return ChatTemplate(_read(path), origin=str(path), special_tokens=special)
    if (folder / TEMPLATE_JSON).is_file():
        return _from_json(folder / TEMPLATE_JSON, name, special)
    if config.is_file() and "chat_template" in _json_object(config):
        return _from_json(config, name, special)
    raise TemplateLoadError(
        f"{folder}: no {TEMPLATE_FILE}, {TEMPLATE_JSON} or {TOKENIZER_CONFIG} with a "
        "`chat_template` field"
    )


def _from_json(path: Path, name: str | None, special: dict[str, Any]) -> ChatTemplate:
    value = _json_object(path).get("chat_template")
    if value is None:
        raise TemplateLoadError(f"{path}: no `chat_template` field")
    if isinstance(value, str):
        if name is not None:
            raise TemplateLoadError(f"{path}: `chat_template` is a single template, not {name!r}")
        return ChatTemplate(value, origin=f"{path}:chat_template", special_tokens=special)
    if not isinstance(value, list):
        raise TemplateLoadError(
            f"{path}: field `chat_template` must be a string or a list of {{name, template}}"
        )
    named: dict[str, str] = {}
    for index, entry in enumerate(value):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("template"), str)
        ):
            raise TemplateLoadError(
                f"{path}: field `chat_template[{index}]` must have string `name` and `template`"
            )
        named[entry["name"]] = entry["template"]
    chosen = name or ("tool_use" if "tool_use" in named else "default")
    if chosen not in named:
        raise TemplateLoadError(
            f"{path}: no chat template named {chosen!r} (has: {', '.join(named) or 'none'})"
        )
    return ChatTemplate(
        named[chosen], origin=f"{path}:chat_template[{chosen}]", special_tokens=special
    )


def _special_tokens(config: Path) -> dict[str, Any]:
    """Named special tokens of a `tokenizer_config.json` (none when there is no file)."""
    if not config.is_file():
        return {}
    data = _json_object(config)
    tokens: dict[str, Any] = {}
    for key in SPECIAL_TOKENS:
        if data.get(key) is not None:
            tokens[key] = _token_text(config, key, data[key])
    extra = data.get("additional_special_tokens")
    if extra is not None:
        if not isinstance(extra, list):
            raise TemplateLoadError(f"{config}: field `additional_special_tokens` must be a list")
        tokens["additional_special_tokens"] = [
            _token_text(config, f"additional_special_tokens[{i}]", token)
            for i, token in enumerate(extra)
        ]
    return tokens


def _token_text(config: Path, field: str, value: Any) -> str:
    """A token as a string: configs write either the text or an `AddedToken` object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    raise TemplateLoadError(
        f"{config}: field `{field}` must be a string or an AddedToken object with `content`"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TemplateLoadError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise TemplateLoadError(f"{path}: cannot read ({err.strerror})") from None


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as err:
        raise TemplateLoadError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise TemplateLoadError(f"{path}: expected a JSON object")
    return data

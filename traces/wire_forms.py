"""The closed sets of wire forms that families, dialects, profiles and replay all speak of.

Declared once here: a model family, a host's dialect, a provider profile's overrides and the
replay policy all name the same locations, id styles and argument forms, so a new one is one
edit and no copy can drift.
"""

from __future__ import annotations

from typing import Literal, get_args

ReasoningField = Literal["reasoning_content", "reasoning", "reasoning_details"]
"""Message fields that carry reasoning beside the content."""

ReasoningLocation = Literal[
    "reasoning_content", "reasoning", "reasoning_details", "think_tag", "harmony"
]
"""Where reasoning travels: a message field, an inline `<think>` block, or harmony channels."""

ReplayLocation = Literal["reasoning_content", "reasoning", "reasoning_details", "think_tag"]
"""Where a client can put reasoning it sends back (harmony channels go back as `reasoning`)."""

IdStyle = Literal["openai", "kimi"]
"""`call_<hex>` ids, or Kimi's `functions.NAME:IDX`."""

IdsBack = Literal["as_received", "kimi"]
"""How tool-call ids go back: untouched, or rewritten to Kimi's `functions.NAME:IDX`."""

ArgumentForm = Literal["string", "object"]
"""Tool-call arguments as a JSON string (OpenAI form) or as an object."""

REASONING_FIELDS: tuple[ReasoningField, ...] = get_args(ReasoningField)
"""Every reasoning message field, in the order a reply is searched."""

REPLAY_LOCATIONS: tuple[ReplayLocation, ...] = get_args(ReplayLocation)
"""Every place reasoning can be sent back to."""

"""The simulator's own chat templates, one per model family, written in Python.

Modelled on the token formats of the real templates (Kimi K2, DeepSeek V3.x, MiniMax M2,
GLM-4.x, Qwen3, gpt-oss harmony): a host renders the history with its family's template, so
what a dialect does not read never reaches the model and `usage.prompt_tokens` shows it.
"""

from __future__ import annotations

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, ChatTemplate, Prompt, ToolTurn
from traces.sim.templates.chatml import ChatMLTemplate
from traces.sim.templates.deepseek import DeepSeekTemplate
from traces.sim.templates.glm import GLMTemplate
from traces.sim.templates.gpt_oss import GptOssTemplate
from traces.sim.templates.kimi import KimiTemplate
from traces.sim.templates.minimax import MiniMaxTemplate
from traces.sim.templates.qwen import QwenTemplate

TEMPLATES: dict[TemplateFamily, ChatTemplate] = {
    template.family: template
    for template in (
        ChatMLTemplate(),
        QwenTemplate(),
        KimiTemplate(),
        DeepSeekTemplate(),
        MiniMaxTemplate(),
        GLMTemplate(),
        GptOssTemplate(),
    )
}
"""Every family's template (stateless instances, shared by all requests)."""


def template_for(family: TemplateFamily) -> ChatTemplate:
    """The template of `family`."""
    return TEMPLATES[family]


__all__ = ["TEMPLATES", "AssistantTurn", "ChatTemplate", "Prompt", "ToolTurn", "template_for"]

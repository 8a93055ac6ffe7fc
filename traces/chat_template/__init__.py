"""Chat templates rendered the way Hugging Face renders them, and counted like a server.

Used to compute what prompt a host should have built from a recorded request (and how many
tokens it should have reported), and to render prompts client-side for raw completions
endpoints. Load a template with `load_template`, a tokenizer with `HFTokenizer.load` (or count
like the simulator with `SimTokenCounter`), and list what a host may really have rendered
with `iter_variants`.
"""

from traces.chat_template.counting import HFTokenizer, SimTokenCounter, TokenCounter, Tokenizer
from traces.chat_template.environment import TemplateRaised, hf_environment
from traces.chat_template.errors import TemplateLoadError, TemplateRenderError, TokenizerLoadError
from traces.chat_template.loading import load_template
from traces.chat_template.template import ChatTemplate, render
from traces.chat_template.variants import (
    ARGUMENTS_AS_OBJECTS,
    ARGUMENTS_AS_STRINGS,
    AS_SENT,
    IDS_REWRITTEN,
    LAST_REASONING_ONLY,
    REASONING_DROPPED,
    Variant,
    iter_variants,
    variants_of,
)

__all__ = [
    "ARGUMENTS_AS_OBJECTS",
    "ARGUMENTS_AS_STRINGS",
    "AS_SENT",
    "IDS_REWRITTEN",
    "LAST_REASONING_ONLY",
    "REASONING_DROPPED",
    "ChatTemplate",
    "HFTokenizer",
    "SimTokenCounter",
    "TemplateLoadError",
    "TemplateRaised",
    "TemplateRenderError",
    "TokenCounter",
    "Tokenizer",
    "TokenizerLoadError",
    "Variant",
    "hf_environment",
    "iter_variants",
    "load_template",
    "render",
    "variants_of",
]

"""The simulator's raw `/v1/completions`: a prompt the client rendered, answered as text.

No template and no parser run here: the prompt is counted as it came (with the same
tokenizer the chat endpoint counts its own rendering with), so a client that renders a
conversation exactly as the simulated host does gets the same `prompt_tokens` from both
endpoints. The simulated model cannot read tool declarations out of arbitrary text, so it
answers in plain text in its family's format; the one exception is the planted-secret probe,
which it answers from the prompt text exactly as the chat endpoint does from its rendering.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from traces.dialects import DIALECTS
from traces.families import resolve_family
from traces.sim import wire
from traces.sim.config import SimConfig
from traces.sim.request import RequestError
from traces.sim.strategies import vault
from traces.sim.strategies.base import Plan
from traces.sim.templates import template_for
from traces.sim.tokenizer import count_tokens
from traces.sim.voice import Voice

_STOP = re.compile(r"(?:<\|(?:im_end|return|end)\|>|<｜end▁of▁sentence｜>|\[e~\[)$")
"""The end-of-turn token each family's completion closes with."""

_PLAIN = (
    "This is a raw prompt with no tool calling around it, so I'll continue it with text.",
    "A raw completion: no parser will read calls out of my text. Answering in words.",
)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """The fields of a completions request the simulator uses."""

    model: str
    prompt: str
    seed: int | None


def parse_completion_request(body: bytes) -> CompletionRequest:
    """Decode and check `body`; raises `RequestError` naming the first problem."""
    try:
        data = json.loads(body)
    except ValueError:
        raise RequestError("We could not parse the JSON body of your request.") from None
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(
            "you must provide a model parameter", "model", "missing_required_parameter"
        )
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        # Token-id prompts need the model's vocabulary, which the simulator does not have.
        raise RequestError(
            "'prompt' must be a string (the simulator takes no token ids or batches).",
            "prompt",
            "invalid_type",
        )
    if data.get("stream"):
        raise RequestError(
            "The simulator's /v1/completions does not stream.", "stream", "unsupported_value"
        )
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("Invalid type for 'seed': expected an integer.", "seed", "invalid_type")
    return CompletionRequest(model=model, prompt=prompt, seed=seed)


def _plan(prompt: str, voice: Voice) -> Plan:
    if vault.TOOL in prompt:
        return vault.answer(prompt, voice)
    return Plan(
        reasoning=voice.pick(_PLAIN),
        content="I read the prompt as plain text and have nothing to call, so this is my answer.",
    )


def complete(request: CompletionRequest, config: SimConfig) -> dict[str, Any]:
    """The `text_completion` object the simulated host returns for `request`."""
    template = template_for(resolve_family(request.model, DIALECTS[config.dialect].family).name)
    seed = request.seed if request.seed is not None else config.seed
    digest = hashlib.blake2b(request.prompt.encode(), digest_size=8).hexdigest()
    plan = _plan(request.prompt, Voice(f"{seed}:raw:{digest}"))
    # The raw model writes its turn in its family's token format, reasoning inline; the
    # stop token that ends it is not part of the text, as servers return it.
    text = _STOP.sub("", template.completion(plan.reasoning, plan.content, []))
    prompt_tokens = count_tokens(request.prompt)
    completion_tokens = count_tokens(text)
    return {
        "id": "cmpl-" + uuid.uuid4().hex,
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": wire.SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }

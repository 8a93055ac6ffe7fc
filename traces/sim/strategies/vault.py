"""Vault strategy: the planted-secret probe (`traces probe`, probe `planted_secret`).

The model picks a code in its reasoning only, seals the vault with a tool that never takes
the code, and must state the code once the tool has answered. A real model can do that only
if the host carried its earlier reasoning back into the prompt. So this strategy reads the
code from the prompt as the host rendered it (what the model actually sees), never from the
request's messages: a host whose template drops history reasoning leaves the simulated model
as empty-handed as a real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from traces.sim.strategies.base import Plan, looks_like_error
from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice

TOOL = "seal_vault"
"""The tool whose declaration selects this strategy."""

_CODE = re.compile(r"\bvault code (?:is )?(\d{4})\b")

_CHOOSE = (
    "I'll pick the vault code {code}. It must stay out of every tool call, and seal_vault "
    "only takes a label, so I'll seal the vault now and tell the user the code afterwards.",
    "Choosing the vault code is {code}. Keeping it to myself until the vault is sealed; the "
    "seal_vault call gets just a label.",
)
_RECALL = (
    "The vault is sealed. Earlier I settled on it: the vault code is {code}. Now I can say it.",
    "Sealed. My earlier reasoning has the vault code {code}, so I'll give it to the user.",
)
_LOST = (
    "The vault is sealed, but the code I picked is nowhere in what I can see: my earlier "
    "reasoning is gone from the conversation. I must not invent one.",
    "Sealed. I can't find the code I chose anywhere in the context, so I'll admit it.",
)


def recall(prompt: str) -> str | None:
    """The vault code stated in `prompt` (a rendered prompt), None when it is not there."""
    match = _CODE.search(prompt)
    return match.group(1) if match else None


def answer(prompt: str, voice: Voice) -> Plan:
    """The turn after sealing: state the code if the prompt holds it, else say it is lost."""
    code = recall(prompt)
    if code is None:
        return Plan(
            reasoning=voice.pick(_LOST),
            content="The vault is sealed, but I no longer know the code I picked.",
        )
    return Plan(
        reasoning=voice.pick(_RECALL, code=code),
        content=f"The vault is sealed. The code I picked is {code}.",
    )


class VaultStrategy:
    """Pick a code in reasoning, seal the vault, then state the code if it is still visible."""

    name = "vault"

    def __init__(self, prompt_text: Callable[[], str] | None) -> None:
        """`prompt_text` returns the rendered prompt (None: the model sees no history text)."""
        self._prompt_text = prompt_text

    def failed(self, call: Call) -> bool:
        """A seal that returned an error (or nothing)."""
        return looks_like_error(call.result)

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """Seal first; once a seal succeeded, answer from what the prompt still shows."""
        sealed = any(not self.failed(c) for turn in transcript.turns for c in turn.calls)
        if not sealed:
            code = str(voice.rng.randrange(1000, 10000))
            return Plan(
                reasoning=voice.pick(_CHOOSE, code=code), calls=((TOOL, {"label": "probe"}),)
            )
        prompt = self._prompt_text() if self._prompt_text is not None else ""
        return answer(prompt, voice)

"""One provider's probe verdicts: its template fingerprint and what each probe pair showed.

The fingerprint is a short hash over the vector of `prompt_tokens` the chat probes gave:
the baseline count, then the difference each paired probe makes against its pair. Two hosts
that render the probes alike get the same fingerprint whatever they answer; a host that
drops reasoning, renders ids or declares tools differently gets another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from analyzer.probes.load import ProbeResult
from analyzer.probes.parameters import ParameterVerdict

VECTOR: list[tuple[str, str, str | None]] = [
    ("plain", "plain", None),
    ("tools", "tools", "plain"),
    ("reasoning", "history_reasoning", "history_no_reasoning"),
    ("ids", "history_kimi_ids", "history_reasoning"),
    ("args", "history_object_args", "history_reasoning"),
]
"""Fingerprint components: (name, probe, minus probe); the first is an absolute count."""

REJECTED = "x"
"""A component whose probes the host refused (an HTTP error)."""
MISSING = "?"
"""A component whose probes were not run or gave no count."""

Component = int | str


@dataclass
class ProviderVerdict:
    """What the probes say about one provider."""

    provider: str
    model: str
    dialect: str | None
    probed_at: str
    vector: dict[str, Component]
    fingerprint: str
    reasoning_counted: str
    """`yes` (history reasoning adds prompt tokens), `no`, `required` (400 without it)."""
    secret_recalled: str
    """`yes` / `no` / `error`, with the raw variant's verdict in parentheses."""
    ids_emitted: str
    ids_rewritten: str
    object_args: str
    raw: str
    raw_deltas: dict[str, int] = field(default_factory=dict)
    """chat minus raw `prompt_tokens`, per probe answered by both endpoints."""
    rejects: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    """Per chat probe: `answer`, `call NAME`, or `HTTP STATUS`."""
    parameters: dict[str, ParameterVerdict] = field(default_factory=dict)
    """Per parameter probe: honoured, refused, ignored or unknown, and why."""

    def vector_text(self) -> str:
        """The vector for people: `plain 44 · tools +206 · reasoning +29 · …`."""
        parts = []
        for name, value in self.vector.items():
            shown = value if isinstance(value, str) or name == "plain" else f"{value:+d}"
            parts.append(f"{name} {shown}")
        return " · ".join(parts)

    def as_row(self) -> dict[str, Any]:
        """Plain fields for JSON and CSV output."""
        return {
            "provider": self.provider,
            "model": self.model,
            "dialect": self.dialect,
            "probed_at": self.probed_at,
            "fingerprint": self.fingerprint,
            "vector": self.vector,
            "reasoning_counted": self.reasoning_counted,
            "secret_recalled": self.secret_recalled,
            "ids_emitted": self.ids_emitted,
            "ids_rewritten": self.ids_rewritten,
            "object_args": self.object_args,
            "raw": self.raw,
            "raw_deltas": self.raw_deltas,
            "rejects": self.rejects,
            "outcomes": self.outcomes,
            "parameters": {name: v.as_row() for name, v in self.parameters.items()},
        }


def fingerprint(vector: dict[str, Component]) -> str:
    """First 10 hex digits of the sha256 of the vector's canonical JSON."""
    material = json.dumps(list(vector.items()), separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:10]


def provider_verdict(results: list[ProbeResult]) -> ProviderVerdict:
    """The verdicts of one provider's probing (`results` all share one provider)."""
    chat = {r.probe: r for r in results if r.variant == "chat"}
    raw = {r.probe: r for r in results if r.variant == "raw"}
    first = results[0]
    vector = {name: _component(chat, probe, minus) for name, probe, minus in VECTOR}
    return ProviderVerdict(
        provider=first.provider,
        model=first.model,
        dialect=first.dialect,
        probed_at=min(r.started_at for r in results).strftime("%Y-%m-%d %H:%M:%S"),
        vector=vector,
        fingerprint=fingerprint(vector),
        reasoning_counted=_reasoning(chat, vector["reasoning"]),
        secret_recalled=_secret(chat.get("planted_secret"), raw.get("planted_secret")),
        ids_emitted=_ids_emitted(chat),
        ids_rewritten=_ids_rewritten(chat, first.ids_expected),
        object_args=_object_args(chat.get("history_object_args")),
        raw=_raw(chat, raw),
        raw_deltas=_raw_deltas(chat, raw),
        rejects=[
            f"{r.probe}{':raw' if r.variant == 'raw' else ''}: {r.error}"
            for r in results
            if r.status != "completed" and r.error
        ],
        outcomes={name: _outcome(r) for name, r in chat.items()},
    )


def _count(result: ProbeResult | None) -> Component:
    if result is None:
        return MISSING
    if not result.ok:
        return REJECTED
    return result.prompt_tokens if result.prompt_tokens is not None else MISSING


def _component(chat: dict[str, ProbeResult], probe: str, minus: str | None) -> Component:
    value = _count(chat.get(probe))
    if minus is None or isinstance(value, str):
        return value
    base = _count(chat.get(minus))
    return base if isinstance(base, str) else value - base


def _reasoning(chat: dict[str, ProbeResult], delta: Component) -> str:
    with_reasoning = chat.get("history_reasoning")
    without = chat.get("history_no_reasoning")
    if with_reasoning is not None and with_reasoning.ok and without is not None and not without.ok:
        return "required"  # the host refuses history without it, so it must be reading it
    if isinstance(delta, str):
        return "unknown"
    return "yes" if delta > 0 else "no"


def _secret(chat: ProbeResult | None, raw: ProbeResult | None) -> str:
    if chat is None:
        return "unknown"
    if not chat.ok:
        return "error"
    verdict = "yes" if chat.success else "no"
    if raw is not None and raw.ok:
        # The same conversation rendered client-side: tells the model's part from the host's.
        verdict += f" (raw: {'yes' if raw.success else 'no'})"
    return verdict


def _ids_emitted(chat: dict[str, ProbeResult]) -> str:
    styles = sorted({f for r in chat.values() if r.ok for f in r.id_formats})
    return ", ".join(styles) if styles else "none"


def _ids_rewritten(chat: dict[str, ProbeResult], expected: str | None) -> str:
    styles = {f for r in chat.values() if r.ok for f in r.id_formats}
    if not styles or expected is None:
        return "unknown"
    others = sorted(styles - {expected})
    return f"yes ({', '.join(others)} where {expected} is expected)" if others else "no"


def _object_args(result: ProbeResult | None) -> str:
    if result is None:
        return "unknown"
    if result.ok:
        return "accepted"
    return f"rejected (HTTP {result.http_status})" if result.http_status else "rejected"


def _raw_deltas(chat: dict[str, ProbeResult], raw: dict[str, ProbeResult]) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for name, result in raw.items():
        sent = chat.get(name)
        if (
            sent is not None
            and sent.ok
            and result.ok
            and sent.prompt_tokens is not None
            and result.prompt_tokens is not None
        ):
            deltas[name] = sent.prompt_tokens - result.prompt_tokens
    return deltas


def _raw(chat: dict[str, ProbeResult], raw: dict[str, ProbeResult]) -> str:
    if not raw:
        return "not probed (no template)"
    if any(r.not_served for r in raw.values()):
        return "not served"
    deltas = _raw_deltas(chat, raw)
    failed = [name for name, r in raw.items() if not r.ok]
    differs = {name: d for name, d in deltas.items() if d != 0}
    parts = []
    if differs:
        listed = ", ".join(f"{name} {d:+d}" for name, d in differs.items())
        parts.append(f"chat differs: {listed}")
    elif deltas:
        parts.append(f"matches on {len(deltas)} probes")
    if failed:
        parts.append(f"failed: {', '.join(failed)}")
    return "; ".join(parts) or "no comparable probes"


def _outcome(result: ProbeResult) -> str:
    if not result.ok:
        return f"HTTP {result.http_status}" if result.http_status else "error"
    if result.tool_names:
        return "call " + ", ".join(result.tool_names)
    return "answer"

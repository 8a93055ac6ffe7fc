"""Streaming irregularities the assembler noted (`steps.anomalies`), one finding each.

The assembler already rebuilt the intended message; these findings say the host's stream
would break a naive client (name concatenated, index missing, arguments doubled, the stream
cut before `[DONE]`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analyzer.checks.records import Finding, Run, Step
from traces.responses import SAMPLING_ANOMALIES

ANOMALIES = (
    "finish_reason_changed",
    "tool_call_id_changed",
    "tool_call_id_repeated",
    "tool_call_name_changed",
    "tool_call_name_repeated",
    "tool_call_arguments_object_in_stream",
    "tool_call_arguments_cumulative",
    "tool_call_index_missing",
    "tool_call_index_not_zero_based",
    "tool_call_index_split",
    "unparsable_chunk",
    "stream_without_done",
)
"""Anomaly kinds the stream assembler and the client note (traces/stream.py, traces/client.py)."""

OTHER = "stream_other"
"""The finding for an anomaly kind this module does not know yet (a newer recorder's)."""


def finding_kind(anomaly: str) -> str:
    """The finding kind of one anomaly kind: `stream_` + its name, said once."""
    if anomaly not in ANOMALIES:
        return OTHER
    return f"stream_{anomaly.removeprefix('stream_')}"


KINDS = frozenset({*(finding_kind(a) for a in ANOMALIES), OTHER})
"""Finding kinds this module emits (the catalogue describes each)."""


def stream_anomalies(step: Step, run: Run) -> Iterator[Finding]:
    """`stream_<anomaly>` per anomaly kind on the step, with how often it occurred."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for anomaly in step.anomalies:
        kind = str(anomaly.get("kind", "unknown"))
        if kind not in SAMPLING_ANOMALIES:  # the answer against its request: `sampling`'s
            grouped.setdefault(kind, []).append(anomaly)
    for anomaly_kind, items in grouped.items():
        kind = finding_kind(anomaly_kind)
        detail = {k: v for k, v in items[0].items() if k != "kind"}
        evidence: dict[str, Any] = {"count": len(items), "first": detail}
        if kind == OTHER:
            evidence["anomaly"] = anomaly_kind
        yield Finding(kind, "warning", "provider", step.index, evidence)

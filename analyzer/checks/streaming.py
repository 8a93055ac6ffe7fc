"""Streaming irregularities the assembler noted (`steps.anomalies`), one finding each.

The assembler already rebuilt the intended message; these findings say the host's stream
would break a naive client (name concatenated, index missing, arguments doubled).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analyzer.checks.records import Finding, Run, Step


def stream_anomalies(step: Step, run: Run) -> Iterator[Finding]:
    """`stream_<anomaly>` per anomaly kind on the step, with how often it occurred."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for anomaly in step.anomalies:
        grouped.setdefault(str(anomaly.get("kind", "unknown")), []).append(anomaly)
    for kind, items in grouped.items():
        detail = {k: v for k, v in items[0].items() if k != "kind"}
        yield Finding(
            f"stream_{kind}",
            "warning",
            "provider",
            step.index,
            {"count": len(items), "first": detail},
        )

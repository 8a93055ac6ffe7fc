"""Which probes set a provider apart: values that differ from what the others show.

Each feature (a fingerprint component, a verdict, a probe's outcome) is compared across the
providers that have a value for it. A provider is set apart where its value differs from
the strict majority's; with no majority (two providers, or a tie) every provider that
differs from another is listed, beside the values the others have.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from analyzer.probes.verdicts import MISSING, VECTOR, ProviderVerdict

_VERDICTS: list[tuple[str, str, str]] = [
    ("reasoning counted", "reasoning_counted", "history_reasoning, history_no_reasoning"),
    ("secret recalled", "secret_recalled", "planted_secret"),
    ("ids emitted", "ids_emitted", "tools, history_*"),
    ("object args", "object_args", "history_object_args"),
    ("raw vs chat", "raw", "all (raw /completions)"),
]


def _features(verdict: ProviderVerdict) -> dict[str, tuple[str, str]]:
    """feature -> (value, the probes it comes from)."""
    features: dict[str, tuple[str, str]] = {}
    for name, probe, minus in VECTOR:
        value = verdict.vector.get(name, MISSING)
        if value == MISSING:
            continue
        label = f"prompt_tokens {probe}" if minus is None else f"Δ {name}"
        features[label] = (str(value), probe if minus is None else f"{probe} − {minus}")
    for label, attribute, probes in _VERDICTS:
        value = str(getattr(verdict, attribute))
        if value != "unknown":
            features[label] = (value, probes)
    for probe, outcome in verdict.outcomes.items():
        features[f"outcome {probe}"] = (outcome, probe)
    for probe, parameter in verdict.parameters.items():
        features[f"parameter {probe}"] = (parameter.verdict, probe)
    return features


def sets_apart(verdicts: list[ProviderVerdict]) -> list[dict[str, Any]]:
    """One row per (provider, feature) where the provider differs from the others."""
    if len(verdicts) < 2:
        return []
    features = {v.provider: _features(v) for v in verdicts}
    names: list[str] = []
    for table in features.values():
        names.extend(name for name in table if name not in names)
    rows: list[dict[str, Any]] = []
    for name in names:
        values = {p: table[name] for p, table in features.items() if name in table}
        if len(values) < 2 or len({value for value, _ in values.values()}) == 1:
            continue
        counts = Counter(value for value, _ in values.values())
        ranked = counts.most_common()
        majority = ranked[0][0] if ranked[0][1] > ranked[1][1] else None
        for provider, (value, probes) in values.items():
            if value == majority:
                continue
            others = Counter(v for p, (v, _) in values.items() if p != provider)
            rows.append(
                {
                    "provider": provider,
                    "feature": name,
                    "value": value,
                    "others": majority
                    if majority is not None
                    else "; ".join(f"{v} ×{n}" if n > 1 else v for v, n in others.items()),
                    "majority": majority is not None,
                    "probes": probes,
                }
            )
    return rows

"""The read side of `traces probe`: stored probe runs turned into per-provider verdicts.

`load` reads the latest probing of each provider, `verdicts` computes one provider's
template fingerprint and verdicts, `parameters` whether each sampling parameter was honoured,
refused or silently ignored, `apart` finds what sets providers apart from each other.
"""

from __future__ import annotations

import duckdb

from analyzer.probes.apart import sets_apart
from analyzer.probes.load import ProbeResult, load_probe_results
from analyzer.probes.parameters import ParameterVerdict, parameter_verdicts
from analyzer.probes.verdicts import ProviderVerdict, fingerprint, provider_verdict


def probe_report(
    conn: duckdb.DuckDBPyConnection, providers: list[str] | None = None
) -> tuple[list[ProviderVerdict], list[dict[str, object]]]:
    """Verdicts of each provider's latest probing, and the rows that set providers apart."""
    results = load_probe_results(conn, providers)
    by_provider: dict[str, list[ProbeResult]] = {}
    for result in results:
        by_provider.setdefault(result.provider, []).append(result)
    verdicts = [provider_verdict(rows) for rows in by_provider.values()]
    parameters = parameter_verdicts(conn, results)
    for verdict in verdicts:
        verdict.parameters = parameters.get(verdict.provider, {})
    return verdicts, sets_apart(verdicts)


__all__ = [
    "ParameterVerdict",
    "ProbeResult",
    "ProviderVerdict",
    "fingerprint",
    "load_probe_results",
    "probe_report",
    "provider_verdict",
    "sets_apart",
]

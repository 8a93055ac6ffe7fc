"""The probes' template fingerprint of each provider, for `template_fingerprint` criteria."""

from __future__ import annotations

import duckdb

from analyzer.probes import probe_report
from analyzer.probes.verdicts import MISSING


def load_fingerprints(
    conn: duckdb.DuckDBPyConnection, providers: list[str]
) -> dict[str, str | None]:
    """Provider -> fingerprint of its latest probing; None where a component is missing (a
    probe not run or without a count), since such a fingerprint differs from any complete
    one for no reason of the host's. Providers never probed are absent."""
    verdicts, _ = probe_report(conn, providers)
    return {v.provider: None if MISSING in v.vector.values() else v.fingerprint for v in verdicts}

"""What an analysis stores, named apart from the checks: the statements that clear runs'
findings and ledgers, and a run's findings counted.

Importing the checks takes a third of a second (the families' patterns, jsonschema, the
catalogue). The process that hands a large analysis to workers and stores what they found
(`parallel`) needs none of them: it imports this instead, and starts the workers that much
sooner.
"""

from __future__ import annotations

from collections import Counter

from traces.store.run_tables import of_runs

RUN_IDS = "SELECT unnest(from_json($1, '[\"VARCHAR\"]'))"
"""The run ids, bound as one JSON text (`traces.store.inserts.json_list`): bound as a list,
each id is a Python value DuckDB converts at a cost (see `traces.store.inserts`)."""
DELETE_FINDINGS = f"DELETE FROM findings WHERE {of_runs(RUN_IDS)}"
DELETE_LEDGERS = f"DELETE FROM ledgers WHERE {of_runs(RUN_IDS)}"
"""The runs' keys bound the rows scanned (`run_tables.of_runs`)."""

FindingCounts = Counter[tuple[str, str]]
"""A run's findings counted by (severity, kind), in the order the kinds first occur: what
a command prints about them and what `--fail-on` weighs, without their evidence."""

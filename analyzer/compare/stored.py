"""Comparing runs already in a store: the path of `traces compare` without `--suite`, of
`traces report` and `traces verify`, kept apart from recording so that reading a store
imports nothing of the recorder (the endpoint client, the simulator)."""

from __future__ import annotations

from analyzer.compare.build import build_comparison
from analyzer.compare.costs import PriceList
from analyzer.compare.model import Comparison
from analyzer.compare.selection import Selection, select_run_refs
from traces.store.database import Store, open_for_reading


def compare_stored(
    db_path: Store,
    selection: Selection,
    *,
    prices: PriceList,
    reference: str | None,
    resamples: int,
    run_refs: list[str] | None = None,
    suite: str | None = None,
    group_order: list[str] | None = None,
) -> Comparison:
    """Compare the stored runs `selection` (narrowed to `run_refs`, if any) picks."""
    with open_for_reading(db_path) as conn:
        select_run_refs(conn, selection, run_refs or [])
        return build_comparison(
            conn,
            selection,
            prices=prices,
            reference=reference,
            resamples=resamples,
            suite=suite,
            group_order=group_order or (),
        )

"""/comparison: the comparison of `traces compare` with its intervals, as the page
`traces report` writes (its table, significant differences and charts), built live from the
store for the filters in the query string."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from analyzer.compare.costs import PriceList
from analyzer.compare.group_by import GroupBy
from analyzer.compare.selection import selection_from_options
from analyzer.report.build import build_report
from analyzer.report.page import POLICY, render_page
from analyzer.view.reading import StoreReader
from traces.errors import TracesError


def comparison_page(reader: StoreReader, request: Request) -> Response:
    """The report page of the runs the query selects (`provider` repeated, `model`, `task`
    repeated, `since`, `until`, `origin` repeated, `by`, `reference`), without run
    timelines (the viewer has its own). The page carries the report's own policy: no script
    at all, its styles inline."""
    params = request.query_params
    by = params.get("by") or GroupBy.provider.value
    if by not in {g.value for g in GroupBy}:
        raise TracesError(f"by={by!r}: one of {', '.join(g.value for g in GroupBy)}")
    selection = selection_from_options(
        providers=params.getlist("provider") or None,
        model=params.get("model") or None,
        tasks=params.getlist("task") or None,
        since=params.get("since") or None,
        until=params.get("until") or None,
        origins=params.getlist("origin") or None,
        by=GroupBy(by),
    )
    with reader.connection() as conn:
        built = build_report(
            conn,
            selection,
            database=reader.store,
            prices=PriceList.from_file(None),
            reference=params.get("reference") or None,
            runs_per_group=0,
        )
    return HTMLResponse(render_page(built), headers={"content-security-policy": POLICY})

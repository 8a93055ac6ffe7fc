"""The viewer's pages: each reads the store for its request, through the read queries the
CLI uses (`analyzer.queries`, `analyzer.findings`, `analyzer.readonly_sql`), and renders
one template.

URLs are the deep links: /runs (filters, order and page in the query string),
/runs/RUN, /runs/RUN/steps/N, /findings, /findings/KIND, /compare, /compare/HASH, /sql.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import duckdb
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from analyzer.checks.catalogue import describe
from analyzer.findings import finding_counts, finding_details
from analyzer.output import csv_cell
from analyzer.queries import (
    RUN_ORDERS,
    RunSearch,
    count_runs,
    list_runs,
    neighbour_steps,
    resolve_run_id,
    run_detail,
    step_exchange,
)
from analyzer.readonly_sql import read_only_query, single_query
from analyzer.view.background import Background, Outcome, WorkFailed
from analyzer.view.data import answers_to, filter_choices, live_version, repeated_requests
from analyzer.view.reading import StoreReader, read_yielding
from analyzer.view.render import environment
from analyzer.view.search import search_text
from traces.errors import TracesError
from traces.store.database import Store

T = TypeVar("T")

KEPT_WAIT_S = 0.2
"""How long a page waits for counts being computed before answering without them."""
KEPT_ROWS = 10_000
"""Rows of a listing kept per store version; pages beyond them are read on request."""
PAGE_ROWS = 50
"""Rows per page of every listing."""
SQL_ROWS = 1000
"""The SQL console's default row limit (`traces sql`'s)."""
SQL_MAX_ROWS = 10000
"""The most rows the console shows; the CSV download takes up to `SQL_CSV_MAX_ROWS`."""
SQL_CSV_MAX_ROWS = 1_000_000
SIDE_BY_SIDE = 12
"""Columns of a side by side at most."""
STATUSES = ("running", "completed", "failed", "interrupted")
DEFAULT_SQL = (
    "SELECT provider, model, count(*) AS runs, avg(steps) AS mean_steps\n"
    "FROM runs GROUP BY ALL ORDER BY runs DESC"
)


@dataclass(frozen=True)
class Live:
    """What an open page polls to follow the store: `/api/live` of its run (`run`, "" for
    the store as a whole), and the store's fingerprint read before the page's data
    (`since`). A page that took its first fingerprint from its first poll would miss what
    was committed between its read and that poll, and stay stale if nothing came after."""

    run: str
    since: str


class BadRequest(TracesError):
    """A parameter of the request that cannot be read (answered 400)."""


class NotFound(TracesError):
    """Something the URL names that the store lacks (answered 404)."""


def _int(request: Request, name: str, default: int, *, least: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r}: not a whole number") from None
    if value < least:
        raise BadRequest(f"{name}={value}: must be at least {least}")
    return value


def _time(request: Request, name: str) -> datetime | None:
    """A time from a `datetime-local` field or ISO 8601 text, as the store's naive UTC."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r}: not a date or time (2026-12-05T14:00)") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _choice(request: Request, name: str, allowed: list[str] | tuple[str, ...]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in allowed:
        raise BadRequest(f"{name}={value!r}: one of {', '.join(allowed)}")
    return value


class Pages:
    """The request handlers, over one store."""

    def __init__(self, store: Store) -> None:
        """Serve pages of `store`."""
        self.store = store
        self.reader = StoreReader(store)
        self.env = environment()
        self.background = Background()

    @staticmethod
    def _live(conn: duckdb.DuckDBPyConnection, run_id: str = "") -> Live:
        """The store's fingerprint for a page about to read its data (see `Live`)."""
        return Live(run_id, live_version(conn, run_id or None))

    def _kept(
        self,
        live: Live,
        key: Hashable,
        work: Callable[[duckdb.DuckDBPyConnection], T],
    ) -> Outcome[T]:
        """What `work` reads over the whole store (too much for a request on a large
        one), computed in the background once per store version (`background`)."""
        return self.background.get(
            key, live.since, lambda: read_yielding(self.reader, work), wait_s=KEPT_WAIT_S
        )

    def _kept_page(
        self, template: str, request: Request, outcome: Outcome[Any], **values: Any
    ) -> Response:
        """A page of kept counts: while they are being updated, it says so and reloads
        itself until they are current."""
        if outcome.current and outcome.error is not None:
            raise (WorkFailed if outcome.failed else TracesError)(outcome.error)
        response = self._page(template, request, kept=outcome, **values)
        if not outcome.current:
            response.headers["refresh"] = "1"
        return response

    @contextlib.contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Never kept from a writer: see `analyzer.view.reading`.
        with self.reader.connection() as conn:
            yield conn

    def _page(self, template: str, request: Request, status: int = 200, **values: Any) -> Response:
        html = self.env.get_template(template).render(
            params=dict(request.query_params),
            path=request.url.path,
            store=str(self.store),
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, line: str) -> Response:
        """An error page: one line."""
        return self._page("error.html", request, status=status, line=line, live=None)

    # Runs -----------------------------------------------------------------------------

    def runs(self, request: Request) -> Response:
        """/runs: the runs, filtered, ordered and paginated in the query."""
        with self._reading() as conn:
            live = self._live(conn)
            choices = filter_choices(conn)
            equal = {c: _choice(request, c, choices[c]) for c in ("task", "provider", "model")}
            equal["origin"] = request.query_params.get("origin") or None
            status = _choice(request, "status", STATUSES)
            search = RunSearch(
                kind=_choice(request, "kind", choices["kind"]),
                since=_time(request, "since"),
                until=_time(request, "until"),
            )
            text = request.query_params.get("q") or None
            order = _choice(request, "sort", list(RUN_ORDERS)) or "started_at"
            descending = request.query_params.get("dir", "desc") != "asc"
            page = _int(request, "page", 1, least=1)
            searched = None
            offset = (page - 1) * PAGE_ROWS
            if text is not None:
                # A part of the store at a time (`search`): pages go on from where the
                # last one stopped (`from`), not by number.
                searched = search_text(
                    conn,
                    text,
                    equal=equal,
                    status=status,
                    search=search,
                    order=order,
                    descending=descending,
                    start=_int(request, "from", 0),
                    wanted=PAGE_ROWS,
                )
                search = replace(search, ids=tuple(searched.ids))
                offset = 0
            rows = list_runs(
                conn,
                status=status,
                search=search,
                order=order,
                descending=descending,
                limit=PAGE_ROWS,
                offset=offset,
                **equal,
            )
            if searched is None:
                total = count_runs(conn, status=status, search=search, **equal)
            else:
                total = len(rows)
        return self._page(
            "runs.html",
            request,
            rows=rows,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_ROWS)),
            first=offset + 1 + (searched.start if searched else 0),
            searched=searched,
            choices=choices,
            statuses=STATUSES,
            order=order,
            descending=descending,
            live=live,
        )

    def run(self, request: Request) -> Response:
        """/runs/RUN: the run's timeline, each step expandable."""
        with self._reading() as conn:
            run_id = _run_id(conn, request.path_params["run"])
            live = self._live(conn, run_id)
            detail = run_detail(conn, run_id)
        return self._page("run.html", request, run=detail, live=live)

    def step_part(self, request: Request) -> Response:
        """/runs/RUN/steps/N/body: what a run's page shows when step N is opened."""
        index = _path_int(request.path_params["idx"])
        with self._reading() as conn:
            run_id = _run_id(conn, request.path_params["run"])
            detail = run_detail(conn, run_id, only_step=index)
        if not detail["steps"]:
            raise NotFound(f"run {run_id} has no step {index}")
        return self._page("step_part.html", request, run=detail, step=detail["steps"][0])

    def step(self, request: Request) -> Response:
        """/runs/RUN/steps/N: one step in full, the request as sent beside the raw answer."""
        index = _path_int(request.path_params["idx"])
        with self._reading() as conn:
            run_id = _run_id(conn, request.path_params["run"])
            detail = run_detail(conn, run_id, only_step=index)
            exchange = step_exchange(conn, run_id, index)
            previous, following = neighbour_steps(conn, run_id, index)
        if exchange is None or not detail["steps"]:
            raise NotFound(f"run {run_id} has no step {index}")
        return self._page(
            "step.html",
            request,
            run=detail,
            step=detail["steps"][0],
            exchange=exchange,
            previous=previous,
            next=following,
            live=None,
        )

    # Findings -------------------------------------------------------------------------

    def findings(self, request: Request) -> Response:
        """/findings: findings by kind × provider × model."""
        filters = {
            "provider": request.query_params.get("provider") or None,
            "model": request.query_params.get("model") or None,
            "layer": request.query_params.get("layer") or None,
        }
        with self._reading() as conn:
            live = self._live(conn)
            outcome = self._kept(
                live,
                ("findings", *filters.values()),
                lambda c: finding_counts(c, **filters),
            )
        rows = [dict(row, description=describe(row["kind"])) for row in outcome.value or []]
        return self._kept_page("findings.html", request, outcome, rows=rows, live=live)

    def findings_of_kind(self, request: Request) -> Response:
        """/findings/KIND: every finding of one kind, to its step, newest run first."""
        kind = request.path_params["kind"]
        page = _int(request, "page", 1, least=1)
        filters = {
            "provider": request.query_params.get("provider") or None,
            "model": request.query_params.get("model") or None,
        }
        with self._reading() as conn:
            live = self._live(conn)
            rows = finding_details(
                conn,
                kind=kind,
                limit=PAGE_ROWS + 1,
                offset=(page - 1) * PAGE_ROWS,
                **filters,
            )
        return self._page(
            "kind.html",
            request,
            kind=kind,
            description=describe(kind),
            rows=rows[:PAGE_ROWS],
            more=len(rows) > PAGE_ROWS,
            page=page,
            first=(page - 1) * PAGE_ROWS + 1,
            live=live,
        )

    # Side by side ---------------------------------------------------------------------

    def compare(self, request: Request) -> Response:
        """/compare: requests answered more than once (by several providers, or repeats)."""
        page = _int(request, "page", 1, least=1)
        offset = (page - 1) * PAGE_ROWS
        with self._reading() as conn:
            live = self._live(conn)
            outcome = self._kept(
                live, ("repeated",), lambda c: repeated_requests(c, limit=KEPT_ROWS, offset=0)
            )
            kept, total = outcome.value or ([], 0)
            if offset + PAGE_ROWS <= KEPT_ROWS or total <= KEPT_ROWS:
                rows = kept[offset : offset + PAGE_ROWS]
            else:  # far down a long list: read that page alone
                rows, total = repeated_requests(conn, limit=PAGE_ROWS, offset=offset)
        return self._kept_page(
            "compare.html",
            request,
            outcome,
            rows=rows,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_ROWS)),
            live=live,
        )

    def side_by_side(self, request: Request) -> Response:
        """/compare/HASH: the answers to one request in columns, differences marked."""
        request_hash = request.path_params["hash"]
        with self._reading() as conn:
            live = self._live(conn)
            columns = answers_to(conn, request_hash, limit=SIDE_BY_SIDE)
        if not columns:
            raise NotFound(f"no step sent the request {request_hash}")
        return self._page(
            "side_by_side.html",
            request,
            request_hash=request_hash,
            columns=columns,
            differs=_differences(columns),
            live=live,
        )

    def probes(self, request: Request) -> Response:
        """/probes: each provider's template and parser fingerprint from its latest probing
        (`traces probe --report-only`), the parameters it honours, and what sets it apart."""
        from analyzer.probes import probe_report
        from traces.probes.catalogue import PROBE_SET_VERSION

        with self._reading() as conn:
            live = self._live(conn)
            verdicts, apart = probe_report(conn)
        rows = [v.as_row() for v in verdicts]
        details = [
            {"provider": v.provider, **p.as_row()} for v in verdicts for p in v.parameters.values()
        ]
        tables = [
            {
                "title": "Fingerprints",
                "id": "fingerprints",
                "columns": list(rows[0]) if rows else [],
                "rows": rows,
                "empty": "No probe runs of this probe set: `traces probe --provider NAME`.",
            },
            {
                "title": "Parameters: honoured, refused, or silently ignored",
                "id": "parameters",
                "columns": ["provider", "probe", "verdict", "confidence", "finding", "detail"],
                "rows": details,
                "empty": "No parameter probes.",
            },
            {
                "title": "What sets a provider apart",
                "id": "apart",
                "columns": ["provider", "feature", "value", "others", "probes"],
                "rows": apart,
                "empty": "Nothing sets one provider apart (or fewer than two were probed).",
            },
        ]
        return self._page(
            "tables.html",
            request,
            heading=f"Probe fingerprints (probe set v{PROBE_SET_VERSION})",
            intro="Each provider's latest probing, as `traces probe --report-only` reports it.",
            tables=tables,
            live=live,
        )

    def verdicts(self, request: Request, policies: dict[str, Any]) -> Response:
        """/verify: the policies whose verdict /verify/NAME shows; a policy judged against a
        reference it does not name offers each provider of the store as one."""
        with self._reading() as conn:
            providers = filter_choices(conn)["provider"]
        return self._page("verify.html", request, policies=policies, providers=providers, live=None)

    # SQL ------------------------------------------------------------------------------

    def sql(self, request: Request) -> Response:
        """/sql: one read-only query, its rows as a table (and a CSV link)."""
        text = request.query_params.get("q")
        limit = min(_int(request, "limit", SQL_ROWS, least=1), SQL_MAX_ROWS)
        names: list[str] = []
        rows: list[tuple[Any, ...]] = []
        truncated = False
        error = None
        if text:
            try:
                names, rows, truncated = self._query(text, limit)
            except TracesError as exc:
                error = str(exc)
        return self._page(
            "sql.html",
            request,
            text=text or DEFAULT_SQL,
            ran=bool(text),
            names=names,
            rows=rows,
            truncated=truncated,
            limit=limit,
            error=error,
            live=None,
            status=400 if error else 200,
        )

    def sql_csv(self, request: Request) -> Response:
        """/sql.csv: the same query's rows as a CSV download."""
        text = request.query_params.get("q")
        if not text:
            raise BadRequest("q: give the query to download")
        limit = min(_int(request, "limit", SQL_ROWS, least=1), SQL_CSV_MAX_ROWS)
        names, rows, _ = self._query(text, limit)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([csv_cell(v) for v in row] for row in rows)
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="traces-query.csv"'},
        )

    def _query(self, text: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        statement = single_query(text)
        with self._reading() as conn:
            return read_only_query(conn, self.store, statement, limit)

    # Live -----------------------------------------------------------------------------

    def live(self, request: Request) -> Response:
        """/api/live?run=RUN: the fingerprint open pages poll; a new one means new rows."""
        run = request.query_params.get("run") or None
        with self._reading() as conn:
            version = live_version(conn, run)
        return JSONResponse({"version": version}, headers={"cache-control": "no-store"})


def _run_id(conn: duckdb.DuckDBPyConnection, ref: str) -> str:
    try:
        return resolve_run_id(conn, ref)
    except TracesError as exc:
        raise NotFound(str(exc)) from None


def _path_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise NotFound(f"no step {raw!r}") from None


_COMPARED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "finish_reason": lambda s: s["finish_reason"],
    "reasoning": lambda s: (bool(s["reasoning"]), s["reasoning_source"]),
    "calls": lambda s: [(c["name"], c["arguments"]) for c in s["calls"]],
    "content": lambda s: s["content"] or "",
    "completion_tokens": lambda s: s["completion_tokens"],
    "reasoning_tokens": lambda s: s["reasoning_tokens"],
    "prompt_tokens": lambda s: s["prompt_tokens"],
    "error": lambda s: s["error_kind"],
}


def _differences(columns: list[dict[str, Any]]) -> dict[str, list[bool]]:
    """Per compared field, which columns differ from the first (the first never does)."""
    return {
        name: [read(c) != read(columns[0]) for c in columns] for name, read in _COMPARED.items()
    }

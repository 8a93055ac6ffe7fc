"""The viewer's ASGI application: routes, static files, errors as one-line pages, and the
guard (`security`) around it all."""

from __future__ import annotations

import sys
import traceback
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from analyzer.verify.policy import Policy
from analyzer.view.background import WorkFailed
from analyzer.view.comparison import Comparisons
from analyzer.view.pages import BadRequest, NotFound, Pages
from analyzer.view.security import ASGIApp, Guard
from traces.errors import DatabaseError, TracesError
from traces.store.database import Store


def build_app(
    store: Store, *, token: str | None = None, policies: dict[str, Policy] | None = None
) -> ASGIApp:
    """The viewer of `store`; `token` None serves loopback hosts only, else every request
    must carry it. `policies` (by name) can be judged on its comparisons."""
    pages = Pages(store)
    comparisons = Comparisons(pages.reader, policies or {})

    def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    async def failed(request: Request, exc: Exception) -> Response:
        status = 500
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, DatabaseError):
            status = 503
        elif isinstance(exc, BadRequest | TracesError):
            status = 400
        if isinstance(exc, TracesError | WorkFailed):
            line = str(exc)
        else:
            # The page says what failed in one line; the log says where, for the bug report.
            traceback.print_exception(exc, file=sys.stderr)
            line = f"internal error: {exc!r}"
        return pages.error(request, status, line)

    def policy_list(request: Request) -> Response:
        return pages.verdicts(request, comparisons.policies)

    static = Path(str(files("analyzer.view") / "static"))
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/runs", pages.runs),
            Route("/runs/{run}", pages.run),
            Route("/runs/{run}/steps/{idx}", pages.step),
            Route("/runs/{run}/steps/{idx}/body", pages.step_part),
            Route("/findings", pages.findings),
            Route("/findings/{kind}", pages.findings_of_kind),
            Route("/comparison", comparisons.comparison),
            Route("/verify", policy_list),
            Route("/verify/{name}", comparisons.verdict),
            Route("/compare", pages.compare),
            Route("/compare/{hash}", pages.side_by_side),
            Route("/probes", pages.probes),
            Route("/sql", pages.sql),
            Route("/sql.csv", pages.sql_csv),
            Route("/api/live", pages.live),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        exception_handlers={TracesError: failed, Exception: failed},
    )
    return Guard(app, token=token)

"""The viewer's ASGI application: routes, static files, errors as one-line pages, and the
guard (`security`) around it all."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from analyzer.view.comparison import comparison_page
from analyzer.view.pages import BadRequest, NotFound, Pages
from analyzer.view.security import ASGIApp, Guard
from traces.errors import DatabaseError, TracesError
from traces.store.database import Store


def build_app(store: Store, *, token: str | None = None) -> ASGIApp:
    """The viewer of `store`; `token` None serves loopback hosts only, else every request
    must carry it."""
    pages = Pages(store)

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
        line = str(exc) if isinstance(exc, TracesError) else f"internal error: {exc!r}"
        return pages.error(request, status, line)

    def comparison(request: Request) -> Response:
        return comparison_page(pages.reader, request)

    static = Path(str(files("analyzer.view") / "static"))
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/runs", pages.runs),
            Route("/runs/{run}", pages.run),
            Route("/runs/{run}/steps/{idx}", pages.step),
            Route("/findings", pages.findings),
            Route("/findings/{kind}", pages.findings_of_kind),
            Route("/comparison", comparison),
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

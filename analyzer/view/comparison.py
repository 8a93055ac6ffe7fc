"""/comparison and /verify: the comparison of `traces compare` with its intervals, as the
page `traces report` writes (its table, significant differences and charts), and a policy's
verdict on it (`traces verify`'s), for the filters in the query string.

A comparison reads every selected step and resamples every group: tens of seconds over a
million steps. So it is computed in the background (`background`), once per version of the
store, and kept: the page shows the result of the store as it is when there is one; else
the last result, marked as being updated, or that the comparison is in progress; both
refresh themselves (a `Refresh` header: the report's policy allows no script) until the
result is current. A verdict is judged on the kept comparison at each request (cheap).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from analyzer.compare.build import SHARED_DATABASE
from analyzer.compare.costs import PriceList
from analyzer.compare.group_by import GroupBy
from analyzer.compare.selection import selection_from_options
from analyzer.report.build import Report, build_report
from analyzer.report.page import POLICY, render_page
from analyzer.verify.fingerprints import load_fingerprints
from analyzer.verify.judge import verify
from analyzer.verify.model import Verification
from analyzer.verify.policy import Policy, PolicyFileError, load_policy
from analyzer.view.background import Background, Outcome, WorkFailed
from analyzer.view.data import filter_choices, live_version
from analyzer.view.pages import NotFound
from analyzer.view.reading import StoreReader, read_yielding
from traces.errors import TracesError
from traces.sample_files import sample_policies

WAIT_S = 0.2
"""How long a request waits for a comparison being computed before answering without it."""
REFRESH_S = 1
"""How often a page whose comparison is being computed reloads itself."""
SELECTION_PARAMS = ("provider", "model", "task", "since", "until", "origin", "by")


def load_policies(values: list[str]) -> dict[str, Policy]:
    """The policies `--policy` names (files or shipped names), by the name their URL takes
    (the file's stem), and the shipped ones; one-line PolicyFileError for a bad one."""
    policies = {name: load_policy(name) for name in sample_policies()}
    given: dict[str, str] = {}
    for value in values:
        name = Path(value).stem
        if name in given and given[name] != value:
            raise PolicyFileError(f"{value}: another --policy ({given[name]}) is named {name!r}")
        given[name] = value
        policies[name] = load_policy(value)
    return policies


class Comparisons:
    """The comparisons the viewer has computed, and the pages that show them."""

    def __init__(self, reader: StoreReader, policies: dict[str, Policy]) -> None:
        """Compare the store `reader` reads; judge `policies` on request."""
        self.reader = reader
        self.policies = policies
        self.background = Background()

    def comparison(self, request: Request) -> Response:
        """/comparison: the report page of the runs the query selects (`provider` repeated,
        `model`, `task` repeated, `since`, `until`, `origin` repeated, `by`, `reference`),
        without run timelines (the viewer has its own)."""
        outcome = self._outcome(request, request.query_params.get("reference") or None)
        return self._answer(outcome, None)

    def verdict(self, request: Request) -> Response:
        """/verify/NAME: the same page opening with the policy's verdict on it."""
        name = request.path_params["name"]
        policy = self.policies.get(name)
        if policy is None:
            known = ", ".join(self.policies) or "none"
            raise NotFound(f"no policy {name!r} (known: {known}; traces view --policy FILE)")
        reference = request.query_params.get("reference") or policy.reference
        if policy.needs_reference and reference is None:
            with self.reader.connection() as conn:
                providers = ", ".join(filter_choices(conn)["provider"]) or "none yet"
            raise PolicyFileError(
                f"{policy.source}: criteria: judged against a reference group: add "
                f"?reference=NAME (providers here: {providers}), or `reference` in the policy"
            )
        return self._answer(self._outcome(request, reference), policy)

    def _outcome(self, request: Request, reference: str | None) -> Outcome[Report]:
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
        key = (
            tuple((name, tuple(params.getlist(name))) for name in SELECTION_PARAMS),
            reference,
        )
        with self.reader.connection() as conn:
            version = live_version(conn, None)

        def work() -> Report:
            SHARED_DATABASE.set(True)  # the pages query this database meanwhile
            return read_yielding(
                self.reader,
                lambda conn: build_report(
                    conn,
                    selection,
                    database=self.reader.store,
                    prices=PriceList.from_file(None),
                    reference=reference,
                    runs_per_group=0,
                ),
            )

        return self.background.get(key, version, work, wait_s=WAIT_S)

    def _answer(self, outcome: Outcome[Report], policy: Policy | None) -> Response:
        headers = {"content-security-policy": POLICY, "cache-control": "no-store"}
        if not outcome.current:
            headers["refresh"] = str(REFRESH_S)
        if outcome.current and outcome.error is not None:
            raise (WorkFailed if outcome.failed else TracesError)(outcome.error)
        if outcome.value is None:
            return HTMLResponse(_progress(outcome), headers=headers)
        built = outcome.value
        if policy is not None:
            built = replace(built, verification=self._judge(policy, built))
        page = render_page(built)
        return HTMLResponse(page.replace("<body>", "<body>" + _status(outcome), 1), headers=headers)

    def _judge(self, policy: Policy, built: Report) -> Verification:
        comparison = built.comparison
        fingerprints = None
        if policy.needs_fingerprints and comparison.by is GroupBy.provider:
            with self.reader.connection() as conn:
                fingerprints = load_fingerprints(conn, [g.name for g in comparison.groups])
        return verify(policy, comparison, fingerprints)


def _when(at: float | None) -> str:
    return "–" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def _took(outcome: Outcome[Report]) -> str:
    if outcome.last_took_s is None:
        return ""
    return f" The last comparison of this selection took {outcome.last_took_s:.1f} s."


def _status(outcome: Outcome[Report]) -> Markup:
    """A line above the report: when it was computed, and whether it is being updated."""
    if outcome.current:
        text = f"Computed at {_when(outcome.done_at)} from the store as it is now."
    else:
        running = outcome.running_s or 0.0
        text = (
            f"Computed at {_when(outcome.done_at)}; the store has changed since, and the "
            f"comparison is being updated ({running:.0f} s so far): this page reloads "
            f"itself until it is current.{_took(outcome)}"
        )
    return Markup('<p class="viewer-status" id="comparison-status">{}</p>').format(escape(text))


def _progress(outcome: Outcome[Report]) -> str:
    """The page shown while the first comparison of a selection is computed."""
    running = outcome.running_s or 0.0
    page = Markup(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Comparing…</title></head><body>"
        '<p><a href="/runs">Runs</a></p><h1>Comparing…</h1>'
        '<p id="comparison-status">The comparison of these runs is being computed '
        "({running} s so far): this page reloads itself every {every} s until it is "
        "ready, then shows it.{took}</p></body></html>"
    ).format(running=f"{running:.0f}", every=REFRESH_S, took=_took(outcome))
    return str(page)

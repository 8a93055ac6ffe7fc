"""The report's verdict section: a policy (`traces verify`'s) judged on the page's comparison,
overall and criterion by criterion, with the interval each was judged on and why."""

from __future__ import annotations

from analyzer.report.markup import Markup, concat, element
from analyzer.verify.model import Verification
from analyzer.verify.render import shown_estimate

_COLUMNS = ("group", "criterion", "rule", "estimate [95% interval]", "verdict", "why")


def verdict_section(verification: Verification) -> Markup:
    """The overall status, then a table: group, criterion, rule, estimate, verdict, why."""
    counts = verification.counts()
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    heading = element(
        "p",
        element("strong", verification.status.upper(), class_=f"status {verification.status}"),
        f" — policy {verification.policy} ({verification.policy_file}): {shown}. "
        + verification.description,
        id="verdict-status",
    )
    rows = [
        element(
            "tr",
            element("td", j.group),
            element("td", j.criterion),
            element("td", j.rule),
            element("td", shown_estimate(j)),
            element("td", j.status.upper(), class_=f"status {j.status}"),
            element("td", j.reason),
            data_status=j.status,
            data_group=j.group,
            data_criterion=j.criterion,
        )
        for j in verification.judgements
    ]
    header = element(
        "thead",
        element(
            "tr",
            [
                element("th", name, scope="col")
                for name in (
                    "group",
                    "criterion",
                    "rule",
                    "estimate [95% interval]",
                    "verdict",
                    "why",
                )
            ],
        ),
    )
    table = element("table", header, element("tbody", rows), class_="verdict-table")
    return concat(heading, element("div", table, class_="scroll"))

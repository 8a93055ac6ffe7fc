"""Per-run timelines: one row of step cells per run, coloured and lettered by how the step
ended, outlined where a check found something; the findings, the final answer and the error
below in a collapsed block."""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.checks.catalogue import describe
from analyzer.report.markup import Markup, concat, element
from analyzer.report.runs import FindingMark, GroupTimelines, RunTimeline, StepCell
from analyzer.report.svg import group_class

OUTCOMES: dict[str, tuple[str, str]] = {
    "tool_calls": ("T", "called tools"),
    "stop": ("A", "answered (stop)"),
    "length": ("L", "cut at the token limit"),
    "content_filter": ("F", "content filter"),
    "error": ("E", "failed call"),
    "other": ("O", "other finish reason"),
    "none": ("·", "no finish reason"),
}
"""Step outcome -> (letter in its cell, meaning)."""

_SEVERITY = {"error": 3, "warning": 2, "info": 1}

DENSE_STEPS = 80
"""Above this many steps, cells shrink so a long run stays a few lines high."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _findings_count(run: RunTimeline, n: int) -> str:
    """Say "3 findings", or "3 findings so far, up to step 30" when the run's findings were
    checked while it was recorded (an interrupted run keeps them until `traces analyze`)."""
    counted = _count(n, "finding")
    return f"{counted} {run.findings_so_far}" if run.findings_so_far else counted


def step_outcome(step: StepCell) -> str:
    """The key of `OUTCOMES` a step is drawn as: a failed call wins over its finish reason."""
    if step.error_kind is not None:
        return "error"
    return step.finish_reason if step.finish_reason in OUTCOMES else "other"


def legend() -> Markup:
    """What the letters, colours and outlines of the cells mean."""
    items = [
        element(
            "span",
            element("span", letter, class_=f"key st-{key}", aria_hidden="true"),
            f" {meaning}",
        )
        for key, (letter, meaning) in OUTCOMES.items()
    ]
    items.append(
        element("span", element("span", class_="flag-key", aria_hidden="true"), "has findings")
    )
    return element("div", items, class_="legend timeline-legend")


def _finding_line(mark: FindingMark) -> str:
    return f"{mark.kind} ({mark.severity}, {mark.layer}): {mark.evidence}"


def _cell_title(step: StepCell) -> str:
    meaning = OUTCOMES[step_outcome(step)][1]
    lines = [f"step {step.index}: {meaning}, {step.latency_ms:,.0f} ms"]
    if step.tools:
        lines.append("calls: " + ", ".join(step.tools))
    if step.error_kind is not None:
        lines.append(f"error {step.error_kind}: {step.error_message or ''}".rstrip())
    if step.content:
        lines.append(f"content: {step.content}")
    if step.findings:
        lines.append("findings:")
        lines += [f"  {_finding_line(f)}" for f in step.findings]
    return "\n".join(lines)


def step_cell(step: StepCell) -> Markup:
    """One step as a small lettered square (the details in its tooltip)."""
    outcome = step_outcome(step)
    worst = max(
        (f.severity for f in step.findings), key=lambda s: _SEVERITY.get(s, 0), default=None
    )
    classes = [f"st-{outcome}"]
    if step.findings:
        classes += ["flagged", f"sev-{worst}"]
    return element(
        "li",
        OUTCOMES[outcome][0],
        class_=" ".join(classes),
        title=_cell_title(step),
        data_step=step.index,
        data_outcome=outcome,
        data_findings=" ".join(dict.fromkeys(f.kind for f in step.findings)) or None,
    )


def _success(run: RunTimeline) -> Markup:
    if run.success is None:
        return element("span", "success not judged", class_="badge")
    if run.success:
        return element("span", "✓ success", class_="badge ok")
    return element("span", "✗ failed", class_="badge failed")


def _findings_table(findings: Sequence[FindingMark]) -> Markup:
    rows = [
        element(
            "tr",
            element("td", "run" if f.step is None else str(f.step)),
            element("td", element("code", f.kind), title=describe(f.kind)),
            element("td", f.severity),
            element("td", f.layer),
            element("td", element("code", f.evidence, class_="evidence")),
            data_step=f.step,
            data_kind=f.kind,
        )
        for f in findings
    ]
    head = element(
        "tr",
        [
            element("th", name, scope="col")
            for name in ("step", "kind", "severity", "layer", "evidence")
        ],
    )
    return element("table", element("thead", head), element("tbody", rows), class_="findings")


def run_row(run: RunTimeline) -> Markup:
    """One run: its outcome in a line, its steps as cells, and the details folded below."""
    every = list(run.findings) + [f for s in run.steps for f in s.findings]
    head = element(
        "div",
        element("code", run.id, class_="run-id"),
        element("span", run.task, class_="task"),
        element("span", run.termination or "unfinished", class_="badge termination"),
        element(
            "span",
            f"ended by {run.ended_by}"
            + (f" ({run.ended_by_kind})" if run.ended_by_kind else " (its termination)"),
            class_="ended-by",
        )
        if run.ended_by
        else None,
        _success(run),
        element("span", _count(run.steps_count, "step")),
        element("span", _findings_count(run, len(every)), class_="muted"),
        element("span", run.failure_summary, class_="failure-summary")
        if run.failure_summary
        else None,
        class_="run-head",
    )
    steps = element(
        "ol",
        [step_cell(step) for step in run.steps],
        class_="steps dense" if len(run.steps) > DENSE_STEPS else "steps",
        aria_label=f"steps of run {run.id}",
    )
    body = []
    if run.findings:
        body.append(
            element(
                "p",
                "Findings on the run as a whole: ",
                ", ".join(dict.fromkeys(f.kind for f in run.findings)),
                class_="run-findings",
            )
        )
    if every:
        body.append(_findings_table(every))
    if run.final_answer is not None:
        body += [
            element("h4", "Final answer"),
            element("blockquote", run.final_answer, class_="answer"),
        ]
    if run.error:
        body += [element("h4", "Error"), element("blockquote", run.error, class_="answer error")]
    shown = [
        _count(len(every), "finding") if every else None,
        "final answer" if run.final_answer is not None else None,
        "error" if run.error else None,
    ]
    details = None
    if body:
        details = element(
            "details",
            element("summary", ", ".join(p for p in shown if p)),
            body,
            class_="run-detail",
        )
    return element(
        "article",
        head,
        steps,
        details,
        class_="run",
        data_run=run.id,
        id=f"run-{run.id}",
    )


def group_timelines(timelines: GroupTimelines, index: int) -> Markup:
    """The heading of one group and its runs, newest first."""
    shown = len(timelines.runs)
    count = f"newest {shown} of {timelines.total} runs"
    if timelines.omitted:
        count += f"; {timelines.omitted} omitted (raise --runs to see more)"
    return element(
        "section",
        element(
            "h3",
            element("span", class_=f"swatch {group_class(index)}", aria_hidden="true"),
            timelines.group,
        ),
        element("p", count, class_="muted run-count"),
        [run_row(run) for run in timelines.runs],
        class_="group-timelines",
        data_group=timelines.group,
    )


def timelines_section(all_groups: Sequence[GroupTimelines], group_order: Sequence[str]) -> Markup:
    """Every group's timelines, after the legend."""
    position = {name: i for i, name in enumerate(group_order)}
    return concat(
        legend(),
        [group_timelines(t, position.get(t.group, i)) for i, t in enumerate(all_groups)],
    )

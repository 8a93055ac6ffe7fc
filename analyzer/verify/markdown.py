"""A verification as Markdown, for a CI job's summary page ($GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

from analyzer.verify.model import Verification
from analyzer.verify.render import rows

_MARK = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "skipped": "➖"}


def markdown_summary(verification: Verification) -> str:
    """The verdict, one table row per judgement, and the comparison's notes."""
    comparison = verification.comparison
    runs = sum(g.runs for g in comparison.groups)
    lines = [
        f"### traces verify `{verification.policy}`: {_MARK[verification.status]} "
        f"{verification.status.upper()}",
        "",
        _cell(verification.description),
        "",
        f"{runs} runs in {len(comparison.groups)} group(s) by {comparison.by.value}"
        + (f", reference `{_cell(verification.reference)}`" if verification.reference else "")
        + "; 95% intervals over runs. "
        + _cell(verification.summary()),
        "",
        "| group | criterion | rule | estimate [95% interval] | verdict | why |",
        "|---|---|---|---|---|---|",
    ]
    for row, judgement in zip(rows(verification), verification.judgements, strict=True):
        cells = [
            row["group"],
            row["criterion"],
            row["rule"],
            row["estimate"],
            f"{_MARK[judgement.status]} {row['status']}",
            row["why"],
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if verification.notes():
        lines += ["", "Notes:", ""]
        lines += [f"- {_cell(note)}" for note in verification.notes()]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    # Labels come from recordings and logs: nothing in them may break the table or add markup.
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")

"""The hidden check of `repo_rename.toml`: what the run left in its repository, judged after
the run (the model never sees this file). Called as `renamed(answer, sandbox)`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OLD, NEW = "parse_amount", "parse_money"
MESSAGE = "Rename parse_amount to parse_money"
#: What a correct rename must still do, run with the repository's own code.
BEHAVIOUR = (
    "from ledger import parse_money, format_amount\n"
    "from ledger.importer import parse_amounts\n"
    "from ledger.report import totals\n"
    "assert parse_money('$1,234.50') == 1234.5 and parse_money('(12.00)') == -12.0\n"
    "assert parse_amounts(['1', '$2.50']) == [1.0, 2.5]\n"
    "assert totals(open('data/export.csv').read()) == "
    "{'food': '$74.40', 'rent': '$1,200.00'}\n"
)


def _git(sandbox: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=sandbox, capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout


def renamed(answer: str, sandbox: Path) -> tuple[bool, str]:
    """Passed when the rename is committed with the asked message, the tree is clean, no
    file mentions the old name, `parse_amounts` was left alone, and the code still works."""
    subject = _git(sandbox, "log", "-1", "--format=%s").strip()
    if subject != MESSAGE:
        return False, f"the last commit is {subject!r}, not {MESSAGE!r}"
    dirty = _git(sandbox, "status", "--porcelain").strip()
    if dirty:
        return False, f"uncommitted changes are left: {dirty.splitlines()[0]}"
    left = _git(sandbox, "grep", "-l", "-w", OLD).split()
    if left:
        return False, f"{OLD} is still in {', '.join(left)}"
    if not _git(sandbox, "grep", "-l", "-w", "parse_amounts").strip():
        return False, "parse_amounts, a different function, was renamed too"
    changed = _git(sandbox, "diff", "--name-only", "HEAD~1", "HEAD").split()
    run = subprocess.run(
        [sys.executable, "-c", BEHAVIOUR],
        cwd=sandbox,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if run.returncode != 0:
        error = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"the renamed code no longer works: {error}"
    return True, f"{OLD} → {NEW} in {len(changed)} files, committed; the code still works"

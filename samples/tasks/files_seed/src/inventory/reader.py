"""Parse stock lists."""

import csv
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, str]]:
    """Return the rows of a stock list as dictionaries."""
    # TODO: handle files with no header row
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))

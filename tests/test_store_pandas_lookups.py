"""DuckDB 1.5 looks for pandas for every Python value it binds: without pandas installed, the
store marks it absent so that each look fails at once instead of scanning sys.path."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import duckdb
import pytest

import traces.store  # noqa: F401  (what marks pandas absent)


class _Counting:
    """A finder that counts the imports attempted of each name, finding nothing itself."""

    def __init__(self) -> None:
        self.looked: dict[str, int] = {}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        self.looked[name] = self.looked.get(name, 0) + 1


@pytest.mark.skipif(
    sys.modules.get("pandas") is not None or importlib.util.find_spec("pandas") is not None,
    reason="pandas is installed: DuckDB finds it",
)
def test_binding_values_looks_for_no_module(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _Counting()
    monkeypatch.setattr(sys, "meta_path", [counting, *sys.meta_path])
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE t (a VARCHAR, b INTEGER, c DOUBLE)")
        conn.execute(
            "INSERT INTO t SELECT unnest(?), unnest(?), unnest(?)",
            [["x"] * 500, list(range(500)), [1.5] * 500],
        )
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (500,)
    assert counting.looked.get("pandas", 0) == 0, counting.looked

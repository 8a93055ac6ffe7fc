"""The run table's columns come as arrays: from DuckDB's own conversion on a store file, and
built from rows on a session on the store's server (which offers rows only). Both give the
lists the rows gave before, value for value."""

from __future__ import annotations

import struct

import duckdb
import numpy as np

from analyzer.compare.metrics import _array, _floats

_QUERY = """
SELECT * FROM (VALUES
    ('r1', 3::BIGINT, 2.5::DOUBLE, true, 12345678901::HUGEINT, 0.1::DOUBLE),
    ('r2', NULL, NULL, NULL, NULL, -0.0::DOUBLE),
    ('r3', -7::BIGINT, 1e300::DOUBLE, false, 0::HUGEINT, 1.0 / 3.0)
) t(run_id, steps, latency, success, tokens, share)
"""


def _bits(values: list[float | None]) -> list[bytes | None]:
    return [None if v is None else struct.pack("d", v) for v in values]


def test_columns_from_rows_are_the_arrays_duckdb_fetches() -> None:
    conn = duckdb.connect()
    fetched = conn.execute(_QUERY).fetchnumpy()
    rows = conn.execute(_QUERY).fetchall()
    for position, name in enumerate(fetched):
        values = tuple(row[position] for row in rows)
        built = _array(values)
        if name == "run_id":
            assert built.tolist() == fetched[name].tolist() == ["r1", "r2", "r3"]
            continue
        # What the rows gave before, converted one by one.
        before = [None if v is None else float(v) for v in values]
        assert _bits(_floats(built)) == _bits(_floats(fetched[name])) == _bits(before), name
    assert _floats(_array(())) == [] and isinstance(_array(()), np.ndarray)

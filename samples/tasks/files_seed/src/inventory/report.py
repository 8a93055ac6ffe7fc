"""Summarise stock per warehouse."""


def totals(rows: list[dict[str, str]]) -> dict[str, float]:
    """Sum the quantity column per warehouse code."""
    result: dict[str, float] = {}
    for row in rows:
        code = row["warehouse"]
        result[code] = result.get(code, 0.0) + float(row["quantity"])
    # TODO: round totals to two decimals
    return result

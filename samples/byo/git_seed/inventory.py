"""Count stock per warehouse."""


def total(stock: dict[str, int]) -> int:
    """Sum the stock of every warehouse."""
    return sum(stock.values())

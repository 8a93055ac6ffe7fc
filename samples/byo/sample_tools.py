"""Sample Python tools for `python_tools.toml`: plain typed functions with docstrings.

Each signature becomes the tool's JSON Schema and each docstring its description; see the
README's "MCP and Python tools" section.
"""

from __future__ import annotations

from typing import Literal

_PER_METRE = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


def convert_length(
    value: float, from_unit: Literal["m", "km", "mi", "ft"], to_unit: Literal["m", "km", "mi", "ft"]
) -> float:
    """Convert a length between metres, kilometres, miles and feet.

    Args:
        value: The length to convert.
        from_unit: Unit of `value`.
        to_unit: Unit of the result.
    """
    return round(value * _PER_METRE[from_unit] / _PER_METRE[to_unit], 6)


def word_stats(text: str, top: int = 3) -> dict[str, object]:
    """Count the words of a text and name its most frequent ones.

    Args:
        text: The text to analyse.
        top: How many of the most frequent words to return.
    """
    words = [word.strip(".,;:!?\"'()").lower() for word in text.split()]
    words = [word for word in words if word]
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {"words": len(words), "distinct": len(counts), "top": [w for w, _ in ranked]}


def checked_divide(numerator: float, denominator: float) -> float:
    """Divide two numbers; dividing by zero is refused with an error.

    Args:
        numerator: The number to divide.
        denominator: The number to divide by (not zero).
    """
    if denominator == 0:
        raise ZeroDivisionError("denominator must not be zero")
    return numerator / denominator

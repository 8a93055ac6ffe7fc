"""Literal text every match of a set of regular expressions starts with: a cheap pre-test.

A check that looks for any of a dozen patterns in every content and reasoning text of a
store runs a dozen regex scans per text, nearly always for nothing. Python's `re` skips fast
to a pattern's literal prefix when it has one, but not through an alternation, and a
Unicode `\\w` costs tens of nanoseconds a character. `needles` reads the patterns once and
returns the literal prefixes their matches must start with (`<`, `functions.`,
`assistant`): when none occurs in a text (a substring test in C), no pattern can match it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

try:  # the parser `re` compiles with; private, so a Python that moves it only loses speed
    _parser: Any = importlib.import_module("re._parser")
    _constants: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - every supported Python has it
    _parser = _constants = None


def _prefixes(items: Any) -> set[str] | None:
    """Literal strings one of which starts every match of the parsed `items`; None when
    some match may start with anything (a class, a repeat, a case-insensitive group)."""
    c = _constants
    prefix = ""
    for op, av in items:
        if op is c.LITERAL:
            prefix += chr(av)
        elif op is c.AT:
            continue  # `^`, `\b`: zero-width, the literals around it stay adjacent
        elif op is c.BRANCH or op is c.SUBPATTERN:
            if op is c.SUBPATTERN:
                _, add_flags, _, body = av
                if add_flags & re.IGNORECASE:
                    break
                branches = [body]
            else:
                branches = av[1]
            found = [_prefixes(branch) for branch in branches]
            if any(f is None for f in found):
                break
            return {prefix + p for f in found if f is not None for p in f}
        else:
            break
    return {prefix} if prefix else None


def needles(patterns: Iterable[re.Pattern[str]]) -> tuple[str, ...] | None:
    """The fewest literals one of which occurs in any text some pattern matches (each
    pattern's match starts with one); None when that cannot be told for every pattern."""
    if _parser is None or _constants is None:
        return None
    found: set[str] = set()
    for pattern in patterns:
        if pattern.flags & re.IGNORECASE:
            return None
        try:
            prefixes = _prefixes(_parser.parse(pattern.pattern, pattern.flags))
        except Exception:  # an unknown parser shape only costs the speed-up
            return None
        if not prefixes or "" in prefixes:
            return None
        found |= prefixes
    # A literal containing another is implied by it: keep the shortest.
    return tuple(sorted(n for n in found if not any(o != n and o in n for o in found)))


def may_match(text: str, literals: tuple[str, ...] | None) -> bool:
    """False only when none of `literals` (from `needles`) occurs in `text`."""
    if literals is None:
        return True
    # A loop, not `any(…)` over a generator: half the cost on the short texts of every step.
    for literal in literals:  # noqa: SIM110 (the loop is the point)
        if literal in text:
            return True
    return False

"""Generate a string matching a simple regular expression (the subset tool schemas use).

Supported: anchors, literals and escapes, `.`, `\\d \\w \\s` (and negations), character
classes with ranges and negation, groups (`(...)`, `(?:...)`, `(?P<n>...)`), alternation and
the quantifiers `? * + {n} {n,} {n,m}`. Anything else makes `generate` return None, and the
caller falls back; results are always checked with `re.search` before use.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

_PRINTABLE = string.ascii_letters + string.digits + "-_."
_CLASS_ESCAPES = {
    "d": string.digits,
    "w": string.ascii_letters + string.digits + "_",
    "s": " ",
}


# A deferred producer, so a quantified atom yields fresh characters on every repetition.
_Gen = Callable[[], str]


class _Unsupported(Exception):
    pass


@dataclass
class _Parser:
    pattern: str
    rng: random.Random
    pos: int = 0

    def peek(self) -> str:
        return self.pattern[self.pos] if self.pos < len(self.pattern) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise _Unsupported("unexpected end")
        self.pos += 1
        return char

    def alternation(self) -> str:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            branches.append(self.sequence())
        # The first branch is usually the canonical form; keeps output readable.
        return branches[0]

    def sequence(self) -> str:
        out: list[str] = []
        while self.peek() and self.peek() not in "|)":
            atom = self.atom()
            if atom is None:
                continue
            low, high = self.quantifier()
            count = low if high == low else self.rng.randint(low, min(high, low + 3))
            out.append("".join(atom() for _ in range(count)))
        return "".join(out)

    def quantifier(self) -> tuple[int, int]:
        char = self.peek()
        bounds: tuple[int, int]
        if char == "?":
            self.pos += 1
            bounds = (0, 1)
        elif char == "*":
            self.pos += 1
            bounds = (0, 3)
        elif char == "+":
            self.pos += 1
            bounds = (1, 4)
        elif char == "{":
            end = self.pattern.find("}", self.pos)
            match = re.fullmatch(r"(\d+)(,(\d*))?", self.pattern[self.pos + 1 : end])
            if end < 0 or match is None:
                raise _Unsupported("bad repeat")
            self.pos = end + 1
            low = int(match.group(1))
            if match.group(2) is None:
                bounds = (low, low)
            else:
                bounds = (low, int(match.group(3)) if match.group(3) else low + 3)
        else:
            return (1, 1)
        if self.peek() == "?":  # lazy marker changes nothing for generation
            self.pos += 1
        return bounds

    def atom(self) -> _Gen | None:
        char = self.take()
        if char in "^$":
            return None
        if char == "(":
            if self.pattern.startswith("?:", self.pos):
                self.pos += 2
            elif self.pattern.startswith("?P<", self.pos):
                self.pos = self.pattern.index(">", self.pos) + 1
            elif self.peek() == "?":
                raise _Unsupported("lookaround")
            text = self.alternation()
            if self.take() != ")":
                raise _Unsupported("unbalanced group")
            return lambda: text
        if char == "[":
            choices = self.char_class()
            return lambda: self.rng.choice(choices)
        if char == ".":
            return lambda: self.rng.choice(string.ascii_lowercase)
        if char == "\\":
            escaped = self.take()
            if escaped in _CLASS_ESCAPES:
                pool = _CLASS_ESCAPES[escaped]
                return lambda: self.rng.choice(pool)
            if escaped in "DWS":
                pool = "".join(c for c in _PRINTABLE if c not in _CLASS_ESCAPES[escaped.lower()])
                return lambda: self.rng.choice(pool or "-")
            if escaped.isalnum():
                raise _Unsupported(f"escape \\{escaped}")
            return lambda: escaped
        if char in ")|*+?{":
            raise _Unsupported(f"unexpected {char}")
        return lambda: char

    def char_class(self) -> str:
        negate = self.peek() == "^"
        if negate:
            self.pos += 1
        members: list[str] = []
        first = True
        while True:
            char = self.take()
            if char == "]" and not first:
                break
            first = False
            if char == "\\":
                escaped = self.take()
                members.append(_CLASS_ESCAPES.get(escaped, escaped))
                continue
            if self.peek() == "-" and self.pattern[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                end = self.take()
                members.append("".join(chr(c) for c in range(ord(char), ord(end) + 1)))
                continue
            members.append(char)
        allowed = "".join(members)
        if negate:
            allowed = "".join(c for c in _PRINTABLE if c not in allowed)
        if not allowed:
            raise _Unsupported("empty class")
        return allowed


def generate(pattern: str, rng: random.Random) -> str | None:
    """A string `s` with `re.search(pattern, s)`, or None if the pattern is out of scope."""
    try:
        parser = _Parser(pattern, rng)
        text = parser.alternation()
        if parser.pos != len(pattern):
            return None
        compiled = re.compile(pattern)
    except (_Unsupported, re.error, ValueError):
        return None
    return text if compiled.search(text) else None

"""The literal pre-test of pattern checks (`analyzer.checks.literals`): the literals it derives
start every match, so skipping a text that holds none of them skips no leak."""

from __future__ import annotations

import random
import re

import pytest

from analyzer.checks import leaks
from analyzer.checks.literals import may_match, needles


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"<\|im_end\|>", ("<|im_end|>",)),
        (r"\babc", ("abc",)),
        (r"(?m)^analysis", ("analysis",)),
        (r"x(?:y|z)w", ("x",)),
        (r"(ab|cd)e", ("ab", "cd")),
        (r"ab(?i:c)", ("ab",)),
        (
            r"assistant(?:final|commentary)|to=functions\.\w+",
            ("assistantcommentary", "assistantfinal", "to=functions."),
        ),
        # Nothing certain: any text may hold a match.
        (r"a*b", None),
        (r"[ab]c", None),
        (r"(?i)abc", None),
        (r"(?i:ab)c", None),
        (r"(?=x)abc", None),
        (r"(?:y|)w", None),
        (r"abc|", None),
    ],
)
def test_needles_of_one_pattern(pattern: str, expected: tuple[str, ...] | None) -> None:
    assert needles([re.compile(pattern)]) == expected


def test_a_literal_implied_by_a_shorter_one_is_dropped() -> None:
    assert needles([re.compile("<tool_call>"), re.compile("<"), re.compile("xy")]) == ("<", "xy")
    assert needles([re.compile("a"), re.compile("[ab]")]) is None
    assert may_match("anything", None)


def test_leak_search_with_and_without_the_pre_test_agree() -> None:
    # Texts stitched from the families' own markup, near misses and plain words.
    pieces = [
        "<|tool_call_begin|>",
        "<|im_end|>",
        "functions.bash:0 {",
        "functions.x",
        "<｜tool▁sep｜>",
        "</minimax:tool_call>",
        '<invoke name="',
        "<arg_key>",
        "<|channel|>",
        "assistantfinal",
        "to=functions.read",
        "<tool_call>",
        "<function=run>",
        "<|endoftext|>",
        "<",
        "|",
        ">",
        "assistant",
        "functions",
        "the",
        " ",
        "\n",
        "{",
        "}",
        ":",
        "0",
        "tool_call",
    ]
    assert leaks._NEEDLES is not None  # every family pattern has a literal start today
    rng = random.Random(5)
    for _ in range(4000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 8)))
        slow = {family for family, pattern in leaks._PATTERNS if pattern.search(text)}
        assert {leak.family for leak in leaks.find_leaks(text)} == slow, repr(text)

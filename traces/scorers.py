"""Scorers: how a dataset sample's final answer is judged against its target.

A task with a dataset names one scorer in its `[scorer]` table; each run answers one sample
and its `success` is the scorer's verdict, its `success_detail` the scorer's explanation (what
it looked for, what it found). Kinds:

| type        | passes when                                                                  |
|-------------|------------------------------------------------------------------------------|
| `includes`  | the answer contains one of the targets                                       |
| `exact`     | the answer, trimmed and with runs of whitespace made one space, is a target  |
| `regex`     | `pattern` matches and its first group (or the match) is a target; without   |
|             | `pattern`, a target (a regular expression) matches somewhere in the answer   |
| `json_path` | the answer is JSON (or holds a JSON object or fenced block) whose value at   |
|             | `path` equals a target (compared as JSON when the target parses as JSON)     |
| `numeric`   | the last number in the answer (or `pattern`'s first group) is within        |
|             | `tolerance` (absolute) or `relative` (a share of the target) of a target     |
| `python`    | `function` (`module:function`, beside the task file first) says so           |

A Python scorer is called as `function(answer, sample)` with the sample as a dict (`id`,
`input`, `target` as a list, `metadata`), and returns a bool, a `(bool, explanation)` pair or
a dict with `passed` and `explanation`. When it raises, or returns something else, the run's
success is unknown (None), never a failure: the scorer failed, not the model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from traces.datasets import Sample
from traces.tools.base import SuccessResult, ToolEnvironment, ToolOutcome, verdict_of
from traces.tools.python_tools import PythonToolError, exception_line, import_reference

_SHOWN = 60
"""Characters of an answer or a value quoted in an explanation."""


class _Scorer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IncludesScorer(_Scorer):
    """The answer contains a target."""

    type: Literal["includes"] = "includes"
    ignore_case: bool = Field(default=True, description="Compare without regard to case.")

    def score(self, answer: str, sample: Sample) -> SuccessResult:
        """Passed when one of the targets is a substring of the answer."""
        text = _folded(answer, self.ignore_case)
        for target in sample.target:
            if _folded(target, self.ignore_case) in text:
                return SuccessResult(passed=True, detail=f"the answer contains {_q(target)}.")
        return SuccessResult(passed=False, detail=f"the answer lacks {_targets(sample)}.")


class ExactScorer(_Scorer):
    """The whole answer is a target."""

    type: Literal["exact"] = "exact"
    ignore_case: bool = Field(default=True, description="Compare without regard to case.")

    def score(self, answer: str, sample: Sample) -> SuccessResult:
        """Passed when the answer, whitespace-normalised, equals a target."""
        given = _folded(" ".join(answer.split()), self.ignore_case)
        for target in sample.target:
            if _folded(" ".join(target.split()), self.ignore_case) == given:
                return SuccessResult(passed=True, detail=f"the answer is {_q(target)}.")
        return SuccessResult(
            passed=False, detail=f"the answer {_q(answer)} is not {_targets(sample)}."
        )


class _Extracting(_Scorer):
    """A scorer whose `pattern` (declared by each) finds the value it judges."""

    @field_validator("pattern", check_fields=False)
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value, ignore_case=False)
        return value


class RegexScorer(_Extracting):
    """A regular expression finds the answer's value (or a target is one)."""

    type: Literal["regex"] = "regex"
    pattern: str | None = Field(
        default=None,
        description="Extracts the value (its first group, else the whole match) to compare "
        "with the targets; without it each target is a regular expression.",
    )
    ignore_case: bool = Field(default=True, description="Match and compare ignoring case.")

    def score(self, answer: str, sample: Sample) -> SuccessResult:
        """Passed when the extracted value is a target, or a target pattern matches."""
        if self.pattern is None:
            for target in sample.target:
                try:
                    found = _compile(target, self.ignore_case).search(answer)
                except ValueError as exc:
                    return SuccessResult(passed=None, detail=f"target {exc}")
                if found:
                    return SuccessResult(
                        passed=True, detail=f"{_q(target)} matches {_q(found.group(0))}."
                    )
            return SuccessResult(
                passed=False, detail=f"nothing in the answer matches {_targets(sample)}."
            )
        value = _extract(self.pattern, self.ignore_case, answer)
        if value is None:
            return SuccessResult(
                passed=False, detail=f"the pattern {_q(self.pattern)} finds nothing in the answer."
            )
        for target in sample.target:
            if _folded(value.strip(), self.ignore_case) == _folded(
                target.strip(), self.ignore_case
            ):
                return SuccessResult(passed=True, detail=f"the pattern found {_q(value)}.")
        return SuccessResult(
            passed=False, detail=f"the pattern found {_q(value)}, not {_targets(sample)}."
        )


class JsonPathScorer(_Scorer):
    """The value at a path of the JSON answer is a target."""

    type: Literal["json_path"] = "json_path"
    path: str = Field(description="`$.key`, `$.list[0]`, `$['odd key']`: where the value is.")

    @field_validator("path")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_path(value)
        return value

    def score(self, answer: str, sample: Sample) -> SuccessResult:
        """Passed when the answer's JSON holds a target at `path`."""
        document = _json_in(answer)
        if document is None:
            return SuccessResult(passed=False, detail="the answer holds no JSON value.")
        found, value = _at(document, parse_path(self.path))
        if not found:
            return SuccessResult(passed=False, detail=f"the answer's JSON has no {self.path}.")
        for target in sample.target:
            if _json_equal(value, target):
                return SuccessResult(passed=True, detail=f"{self.path} is {_q(target)}.")
        shown = json.dumps(value, ensure_ascii=False)
        return SuccessResult(
            passed=False, detail=f"{self.path} is {_q(shown)}, not {_targets(sample)}."
        )


class NumericScorer(_Extracting):
    """A number in the answer is close enough to a target."""

    type: Literal["numeric"] = "numeric"
    tolerance: float = Field(default=1e-6, ge=0, description="Allowed absolute difference.")
    relative: float = Field(
        default=0.0, ge=0, description="Allowed difference as a share of the target (0.01: 1%)."
    )
    pattern: str | None = Field(
        default=None,
        description="Extracts the number (its first group, else the whole match) [default: "
        "the last number in the answer].",
    )

    def score(self, answer: str, sample: Sample) -> SuccessResult:
        """Passed when the answer's number is within the tolerances of a numeric target."""
        wanted = [n for n in (_number(t) for t in sample.target) if n is not None]
        if not wanted:
            return SuccessResult(
                passed=None, detail=f"no target of sample {sample.id} is a number."
            )
        if self.pattern is not None:
            given = _number(_extract(self.pattern, True, answer) or "")
            where = "the pattern's match"
        else:
            numbers = _NUMBER.findall(answer)
            given = _number(numbers[-1]) if numbers else None
            where = "the last number in the answer"
        if given is None:
            return SuccessResult(passed=False, detail=f"{where}: no number found.")
        for target in wanted:
            allowed = max(self.tolerance, self.relative * abs(target))
            if abs(given - target) <= allowed:
                return SuccessResult(
                    passed=True,
                    detail=f"{where} is {given:.10g}, within {allowed:.10g} of {target:.10g}.",
                )
        return SuccessResult(
            passed=False,
            detail=f"{where} is {given:.10g}, not {' or '.join(f'{t:.10g}' for t in wanted)}.",
        )


class PythonScorer(_Scorer):
    """A user's function judges the answer."""

    type: Literal["python"] = "python"
    function: str = Field(description="`module:function`, the module beside the task file first.")

    @field_validator("function")
    @classmethod
    def _imports(cls, value: str, info: ValidationInfo) -> str:
        if info.context:  # at load: the reference must import (a JSON round trip skips this)
            try:
                import_reference(value, Path(info.context.get("base_dir", ".")))
            except PythonToolError as exc:
                raise ValueError(str(exc)) from None
        return value

    def score(self, answer: str, sample: Sample, base_dir: Path) -> SuccessResult:
        """The function's verdict; unknown (None) when it raises or answers in another form."""
        try:
            function = import_reference(self.function, base_dir)
            verdict = function(answer, sample.as_dict())
        except Exception as exc:  # the scorer's bug: the run's success is unknown, not failed
            return SuccessResult(passed=None, detail=f"the scorer failed: {exception_line(exc)}")
        return verdict_of(verdict, self.function)


Scorer = Annotated[
    IncludesScorer | ExactScorer | RegexScorer | JsonPathScorer | NumericScorer | PythonScorer,
    Field(discriminator="type"),
]
"""One `[scorer]` table, by its `type`."""

SCORERS: dict[str, type[_Scorer]] = {
    "includes": IncludesScorer,
    "exact": ExactScorer,
    "regex": RegexScorer,
    "json_path": JsonPathScorer,
    "numeric": NumericScorer,
    "python": PythonScorer,
}
"""Each scorer kind by its `type`."""


def score(scorer: Scorer, answer: str, sample: Sample, base_dir: Path) -> SuccessResult:
    """`scorer`'s verdict on `answer` for `sample`; `base_dir` finds a Python scorer's module."""
    if isinstance(scorer, PythonScorer):
        return scorer.score(answer, sample, base_dir)
    return scorer.score(answer, sample)


def _folded(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


def _q(text: str) -> str:
    one = " ".join(text.split())
    return repr(one if len(one) <= _SHOWN else one[:_SHOWN] + "…")


def _targets(sample: Sample) -> str:
    shown = [_q(t) for t in sample.target[:3]]
    more = f" (or {len(sample.target) - 3} more)" if len(sample.target) > 3 else ""
    return " or ".join(shown) + more


def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from None


def _extract(pattern: str, ignore_case: bool, text: str) -> str | None:
    """What `pattern` finds in `text`: its first group, else the whole match (None: no match)."""
    found = _compile(pattern, ignore_case).search(text)
    if found is None:
        return None
    return (found.group(1) if found.re.groups else found.group(0)) or ""


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def _number(text: str) -> float | None:
    cleaned = text.strip().replace(",", "").rstrip(".")
    for prefix in ("$", "€", "£"):
        cleaned = cleaned.removeprefix(prefix)
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


PathPart = str | int

_PATH_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[(?:'([^']*)'|\"([^\"]*)\")\]")


def parse_path(path: str) -> list[PathPart]:
    """The keys and indexes of a `$.a[0]['b c']` path; ValueError naming the first bad part."""
    if not path.startswith("$"):
        raise ValueError(f"{path!r} must start with $")
    parts: list[PathPart] = []
    position = 1
    while position < len(path):
        match = _PATH_PART.match(path, position)
        if match is None:
            raise ValueError(f"{path!r}: cannot read {path[position:]!r} (use .key, [0], ['key'])")
        key, index, single, double = match.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(key if key is not None else single if single is not None else double)
        position = match.end()
    return parts


def _at(document: Any, parts: list[PathPart]) -> tuple[bool, Any]:
    value = document
    for part in parts:
        in_list = isinstance(part, int) and isinstance(value, list) and part < len(value)
        in_object = isinstance(part, str) and isinstance(value, dict) and part in value
        if not (in_list or in_object):
            return False, None
        value = value[part]
    return True, value


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def _json_in(answer: str) -> Any:
    """The JSON the answer is, or the first fenced block or `{…}` object inside it."""
    candidates = [answer.strip(), *(m.group(1) for m in _FENCED.finditer(answer))]
    for text in candidates:
        try:
            return json.loads(text)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(answer) if char in "{["):
        try:
            return decoder.raw_decode(answer, start)[0]
        except ValueError:
            continue
    return None


def _json_equal(value: Any, target: str) -> bool:
    try:
        wanted = json.loads(target)
    except ValueError:
        return isinstance(value, str) and value == target
    if isinstance(value, str) and not isinstance(wanted, str):
        return value == target  # the target `42` against the string "42"
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted  # JSON's true is not 1
    return bool(value == wanted)


class ScoredEnvironment:
    """A run's world answering one dataset sample: the world's tools as they are, its prompt
    variables with `input` and `sample_id` added, and its success the scorer's verdict."""

    def __init__(
        self, world: ToolEnvironment, scorer: Scorer, sample: Sample, base_dir: Path
    ) -> None:
        """`base_dir` is the task file's folder (where a Python scorer's module is)."""
        self.world = world
        self.scorer = scorer
        self.sample = sample
        self.base_dir = base_dir
        self.replayable = world.replayable

    def tool_specs(self) -> list[dict[str, Any]]:
        """The world's tools."""
        return self.world.tool_specs()

    def prompt_variables(self) -> dict[str, str]:
        """The world's, and the sample's `input` and `sample_id`."""
        return {
            **self.world.prompt_variables(),
            "input": self.sample.input,
            "sample_id": self.sample.id,
        }

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """The world answers."""
        return await self.world.call(name, arguments)

    def check_success(self, final_answer: str) -> SuccessResult:
        """The scorer's verdict on the answer, for this sample."""
        return score(self.scorer, final_answer, self.sample, self.base_dir)

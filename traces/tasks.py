"""Task files: load and validate `samples/tasks/*.toml`, build their tool worlds, fill prompts.

A task file is user input, so every problem becomes one `TaskFileError` line of the form
`{path}: {field}: {problem}`; pydantic and tomllib errors never escape as tracebacks.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import string
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from traces.datasets import DatasetSpec, Sample, load_samples
from traces.errors import TaskFileError
from traces.scorers import SCORERS, ScoredEnvironment, Scorer
from traces.tools import chain, custom, files, research
from traces.tools.base import ToolEnvironment
from traces.tools.chain import ChainEnvironment
from traces.tools.files import FilesEnvironment
from traces.tools.no_tools import NoToolsEnvironment
from traces.tools.python_tools import PythonToolError, import_reference, load_python_tool
from traces.tools.research import ResearchEnvironment, load_corpus
from traces.tools.sandbox import Sandbox

MAX_STEPS_LIMIT = 10_000


class _Strict(BaseModel):
    # TOML values are already typed, so coercion ("320" -> 320) would only hide mistakes;
    # forbidding extras turns a misspelt key into an error instead of a silent default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EnvironmentSpec(_Strict):
    """The `[environment]` table: which tool world to build. Subclassed once per type."""

    type: str = Field(description="The tool world: chain, research, files, tools or none.")
    prompt_variables: ClassVar[frozenset[str]] = frozenset()
    #: The tools the world declares to the model, in declaration order.
    tool_specs: ClassVar[tuple[dict[str, Any], ...]] = ()
    #: Fields naming a folder the task needs, relative to the task file (copied with it).
    folder_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def tool_names(cls) -> list[str]:
        """Names of the tools this world declares (`traces tasks` lists them)."""
        return [spec["function"]["name"] for spec in cls.tool_specs]


class ChainSpec(EnvironmentSpec):
    """A chain of locked boxes opened strictly one after another."""

    type: Literal["chain"] = Field(default="chain", description="Always `chain`.")
    length: int = Field(
        ge=1, le=chain.MAX_LENGTH, description="Number of boxes, i.e. tool calls needed."
    )
    prompt_variables: ClassVar[frozenset[str]] = chain.PROMPT_VARIABLES
    tool_specs: ClassVar[tuple[dict[str, Any], ...]] = (chain.OPEN_BOX_SPEC,)


class ResearchSpec(EnvironmentSpec):
    """Multi-hop lookups over a directory of linked markdown documents."""

    type: Literal["research"] = Field(default="research", description="Always `research`.")
    corpus: Path = Field(
        strict=False,
        description="Directory of `*.md` documents; relative paths are relative to the task "
        "file. Stored resolved (absolute).",
    )
    prompt_variables: ClassVar[frozenset[str]] = research.PROMPT_VARIABLES
    tool_specs: ClassVar[tuple[dict[str, Any], ...]] = (
        research.SEARCH_SPEC,
        research.OPEN_DOCUMENT_SPEC,
    )
    folder_fields: ClassVar[tuple[str, ...]] = ("corpus",)

    @field_validator("corpus")
    @classmethod
    def _corpus_usable(cls, value: Path, info: ValidationInfo) -> Path:
        directory = _resolve(value, info)
        if not directory.is_dir():
            raise ValueError(f"directory {value} does not exist ({directory})")
        # Parse now (the result is cached) so a broken document fails at load, not mid-run.
        load_corpus(directory)
        return directory


class FilesSpec(EnvironmentSpec):
    """A sandboxed project directory the model lists, reads, greps and writes."""

    type: Literal["files"] = Field(default="files", description="Always `files`.")
    seed_dir: Path | None = Field(
        default=None,
        strict=False,
        description="Directory copied into each run's sandbox; relative to the task file. "
        "Stored resolved (absolute). Without it the sandbox starts empty.",
    )
    prompt_variables: ClassVar[frozenset[str]] = files.PROMPT_VARIABLES
    tool_specs: ClassVar[tuple[dict[str, Any], ...]] = tuple(files.TOOL_SPECS)
    folder_fields: ClassVar[tuple[str, ...]] = ("seed_dir",)

    @field_validator("seed_dir")
    @classmethod
    def _seed_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _existing_directory(value, info)


class NoToolsSpec(EnvironmentSpec):
    """No tools: the model answers from the prompt alone (a dataset's questions, say)."""

    type: Literal["none"] = Field(default="none", description="Always `none`.")


class McpServerSpec(_Strict):
    """One `[[environment.mcp]]` table: an MCP server started per run (a command) or reached
    per run (a streamable-HTTP URL)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64, description="Label in errors.")
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Program and arguments of a stdio server, run in the run's sandbox; "
        "`{sandbox}` in an argument is the sandbox's path. Stored with the program resolved "
        "(PATH, then the folder of the running Python, where pip puts scripts).",
    )
    url: str | None = Field(
        default=None, pattern=r"^https?://", description="Endpoint of a streamable-HTTP server."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of a stdio server (`{sandbox}` too)."
    )
    tools: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Offer only these of the server's tools (all when absent).",
    )

    @field_validator("command")
    @classmethod
    def _program_exists(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        program = value[0]
        base = Path((info.context or {}).get("base_dir", "."))
        found = (
            shutil.which(program)
            or shutil.which(program, path=str(Path(sys.executable).parent))
            or (shutil.which(str(base / program)) if "/" in program else None)
        )
        if found is None:
            raise ValueError(f"command {program!r} not found (on PATH or beside {sys.executable})")
        return [found, *value[1:]]


class ToolsSpec(EnvironmentSpec):
    """The task's own tools: MCP servers and Python functions, over an optional seeded sandbox."""

    type: Literal["tools"] = Field(default="tools", description="Always `tools`.")
    seed_dir: Path | None = Field(
        default=None,
        strict=False,
        description="Directory copied into each run's sandbox; relative to the task file.",
    )
    git: bool = Field(
        default=False, description="Make the sandbox a git repository (one commit of the seed)."
    )
    mcp: list[McpServerSpec] = Field(default_factory=list, description="MCP servers.")
    python: list[str] = Field(
        default_factory=list,
        description="`module:function` references; modules beside the task file are found.",
    )
    start_timeout_s: float = Field(
        default=60.0, gt=0, le=600, description="Time an MCP server has to start and list tools."
    )
    call_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=100,
        description="Time one tool call has to answer (under the harness's own 120 s bound).",
    )
    discovered: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="Each MCP server's tools as listed before the recording started "
        "(`traces.environments.discover_tools`); not written in task files.",
    )
    prompt_variables: ClassVar[frozenset[str]] = custom.PROMPT_VARIABLES
    folder_fields: ClassVar[tuple[str, ...]] = ("seed_dir",)

    def tool_names(self) -> list[str]:  # type: ignore[override]
        """The Python tools' names and, per MCP server, its listed tools (or `NAME:*`)."""
        names = [ref.rsplit(":", 1)[-1] for ref in self.python]
        for server in self.mcp:
            listed = self.discovered.get(server.name)
            if listed is None:
                names.append(f"{server.name}:*")
            else:
                names.extend(spec["function"]["name"] for spec in listed)
        return names

    @field_validator("seed_dir")
    @classmethod
    def _seed_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _existing_directory(value, info)

    @model_validator(mode="after")
    def _offers_tools(self) -> ToolsSpec:
        if not self.mcp and not self.python:
            raise ValueError(
                "a tools world needs [[environment.mcp]] servers, python tools, or both"
            )
        return self

    @field_validator("mcp")
    @classmethod
    def _unique_servers(cls, value: list[McpServerSpec]) -> list[McpServerSpec]:
        names = [server.name for server in value]
        for server in value:
            if (server.command is None) == (server.url is None):
                raise ValueError(f"server {server.name}: give exactly one of command and url")
            if names.count(server.name) > 1:
                raise ValueError(f"server name {server.name!r} is used twice")
        return value

    @field_validator("python")
    @classmethod
    def _importable(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not info.context:  # a validated task rebuilt (a JSON round trip): checked at load
            return value
        base = Path(info.context.get("base_dir", "."))
        names: set[str] = set()
        for reference in value:
            try:
                tool = load_python_tool(reference, base)
            except PythonToolError as exc:
                raise ValueError(str(exc)) from None
            if tool.name in names:
                raise ValueError(f"two tools are named {tool.name!r}")
            names.add(tool.name)
        return value


class ToolsSuccess(_Strict):
    """`[success]` for tools: the answer's content, a file's content, a hidden check of the
    sandbox, or several of them (all must pass)."""

    answer_contains: list[str] = Field(
        default_factory=list, description="Strings the final answer must contain (any case)."
    )
    file: str | None = Field(default=None, description="Sandbox-relative file to check.")
    file_contains: list[str] = Field(
        default_factory=list, description="Strings that file must contain."
    )
    check: str | None = Field(
        default=None,
        description="A hidden check, `module:function` beside the task file: called as "
        "`function(answer, sandbox)` after the run, it judges the sandbox it left.",
    )

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _sandbox_relative(value)

    @field_validator("check")
    @classmethod
    def _check_imports(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.context:
            try:
                import_reference(value, Path(info.context.get("base_dir", ".")))
            except PythonToolError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("file_contains")
    @classmethod
    def _with_file(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and info.data.get("file") is None:
            raise ValueError("needs `file`, the file that must contain them")
        return value

    @model_validator(mode="after")
    def _checks_something(self) -> ToolsSuccess:
        # A check of nothing would call every run a success.
        if not self.answer_contains and self.file is None and self.check is None:
            raise ValueError(
                "give answer_contains, file (with file_contains), check, or several of them"
            )
        if self.file is not None and not self.file_contains:
            raise ValueError("file needs file_contains, the strings it must contain")
        return self


class ChainSuccess(_Strict):
    """`[success]` for chain: no keys, the treasure is generated per seed."""


class ResearchSuccess(_Strict):
    """`[success]` for research."""

    answer_contains: list[str] = Field(
        min_length=1,
        description="Strings the final answer must contain (case-insensitive substrings).",
    )

    @field_validator("answer_contains")
    @classmethod
    def _no_empty(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("entries must be non-empty strings")
        return value


class FilesSuccess(_Strict):
    """`[success]` for files."""

    file: str = Field(description="Sandbox-relative path of the file the model must write.")
    file_contains: list[str] = Field(
        min_length=1, description="Strings (typically whole lines) that file must contain."
    )

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        return _sandbox_relative(value)

    @field_validator("file_contains")
    @classmethod
    def _no_empty(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("entries must be non-empty strings")
        return value


class NoSuccess(_Strict):
    """`[success]` for none: nothing; a task without tools is judged by its dataset's scorer."""


_SPECS: dict[str, tuple[type[EnvironmentSpec], type[_Strict]]] = {
    "chain": (ChainSpec, ChainSuccess),
    "research": (ResearchSpec, ResearchSuccess),
    "files": (FilesSpec, FilesSuccess),
    "tools": (ToolsSpec, ToolsSuccess),
    "none": (NoToolsSpec, NoSuccess),
}

DATASET_WORLDS = ("tools", "none")
"""The worlds a dataset goes with: the others judge success by their own world (the chain's
treasure, the research answer, the files' file)."""

DATASET_VARIABLES = frozenset({"input", "sample_id"})
"""The placeholders a task with a dataset may use, besides its world's."""


class _TaskFile(_Strict):
    """The top level of a task file, before the type-specific tables are checked."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$", max_length=100)
    description: str = Field(min_length=1)
    max_steps: int = Field(ge=1, le=MAX_STEPS_LIMIT)
    system_prompt: str = Field(min_length=1)
    user_prompt: str = Field(min_length=1)
    environment: dict[str, Any]
    success: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    scorer: dict[str, Any] | None = None


class Task(BaseModel):
    """A validated task file: prompts, step budget, tool world and success criteria."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Short identifier, `[a-z0-9_-]+`.")
    description: str = Field(description="One-line human description of the task.")
    max_steps: int = Field(description="Model calls allowed before the run stops (1..10000).")
    system_prompt: str = Field(description="System prompt template (str.format placeholders).")
    user_prompt: str = Field(description="First user message template (str.format placeholders).")
    environment: SerializeAsAny[EnvironmentSpec] = Field(
        description="The tool world to build (a ChainSpec, ResearchSpec, FilesSpec or ToolsSpec)."
    )
    success: dict[str, Any] = Field(description="Validated type-specific success criteria.")
    dataset: tuple[Sample, ...] = Field(
        default=(), description="The dataset's samples, each one run (empty: no dataset)."
    )
    scorer: Scorer | None = Field(
        default=None, description="How each sample's answer is judged (with a dataset)."
    )
    source_path: Path = Field(description="The task file as it was given to `load_task`.")
    sha256: str = Field(
        description="Hex SHA-256 of the task file's bytes (and of its dataset file's, if any)."
    )

    @field_validator("environment", mode="before")
    @classmethod
    def _typed_spec(cls, value: Any) -> Any:
        # A JSON round trip hands us a plain dict; choose the subclass by `type` so the
        # type-specific fields survive instead of failing the base model's extra check.
        if isinstance(value, dict) and value.get("type") in _SPECS:
            return _SPECS[value["type"]][0].model_validate(value)
        return value


def load_task(path: Path) -> Task:
    """Read and validate a task file; raise TaskFileError (one line) on any problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot read task file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TaskFileError(f"{path}: line {line}: invalid TOML (not UTF-8)") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskFileError(_toml_error(path, text, exc)) from None

    top = _validate(path, _TaskFile, raw, prefix="", context=None)
    kind = top.environment.get("type")
    if "type" not in top.environment:
        raise TaskFileError(f"{path}: environment.type: required field is missing")
    if not isinstance(kind, str) or kind not in _SPECS:
        raise TaskFileError(
            f"{path}: environment.type: must be one of {', '.join(_SPECS)} (got {kind!r})"
        )
    if "discovered" in top.environment:
        raise TaskFileError(f"{path}: environment.discovered: unknown key (set by traces itself)")
    spec_model, success_model = _SPECS[kind]
    context = {"base_dir": path.parent}
    spec = _validate(path, spec_model, top.environment, prefix="environment", context=context)
    samples, scorer, dataset_sha256 = _dataset(path, top, kind, context)
    success = (
        _validate(path, success_model, top.success, prefix="success", context=context)
        if not samples
        else NoSuccess()
    )
    allowed = spec.prompt_variables | (DATASET_VARIABLES if samples else frozenset())
    for field in ("system_prompt", "user_prompt"):
        _check_placeholders(path, field, getattr(top, field), kind, allowed)
    if samples and "{input}" not in top.system_prompt + top.user_prompt:
        raise TaskFileError(f"{path}: user_prompt: a task with a dataset must use {{input}}")
    digest = hashlib.sha256(data)
    if dataset_sha256:
        digest.update(bytes.fromhex(dataset_sha256))
    return Task(
        name=top.name,
        description=top.description,
        max_steps=top.max_steps,
        system_prompt=top.system_prompt,
        user_prompt=top.user_prompt,
        environment=spec,
        success=success.model_dump(),
        dataset=samples,
        scorer=scorer,
        source_path=path,
        sha256=digest.hexdigest(),
    )


def _dataset(
    path: Path, top: _TaskFile, kind: str, context: dict[str, Any]
) -> tuple[tuple[Sample, ...], Scorer | None, str]:
    """The task's samples, scorer and dataset-file digest (nothing without a dataset)."""
    if top.dataset is None:
        if top.scorer is not None:
            raise TaskFileError(f"{path}: scorer: a scorer judges a [dataset]'s samples; add one")
        if kind == "none":
            raise TaskFileError(
                f"{path}: environment.type: a world without tools needs a [dataset] and a [scorer]"
            )
        return (), None, ""
    if kind not in DATASET_WORLDS:
        raise TaskFileError(
            f"{path}: dataset: a dataset goes with environment type "
            f"{' or '.join(DATASET_WORLDS)} (a {kind} world judges its own success)"
        )
    kinds = ", ".join(SCORERS)
    if top.scorer is None:
        raise TaskFileError(f"{path}: scorer: required with a dataset (type: {kinds})")
    scorer_model = SCORERS.get(str(top.scorer.get("type")))
    if scorer_model is None:
        raise TaskFileError(
            f"{path}: scorer.type: must be one of {kinds} (got {top.scorer.get('type')!r})"
        )
    if top.success:
        raise TaskFileError(
            f"{path}: success: a task with a dataset is judged by its [scorer]; remove [success]"
        )
    spec = _validate(path, DatasetSpec, top.dataset, prefix="dataset", context=context)
    scorer = _validate(path, scorer_model, top.scorer, prefix="scorer", context=context)
    samples, digest = load_samples(spec, path)
    return samples, cast(Scorer, scorer), digest


def build_environment(
    task: Task, *, seed: int, sandbox_dir: Path, sample: Sample | None = None
) -> ToolEnvironment:
    """Build a fresh tool world for one run; the same (task, seed) yields the same world.

    `sandbox_dir` is the run's private directory (created by the caller); only the files
    world uses it. `sample`, for a task with a dataset, is the one the run answers. Problems
    with the task's files raise TaskFileError.
    """
    if sample is not None:
        return for_sample(task, build_environment(task, seed=seed, sandbox_dir=sandbox_dir), sample)
    spec = task.environment
    if isinstance(spec, NoToolsSpec):
        return NoToolsEnvironment()
    if isinstance(spec, ChainSpec):
        return ChainEnvironment(length=spec.length, seed=seed)
    if isinstance(spec, ResearchSpec):
        try:
            corpus = load_corpus(spec.corpus)
        except ValueError as exc:
            raise TaskFileError(f"{task.source_path}: environment.corpus: {exc}") from None
        return ResearchEnvironment(corpus=corpus, answer_contains=task.success["answer_contains"])
    if isinstance(spec, FilesSpec):
        try:
            sandbox = Sandbox.seeded(sandbox_dir, spec.seed_dir)
        except OSError as exc:
            raise TaskFileError(
                f"{task.source_path}: environment.seed_dir: cannot seed the sandbox "
                f"({exc.strerror or exc})"
            ) from None
        return FilesEnvironment(
            sandbox=sandbox,
            output_file=task.success["file"],
            file_contains=task.success["file_contains"],
        )
    if isinstance(spec, ToolsSpec):
        raise TaskFileError(
            f"{task.source_path}: environment.type: a tools world is opened with "
            "traces.environments.open_environment"
        )
    raise TaskFileError(f"{task.source_path}: environment.type: unsupported {spec.type!r}")


def for_sample(task: Task, environment: ToolEnvironment, sample: Sample) -> ToolEnvironment:
    """`environment` answering `sample`: its prompts get `{input}` and `{sample_id}`, its
    success is the task's scorer's verdict."""
    if task.scorer is None:
        raise TaskFileError(f"{task.source_path}: dataset: the task has no dataset")
    return ScoredEnvironment(environment, task.scorer, sample, task.source_path.parent)


def sample_named(task: Task, sample_id: str) -> Sample | None:
    """The task's sample `sample_id`, or None when its dataset has none of that id."""
    return next((sample for sample in task.dataset if sample.id == sample_id), None)


def render_prompts(task: Task, env: ToolEnvironment) -> tuple[str, str]:
    """Return (system, user) prompts with `{placeholders}` filled from the environment."""
    variables = env.prompt_variables()
    rendered = []
    for field in ("system_prompt", "user_prompt"):
        template: str = getattr(task, field)
        try:
            rendered.append(template.format_map(variables))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise TaskFileError(
                f"{task.source_path}: {field}: cannot fill placeholders ({exc!r})"
            ) from None
    return rendered[0], rendered[1]


def _sandbox_relative(value: str) -> str:
    pure = PurePosixPath(value)
    if not value.strip() or pure.is_absolute() or ".." in pure.parts or value in (".", ""):
        raise ValueError(f"must be a file path relative to the sandbox, got {value!r}")
    return value


def _existing_directory(value: Path | None, info: ValidationInfo) -> Path | None:
    """A seed directory resolved against the task file; ValueError when it is missing."""
    if value is None:
        return None
    directory = _resolve(value, info)
    if not directory.is_dir():
        raise ValueError(f"directory {value} does not exist ({directory})")
    return directory


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir", Path("."))
    return (Path(base) / value).resolve()


_M = TypeVar("_M", bound=BaseModel)


def _validate(
    path: Path,
    model: type[_M],
    data: dict[str, Any],
    *,
    prefix: str,
    context: dict[str, Any] | None,
) -> _M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = _field_name(prefix, first["loc"])
        problem = _problem(first, model)
        raise TaskFileError(f"{path}: {field}: {problem}".replace("\n", " ")) from None


def _field_name(prefix: str, loc: tuple[int | str, ...]) -> str:
    name = prefix
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name = f"{name}.{part}" if name else part
    return name or "(top level)"


_REWRITES = (
    ("Value error, ", ""),
    ("Input should be ", "must be "),
    ("String should ", "must "),
    ("List should ", "must "),
    ("Field required", "required field is missing"),
    ("a valid dictionary", "a table"),
    ("a valid integer", "an integer"),
    ("a valid string", "a string"),
    ("a valid list", "a list"),
)


def _problem(error: ErrorDetails, model: type[BaseModel]) -> str:
    """Turn one pydantic error into a short lower-case problem statement."""
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        # Only a top-level loc can be extra here; nested models are validated separately.
        allowed = ", ".join(model.model_fields) or "none"
        return f"unknown key (allowed: {allowed})"
    message = error["msg"]
    for old, new in _REWRITES:
        message = message.replace(old, new)
    if kind not in ("value_error", "assertion_error"):
        shown = repr(error.get("input"))
        message += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
    return message


_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _toml_error(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    # Python 3.11's TOMLDecodeError has no lineno attribute: the position is in the message.
    message = str(exc)
    match = _TOML_POSITION.match(message)
    if match:
        return f"{path}: line {match['line']}: invalid TOML ({match['msg']}, column {match['col']})"
    suffix = " (at end of document)"
    if message.endswith(suffix):
        line = text.count("\n") + 1
        return f"{path}: line {line}: invalid TOML ({message.removesuffix(suffix)} at end of file)"
    return f"{path}: invalid TOML ({message})"


def _check_placeholders(
    path: Path, field: str, template: str, kind: str, allowed: frozenset[str]
) -> None:
    """Reject placeholders the environment will not provide, before any run starts."""
    available = ", ".join(sorted(allowed)) or "none"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TaskFileError(
            f"{path}: {field}: bad placeholder syntax ({exc}); write literal braces as {{{{ }}}}"
        ) from None
    for _, name, _, _ in parsed:
        if name is not None and name not in allowed:
            raise TaskFileError(
                f"{path}: {field}: unknown placeholder {{{name}}} "
                f"(available for {kind}: {available}; write literal braces as {{{{ }}}})"
            )

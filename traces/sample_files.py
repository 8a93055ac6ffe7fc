"""The samples shipped with the package, and the one place that turns a name into their files.

The repository's top-level `samples/` folder (tasks, suites, the provider profiles, the
research corpus, the files task's seed folder) is installed as the package `traces.samples`:
in a wheel it sits next to the code, in an editable install setuptools maps the package to the
checkout's folder. Every command, test and benchmark finds sample files here, never relative
to the repository or the working directory, so they work from any directory.

`--task`, `--suite` and `--policy` take a path or a name: an existing file is read as is (as
before), a bare name (no `/`, no `.toml`) names a shipped sample.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

from traces.errors import TaskFileError, TracesError

#: The package the samples are installed as (`package-dir` in pyproject.toml).
SAMPLES_PACKAGE = "traces.samples"


@functools.cache
def samples_dir() -> Path:
    """The folder holding the shipped samples (`tasks/`, `suites/`, `providers.toml`, …)."""
    try:
        root = importlib.resources.files(SAMPLES_PACKAGE)
    except ModuleNotFoundError:
        # A source tree put on sys.path without installing it: no mapping exists, but the
        # folder is where the repository keeps it.
        root = Path(__file__).resolve().parents[1] / "samples"
    # Tasks need real directories (the corpus is read, the seed folder copied): a wheel is
    # always installed unpacked, so anything else is a broken installation.
    if not isinstance(root, Path) or not (root / "tasks").is_dir():
        raise TracesError(
            f"the sample files are missing from this installation ({root}); reinstall agent-traces"
        )
    return root


def tasks_dir() -> Path:
    """The shipped task files (`*.toml`) and the folders they use."""
    return samples_dir() / "tasks"


def suites_dir() -> Path:
    """The shipped suite files (`*.toml`)."""
    return samples_dir() / "suites"


def providers_file() -> Path:
    """The shipped provider profiles, used when neither `--providers` nor
    `$TRACES_PROVIDERS` names a file."""
    return samples_dir() / "providers.toml"


def policies_dir() -> Path:
    """The shipped verify policies (`*.toml`)."""
    return samples_dir() / "policies"


def request_suites_dir() -> Path:
    """The shipped request suites (`*.jsonl`, one chat-completions request per line)."""
    return samples_dir() / "requests"


def sample_request_suites() -> dict[str, Path]:
    """Every shipped request suite by name (its file name without `.jsonl`), sorted."""
    return {path.stem: path for path in sorted(request_suites_dir().glob("*.jsonl"))}


def resolve_request_suite(value: str) -> Path:
    """The request suite `value` names: a shipped suite's name (`schemas`), else a path
    (returned as is for the reader to report when it is missing)."""
    samples = sample_request_suites()
    if value in samples and not Path(value).is_file():
        return samples[value]
    bare = "/" not in value and "\\" not in value and not value.endswith(".jsonl")
    if bare and not Path(value).is_file():
        names = ", ".join(samples) or "none"
        raise TracesError(
            f"no sample request suite {value!r} (sample request suites: {names}; or give a "
            "file path)"
        )
    return Path(value)


def sample_tasks() -> dict[str, Path]:
    """Every shipped task file by name (its file name without `.toml`), sorted by name."""
    return _by_name(tasks_dir())


def sample_suites() -> dict[str, Path]:
    """Every shipped suite file by name (its file name without `.toml`), sorted by name."""
    return _by_name(suites_dir())


def sample_policies() -> dict[str, Path]:
    """Every shipped policy file by name (its file name without `.toml`), sorted by name."""
    return _by_name(policies_dir())


def resolve_task(value: str | Path) -> Path:
    """The task file `value` names: an existing file as is, else a shipped task's name.

    An unknown name raises TaskFileError (exit 2) listing the sample tasks; a path that does
    not exist is returned unchanged for the loader to report, unless its stem names a sample.
    """
    return _resolve(value, "task", sample_tasks(), TaskFileError)


def resolve_suite(value: str | Path) -> Path:
    """The suite file `value` names: an existing file as is, else a shipped suite's name."""
    return _resolve(value, "suite", sample_suites(), TracesError)


def resolve_policy(value: str | Path) -> Path:
    """The policy file `value` names: an existing file as is, else a shipped policy's name."""
    return _resolve(value, "policy", sample_policies(), TracesError)


def is_name(value: str) -> bool:
    """Whether `value` reads as a sample's name rather than a path (no separator, no
    `.toml`)."""
    return bool(value) and "/" not in value and "\\" not in value and not value.endswith(".toml")


def _by_name(directory: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(directory.glob("*.toml"))}


def _resolve(
    value: str | Path, kind: str, samples: dict[str, Path], error: type[TracesError]
) -> Path:
    text = str(value)
    path = Path(text)
    if path.is_file():
        # A file the user points at always wins, so every path that worked keeps working.
        return path
    names = ", ".join(samples) or "none"
    if is_name(text):
        if text in samples:
            return samples[text]
        plural = "policies" if kind == "policy" else f"{kind}s"
        raise error(f"no sample {kind} {text!r} (sample {plural}: {names}; or give a file path)")
    if not path.exists() and path.suffix == ".toml" and path.stem in samples:
        # Typically `samples/tasks/chain.toml` typed outside the checkout.
        raise error(
            f"{text}: no such {kind} file (the sample {kind} {path.stem!r} is addressed by "
            f"its name: {path.stem})"
        )
    return path

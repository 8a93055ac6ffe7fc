"""Confine every path a model names to one per-run directory.

The model controls path strings, so each one is resolved (following symlinks) and must land
inside the sandbox root; absolute paths, `..` escapes and symlinks pointing elsewhere are
refused instead of being "fixed up", so the refusal shows in the trace.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

#: Largest file the tools will write or read, so one run cannot fill the disk or the context.
MAX_FILE_BYTES = 1024 * 1024


class SandboxError(ValueError):
    """A path the sandbox refuses; the message is safe to show to the model."""


class Sandbox:
    """A directory tree the file tools may touch, and nothing outside it."""

    def __init__(self, root: Path) -> None:
        """Use `root` (which must exist) as the sandbox; it is resolved once, here."""
        self.root = root.resolve(strict=True)

    @classmethod
    def seeded(cls, root: Path, seed_dir: Path | None) -> Sandbox:
        """Create `root` if needed and copy the contents of `seed_dir` into it."""
        root.mkdir(parents=True, exist_ok=True)
        if seed_dir is not None:
            # symlinks=True copies links as links, so a link in a seed cannot smuggle an
            # outside file's content into the sandbox; the resolver refuses it at use time.
            # Bytecode caches are left out: pip writes them next to the shipped seed's .py
            # files, and the model must see the same project whether installed or not.
            shutil.copytree(
                seed_dir,
                root,
                symlinks=True,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        return cls(root)

    def resolve(self, path: str) -> Path:
        """Return the real absolute path for `path`, or raise SandboxError if it escapes.

        `path` is relative to the sandbox root; "" and "." name the root itself.
        """
        if "\x00" in path:
            raise SandboxError(f"{path!r}: path contains a NUL byte")
        if PurePosixPath(path).is_absolute() or Path(path).is_absolute():
            raise SandboxError(f"{path}: absolute paths are outside the sandbox")
        # resolve() follows symlinks and collapses "..", so both escapes show up as a
        # location that is not under the root.
        real = (self.root / path).resolve()
        if not real.is_relative_to(self.root):
            raise SandboxError(f"{path}: path is outside the sandbox")
        return real

    def relative(self, real: Path) -> str:
        """The sandbox-relative POSIX form of a path returned by `resolve`."""
        rel = real.relative_to(self.root).as_posix()
        return rel if rel else "."

    def files_under(self, real: Path) -> list[Path]:
        """Every regular file at or below `real` that resolves inside the sandbox, sorted.

        Symlinks pointing outside are skipped silently: listing should not fail just
        because something odd lives in the tree, while reading it directly is refused.
        """
        if real.is_file():
            return [real]
        found = []
        for candidate in real.rglob("*"):
            target = candidate.resolve()
            if target.is_relative_to(self.root) and target.is_file():
                found.append(candidate)
        return sorted(found, key=lambda p: p.relative_to(self.root).as_posix())

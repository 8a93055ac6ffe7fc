"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations


class TracesError(Exception):
    """A problem the user can fix; the CLI prints `str(err)` on one line and exits non-zero.

    `exit_code` follows the documented CLI codes: 2 bad input (task, profile, import, SQL),
    3 endpoint unreachable or misbehaving, 4 database missing or locked.
    """

    exit_code: int = 2


class TaskFileError(TracesError):
    """A task file that cannot be loaded; the message names the file and the field."""


class MissingKeyError(TracesError):
    """The environment variable that must hold an endpoint's key is not set (bad input: the
    message names the variable)."""


class EndpointError(TracesError):
    """An endpoint that cannot be reached or does not speak the chat-completions protocol."""

    exit_code = 3


class DatabaseError(TracesError):
    """A trace database that is missing, locked by a writer, or not ours."""

    exit_code = 4


class Interrupted(TracesError):
    """Ctrl-C or SIGTERM stopped the command; the message is the whole line it ends with
    (`interrupted: run … left interrupted`), printed without the `error:` prefix."""

    exit_code = 130

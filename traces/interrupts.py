"""Ctrl-C and SIGTERM, whenever they arrive: one line on stderr, exit code 130, no traceback.

A terminal's Ctrl-C reaches the whole foreground process group: the command, its writer
process and its import workers alike. So:

- The command installs `install()` first thing, before any heavy import (`analyzer.__main__`).
  The first signal raises KeyboardInterrupt in the main thread (or, while an event loop
  records, cancels its main task: `run_cancelling_on_signal`), so `finally` blocks and context
  managers clean up: runs end `interrupted`, an import rolls back, children are stopped.
  Signals after the first are counted, not raised, so that cleanup itself cannot be cut
  short; the third one gives up on it (the usual "press again to force").
- Once the command has its exit code and its last line (`exit_with`), signals are ignored:
  the process is on its way out and writes nothing more, whatever interpreter shutdown,
  atexit hooks or multiprocessing finalizers are doing when one arrives.
- Children are started with both signals blocked (`starting_children`), so none reaches
  them while they import, and begin with `ignore_in_child()`: the parent alone decides when
  they stop, and the writer process still commits everything it received.

This module imports nothing but the standard library's smallest modules: it runs before
anything else of the command line is imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType, TracebackType
from typing import Any, NoReturn, TypeVar

EXIT_CODE = 130
"""The documented exit code of an interrupted command (128 + SIGINT, as shells report it)."""
LINE = "error: interrupted"
"""The line an interrupted command ends with when it has nothing more precise to say."""
SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER = 3
"""Signals received while cleaning up after the first one, before giving up on cleanup."""

_T = TypeVar("_T")


class _State:
    """What the process has been told so far (one per process; only the main thread runs
    Python signal handlers, so plain attributes suffice)."""

    installed = False
    interrupted = False
    """A signal asked the command to stop; cleanup is under way."""
    extra = 0
    """Signals received since."""
    exit_code: int | None = None
    """Set once the command has written its last line: the process is exiting."""
    on_interrupt: Callable[[], None] | None = None
    """Called instead of raising KeyboardInterrupt while an event loop records."""
    deferring = False
    """Inside `starting_children`: a first signal waits for the end of the block."""
    deferred = False
    """A first signal came while deferring."""


_state = _State()


def install() -> None:
    """Handle SIGINT and SIGTERM as described above (idempotent; main thread only)."""
    if _state.installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)
    # A KeyboardInterrupt that escapes every handler (raised between two of them), or any
    # error raised after a signal, still ends as one line, not as Python's traceback.
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt) or _state.interrupted:
            exit_now()
        previous(kind, value, tb)

    sys.excepthook = hook
    _state.installed = True


def begin_command() -> None:
    """A command starts: nothing has interrupted or ended it yet. (Once per process for the
    `traces` script; tests that run several commands in one process start each afresh.)"""
    _state.interrupted = False
    _state.extra = 0
    _state.exit_code = None
    _state.deferred = False


def interrupted() -> bool:
    """Whether a signal asked this process to stop."""
    return _state.interrupted


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.interrupted or _state.exit_code is not None:
        _state.extra += 1
        if _state.extra >= FORCE_AFTER:
            exit_now()
        return
    _state.interrupted = True
    if _state.deferring:
        _state.deferred = True
        return
    _interrupt()


def _interrupt() -> None:
    if _state.on_interrupt is not None:
        _state.on_interrupt()
        return
    raise KeyboardInterrupt


def exit_now() -> NoReturn:
    """Leave at once: the line (unless one was written), then exit without cleanup."""
    code = _state.exit_code
    if code is None:
        code = EXIT_CODE
        with contextlib.suppress(Exception):
            sys.stderr.write(LINE + "\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def exit_with(code: int, line: str | None = None) -> NoReturn:
    """End the command: write its last stderr line (if any) and exit with `code`.

    The first call wins: once a command has said how it ended, a signal arriving later (or a
    KeyboardInterrupt caught on the way out) neither adds a line nor changes the code.
    """
    if _state.exit_code is None:
        _state.exit_code = code  # from here on, signals are ignored
        if line is not None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    raise SystemExit(_state.exit_code)


def exit_interrupted(line: str = LINE) -> NoReturn:
    """End an interrupted command: one line (`error: interrupted` unless it says more), 130."""
    exit_with(EXIT_CODE, line)


@contextlib.contextmanager
def starting_children() -> Iterator[None]:
    """Start child processes inside this: they are born with SIGINT and SIGTERM blocked.

    A child inherits this thread's signal mask through fork and exec, so no signal reaches
    it while its interpreter starts and imports; it calls `ignore_in_child()` once it can.
    In this process a signal is not lost but deferred to the end of the block, even when
    another thread takes it: a KeyboardInterrupt raised halfway through starting a child
    would leave it half started (a multiprocessing child then dies on a truncated pickle,
    with a traceback).
    """
    deferring, _state.deferring = _state.deferring, True
    previous = None
    if hasattr(signal, "pthread_sigmask"):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        _state.deferring = deferring
    if _state.deferred and not deferring:
        _state.deferred = False
        _interrupt()


def ignore_in_child() -> None:
    """In a child process (writer, import worker): ignore SIGINT and SIGTERM for good.

    Ignoring first, then unblocking, discards what arrived while they were blocked.
    """
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def run_cancelling_on_signal(coro: Coroutine[Any, Any, _T]) -> _T:
    """`asyncio.run(coro)`, where the first SIGINT or SIGTERM cancels `coro` and waits for it
    to wind down (its runs record themselves as interrupted), then raises KeyboardInterrupt.

    Without `install()` (a library caller), asyncio's own Ctrl-C handling applies.
    """
    import asyncio  # only the commands that record need an event loop

    async def main() -> _T:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()

        def cancel() -> None:
            # Called from the signal handler, in this (the main) thread, between two
            # bytecodes of whatever the loop runs: cancel, and wake the loop up to notice.
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)

        outer, _state.on_interrupt = _state.on_interrupt, cancel
        try:
            if _state.interrupted:  # a signal came before the loop ran: stop at once
                task.cancel()
            return await task
        except asyncio.CancelledError:
            if _state.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            _state.on_interrupt = outer

    return asyncio.run(main())

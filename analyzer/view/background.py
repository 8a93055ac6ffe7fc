"""Work too long for a request (the comparison of a million steps takes tens of seconds),
done once per store version in a thread of its own, its result kept.

A page asks for a result by key and the store's version (`data.live_version`): the result of
that version is given at once if it is ready; otherwise the work starts (one piece of work at
a time: the machine has few cores and the pages must stay quick) and the page waits a
moment for it, then shows what there is: the previous version's result, marked as being
updated, or that the work is in progress. Pages in that state refresh themselves until it
is done.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from traces.errors import TracesError

T = TypeVar("T")

KEPT = 16
"""Results kept (a key each: the comparison of one selection, one page's counts)."""


class WorkFailed(Exception):
    """The work failed for a reason not the request's (answered 500); its message is one
    line, the traceback went to the log when it happened."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a page can show of one piece of work."""

    value: T | None
    """The newest result there is (possibly of an older version of the store)."""
    error: str | None
    """The one line the newest attempt failed with (a TracesError's: bad input)."""
    failed: bool
    """Whether that failure was an internal error rather than bad input."""
    current: bool
    """Whether `value` (or `error`) is of the store as it is now."""
    running_s: float | None
    """How long the work in progress has run, if any is."""
    last_took_s: float | None
    """How long the last finished attempt took."""
    done_at: float | None
    """When (time.time()) the shown result was computed."""


@dataclass
class _Entry:
    version: str | None = None
    value: object = None
    error: str | None = None
    failed: bool = False
    done_at: float | None = None
    took_s: float | None = None
    running: str | None = None
    """The version being computed, if any."""
    started: float = 0.0
    event: threading.Event | None = None
    wanted: tuple[str, Callable[[], object]] | None = None
    """A newer version asked for while another was being computed."""


class Background:
    """Results of long work, per key, for the store version they were computed on."""

    def __init__(self) -> None:
        """Nothing computed yet."""
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def get(
        self,
        key: Hashable,
        version: str,
        work: Callable[[], T],
        *,
        wait_s: float,
    ) -> Outcome[T]:
        """The outcome of `work` for `key` at store `version`, starting it if need be and
        waiting up to `wait_s` for it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > KEPT:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
            if entry.version != version:
                if entry.running is None:
                    self._start(entry, version, work)
                elif entry.running != version:
                    # Never two at once for a key: the newest version asked for is done
                    # when the one in progress ends (a recording moves it every second).
                    entry.wanted = (version, work)
            event = entry.event if entry.running is not None else None
        if event is not None and wait_s > 0:
            event.wait(wait_s)
        return self._outcome(entry, version)

    def _start(self, entry: _Entry, version: str, work: Callable[[], object]) -> None:
        # Called with the lock held.
        entry.running, entry.wanted = version, None
        entry.started = time.monotonic()
        entry.event = threading.Event()
        threading.Thread(
            target=self._run,
            args=(entry, version, work, entry.event),
            name="traces-view-background",
            daemon=True,
        ).start()

    def _run(
        self, entry: _Entry, version: str, work: Callable[[], object], event: threading.Event
    ) -> None:
        value: object = None
        error = None
        failed = False
        with self._one_at_a_time:
            began = time.monotonic()
            try:
                value = work()
            except TracesError as exc:
                error = str(exc)
            except Exception as exc:  # shown as an internal error; the log says where
                traceback.print_exception(exc, file=sys.stderr)
                error, failed = f"internal error: {exc!r}", True
            took = time.monotonic() - began
        with self._lock:
            entry.running = None
            entry.version, entry.error, entry.failed = version, error, failed
            if error is None:
                entry.value = value
            entry.done_at, entry.took_s = time.time(), took
            if entry.wanted is not None and entry.wanted[0] != version:
                self._start(entry, *entry.wanted)
        event.set()

    def _outcome(self, entry: _Entry, version: str) -> Outcome[T]:
        with self._lock:
            return Outcome(
                value=entry.value,  # type: ignore[arg-type]
                error=entry.error,
                failed=entry.failed,
                current=entry.version == version,
                running_s=(time.monotonic() - entry.started if entry.running is not None else None),
                last_took_s=entry.took_s,
                done_at=entry.done_at,
            )

"""A real headless Chromium page for tests of the HTML report.

Uses the system's Chromium (Debian `chromium`, installed by `.ci/run`) through Playwright;
Playwright's own browser download is never needed. Without Chromium the tests that need a
browser skip locally, but fail under CI, where it must be present.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class LoadedPage:
    """A page opened from a file, with every console message, uncaught error, request
    leaving the file and dialog (alert, confirm, prompt) it raised."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def console_errors(self) -> list[str]:
        """Console messages of type error, plus uncaught exceptions."""
        return [text for kind, text in self.console if kind == "error"] + self.errors


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps an event loop running in the main thread
    while it is open, and later modules that call `asyncio.run` would fail under it.
    """
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs the Debian package")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        instance = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield instance
        instance.close()


def open_file(browser: Any, path: Path) -> LoadedPage:
    """Open `path` offline: any request leaving the file is recorded and aborted, any dialog
    recorded and dismissed (listeners attach before the page loads, so nothing is missed)."""
    context = browser.new_context(offline=True)
    page = context.new_page()
    loaded = LoadedPage(page)
    page.on("console", lambda m: loaded.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: loaded.errors.append(str(e)))

    def _dialog(dialog: Any) -> None:
        loaded.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", _dialog)

    def _block(route: Any) -> None:
        url = route.request.url
        if url.startswith("file://") or url.startswith("data:"):
            route.continue_()
        else:
            loaded.requests.append(url)
            route.abort()

    page.route("**/*", _block)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return loaded

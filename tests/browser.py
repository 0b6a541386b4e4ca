"""Headless Debian Chromium driven by Playwright, with every request off this machine blocked.

Playwright talks to the browser over a pipe (CDP), needs no driver binary matched to the
browser's version, and gives request interception, console events and real mouse input in one
package; its own browser download (``playwright install``) is never used: we launch
/usr/bin/chromium.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.dashboard import CHROMIUM, CHROMIUM_FLAGS


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/install_chromium.sh installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


def local(url: str) -> bool:
    """Whether a request stays on this machine: a file, data, or the loopback server."""
    return url.startswith(("file:", "data:", "blob:", "about:")) or url.startswith(
        ("http://127.0.0.1:", "http://localhost:")
    )


@dataclass
class Session:
    """A browser page that records its console errors and the requests it tried to make."""

    page: Any
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (a fresh profile per launch: Playwright makes a temporary one)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_FLAGS))
        try:
            yield b
        finally:
            b.close()


@contextmanager
def session(b: Any, width: int = 1400, height: int = 1000) -> Iterator[Session]:
    """A fresh context and page; non-local requests are aborted and recorded."""
    context = b.new_context(viewport={"width": width, "height": height})
    s = Session(context.new_page())

    def route(r: Any) -> None:
        if local(r.request.url):
            r.continue_()
        else:
            s.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    s.page.on(
        "console", lambda m: s.errors.append(m.text) if m.type in ("error", "assert") else None
    )
    s.page.on("pageerror", lambda e: s.errors.append(str(e)))

    def dialog(d: Any) -> None:
        s.dialogs.append(d.message)
        d.dismiss()

    s.page.on("dialog", dialog)
    try:
        yield s
    finally:
        context.close()


def open_dashboard(s: Session, url: str, timeout_ms: int = 120_000) -> dict[str, float]:
    """Load a dashboard and wait until every plot has rendered; its timings in ms."""
    s.page.goto(url)
    s.page.wait_for_function("document.body.dataset.rendered", timeout=timeout_ms)
    state = s.page.evaluate("document.body.dataset.rendered")
    if state != "1":
        raise AssertionError(f"the page failed to render: {s.errors}")
    return s.page.evaluate("window.dashboardTimes")


def in_ci() -> bool:
    return bool(os.environ.get("CI"))

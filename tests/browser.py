"""Open an HTML file in a real headless browser and report what went wrong there.

The HTML reports `cnnlab report` writes must open from disk with no server: this helper loads one
by its file:// URL in Debian's chromium (`apt-get install chromium`; `.ci/run` installs it),
driven by the `playwright` Python package with `executable_path`, so playwright never downloads a
browser of its own and nothing here needs the network. It collects console errors, uncaught
exceptions and failed requests, waits until every image has loaded, measures each image and
writes a full-page screenshot.

Tests call `require_browser()` first: it skips with the reason when chromium or playwright is
missing, and fails instead when `CNNLAB_REQUIRE_BROWSER=1` (CI sets it, so the check cannot
silently vanish). Mark such tests `@pytest.mark.browser`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_ENV = "CNNLAB_REQUIRE_BROWSER"
CHROMIUM_ENV = "CNNLAB_CHROMIUM"  # another chromium/chrome binary, for machines without Debian's
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SRC_PREFIX = 60  # characters of an image's src kept in PageCheck.images

# Lazy images below the fold would never load in a headless viewport: load them all now.
_EAGER_IMAGES_JS = """() => {
  for (const img of document.querySelectorAll('img[loading="lazy"]')) img.loading = "eager";
}"""
_IMAGES_DONE_JS = "() => Array.from(document.images).every((img) => img.complete)"
_IMAGES_JS = """(n) => Array.from(document.images).map(
  (img) => [(img.currentSrc || img.src || "").slice(0, n), img.naturalWidth, img.naturalHeight])"""


@dataclass
class PageCheck:
    """What a page did in the browser.

    console_errors: `console.error` messages, uncaught exceptions (and unhandled promise
        rejections), failed requests and blocked network requests, in the order they happened.
    images: one `(src prefix, natural width, natural height)` per `<img>`; a width of 0 is an
        image that did not decode.
    requests: URLs the page fetched besides itself (`data:` URIs are not requests), so a
        self-contained page has none.
    """

    title: str
    console_errors: list[str]
    images: list[tuple[str, int, int]]
    screenshot: Path
    requests: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[str]:
        """The src prefixes of the images that did not render."""
        return [src for src, width, _ in self.images if width == 0]

    @property
    def problems(self) -> list[str]:
        """Every console error plus one line per broken image: empty for a good page."""
        return self.console_errors + [f"broken image: {src}" for src in self.broken_images]


def browser_available() -> str | None:
    """The chromium executable to drive (`$CNNLAB_CHROMIUM`, else chromium on PATH), or None."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_browser_reason() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is missing: pip install -e '.[test]'"
    if browser_available() is None:
        where = os.environ.get(CHROMIUM_ENV) or "PATH"
        return f"no chromium on {where}: apt-get install chromium (or set {CHROMIUM_ENV})"
    return None


def require_browser() -> str:
    """The chromium path; skips the calling test without one, fails if $CNNLAB_REQUIRE_BROWSER=1."""
    reason = missing_browser_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1 requires the browser check)", pytrace=False)
        pytest.skip(reason)
    path = browser_available()
    assert path is not None
    return path


def open_in_browser(
    html_path: str | Path, screenshot_path: str | Path, timeout_s: float = 30
) -> PageCheck:
    """Load `html_path` from disk in headless chromium; return a `PageCheck`.

    Waits for the load event and then for every `<img>` to finish (lazy ones are made eager),
    writes a full-page PNG screenshot to `screenshot_path`, and closes the browser. Requests to
    http(s) are blocked and reported: a report that opens from disk must not need the network.
    `timeout_s` bounds the whole call; a page that does not finish loading in it raises
    playwright's TimeoutError.
    """
    from playwright.sync_api import sync_playwright

    executable = browser_available()
    if executable is None:
        raise RuntimeError(missing_browser_reason())
    url = Path(html_path).resolve().as_uri()
    screenshot = Path(screenshot_path)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s

    def remaining_ms() -> float:
        return max(1.0, (deadline - time.monotonic()) * 1000)

    errors: list[str] = []
    requests: list[str] = []
    blocked: set[str] = set()

    def on_console(msg) -> None:
        if msg.type == "error":
            where = msg.location or {}
            line = where.get("lineNumber")
            # The page's own scripts get a line; resource errors name the resource instead.
            at = f" (line {line + 1})" if where.get("url") == url and isinstance(line, int) else ""
            errors.append(f"console.error: {msg.text}{at}")

    def on_request(request) -> None:
        if request.url != url:
            requests.append(request.url)

    def on_request_failed(request) -> None:
        if request.url not in blocked:
            errors.append(f"failed request: {request.url[:200]} ({request.failure})")

    def block(route) -> None:
        blocked.add(route.request.url)
        errors.append(f"blocked network request: {route.request.url[:200]}")
        route.abort()

    with sync_playwright() as pw:
        # Playwright's default chromium_sandbox=False adds --no-sandbox (chromium refuses to run
        # as root with its sandbox, as in containers); /dev/shm is often tiny there.
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--disable-dev-shm-usage"],
            timeout=remaining_ms(),
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(remaining_ms())
            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"uncaught {exc.name}: {exc.message}"))
            page.on("request", on_request)
            page.on("requestfailed", on_request_failed)
            page.route(lambda u: u.startswith(("http://", "https://")), block)
            page.goto(url, wait_until="load", timeout=remaining_ms())
            page.evaluate(_EAGER_IMAGES_JS)
            page.wait_for_function(_IMAGES_DONE_JS, timeout=remaining_ms())
            images = [(src, int(w), int(h)) for src, w, h in page.evaluate(_IMAGES_JS, SRC_PREFIX)]
            title = page.title()
            page.screenshot(path=str(screenshot), full_page=True, timeout=remaining_ms())
        finally:
            browser.close()
    return PageCheck(
        title=title,
        console_errors=errors,
        images=images,
        screenshot=screenshot,
        requests=requests,
    )

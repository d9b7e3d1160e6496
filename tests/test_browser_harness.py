"""The headless-browser harness (tests/browser.py) finds what is wrong with a page.

Hand-written pages: a good one (embedded PNGs, one lazy below the fold, valid JS) must come back
clean, and a bad one must report each of its problems. The report tests rely on both directions.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from browser import REQUIRE_ENV, PageCheck, open_in_browser, require_browser


def png_data_uri(width: int, height: int, color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


GOOD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>cnnlab report: good</title>
<style>body {{ font-family: sans-serif; }} .spacer {{ height: 2500px; }}</style></head>
<body>
<h1>Curves</h1>
<img id="curves" src="{curves}" alt="curves">
<div class="spacer"></div>
<img id="confusion" src="{confusion}" alt="confusion" loading="lazy">
<p id="out"></p>
<script>
  const rows = [1, 2, 3].map((x) => x * 2);
  document.getElementById("out").textContent = "rows: " + rows.join(", ");
  console.log("logs and warnings are not errors");
  console.warn("neither is a warning");
</script>
</body></html>
"""

BAD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>cnnlab report: bad</title></head>
<body>
<img id="broken" src="data:image/png;base64,bm90IGEgcG5n" alt="not a png">
<img id="missing" src="missing-plot.png" alt="no such file">
<img id="remote" src="http://example.invalid/plot.png" alt="needs the network">
<script>console.error("report broke: " + 42);</script>
<script>throw new TypeError("kaput");</script>
<script>Promise.reject(new Error("rejected promise"));</script>
</body></html>
"""


def test_require_browser_skips_or_fails_without_chromium(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        require_browser()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_ENV}=1"):
        require_browser()


@pytest.mark.browser
def test_good_page_loads_clean(tmp_path):
    require_browser()
    html = tmp_path / "good.html"
    html.write_text(
        GOOD_PAGE.format(
            curves=png_data_uri(40, 30, "red"), confusion=png_data_uri(20, 10, "blue")
        ),
        encoding="utf-8",
    )
    page = open_in_browser(html, tmp_path / "shots" / "good.png")

    assert isinstance(page, PageCheck)
    assert page.problems == [], page.problems
    assert page.requests == []  # self-contained: nothing fetched besides the page
    assert page.title == "cnnlab report: good"
    assert [(w, h) for _, w, h in page.images] == [(40, 30), (20, 10)]  # the lazy one too
    assert all(src.startswith("data:image/png;base64,") for src, _, _ in page.images)
    assert all(len(src) <= 60 for src, _, _ in page.images)

    data = page.screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(page.screenshot) as shot:
        assert shot.width > 0
        assert shot.height > 2500  # the full page, not just the viewport


@pytest.mark.browser
def test_bad_page_reports_each_problem(tmp_path):
    require_browser()
    html = tmp_path / "bad.html"
    html.write_text(BAD_PAGE, encoding="utf-8")
    page = open_in_browser(html, tmp_path / "bad.png")
    errors = "\n".join(page.console_errors)

    assert "console.error: report broke: 42" in errors
    assert "uncaught TypeError: kaput" in errors
    assert "rejected promise" in errors
    assert "failed request: file://" in errors and "missing-plot.png" in errors
    assert "blocked network request: http://example.invalid/plot.png" in errors
    assert page.broken_images == [
        "data:image/png;base64,bm90IGEgcG5n",
        (html.parent / "missing-plot.png").as_uri()[:60],
        "http://example.invalid/plot.png",
    ]
    assert len(page.problems) == len(page.console_errors) + 3
    assert page.title == "cnnlab report: bad"
    assert page.screenshot.stat().st_size > 0

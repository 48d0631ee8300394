"""The report page at a desktop (1280 px) and a phone (390 px) width: the body never scrolls sideways
(wide tables scroll inside themselves, images shrink), measured in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from export.report.build import html_page
from tests.export.test_report import _parity, _report
from tests.export.test_report_plots import old_run_report

# Inside the report: its widths, sent to the frame around it (postMessage crosses file:// origins).
MEASURE = """<script>
window.addEventListener("load", function () {
  parent.postMessage("scroll=" + document.documentElement.scrollWidth + " body=" + document.body.scrollWidth
    + " window=" + window.innerWidth, "*");
});
</script>
</body>"""
# Around it: a frame of the width under test (headless Chromium's own window is at least 500 px wide),
# which writes what the report measured into its DOM for --dump-dom.
FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="{page}" style="width:{width}px;height:900px;border:0"></iframe>
<script>window.addEventListener("message", function (e) {{
  var m = document.createElement("p"); m.textContent = e.data; document.body.appendChild(m); }});</script>
</body></html>"""


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (scripts/ensure-chromium installs Debian's chromium where it can)")
    return browser


def _measure(page: Path, width: int) -> tuple[int, int, int]:
    """The page's scroll width, its body's and the window's, in a frame ``width`` px wide (headless Chromium)."""
    page.write_text(page.read_text().replace("</body>", MEASURE))
    frame = page.parent / "frame.html"
    frame.write_text(FRAME.format(width=width, page=page.name))
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             "--window-size=1400,1000", "--dump-dom", frame.as_uri()],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"scroll=(\d+) body=(\d+) window=(\d+)", done.stdout)
    assert found is not None, done.stdout[-2000:]
    scroll, body, window = map(int, found.groups())
    return scroll, body, window


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_body_does_not_scroll_sideways(tmp_path: Path, width: int) -> None:
    report = _report(_parity("reservoir"))
    report["stages"]["parity"]["key"] = "k" * 120  # a long unbroken key, as real runs have
    page = tmp_path / "report.html"
    page.write_text(html_page(report))
    scroll, body, window = _measure(page, width)
    assert window == width
    assert body <= window and scroll <= window, (scroll, body, window)


@pytest.mark.parametrize("width", [1280, 390])
def test_a_real_runs_report_with_its_plots_does_not_scroll_sideways(tmp_path: Path, width: int) -> None:
    run, _ = old_run_report(tmp_path)
    scroll, body, window = _measure(run / "report.html", width)
    assert window == width
    assert body <= window and scroll <= window, (scroll, body, window)

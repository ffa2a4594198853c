"""report.html renders in headless Chromium: no JavaScript error, no empty plot, no network, sortable tables.

Chromium is driven through Playwright with the system browser (/usr/bin/chromium, or $CHROMIUM);
Playwright downloads nothing.  Without a browser the test is skipped locally and fails under CI.
"""

from __future__ import annotations

import os
import shutil

import pytest

from analysis.html_report import write_html
from analysis.tables import analyse_sweep

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or ""
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
IGNORED_WARNINGS = ("GL Driver Message", "WebGL")  # parcoords' WebGL performance notes, not errors

# per plot: traces, and the data points they hold (calcdata; parcoords: its lines)
PLOT_STATS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    id: gd.id,
    traces: (gd._fullData || []).length,
    points: (gd._fullData || []).reduce((n, t, i) => n + (t.type === 'parcoords'
        ? (t.dimensions && t.dimensions.length ? t.dimensions[0].values.length : 0)
        : (gd.calcdata && gd.calcdata[i] ? gd.calcdata[i].length : 0)), 0),
    height: gd.getBoundingClientRect().height,
    svg: gd.querySelectorAll('svg.main-svg').length }))"""


def render(path: str, click: str = ""):
    """Open `path` in headless Chromium; returns (errors, requests to the network, plot stats, first column)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("no Chromium: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    errors, network = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
                    if m.type in ("error", "warning") and not any(s in m.text for s in IGNORED_WARNINGS) else None)
            page.on("request", lambda r: network.append(r.url)
                    if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
            page.goto(f"file://{os.path.abspath(path)}", wait_until="load")
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0")
            stats = page.evaluate(PLOT_STATS)
            column = []
            if click:
                page.click(click)
                column = page.evaluate("() => Array.from(document.querySelectorAll('#trials tbody tr'))"
                                       ".map(r => r.cells[0].textContent)")
        finally:
            browser.close()
    return errors, network, stats, column


def _assert_rendered(errors, network, stats, expected):
    assert not errors, errors
    assert not network, f"report.html reached the network: {network}"
    ids = {s["id"] for s in stats}
    assert expected <= ids, f"missing figures {expected - ids}"
    empty = [s for s in stats if not (s["traces"] and s["points"] and s["height"] > 50 and s["svg"])]
    assert not empty, f"empty plots: {empty}"


def test_html_report_of_a_k_max_sweep(tiny_sweep, tmp_path):
    a = analyse_sweep(tiny_sweep, eps=0.3, n_boot=10)
    path = write_html(a, str(tmp_path / "report.html"))
    size = os.path.getsize(path)
    assert 3e6 < size < 2e7  # the plotly bundle is inlined: one file, nothing fetched
    text = open(path).read()
    assert "<script src=" not in text and "cdn" not in text.lower().split("</script>")[-1]
    errors, network, stats, _ = render(path)
    _assert_rendered(errors, network, stats, {"fig-curves", "fig-times", "fig-scaling", "fig-parallel",
                                              "fig-rates", "fig-heat-0", "fig-heat-1"})
    curves = next(s for s in stats if s["id"] == "fig-curves")
    assert curves["traces"] == len(a.times)  # one line per trial


def test_html_tables_sort_and_a_broken_page_fails(tiny_sweep, tmp_path):
    a = analyse_sweep(tiny_sweep, eps=0.3, n_boot=0)
    path = write_html(a, str(tmp_path / "report.html"))
    *_, column = render(path, click="#trials th:nth-child(1)")  # sort by trial_id, ascending
    assert column == sorted(a.sweep.trials["trial_id"])
    broken = tmp_path / "broken.html"
    broken.write_text(open(path).read().replace(
        "</body>", "<div id='fig-empty'></div><script>Plotly.newPlot('fig-empty', []); undefinedFunction();"
                   "</script></body>"))
    errors, network, stats, _ = render(str(broken))
    assert any("undefinedFunction" in e for e in errors)  # the check sees JavaScript errors ...
    with pytest.raises(AssertionError, match="empty plots"):  # ... and empty plots
        _assert_rendered([], network, stats, set())

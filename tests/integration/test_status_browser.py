"""The status page in a real browser: headless Chromium (tests/browser.py) over the real service.

A small run's decisions and dead letters are written to this test's topics, `distillguard
status` serves them, and Chromium loads the page: it must show the run's figures (the number of
decisions, an account id, the clusters, the dead letters, the plots drawn) and log no error at
all: no console error, no uncaught exception, no failed request. A first test shows the harness
sees such errors, so a clean result means something.

Skipped only where Chromium is not installed (with the command to install it); CI installs it
(.ci/run) and sets DGTEST_REQUIRE_CHROMIUM=1, so there a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distillguard.streams.edge.settings import Settings
from tests.browser import Chromium, find_chromium
from tests.integration.test_status_page import (
    ACCOUNTS,
    HEALTH,
    fake_worker,
    status_service,
    write_small_run,
)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = ("chromium is not installed: the browser tests need it "
                   "(Debian: apt-get install chromium; .ci/run installs it)")
        if os.environ.get("DGTEST_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_harness_sees_console_errors_exceptions_and_failed_requests(chromium: str) -> None:
    page = ("data:text/html,<body><script>console.error('boom');"
            "fetch('http://127.0.0.1:1/nothing').catch(() => {});"
            "setTimeout(() => undefinedFunction(), 10);</script>done</body>")
    with Chromium(chromium) as browser:
        run = asyncio.run(browser.load(page, "document.body.innerText === 'done'",
                                       settle_s=1.0))
    assert run.value is True
    assert any("boom" in e for e in run.console_errors), run.errors
    assert any("undefinedFunction" in e for e in run.exceptions), run.errors
    assert any("127.0.0.1:1" in e or "ERR_CONNECTION_REFUSED" in e for e in run.log_errors), \
        run.errors


READ = """(() => {
  const q = s => document.querySelector(s);
  return {
    decisions: q('#tile-decisions .v').innerText,
    timeline_bars: document.querySelectorAll('#timeline svg rect').length,
    cluster_bars: document.querySelectorAll('#clusters svg rect').length,
    dead_letter_bars: document.querySelectorAll('#dead svg rect').length,
    lag_lines: document.querySelectorAll('#lag svg polyline').length,
    fleet_rows: document.querySelectorAll('#fleet tr').length - 1,
    banner_shown: q('#banner').classList.contains('on'),
  };
})()"""


@pytest.mark.broker
def test_the_page_loads_and_shows_a_small_run_without_errors(
        run: Settings, validate: Callable[[str, Any], None], tmp_path: Path,
        chromium: str) -> None:
    count = write_small_run(run, validate)
    with fake_worker(200, HEALTH) as worker, \
            status_service(run, [worker], tmp_path / "status.log") as (_, url), \
            Chromium(chromium) as browser:
        page = asyncio.run(browser.load(
            url, f"document.body.dataset.state === 'live' && "
                 f"document.body.dataset.decisions === '{count}' && "
                 f"document.body.dataset.deadLetters === '3' && "
                 f"document.querySelectorAll('#lag svg polyline').length > 0",
            timeout_s=40, screenshot=True, read_js=READ))
        if os.environ.get("DGTEST_STATUS_SCREENSHOT"):
            assert page.screenshot is not None
            Path(os.environ["DGTEST_STATUS_SCREENSHOT"]).write_bytes(page.screenshot)
    assert page.value is True, f"the page did not show the run: {page.data}\n{page.text}"
    assert page.errors == [], page.errors
    assert page.read["decisions"] == str(count)
    assert page.read["timeline_bars"] >= 3  # block, throttle and allow bars drawn
    assert page.read["cluster_bars"] >= 2 and page.read["dead_letter_bars"] == 2
    assert page.read["lag_lines"] == 1 and page.read["fleet_rows"] == 1
    assert page.read["banner_shown"] is False
    for shown in (ACCOUNTS[3], "ip:198.51.100", "pay:fp-77", "record value is not JSON",
                  "Decisions over time", "Top clusters under action", "Dead letters by reason"):
        assert shown in page.text, shown
    assert page.screenshot is not None and page.screenshot.startswith(b"\x89PNG")

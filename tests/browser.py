"""A real, headless Chromium driven over the Chrome DevTools protocol (CDP), for the page tests.

No Selenium, no Playwright download: the system's Chromium (Debian's `chromium` package; CI
installs it in .ci/run) started with `--remote-debugging-port=0`, and aiohttp's websocket
client (aiohttp comes with Faust) speaking CDP to its page. What a browser test needs from it:
load a URL, wait until a condition in the page holds, read the page's text and data, take a
screenshot, and every console error, uncaught exception and browser log error meanwhile
(Runtime.consoleAPICalled, Runtime.exceptionThrown, Log.entryAdded: a failed request, for one,
is only in the last).

Also a script, for the README's screenshot:
    python -m tests.browser URL OUT.png [--width 1400] [--wait-js EXPR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageRun:
    """What happened while a page was loaded and watched."""

    value: Any = None  # the wait condition's last value
    text: str = ""  # document.body.innerText
    data: dict[str, str] = field(default_factory=dict)  # document.body.dataset
    read: Any = None  # the value of `read_js`, evaluated at the end
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    screenshot: bytes | None = None

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.exceptions + self.log_errors


class CDP:
    """A minimal CDP session over one target's websocket: commands and the events they cause."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                self.events.append(data)
        for fut in self.pending.values():  # the browser went away: nobody waits forever
            if not fut.done():
                fut.set_exception(RuntimeError("the browser closed the DevTools connection"))

    async def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> Any:
        msg_id = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, timeout_s)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


def _args_text(args: list[dict[str, Any]]) -> str:
    return " ".join(str(a.get("value", a.get("description", a.get("type", "")))) for a in args)


def collect_errors(events: list[dict[str, Any]], run: PageRun) -> None:
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            run.console_errors.append(f"console.{params['type']}: "
                                      f"{_args_text(params.get('args', []))}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            run.exceptions.append(f"{details.get('text', '')} "
                                  f"{exc.get('description', '')}".strip())
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            run.log_errors.append(f"{entry.get('source')}: {entry.get('text')} "
                                  f"{entry.get('url', '')}".strip())


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, which write nothing, do not
    count); from /proc, so False where there is none."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class Chromium:
    """A headless Chromium process with its DevTools port; always stopped on exit."""

    def __init__(self, executable: str, width: int = 1400, height: int = 1000) -> None:
        self.executable = executable
        self.width, self.height = width, height
        self.profile = tempfile.TemporaryDirectory(prefix="dg-chromium-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Self:
        profile = Path(self.profile.name)
        self.proc = subprocess.Popen(
            [self.executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
             f"--user-data-dir={profile}", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=(profile / "stderr.log").open("wb"),
            # its own process group: Chromium's helpers (zygote, renderer, crashpad) outlive
            # the main process for a moment and keep writing into the profile; we stop them all
            start_new_session=True)
        deadline = time.monotonic() + 30
        port_file = profile / "DevToolsActivePort"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode}: "
                                   f"{(profile / 'stderr.log').read_text()[-2000:]}")
            if port_file.exists() and port_file.read_text().strip():
                self.port = int(port_file.read_text().split()[0])
                return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("chromium did not open its DevTools port within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self._signal_group(signal.SIGKILL)  # any helper still running
            self.proc.wait()
        self._remove_profile()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            pass

    def _remove_profile(self) -> None:
        """Remove the profile once no process of Chromium's group is left to write into it
        (seen in CI: a helper still writing, 'Directory not empty: Default')."""
        deadline = time.monotonic() + 10
        while self.proc is not None and _group_alive(self.proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromium's process group {self.proc.pid} still runs 10 s "
                                   "after SIGKILL")
            time.sleep(0.05)  # a condition polled with a deadline, as __enter__ waits for its port
        self.profile.cleanup()

    def page_ws_url(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        return str(page["webSocketDebuggerUrl"])

    async def load(self, url: str, wait_js: str, timeout_s: float = 30.0, settle_s: float = 3.0,
                   screenshot: bool = False, read_js: str | None = None) -> PageRun:
        """Open `url`, wait until `wait_js` is truthy in the page, watch `settle_s` more (the
        page redraws every 2 s: a later redraw's error counts too), then read the page."""
        run = PageRun()
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(self.page_ws_url(), max_msg_size=0)
            cdp = CDP(ws)
            try:
                for domain in ("Runtime", "Log", "Page"):
                    await cdp.send(f"{domain}.enable")
                await cdp.send("Emulation.setDeviceMetricsOverride", width=self.width,
                               height=self.height, deviceScaleFactor=1, mobile=False)
                await cdp.send("Page.navigate", url=url)
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        run.value = await cdp.evaluate(wait_js)
                    except RuntimeError:  # the document is not there yet
                        run.value = None
                    if run.value or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.25)
                await asyncio.sleep(settle_s)
                run.text = await cdp.evaluate("document.body.innerText") or ""
                run.data = await cdp.evaluate("Object.assign({}, document.body.dataset)") or {}
                if read_js:
                    run.read = await cdp.evaluate(read_js)
                if screenshot:
                    metrics = await cdp.send("Page.getLayoutMetrics")
                    height = int(metrics["cssContentSize"]["height"]) + 1
                    await cdp.send("Emulation.setDeviceMetricsOverride", width=self.width,
                                   height=height, deviceScaleFactor=1, mobile=False)
                    await asyncio.sleep(0.5)
                    shot = await cdp.send("Page.captureScreenshot", format="png")
                    run.screenshot = base64.b64decode(shot["data"])
            finally:
                collect_errors(cdp.events, run)
                await cdp.close()
        return run


def main() -> int:
    parser = argparse.ArgumentParser(description="screenshot a page with headless Chromium")
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--wait-js", default="document.body.dataset.state === 'live'")
    args = parser.parse_args()
    executable = find_chromium()
    if executable is None:
        raise SystemExit("no chromium found (Debian: apt-get install chromium)")
    with Chromium(executable, width=args.width) as browser:
        run = asyncio.run(browser.load(args.url, args.wait_js, screenshot=True))
    assert run.screenshot is not None
    Path(args.out).write_bytes(run.screenshot)
    print(f"wrote {args.out} ({len(run.screenshot):,} bytes); page errors: {run.errors or 'none'}")
    return 1 if run.errors or not run.value else 0


if __name__ == "__main__":
    raise SystemExit(main())

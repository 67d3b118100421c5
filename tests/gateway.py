"""A real gateway for the gate's tests: Debian's nginx with deploy/nginx/nginx.conf.template,
and a small stand-in for the LLM API behind it.

`Nginx` renders the template into a temporary prefix (its own pid file, logs and temporary
files, free ports) and runs nginx in the foreground (`daemon off`) as a child process, stopped
with the test. `StandInApi` answers POST /v1/messages with a valid Messages API response (an
aiohttp app on a thread of its own) and counts the requests of each API key that reached it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, Self

from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "nginx.conf.template"
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def find_nginx() -> str | None:
    for name in NGINX_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, alive: Any = lambda: True) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the process exited before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is coming up; the loop has its deadline
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def render_template(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = sorted({m for line in text.splitlines() if not line.lstrip().startswith("#")
                   for m in re.findall(r"@[A-Z_]+@", line)})
    if left:
        raise ValueError(f"placeholders left in the nginx template: {left}")
    return text


class Nginx:
    """nginx with the gate's configuration, on a free port, in a prefix directory of its own;
    its logs are copied to `log_dir` when it stops."""

    def __init__(self, binary: str, log_dir: Path, gate: str, upstream: str,
                 api_keys: dict[str, str]) -> None:
        self.binary = binary
        # Run as root, nginx's workers drop to `nobody`: they must reach the temporary files'
        # directories, which pytest's own (mode 700 above the test's) would not let them.
        self.prefix = prefix = Path(tempfile.mkdtemp(prefix="distillguard-nginx-"))
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keys = prefix / "api-keys.map"
        keys.write_text("".join(f'"{key}" {account};\n' for key, account in api_keys.items()))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        for path in [prefix, *prefix.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o644)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(render_template(NGINX_TEMPLATE.read_text(), {
            "PREFIX": str(prefix), "LISTEN": f"127.0.0.1:{self.port}", "GATE": gate,
            "UPSTREAM": upstream, "API_KEYS": str(keys)}))
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        # -e: the error log from the start, before the configuration names it (else nginx
        # first tries the one it was built with, /var/log/nginx, and says so)
        return ["-p", str(self.prefix), "-c", str(self.conf), "-e",
                str(self.prefix / "error.log")]

    def check_config(self) -> None:
        res = subprocess.run([self.binary, "-t", *self.args()],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"nginx -t refused {self.conf}:\n{res.stderr}")

    def start(self) -> Self:
        try:
            self.check_config()
        except RuntimeError:
            self.stop()
            raise
        with (self.prefix / "nginx.out").open("wb") as log:
            self.proc = subprocess.Popen([self.binary, *self.args()], stdout=log,
                                         stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, 15, lambda: self.proc is not None and
                          self.proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"nginx did not start: {exc}\n{self.logs()}") from exc
        return self

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for d in (self.prefix, self.log_dir)
                         for p in (d / "nginx.out", d / "error.log") if p.exists())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the master waits for its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.prefix.exists():
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for name in ("nginx.conf", "nginx.out", "error.log", "access.log"):
                if (self.prefix / name).exists():
                    shutil.copy(self.prefix / name, self.log_dir / name)
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AppInThread(ABC):
    """An aiohttp app (`make_app()`) served on 127.0.0.1 at a free port, on a thread and event
    loop of its own, from `with` to the end of the block."""

    name = "app"  # the thread's
    what = "the app"

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @abstractmethod
    def make_app(self) -> web.Application:
        """The app to serve (each server in the tests says its own)."""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{self.what} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class StandInApi(AppInThread):
    """POST /v1/messages answered as the Messages API would, on a thread of its own."""

    name = "stand-in-api"
    what = "the stand-in API"

    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[str] = Counter()  # by API key
        # every request's credential headers as they arrived: (x-api-key values, Authorization
        # values)
        self.credentials: list[tuple[list[str], list[str]]] = []

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        return app

    async def messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests[request.headers.get("x-api-key", "")] += 1
        self.credentials.append((request.headers.getall("x-api-key", []),
                                 request.headers.getall("authorization", [])))
        text = "Hello from the stand-in API."
        return web.json_response({
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body.get("model", "claude-stand-in"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": len(text.split())},
        }, headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"})


class GateInThread(AppInThread):
    """A gate's HTTP face (`GateService.app()`, its table filled by the test) on a thread of
    its own, without a reader: for nginx's tests that need no broker."""

    name = "gate"
    what = "the gate"

    def __init__(self, service: Any) -> None:
        super().__init__()
        self.service = service

    def make_app(self) -> web.Application:
        return self.service.app()  # type: ignore[no-any-return]


def nginx_or_skip() -> str:
    """nginx's path; without it the test skips, or fails under CI (DGTEST_REQUIRE_NGINX=1)."""
    import pytest

    path = find_nginx()
    if path is None:
        message = ("nginx is not installed: the gateway tests need it "
                   "(Debian: apt-get install nginx; .ci/run installs it)")
        if os.environ.get("DGTEST_REQUIRE_NGINX") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def decision_record(account: str, action: str, *, ts: float, ttl_s: int | None = 600,
                    rpm: int | None = None, reason_codes: tuple[str, ...] = ("cluster_template",),
                    mode: str = "enforce", n: int = 1) -> dict[str, Any]:
    """A record of the decisions topic as the workers write it (the enforcement contract)."""
    record: dict[str, Any] = {
        "decision_id": f"{account}-{action}-{n}", "ts": ts, "event_ts": ts,
        "account_id": account, "action": action,
        "ttl_s": None if action == "allow" else ttl_s,
        "rate_limit_rpm": rpm if action == "throttle" else None, "score": 0.9,
        "reasons": [f"test: {action}"], "reason_codes": list(reason_codes),
        "source": "operator" if reason_codes[0].startswith("operator_") else "detector",
        "model_version": "test", "mode": mode}
    return record

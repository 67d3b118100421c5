"""What the small HTTP services of the command share (the gate, streams/gate/server.py; the
status page, streams/cli/status.py): an aiohttp app served on an address, and the stop asked
for by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def start_site(app: web.Application, bind: str, port: int) -> tuple[web.AppRunner, str]:
    """`app` served on bind:port (port 0: one the system chooses): its runner (`cleanup()` stops
    it) and the URL a client on this machine reaches it at. OSError when the address cannot be
    had, the runner then cleaned up already."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bind, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]  # the port given, or the one chosen for port 0
    host = bind if bind not in ("0.0.0.0", "::") else "127.0.0.1"
    return runner, f"http://{host}:{port}/"


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets; outside the main thread (a test's service) there
    are no signal handlers, and the service stops when its task is cancelled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (a test)
            pass
    return stop

"""What one Prometheus scrape of a worker costs: the time /metrics takes to answer, beside /health.

    .venv/bin/python bench/scrape_cost.py --port 6066 [--scrapes 50]

Run it against a worker that holds state (e.g. after `distillguard simulate --topic` of the
default simulation has been drained). The collector runs on the worker's event loop, so the
time of one scrape is time the agents wait; it prints the median and the slowest of
`--scrapes` sequential requests, and the size of the answer. Figures depend on the machine and
its load; nothing asserts them.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.error
import urllib.request


def timed(url: str, accept: str = "") -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:  # /health answers 503 while stalled, with its body
        body = exc.read()
    return time.perf_counter() - started, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6066)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    for path, accept in (("/health", ""), ("/metrics", ""), ("/metrics", prometheus)):
        timed(base + path, accept)  # warm up
        runs = [timed(base + path, accept) for _ in range(args.scrapes)]
        times = sorted(t for t, _ in runs)
        what = path + (" (OpenMetrics)" if accept else "")
        print(f"{what:<24} median {statistics.median(times) * 1000:6.2f} ms, slowest "
              f"{times[-1] * 1000:6.2f} ms, {runs[-1][1]:,} bytes ({args.scrapes} requests)")


if __name__ == "__main__":
    main()

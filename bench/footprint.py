"""Figure 6: Server1's memory after 1,000 uploads and 100 SSE connects/disconnects.

The real process (`python -m server1`, background lifecycle on, local mode) on 127.0.0.1; small
photos keep it quick. RSS from /proc after a warm-up (the first tenth of the work: imports,
caches, thread pools) is the baseline; growth after the rest is the figure. SSE clients connect,
read the first event and hang up; EVENTS_HEARTBEAT_SECONDS=0.5 lets the server notice the
hang-ups within the run, so leaked threads would show in the thread count.
"""

from __future__ import annotations

import tempfile
import time

from bench.common import QUICK, Row, encode, photo, verdict
from harness.server1 import Server

UPLOADS = 100 if QUICK else 1000
STREAMS = 10 if QUICK else 100


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def run() -> list[Row]:
    data = encode(photo(320, 240), "JPEG", quality=85)
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        server = Server(f"{tmp}/shared", EVENTS_HEARTBEAT_SECONDS="0.5").start()
        try:
            pid = server.proc.pid
            session = server.login("alice")

            def work(uploads: int, streams: int) -> None:
                every = max(uploads // streams, 1)
                for i in range(uploads):
                    answer = session.post(server.url + "/upload", files={"file": ("small.jpg", data)}, timeout=30)
                    answer.raise_for_status()
                    if i % every == 0:
                        with session.get(server.url + "/events", stream=True, timeout=30) as events:
                            events.raise_for_status()
                            next(events.iter_content(64))

            def settled() -> tuple[float, int]:
                time.sleep(2.0)  # heartbeats find the closed streams
                return rss_mb(pid), server.threads()

            work(UPLOADS // 10, STREAMS // 10)
            base, base_threads = settled()
            work(UPLOADS - UPLOADS // 10, STREAMS - STREAMS // 10)
            after, threads = settled()
        finally:
            server.stop()
    growth = (after - base) / base * 100
    return [
        Row(
            "6 footprint",
            f"Server1 RSS after {UPLOADS:,} uploads + {STREAMS} SSE connects/disconnects",
            after,
            "MB",
            base,
            "<= 10% growth after warm-up",
            verdict(growth <= 10),
            f"{growth:+.1f}% vs after the first tenth; threads {base_threads} -> {threads}",
        )
    ]

"""Load on the real Server1 (gunicorn): 2 users x 200 concurrent uploads while 50 event streams
are open; no errors, and afterwards no more threads or open files than before. The worker's
thread pool (GUNICORN_THREADS) is filled by a burst of health checks first, so what is counted
before and after is the same pool plus whatever the load leaked."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from harness.corpus import valid
from harness.server1 import Server
from harness.server2 import children
from harness.wait import wait_for
from tests.hardening.support import TALLY

UPLOADS_PER_USER = 200
STREAMS_PER_USER = 25
POOL = 96  # gunicorn threads: room for the 50 streams and the uploads; 2 x 48 warm-up streams fill it


def _usage(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def _settled(now: tuple[int, int], before: tuple[int, int]) -> bool:
    return now[0] <= before[0] + 1 and now[1] <= before[1] + 2


def _round(server: Server, sessions: dict[str, requests.Session], area: str, label: str) -> None:
    photo = valid()["photo.png"]
    streams = []
    for user, session in sessions.items():
        for _ in range(STREAMS_PER_USER):
            stream = session.get(server.url + "/events", stream=True, timeout=30)
            streams.append((user, stream))
    opened = [
        s for _, s in streams if s.status_code == 200 and s.headers["Content-Type"].startswith("text/event-stream")
    ]
    TALLY.check(
        area,
        f"{label}: {len(streams)} event streams open",
        len(opened) == len(streams),
        str([s.status_code for _, s in streams]),
    )
    received = {id(s): [] for _, s in streams}

    def read(stream: requests.Response) -> None:
        try:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("event: image"):
                    received[id(stream)].append(line)
        except (requests.RequestException, AttributeError):
            pass  # closed by the test

    readers = [threading.Thread(target=read, args=(s,), daemon=True) for _, s in streams]
    for reader in readers:
        reader.start()
    start = threading.Barrier(2 * UPLOADS_PER_USER)

    def upload(job: tuple[str, int]) -> int:
        user, n = job
        start.wait(60)
        answer = sessions[user].post(server.url + "/upload", files={"file": (f"{label}-{n}.png", photo)}, timeout=120)
        return answer.status_code

    jobs = [(user, n) for user in sessions for n in range(UPLOADS_PER_USER)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        statuses = list(pool.map(upload, jobs))
    for (user, n), status in zip(jobs, statuses, strict=True):
        TALLY.check(area, f"{label}: {user} upload #{n}", status == 200, str(status))
    wait_for(lambda: all(received[id(s)] for _, s in streams), "an image event on every stream", 30)
    TALLY.check(area, f"{label}: every stream got image events", all(received[id(s)] for _, s in streams))
    for _, stream in streams:
        stream.close()


@pytest.mark.slow
def test_two_users_200_concurrent_uploads_and_50_event_streams(tmp_path: Path) -> None:
    area = "load"
    server = Server(
        str(tmp_path / "shared"),
        gunicorn=True,
        GUNICORN_THREADS=str(POOL),
        EVENTS_POLL_SECONDS="0.5",
        EVENTS_HEARTBEAT_SECONDS="1",
    ).start()
    try:
        worker = children(server.proc.pid)[0]
        sessions = {user: server.login(user) for user in ("alice", "bob")}
        for session in sessions.values():
            session.mount("http://", HTTPAdapter(pool_maxsize=2 * UPLOADS_PER_USER))
        idle_fds = _usage(worker)[1]
        # Fill the worker's thread pool: each open stream holds one of its threads.
        warm = [sessions[u].get(server.url + "/events", stream=True, timeout=30) for u in sessions for _ in range(48)]
        for stream in warm:
            stream.close()
        # The warm-up streams end at their next heartbeat; their pool threads stay.
        with contextlib.suppress(TimeoutError):  # else "before" counts them (a weaker check, not a wrong one)
            wait_for(lambda: _usage(worker)[1] <= idle_fds + 2, "the warm-up streams ended", 30)
        before = _usage(worker)
        _round(server, sessions, area, "load")
        for session in sessions.values():
            session.close()  # the kept-alive connections too
        # Streams end at their next heartbeat, idle connections at gunicorn's keepalive (5 s).
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: _settled(_usage(worker), before), "threads and open files back", 20)
        after = _usage(worker)
        usage = f"(threads, fds) before {before}, after {after}"
        TALLY.check(area, "no thread or file-descriptor leak", _settled(after, before), usage)
        TALLY.check(area, "same worker process (no crash)", children(server.proc.pid) == [worker])
        TALLY.check(area, "no traceback in the log", "Traceback" not in server.output(), server.output()[-2000:])
        TALLY.note(area, f"gunicorn worker with {POOL} threads: {usage}")
    finally:
        server.stop()
    TALLY.assert_held(area, minimum=2 * UPLOADS_PER_USER)

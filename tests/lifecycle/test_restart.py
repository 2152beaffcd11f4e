"""Stop and restart of the real Server1 process (`python -m server1`: gunicorn, as in the image).

SIGTERM while an event stream is open: the stream ends, the lifecycle's threads stop, the
scheduler lease is released (its record says so) and the process exits, long before gunicorn's
graceful timeout (raised here to 120 s, so a stream left open would show). A Server1 started
right after leads at once and invokes the endpoint (the recorder, as INFERENCE_URL) for a file
dropped into resized/ within a poll period or so."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import requests
from PIL import Image

from harness.server1 import Server
from harness.wait import wait_for
from studio import layout
from studio.storage import open_storage
from tests.lifecycle.conftest import Recorder

POLL = 1.0  # QUEUE_POLL_SECONDS
GRACEFUL = 120  # gunicorn's graceful timeout here: an open stream would hold the exit this long


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def test_sigterm_releases_the_lease_and_a_restarted_server1_acts_at_once(tmp_path: Path, recorder: Recorder) -> None:
    shared = str(tmp_path / "shared")
    env = {
        "INFERENCE_URL": recorder.url,
        "QUEUE_POLL_SECONDS": str(POLL),
        "EVENTS_HEARTBEAT_SECONDS": "60",  # the stream would not notice anything by itself
        "GUNICORN_CMD_ARGS": f"--graceful-timeout {GRACEFUL}",
    }
    storage = open_storage(shared)
    first = Server(shared, **env).start()
    try:
        wait_for(lambda: storage.exists(layout.system("scheduler-lease.json")), "the first server to lead", 30)
        stream = first.login("alice").get(first.url + "/events", stream=True, timeout=(10, GRACEFUL + 30))
        assert stream.status_code == 200
        first.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        first.proc.wait(GRACEFUL / 2)  # TimeoutExpired: something held the exit
        exit_seconds = time.monotonic() - started
        assert first.proc.returncode == 0, first.output()[-3000:]
        stream.close()
    finally:
        first.stop()
    lease = storage.read_json(layout.system("scheduler-lease.json"))
    assert lease["expires_at"] == 0, lease  # released, not left to run out
    assert "Traceback" not in first.output(), first.output()[-3000:]

    second = Server(shared, **env).start()
    try:
        assert requests.get(second.url + "/healthz", timeout=10).status_code == 200
        wait_for(lambda: storage.read_json(layout.system("scheduler-lease.json"))["expires_at"] > 0, "a new leader", 30)
        storage.write(layout.resized("alice", "after-restart"), _png())
        invoke_seconds = wait_for(lambda: ("alice", "after-restart") in recorder.jobs(), "the invocation", 30)
    finally:
        second.stop()
    print(f"SIGTERM to exit: {exit_seconds:.2f} s; new file to invocation after restart: {invoke_seconds:.2f} s")

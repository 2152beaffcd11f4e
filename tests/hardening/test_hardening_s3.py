"""An S3 outage: while Server1 and Server2 work on an S3 SHARED_DIR, S3 goes away (every open
connection is cut, new ones are refused) and comes back with its objects.

Both servers reach the test's moto server through the soak's TCP proxy, which cuts and refuses;
moto itself keeps running, as S3 keeps its objects through an outage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.aws import MotoServer, RefusingProxy
from harness.corpus import valid
from harness.server1 import Server
from harness.server2 import children
from harness.wait import wait_for
from studio.storage import open_storage
from tests.hardening.stack import QUICK, Servers2, add_jobs, states
from tests.hardening.support import TALLY
from tests.server2.serving.support import set_settings


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[RefusingProxy]:
    proxy = RefusingProxy(moto_server.port)
    proxy.resume()
    yield proxy
    proxy.refuse()


@pytest.mark.slow
def test_s3_outage_while_both_servers_work(
    proxy: RefusingProxy, s3_root: str, tmp_path: Path, test_models_dir: Path, monkeypatch
) -> None:
    area = "storage hiccup (S3)"
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    shared = s3_root
    storage = open_storage(shared)
    set_settings(storage, QUICK, user="alice")
    servers2 = Servers2(tmp_path, shared, test_models_dir, POLL_SECONDS="0.3")
    server2 = servers2.start()
    server1 = Server(shared, gunicorn=True, AWS_ENDPOINT_URL=proxy.url).start()
    photo = valid()["photo.jpg"]
    try:
        pids = (server1.proc.pid, children(server1.proc.pid), server2.proc.pid, children(server2.proc.pid))
        alice = server1.login("alice")
        accepted = []
        for n in range(3):
            answer = alice.post(server1.url + "/upload", files={"file": (f"before-{n}.jpg", photo)}, timeout=60)
            accepted += [i["id"] for i in answer.json()["images"]]
        queued = add_jobs(storage, "alice", 6, "s")

        proxy.refuse()  # S3 is gone
        for n in range(3):
            answer = alice.post(server1.url + "/upload", files={"file": (f"during-{n}.jpg", photo)}, timeout=120)
            reply = answer.json() if answer.headers.get("Content-Type") == "application/json" else {}
            held = answer.status_code == 503 and bool(reply.get("error"))
            TALLY.check(area, f"upload during the outage -> 503 JSON #{n}", held, f"{answer.status_code} {reply}")
        health = requests.get(server1.url + "/healthz", timeout=120)
        TALLY.check(area, "/healthz says storage unavailable", health.status_code == 503, health.text[:200])
        # S3 stays down until Server2's poller has met the outage (it polls every 0.3 s).
        with contextlib.suppress(TimeoutError):  # counted below ("server2 logged the outage")
            wait_for(lambda: "polling failed" in server2.log(), "server2 met the outage", 60)
        proxy.resume()  # S3 is back, with its objects

        for n in range(2):
            answer = alice.post(server1.url + "/upload", files={"file": (f"after-{n}.jpg", photo)}, timeout=120)
            TALLY.check(area, f"upload after S3 is back #{n}", answer.status_code == 200, answer.text[:200])
            accepted += [i["id"] for i in answer.json().get("images", [])]
        everything = accepted + queued
        with contextlib.suppress(TimeoutError):  # counted below, one case per image
            wait_for(lambda: set(states(storage, "alice", everything).values()) == {"done"}, "all done", 150)
        for image_id, state in states(storage, "alice", everything).items():
            TALLY.check(area, f"{image_id} done after the outage (nothing lost)", state == "done", state)
        during = [e.key for e in storage.list("alice/input/during-")]
        TALLY.check(area, "refused uploads left nothing", not during, str(during))
        now = (server1.proc.pid, children(server1.proc.pid), server2.proc.pid, children(server2.proc.pid))
        TALLY.check(area, "no process restarted (no crash loop)", now == pids, f"{pids} -> {now}")
        TALLY.check(area, "server1 logged the outage", "storage error on POST /upload" in server1.output())
        TALLY.check(area, "server2 logged the outage", "polling failed" in server2.log(), server2.log()[-500:])
        health = requests.get(server1.url + "/healthz", timeout=30)
        TALLY.check(area, "server1 health ok again", health.status_code == 200, health.text[:200])
    finally:
        server1.stop()
        servers2.stop()
    TALLY.note(area, "S3's connections cut and refused while both servers work (until both met it), then back")
    TALLY.assert_held(area, minimum=15)

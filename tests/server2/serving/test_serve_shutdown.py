"""SIGTERM in the middle of a long job, with invocations waiting: the job is released without using
up an attempt, nothing partial is visible, every request gets an answer, and another server
process finishes every image later."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from studio import layout
from studio.jobs import Jobs
from studio.storage import open_storage
from tests.server2.serving.support import (
    FAST,
    USER,
    Servers,
    add_image,
    drawing,
    gated,
    outputs_of,
    set_settings,
    wait_status,
)

IMAGES = 12  # more than the 8 invocations a server lets wait at once


@pytest.mark.slow
def test_sigterm_mid_job_releases_it_and_another_server_finishes_it(
    servers: Servers, tmp_path: Path, test_models_dir: Path
) -> None:
    shared = str(tmp_path / "shared")
    storage = open_storage(shared)
    jobs = Jobs(storage, "test")
    set_settings(storage, {"mode": "matte", **FAST})
    env = {"SHARED_DIR": shared, "MODELS_DIR": str(test_models_dir)}
    # Its jobs run until the file "gate" exists: never here. Invocations wait the longest they may.
    first = servers.start(
        STOP_GRACE_SECONDS="1", INVOCATION_WAIT_SECONDS="55", POLL_SECONDS="60", **gated(tmp_path / "gate"), **env
    )
    first.wait_ready()
    ids = [f"slow{n:02d}" for n in range(IMAGES)]
    for image_id in ids:
        add_image(storage, image_id, drawing(800, 600, (200, 150, 600, 450)))

    with ThreadPoolExecutor(IMAGES) as pool:
        asked = [pool.submit(first.invoke, {"user": USER, "image": image_id}) for image_id in ids]
        deadline = time.monotonic() + 60
        while sum(a.done() for a in asked) < IMAGES - 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        answered = [a.result().json() for a in asked if a.done()]
        assert len(answered) == IMAGES - 8 and {a["state"] for a in answered} == {"accepted"}
        running = [i for i in ids if (jobs.read_status(USER, i) or {}).get("state") == "processing"]
        while not running and time.monotonic() < deadline:
            time.sleep(0.1)
            running = [i for i in ids if (jobs.read_status(USER, i) or {}).get("state") == "processing"]
        assert len(running) == 1 and jobs.read_status(USER, running[0])["owner"] == first.worker_id
        assert first.ping().status_code == 200  # eight requests waiting and a long job: /ping still answers

        assert first.stop() == 0
        results = [a.result(timeout=30) for a in asked]
    waited = [r for r in results if r.json()["state"] != "accepted"]
    assert len(waited) == 8
    assert {w.status_code for w in waited} == {503}
    assert {w.json()["state"] for w in waited} == {"stopped"}
    assert f"{USER}/{running[0]}: released unfinished on shutdown" in first.log()
    record = jobs.read_status(USER, running[0])
    assert record["state"] == "queued" and record["attempts"] == 0  # a shutdown uses up no attempt
    assert storage.read_json(layout.claim(USER, running[0]))["released"] is True
    for image_id in ids:
        assert outputs_of(storage, image_id) == [], image_id
    assert list(storage.list(layout.output_dir(USER, "staging"))) == []

    second = servers.start(**env)
    for image_id in ids:
        record = wait_status(storage, image_id)
        assert record["state"] == "done" and record["attempts"] == 1, record
        assert record["owner"] == second.worker_id
        assert outputs_of(storage, image_id) != []
    assert second.stop() == 0

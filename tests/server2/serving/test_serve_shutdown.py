"""SIGTERM in the middle of a long job: the job is released without using up an attempt, nothing
partial is visible, and another server process finishes it later."""

from __future__ import annotations

from pathlib import Path

from studio import layout
from studio.storage import open_storage
from tests.server2.serving.support import (
    FAST,
    SLOW,
    USER,
    Servers,
    add_image,
    drawing,
    outputs_of,
    set_settings,
    wait_status,
)


def test_sigterm_mid_job_releases_it_and_another_server_finishes_it(
    servers: Servers, tmp_path: Path, test_models_dir: Path
) -> None:
    shared = str(tmp_path / "shared")
    storage = open_storage(shared)
    set_settings(storage, SLOW)
    env = {"SHARED_DIR": shared, "MODELS_DIR": str(test_models_dir)}
    first = servers.start(STOP_GRACE_SECONDS="1", INVOCATION_WAIT_SECONDS="1", **env)
    first.wait_ready()
    add_image(storage, "slow", drawing(800, 600, (200, 150, 600, 450)))

    answer = first.invoke({"user": USER, "image": "slow"})
    assert answer.status_code == 200
    assert answer.json()["state"] == "accepted"  # longer than INVOCATION_WAIT_SECONDS: goes on in the background
    assert wait_status(storage, "slow", ("processing",))["owner"] == first.worker_id
    assert first.ping().status_code == 200  # the job never blocks /ping

    assert first.stop() == 0
    assert "alice/slow: released unfinished on shutdown" in first.log()
    record = wait_status(storage, "slow", ("queued",), timeout=1)
    assert record["attempts"] == 0  # a shutdown does not count as a failed attempt
    assert outputs_of(storage, "slow") == []
    assert list(storage.list(layout.output_dir(USER, "staging"))) == []
    assert storage.read_json(layout.claim(USER, "slow"))["released"] is True

    set_settings(storage, {"mode": "birefnet", **FAST})
    second = servers.start(**env)
    record = wait_status(storage, "slow")
    assert record["state"] == "done" and record["attempts"] == 1
    assert record["owner"] == second.worker_id
    assert outputs_of(storage, "slow") != []
    assert second.stop() == 0

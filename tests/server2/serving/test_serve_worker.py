"""server2.worker in-process with the real models: a model error is retried then ends `failed` while
the worker goes on; the heartbeat keeps a short lease alive through a long job."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from harness.wait import wait_for
from server2 import pipeline
from server2.models import Models
from server2.worker import Worker
from studio import layout
from studio.jobs import Jobs
from studio.storage import FileStorage, StorageError
from tests.server2.serving.support import FAST, USER, add_image, drawing, set_settings

# Short, but not so short that a busy machine's scheduling delays alone outlast it.
LEASE = 1.0


@pytest.fixture(scope="module")
def models(test_models_dir: Path) -> Models:
    return Models.load(test_models_dir, "cpu")


def test_a_model_error_is_retried_then_failed_and_the_worker_goes_on(models: Models, tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    set_settings(storage, {"mode": "matte", **FAST})
    jobs = Jobs(storage, "w1", max_attempts=3)
    broken = Worker(storage, jobs, dataclasses.replace(models, matte=None))  # the matting model fails on every image
    add_image(storage, "poison", drawing())

    outcomes = [broken.run(USER, "poison", layout.resized(USER, "poison")) for _ in range(3)]
    assert [o.state for o in outcomes] == ["retry", "retry", "failed"]
    assert outcomes[-1].error.startswith("segmentation failed: AttributeError")
    record = jobs.read_status(USER, "poison")
    assert record["state"] == "failed" and record["attempts"] == 3 and "AttributeError" in record["error"]
    assert broken.run(USER, "poison", layout.resized(USER, "poison")).state == "already-processed"

    add_image(storage, "fine", drawing())
    assert Worker(storage, jobs, models).run(USER, "fine", layout.resized(USER, "fine")).state == "done"


class FullDisk(FileStorage):
    """Refuses to write the results (staging) while full is set, as a full disk or a dropped mount would."""

    full = True

    def write(self, key: str, data: bytes) -> None:
        if self.full and "staging" in key:
            raise StorageError(f"no space left for {key}")
        super().write(key, data)


def test_a_storage_error_while_writing_the_results_is_a_failed_attempt(models: Models, tmp_path: Path) -> None:
    storage = FullDisk(tmp_path)
    set_settings(storage, {"mode": "matte", **FAST})
    jobs = Jobs(storage, "w1", max_attempts=3)
    worker = Worker(storage, jobs, models)
    add_image(storage, "img", drawing())

    outcome = worker.run(USER, "img", layout.resized(USER, "img"))
    assert outcome.state == "retry" and outcome.error.startswith("writing the results failed: storage error")
    assert jobs.read_status(USER, "img")["state"] == "queued"
    storage.full = False
    assert worker.run(USER, "img", layout.resized(USER, "img")).state == "done"


def test_the_heartbeat_keeps_a_short_lease_through_a_long_job(
    models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job lasts until the test lets it end (a gate before segmentation): once the heartbeat has
    renewed the claim past 2.5 leases, or a rival took it."""
    storage = FileStorage(tmp_path)
    set_settings(storage, {"mode": "sam", **FAST})
    add_image(storage, "long", drawing())
    gate = threading.Event()
    segment = pipeline.segment
    monkeypatch.setattr(pipeline, "segment", lambda *args, **kwargs: gate.wait() and segment(*args, **kwargs))
    worker = Worker(storage, Jobs(storage, "holder", lease_seconds=LEASE), models)
    rival = Jobs(storage, "rival", lease_seconds=LEASE)
    outcome = []
    job = threading.Thread(target=lambda: outcome.append(worker.run(USER, "long", layout.resized(USER, "long"))))
    job.start()
    wait_for(lambda: (rival.read_status(USER, "long") or {}).get("state") == "processing", "the job to start")
    first_expiry = storage.read_json(layout.claim(USER, "long"))["expires_at"]
    taken = 0
    while job.is_alive():
        claim = rival.claim(USER, "long")
        if claim is not None:  # the holder's lease ran out: a second worker got the job
            taken += 1
            rival.release(claim, counted=False)
        if not gate.is_set():
            renewed_to = storage.read_json(layout.claim(USER, "long"))["expires_at"]
            if taken or renewed_to > first_expiry + 2.5 * LEASE:
                gate.set()
        job.join(0.1)
    assert taken == 0
    assert outcome[0].state == "done"
    assert rival.read_status(USER, "long")["owner"] == "holder"
    assert rival.read_status(USER, "long")["timings"]["total"] > 2.5 * LEASE  # long enough for leases to run out

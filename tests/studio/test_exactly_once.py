"""Exactly once under contention: worker threads and worker processes race for the same jobs."""

from __future__ import annotations

import threading
from pathlib import Path

import job_worker
import pytest
from multiworker import Events, make_jobs, start_worker

from harness.wait import wait_for
from studio import layout
from studio.jobs import Jobs
from studio.storage import open_storage

JOBS = 200
PROCESSES = 3
THREADS_PER_PROCESS = 2
LOCAL_THREADS = 2  # 3 x 2 + 2 = 8 competing workers


@pytest.mark.slow
def test_every_job_is_claimed_and_completed_exactly_once(storage_root: str, tmp_path: Path, seed: int) -> None:
    storage = open_storage(storage_root)
    jobs = make_jobs(storage, JOBS)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    go = tmp_path / "go"
    names = [f"proc{i}" for i in range(PROCESSES)]
    procs = [
        start_worker(
            storage_root, log_dir, name, "--threads", str(THREADS_PER_PROCESS), "--go", str(go), "--seed", str(seed)
        )
        for name in names
    ]
    errors: list[BaseException] = []

    def local_worker(i: int) -> None:
        wait_for(go.exists, "the start line", 120)
        try:
            job_worker.run(storage, f"thread{i}", log_dir / f"thread{i}.log", seed=seed)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=local_worker, args=(i,)) for i in range(LOCAL_THREADS)]
    try:
        for t in threads:
            t.start()
        # Everybody starts at once, so that all eight really compete for the same jobs.
        wait_for(
            lambda: all((log_dir / f"{n}.ready").exists() or p.poll() is not None for n, p in zip(names, procs)),
            "the worker processes",
            120,
        )
        go.touch()
        for t in threads:
            t.join(660)
        codes = [p.wait(660) for p in procs]
    finally:
        go.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert not errors and codes == [0] * PROCESSES

    events = Events(log_dir)
    expected = set(jobs)
    assert set(events["claim"]) == expected and set(events["done"]) == expected
    claimed_twice = {job: c for job, c in events["claim"].items() if len(c) != 1}
    done_twice = {job: d for job, d in events["done"].items() if len(d) != 1}
    assert claimed_twice == {} and done_twice == {}
    assert dict(events["lost"]) == {}

    reader = Jobs(storage, "checker")
    for user, image_id in jobs:
        [(worker, token)] = events["done"][(user, image_id)]
        status = reader.read_status(user, image_id)
        assert (status["state"], status["attempts"]) == ("done", 1), (user, image_id, status)
        assert (status["owner"], status["token"]) == (worker, token)
        for key in job_worker.expected_outputs(user, image_id):
            assert storage.read(key) == token.encode()
    for user in ("alice", "bob"):
        assert list(storage.list(layout.output_dir(user, "staging"))) == []

    # Both kinds of competitor took part.
    by_worker = {worker for done in events["done"].values() for worker, _ in done}
    assert any(w.startswith("proc") for w in by_worker) and any(w.startswith("thread") for w in by_worker)

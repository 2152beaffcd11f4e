"""Crash safety: worker processes are SIGKILLed at random points while they hold claims; after
their leases run out another worker finishes every job, none twice, none lost, nothing partial."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import job_worker
import pytest
from multiworker import Events, make_jobs, start_worker

from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage, open_storage

JOBS = 30
ROUNDS = 3  # of three victims each
LEASE = 2.0  # seconds
KILL_WITHIN = 0.4  # seconds after a victim's first claim
USERS = ("alice", "bob")


def has_claimed(log: Path) -> bool:
    return log.exists() and b"claim " in log.read_bytes()


def kill_workers_mid_work(root: str, log_dir: Path, round_no: int, rng: random.Random) -> None:
    """Start workers that hold up to three claims at a time; kill each soon after its first claim.

    A victim dies well within LEASE of its first claim, so no victim outlives its own claims'
    leases: a slow but living worker is never taken for a dead one (that needs a longer stall)."""
    options = ["--lease", str(LEASE), "--max-attempts", "100", "--batch", "3", "--pause", "0.06"]
    options += ["--seed", str(rng.randrange(2**32))]
    procs = {f"victim{round_no}{i}": start_worker(root, log_dir, f"victim{round_no}{i}", *options) for i in range(3)}
    kill_at: dict[str, float] = {}
    end = time.monotonic() + 300
    try:
        while any(proc.poll() is None for proc in procs.values()):
            assert time.monotonic() < end, "the victims never claimed a job"
            for name, proc in procs.items():
                if name not in kill_at and has_claimed(log_dir / f"{name}-0.log"):
                    kill_at[name] = time.monotonic() + rng.uniform(0, KILL_WITHIN)
                if time.monotonic() >= kill_at.get(name, end):
                    proc.send_signal(signal.SIGKILL)
            time.sleep(0.01)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(10)
    assert [proc.returncode for proc in procs.values()] == [-signal.SIGKILL] * len(procs)


def check_published_outputs(storage: Storage, jobs: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """Every `done` status has all its outputs, each written by the claim that completed it."""
    reader = Jobs(storage, "checker")
    statuses = {job: reader.read_status(*job) for job in jobs}
    for job, status in statuses.items():
        if status and status["state"] == "done":
            for key in job_worker.expected_outputs(*job):
                assert storage.read(key) == status["token"].encode(), (job, key)
    return statuses


@pytest.mark.slow
def test_killed_workers_lose_nothing_and_do_nothing_twice(storage_root: str, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)  # kill times and the workers' own choices
    storage = open_storage(storage_root)
    jobs = make_jobs(storage, JOBS, USERS)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    for round_no in range(ROUNDS):
        kill_workers_mid_work(storage_root, log_dir, round_no, rng)
    left_behind = check_published_outputs(storage, jobs)  # what the dead left behind is consistent
    killed = Events(log_dir)
    unfinished = {job for job in killed["claim"] if job not in killed["done"]}
    assert unfinished, "no worker was killed while holding a claim"

    # The survivor takes each dead worker's jobs over once its lease has run out.
    job_worker.run(
        storage, "survivor", log_dir / "survivor.log", lease=LEASE, max_attempts=100, deadline=600, seed=seed
    )

    events = Events(log_dir)
    statuses = check_published_outputs(storage, jobs)
    assert {job: s["state"] for job, s in statuses.items()} == {job: "done" for job in jobs}
    # What a victim finished (even if it died before logging it) was not done again.
    for job, status in left_behind.items():
        if status and status["state"] == "done":
            assert statuses[job]["token"] == status["token"], job
    for job in jobs:
        token = statuses[job]["token"]
        done = events["done"].get(job, [])
        # Never completed twice: a second completion would have replaced the status's token.
        assert [t for _, t in done] in ([], [token]), (job, done)
        # The status belongs to a claim somebody really held; if its holder was killed between
        # publishing and logging, that holder was one of the victims.
        holders = [w for w, t in events["claim"][job] if t == token]
        assert len(holders) == 1
        assert done or holders[0].startswith("victim")
    # Every job a victim held unfinished was taken over: it was not lost, and took another attempt.
    assert all(statuses[job]["attempts"] >= 2 for job in unfinished if statuses[job]["owner"] == "survivor")
    assert any(statuses[job]["attempts"] >= 2 for job in jobs)

    # Nothing partial is visible: the published outputs are exactly those of the done jobs,
    # and no staged file is left behind.
    for user in USERS:
        published = {
            e.key
            for folder in ("masks", "crops", "points", "boxes", "thumbs")
            for e in storage.list(layout.output_dir(user, folder))
        }
        expected = {k for job in jobs if job[0] == user for k in job_worker.expected_outputs(*job)}
        assert published == expected
        assert list(storage.list(layout.output_dir(user, "staging"))) == []

"""Exactly one scheduler per deployment: the storage lease, in-process and across real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from harness import REPO
from harness.wait import wait_for
from server1.lifecycle import Lifecycle, LifecycleConfig
from server1.lifecycle.scheduler import Lease
from server1.lifecycle.watcher import INVOKE_THREADS
from studio import layout
from studio.storage import FileStorage
from tests.lifecycle.support import Clock

# Long enough that a leader starved of CPU for a moment still renews in time (it renews every
# LEASE/3): the test is about one leader at a time, not about how fast a standby notices.
LEASE = 3.0


def test_lease_has_one_holder_and_passes_on_when_it_runs_out_or_is_released(storage):
    clock = Clock()
    a, b = Lease(storage, "a", ttl=60, clock=clock), Lease(storage, "b", ttl=60, clock=clock)
    assert a.hold() and not b.hold()
    clock.advance(30)
    assert a.hold() and not b.hold()  # renewed at ttl/3
    clock.advance(61)  # a stalled past its lease: b takes over, and a learns it lost
    assert b.hold()
    assert not a.hold() and not a.held
    b.release()
    assert a.hold()


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from server1.lifecycle import Lifecycle
    from server1.lifecycle.config import LifecycleConfig
    from studio.storage import FileStorage

    root, log, LEASE = sys.argv[1], sys.argv[2], float(sys.argv[3])
    config = LifecycleConfig(models_dir=root + "/models", skip_model_download=True, poll_seconds=0.05)
    life = Lifecycle(FileStorage(root + "/shared"), ["alice"], config=config, lease_seconds=LEASE)
    tick = life.tick
    def logged_tick():
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {time.time()}\\n")
        return tick()
    life.scheduler.tick = logged_tick
    life.start()
    open(f"{root}/started-{os.getpid()}", "w").close()
    time.sleep(600)
    """
)


def _ticks(log) -> list[tuple[int, float]]:
    if not log.exists():
        return []
    return [(int(p), float(t)) for p, t in (line.split() for line in log.read_text().splitlines())]


def test_two_processes_run_one_scheduler_and_a_standby_takes_over(tmp_path):
    log = tmp_path / "ticks.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(log), str(LEASE)], env=env, cwd=REPO)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(tmp_path.glob("started-*"))) < 2:
            time.sleep(0.1)
        assert len(list(tmp_path.glob("started-*"))) == 2, "the processes did not start"
        both_up = time.time()  # from here on both schedulers run: one leads, one stands by
        while time.monotonic() < deadline and len([t for _, t in _ticks(log) if t > both_up]) <= 20:
            time.sleep(0.1)
        ticks = [(pid, t) for pid, t in _ticks(log) if t > both_up]
        leaders = {pid for pid, _ in _ticks(log)}
        assert len(ticks) > 20 and len(leaders) == 1  # many ticks, all from one process
        leader = leaders.pop()
        os.kill(leader, signal.SIGKILL)  # dies without releasing its lease
        killed_at = time.time()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(pid != leader for pid, _ in _ticks(log)):
            time.sleep(0.1)
        after = [(pid, t) for pid, t in _ticks(log) if pid != leader]
        assert after, "the standby never took over"
        assert all(t > killed_at for _, t in after)  # never two schedulers at once
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_a_burst_of_slow_invocations_never_costs_the_leader_its_lease(tmp_path, recorder):
    """20 photos at once and an endpoint that holds every request until the test lets go (as Server2
    holds /invocations up to INVOCATION_WAIT_SECONDS): the tick must not wait for them, so the leader
    renews its lease all along and the standby never leads."""
    storage = FileStorage(tmp_path / "shared")
    photos = [f"p{i:02d}" for i in range(20)]
    for image_id in photos:
        storage.write(layout.resized("alice", image_id), b"\x89PNG")
    config = LifecycleConfig(
        models_dir=str(tmp_path / "models"), skip_model_download=True, inference_url=recorder.url, poll_seconds=0.1
    )
    leader, standby = (Lifecycle(storage, ["alice"], config=config, lease_seconds=LEASE) for _ in range(2))
    standby_led = threading.Event()
    standby.scheduler.on_lead = standby_led.set

    def lease() -> dict:
        return storage.read_json(leader.lease.key)

    recorder.gate.clear()
    try:
        leader.start()
        wait_for(lambda: leader.lease.held, "the first process to lead")
        standby.start()
        wait_for(lambda: recorder.calls, "the first invocation to reach the endpoint")
        held_until = lease()["expires_at"]
        # Renewed after the lease held when the endpoint stopped answering would have run out.
        wait_for(lambda: lease()["owner"] != leader.owner or lease()["expires_at"] > held_until + LEASE, "a renewal")
        assert lease()["owner"] == leader.owner and leader.health()["role"] == "leader"
        wait_for(lambda: len(recorder.calls) >= INVOKE_THREADS, "the pool's invocations to reach the endpoint")
        assert len(recorder.calls) == INVOKE_THREADS  # no more in flight than the pool has threads
    finally:
        recorder.gate.set()
    wait_for(lambda: len(recorder.calls) == len(photos), "every photo's invocation")
    assert sorted(recorder.jobs()) == [("alice", image_id) for image_id in photos]  # each once
    assert lease()["owner"] == leader.owner and not standby_led.is_set()
    for life in (leader, standby):
        life.stop()

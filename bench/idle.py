"""Figure 3: storage requests per idle hour from the watcher and scaler, S3 backend, two users.

Every request is counted at the server: a counting reverse proxy in front of the moto server,
through which both the storage and the SageMaker client go. The real Lifecycle runs in its
real scheduler thread (lease, watcher, scaler, status publishing); only time is simulated:
the scheduler's wake event is replaced by one that advances an injected clock by the delay
the loop asks for instead of sleeping. Scene: both users' albums hold finished images; both
log in at the start of the hour and then do nothing (QUEUE_POLL_SECONDS=5,
SCALE_DOWN_AFTER_SECONDS=300), counted over one whole simulated hour after a 10-minute
warm-up (BENCH_QUICK: 10 minutes after 1, scaled to an hour). Baseline: a naive watcher that
lists resized/ and status/ and reads every status record each poll, measured for a few polls
and multiplied by 720 polls/h (5-s polls).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter

import boto3

from bench.albums import populate
from bench.common import QUICK, CountingProxy, Row, moto, reps, verdict
from harness.aws import create_endpoint, new_bucket
from server1.lifecycle import Lifecycle, LifecycleConfig
from studio import layout
from studio.jobs import FRESH_SECONDS
from studio.sagemaker import BOTO_CONFIG
from studio.storage import Storage
from studio.storage.s3 import CLIENT_CONFIG, S3Storage

USERS = ["alice", "bob"]
IMAGES = 10 if QUICK else 50  # finished images per user
POLL_SECONDS = 5.0
HOUR = 3600.0
MEASURED = 600.0 if QUICK else HOUR  # simulated seconds counted (the quick run scales 10 minutes up)
WARM_UP = 60.0 if QUICK else 600.0


class SimulatedWake:
    """Stands in for Scheduler.wake (a threading.Event) and is the injected clock.

    wait(delay) advances the clock by delay instead of sleeping, but never past `until`: there
    it parks until the bench moves `until` on (or stops the scheduler). set() wakes a wait at
    once without moving the clock, as Event.set does for a sleeping scheduler."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.until = self.now
        self.parked = threading.Event()
        self._go = threading.Event()
        self._woken = False

    def __call__(self) -> float:
        return self.now

    def wait(self, delay: float) -> bool:
        while not self._woken and self.now + delay > self.until:
            self.parked.set()
            self._go.wait()
            self._go.clear()
        if self._woken:
            return True
        self.now += delay
        return False

    def set(self) -> None:
        self._woken = True
        self._go.set()

    def clear(self) -> None:
        self._woken = False

    def run_to(self, until: float) -> None:
        """Let the scheduler run until the clock reaches `until`; returns once it is parked there."""
        self.parked.clear()
        self.until = until
        self._go.set()
        self.parked.wait()


def naive_poll(storage: Storage, users: list[str]) -> None:
    """What a watcher without a cache does each poll."""
    for user in users:
        list(storage.list(layout.resized_dir(user)))
        for entry in storage.list(layout.output_dir(user, "status")):
            storage.read(entry.key)


def _storage_only(counts: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counts.items() if k.startswith("S3 ")})


def run() -> list[Row]:
    server = moto()
    proxy = CountingProxy(server.url)
    try:
        bucket = new_bucket(server.url)
        storage = S3Storage(bucket, "shared", client=boto3.client("s3", endpoint_url=proxy.url, config=CLIENT_CONFIG))
        for user in USERS:
            populate(storage, user, IMAGES, 2, thumbs=False)
        sagemaker = boto3.client("sagemaker", endpoint_url=proxy.url, config=BOTO_CONFIG)
        endpoint = create_endpoint(sagemaker, 0)
        time.sleep(FRESH_SECONDS + 0.5)  # job files this young are re-checked on every scan (studio.jobs)
        with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
            ours, polls, sagemaker_calls, hour = _measure_loop(storage, sagemaker, endpoint, tmp, proxy)
        proxy.reset()
        naive_polls = reps(3)
        for _ in range(naive_polls):
            naive_poll(storage, USERS)
        naive = _storage_only(proxy.snapshot())
    finally:
        proxy.close()
    ours_hour = sum(ours.values()) * HOUR / hour
    naive_per_poll = sum(naive.values()) / naive_polls
    naive_hour = naive_per_poll * HOUR / POLL_SECONDS
    lists_per_poll = ours["S3 LIST"] / polls
    detail = ", ".join(f"{n} {k.removeprefix('S3 ')}" for k, n in sorted(ours.items()))
    return [
        Row(
            "3 idle",
            f"S3 requests per idle hour, {len(USERS)} users (real loop, simulated hour)",
            ours_hour,
            "req/h",
            naive_hour,
            "<= 1,000",
            verdict(ours_hour <= 1000),
            f"counted at moto: {detail} in {polls} polls; +{sagemaker_calls} SageMaker calls; "
            f"naive: {naive_per_poll:.0f}/poll x 720 polls/h",
        ),
        Row(
            "3 idle",
            f"S3 requests per poll, {len(USERS)} users, {IMAGES} finished images each",
            sum(ours.values()) / polls,
            "req",
            naive_per_poll,
            "<= 1 LIST per user per poll",
            verdict(lists_per_poll <= len(USERS)),
            f"{lists_per_poll:.2f} LIST per poll; the rest: scheduler lease renewals and status publishing",
        ),
    ]


def _measure_loop(
    storage: Storage, sagemaker: object, endpoint: str, tmp: str, proxy: CountingProxy
) -> tuple[Counter[str], int, int, float]:
    """(storage requests by kind, polls, SageMaker calls, simulated seconds) of one idle hour."""
    clock = SimulatedWake()
    config = LifecycleConfig(
        endpoint=endpoint,
        poll_seconds=POLL_SECONDS,
        scale_down_after=300.0,
        models_dir=f"{tmp}/models",
        skip_model_download=True,
    )
    runtime = boto3.client("sagemaker-runtime", endpoint_url=proxy.url)
    life = Lifecycle(storage, USERS, config=config, clock=clock, sagemaker_client=sagemaker, runtime_client=runtime)
    life.scheduler.wake = clock  # type: ignore[assignment]
    ticks = [0]
    tick = life.scheduler.tick

    def counted_tick() -> float:
        ticks[0] += 1
        return tick()

    life.scheduler.tick = counted_tick
    life.start()
    try:
        clock.run_to(clock.now + WARM_UP)  # warm-up: lease taken, albums cached, endpoint state read
        proxy.reset()
        ticks[0] = 0
        start = clock.now
        clock.until = start + MEASURED
        life.notify_login()  # both users log in: wakes the parked scheduler at once
        clock.run_to(start + MEASURED)
        counts = proxy.snapshot()
        hour = clock.now - start
    finally:
        life.stop()
    assert life.watcher.invocations == 0 and life.scaler is not None and life.scaler.updates == 2, (
        "the idle hour should start the GPU once and stop it once"
    )
    storage_counts = _storage_only(counts)
    return storage_counts, ticks[0], sum(counts.values()) - sum(storage_counts.values()), hour

"""A simulated day through the real Lifecycle and Scaler with an injected clock (the GPU-minutes figure,
bench/gpu_minutes.py).

A trace of logins and uploads drives Lifecycle.tick() against a real SageMaker API (a moto
server in tests and bench/): the scaler describes and updates the endpoint as it would in
production, only the clock is simulated. A simulated Server2 finishes each job
`job_seconds` after it could start (the GPU up, the previous job done). GPU-on time is
measured from what the endpoint reports (CurrentInstanceCount), and compared with the ideal
schedule: on exactly while work exists, plus the SCALE_DOWN_AFTER_SECONDS tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server1.lifecycle import Lifecycle
from server1.lifecycle.config import LifecycleConfig
from studio import layout
from studio.jobs import Jobs
from studio.storage import FileStorage


@dataclass(frozen=True)
class Event:
    at: float  # seconds from the start of the day
    kind: str  # "login" | "upload"
    user: str


@dataclass(frozen=True)
class DayResult:
    gpu_on_seconds: float
    ideal_seconds: float
    on_periods: int  # periods of the ideal schedule, each followed by an idle gap
    scale_updates: int
    jobs: int

    @property
    def excess_per_gap_seconds(self) -> float:
        return (self.gpu_on_seconds - self.ideal_seconds) / max(self.on_periods, 1)


def example_trace(users: tuple[str, str] = ("alice", "bob")) -> list[Event]:
    """A plausible day: three sessions with bursts of uploads and pauses inside them."""
    a, b = users
    events: list[Event] = []

    def session(start: float, user: str, bursts: list[tuple[float, int]]) -> None:
        events.append(Event(start, "login", user))
        for offset, count in bursts:
            events.extend(Event(start + offset + 3 * i, "upload", user) for i in range(count))

    session(8 * 3600 + 10 * 60, a, [(30, 12), (8 * 60, 4)])
    session(12 * 3600 + 40 * 60, b, [(20, 20)])
    session(13 * 3600, a, [(45, 3)])  # bob's tail is still running: no new start
    session(17 * 3600 + 5 * 60, b, [(25, 6), (25 * 60, 8)])  # a 25-minute pause inside
    session(21 * 3600 + 30 * 60, a, [(40, 1)])
    return sorted(events, key=lambda e: e.at)


def ideal_schedule(uploads: list[float], job_seconds: float, tail: float) -> list[tuple[float, float]]:
    """On from each job's arrival until it is done (serially, no start-up time) plus the tail."""
    periods: list[tuple[float, float]] = []
    free = 0.0
    for arrival in sorted(uploads):
        free = max(free, arrival) + job_seconds
        start, end = arrival, free + tail
        if periods and start <= periods[-1][1]:
            periods[-1] = (periods[-1][0], max(periods[-1][1], end))
        else:
            periods.append((start, end))
    return periods


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate_day(
    trace: list[Event],
    sagemaker_client: object,
    endpoint: str,
    workdir: Path,
    variant: str = "AllTraffic",
    scale_down_after: float = 300.0,
    poll_seconds: float = 5.0,
    job_seconds: float = 20.0,
    day_seconds: float = 86400.0,
) -> DayResult:
    """Run the day; the endpoint should start at 0 instances. Nothing is invoked (Server2 is simulated)."""
    clock = _Clock()
    storage = FileStorage(workdir / "shared")
    users = sorted({e.user for e in trace})
    config = LifecycleConfig(
        endpoint=endpoint,
        variant=variant,
        scale_down_after=scale_down_after,
        poll_seconds=poll_seconds,
        models_dir=str(workdir / "models"),
        skip_model_download=True,
    )
    # A long lease: the single simulated process never needs to renew it often.
    life = Lifecycle(
        storage, users, config=config, clock=clock, sagemaker_client=sagemaker_client, lease_seconds=day_seconds
    )
    life.watcher.invoker = None  # the simulated Server2 below does the work
    assert life.scaler is not None and life.endpoint_api is not None
    api = life.endpoint_api
    jobs = Jobs(storage, owner="simulated-server2", clock=clock)
    events = sorted(trace, key=lambda e: e.at)
    waiting: list[tuple[float, str, str]] = []  # (arrival, user, id), served in order
    server_free = 0.0
    up_since: float | None = None
    current = api.describe().current
    gpu_on = 0.0
    next_tick = 0.0
    i = 0
    while clock.now < day_seconds:
        life.lease.hold()  # this run is the deployment's scheduler
        # Events due now: logins and uploads wake the scheduler at once, as in the web app.
        woke = False
        while i < len(events) and events[i].at <= clock.now:
            e = events[i]
            i += 1
            if e.kind == "login":
                life.notify_login()
            else:
                image_id = f"img{i:05d}"
                storage.write(layout.resized(e.user, image_id), b"\x89PNG")
                waiting.append((e.at, e.user, image_id))
            woke = True
        # The simulated Server2: one job at a time, only while the GPU serves.
        next_done = day_seconds
        if current >= 1:
            up_since = clock.now if up_since is None else up_since
            while waiting:
                arrival, user, image_id = waiting[0]
                done_at = max(arrival, server_free, up_since) + job_seconds
                if done_at > clock.now:
                    next_done = done_at
                    break
                waiting.pop(0)
                jobs.write_status(user, image_id, "done", 1)
                server_free = done_at
        else:
            up_since = None
        if woke or clock.now >= next_tick:
            updates = life.scaler.updates
            next_tick = clock.now + life.tick()
            if life.scaler.updates != updates:
                current = api.describe().current
        step_to = min(next_tick, day_seconds)
        if i < len(events):
            step_to = min(step_to, events[i].at)
        step_to = min(step_to, next_done)
        step_to = max(step_to, clock.now + 1e-3)
        gpu_on += (step_to - clock.now) * (1 if current >= 1 else 0)
        clock.now = step_to
    uploads = [e.at for e in trace if e.kind == "upload"]
    periods = ideal_schedule(uploads, job_seconds, scale_down_after)
    ideal = sum(min(end, day_seconds) - start for start, end in periods)
    return DayResult(gpu_on, ideal, len(periods), life.scaler.updates, len(uploads))

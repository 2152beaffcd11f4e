"""The warm-up window after a login counts from the moment the GPU serves, not from the login: an
inference component on an injected clock whose copy takes minutes to come up (a GPU instance from
zero: provisioning, a ~5 GB image pull, the weights); and the login handoff under concurrency."""

from __future__ import annotations

import inspect
import sys
import threading

from server1.lifecycle import Lifecycle
from server1.lifecycle.coordinator import MAX_WARMING_SECONDS
from tests.lifecycle.support import Clock, lifecycle, run_for


class SlowComponent:
    """SageMaker's DescribeInferenceComponent / UpdateInferenceComponentRuntimeConfig for one component
    whose new copy is 'Updating' (CurrentCopyCount 0) for start_seconds, then InService."""

    def __init__(self, clock, start_seconds: float) -> None:
        self.clock, self.start_seconds = clock, start_seconds
        self.desired, self.ready_at = 0, 0.0
        self.updates: list[tuple[float, int]] = []  # (when, copy count asked for)

    def describe_inference_component(self, InferenceComponentName: str) -> dict:
        starting = self.desired and self.clock() < self.ready_at
        return {
            "InferenceComponentStatus": "Updating" if starting else "InService",
            "RuntimeConfig": {"DesiredCopyCount": self.desired, "CurrentCopyCount": 0 if starting else self.desired},
        }

    def update_inference_component_runtime_config(self, InferenceComponentName: str, DesiredRuntimeConfig: dict):
        count = DesiredRuntimeConfig["CopyCount"]
        self.updates.append((self.clock(), count))
        self.desired, self.ready_at = count, self.clock() + self.start_seconds


def component_lifecycle(storage, clock, tmp_path, fake: SlowComponent, scale_down_after: float = 300):
    return lifecycle(
        storage,
        clock,
        tmp_path,
        sagemaker_client=fake,
        endpoint="sam",
        inference_component="sam-server2",
        scale_down_after=scale_down_after,
    )


def test_a_cold_start_longer_than_the_window_still_gets_the_whole_window(storage, clock, tmp_path):
    fake = SlowComponent(clock, start_seconds=420)  # 7 minutes from zero to serving
    life = component_lifecycle(storage, clock, tmp_path, fake)
    login = clock.now
    life.notify_login()
    life.tick()
    assert fake.updates == [(login, 1)]
    run_for(life, clock, 400)
    assert life.worker_status() == "starting" and fake.desired == 1  # past the window, not yet ready: kept
    run_for(life, clock, 30)
    assert life.worker_status() == "ready"
    ready = fake.ready_at
    run_for(life, clock, ready + 290 - clock.now)
    assert fake.desired == 1  # 290 s after it became ready: still up for the user who logged in
    run_for(life, clock, 20)
    assert fake.desired == 0
    ((up_at, up), (down_at, down)) = fake.updates
    assert (up, down) == (1, 0)
    assert ready + 300 <= down_at <= ready + 300 + 2 * life.config.poll_seconds


def test_work_during_the_cold_start_counts_as_usual(storage, clock, tmp_path):
    fake = SlowComponent(clock, start_seconds=420)
    life = component_lifecycle(storage, clock, tmp_path, fake)
    life.notify_login()
    run_for(life, clock, 1000)  # ready at 420, window until 720
    assert fake.updates[-1][1] == 0 and 720 <= fake.updates[-1][0] - fake.updates[0][0] <= 730


def test_a_gpu_that_never_comes_up_is_not_kept_wanted_for_ever(storage, clock, tmp_path):
    fake = SlowComponent(clock, start_seconds=10**7)
    life = component_lifecycle(storage, clock, tmp_path, fake)
    start = clock.now
    life.notify_login()
    run_for(life, clock, MAX_WARMING_SECONDS + 60)
    # Updating the whole time, so the scale-down waits for it; what matters is that it is no longer wanted.
    assert fake.updates == [(start, 1)]
    assert life.scaler.phase(0) == "off" and life._warming_since is None


def test_a_login_landing_right_after_tick_reads_the_last_one_is_kept(storage, tmp_path):
    """notify_login (request threads) hands a login to tick (the scheduler). A login that lands right
    after tick has read the pending one must survive for the next tick: tick takes and clears it in one
    step under a lock. A line tracer pauses tick on the line after its read and logs in from another
    thread there (without the lock, tick's separate clear then dropped that login)."""
    clock = Clock()
    fake = SlowComponent(clock, start_seconds=0)
    life = component_lifecycle(storage, clock, tmp_path, fake)
    life.notify_login()
    life.tick()
    assert fake.desired == 1  # up and ready from the first login
    run_for(life, clock, 200)

    lines, start = inspect.getsourcelines(Lifecycle.tick)
    read_line = start + next(i for i, line in enumerate(lines) if "self._login_at" in line)
    raced: list[threading.Thread] = []

    def tracer(frame, event, arg):
        if frame.f_code is not Lifecycle.tick.__code__:
            return None
        if event == "line" and frame.f_lineno > read_line and not raced:
            clock.advance(100)  # the late login is 100 s after this tick's `now`
            racer = threading.Thread(target=life.notify_login)
            raced.append(racer)
            racer.start()
            racer.join(timeout=0.5)  # it waits for the lock if tick still holds it
        return tracer

    sys.settrace(tracer)
    try:
        life.tick()
    finally:
        sys.settrace(None)
    raced[0].join(timeout=30)
    assert not raced[0].is_alive()
    late_login = clock.now
    run_for(life, clock, 290)  # the late login's window: 300 s from it
    assert fake.desired == 1
    run_for(life, clock, 20)
    assert fake.desired == 0 and fake.updates[-1][0] >= late_login + 300


def test_invocations_wait_longer_than_sagemakers_own_limit() -> None:
    """SageMaker answers within 60 s; InvokeEndpoint's documentation asks clients for a 70 s socket
    timeout, so an answer at 59 s is not cut off by our own client first."""
    from server1.lifecycle.watcher import SageMakerInvoker

    invoker = SageMakerInvoker("sam", "sam-server2")
    assert invoker.client.meta.config.read_timeout >= 70

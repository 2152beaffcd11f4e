"""The dead-man's switch: the GPU goes to zero even when Server1 is gone.

Server1 normally scales the endpoint down after SCALE_DOWN_AFTER_SECONDS without work. If Server1
dies while the GPU is up, nobody would, and the instance would bill by the hour. So Server2 watches
its own work too and, after the same idle time, scales itself to zero: the inference component's
copy count (SAGEMAKER_INFERENCE_COMPONENT; managed instance scaling then removes the instance), or
else the variant's instance count (SAGEMAKER_ENDPOINT / SAGEMAKER_VARIANT). The IAM role of the
deployed model allows exactly that call and nothing else on SageMaker.

Use (server2's poller and request handlers)::

    guard = IdleGuard.of(deployment)      # None in local mode (no SageMaker endpoint)
    guard.note_work()                     # pending jobs seen / a job claimed or finished
    with guard.working():                 # a job in progress never counts as idle
        ...
    guard.tick()                          # call every poll; scales down once idle long enough
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from studio.sagemaker import Deployment

log = logging.getLogger(__name__)

RETRY_SECONDS = 30.0  # after a failed scale-down call (throttled, endpoint Updating, ...)


class IdleGuard:
    """Calls `scale_down()` once `idle_seconds` have passed with no work, and again every
    `idle_seconds` while it stays idle (re-asserting zero is harmless and undoes a stray scale-up);
    a failed call is retried after `retry_seconds`. Thread-safe; `clock` is injectable for tests."""

    def __init__(
        self,
        scale_down: Callable[[], None],
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        self._scale_down = scale_down
        self._idle_seconds = idle_seconds
        self._retry_seconds = min(retry_seconds, idle_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._in_progress = 0
        self._working_since = 0.0  # when the jobs in progress started
        self._held = False  # a job has outlasted the idle time (logged once per stretch of work)
        self._due = clock() + idle_seconds  # a fresh container counts as idle from its start

    @classmethod
    def of(
        cls, deployment: Deployment, clock: Callable[[], float] = time.monotonic, client: object | None = None
    ) -> IdleGuard | None:
        """The guard that sets deployment's endpoint to zero (studio.sagemaker: the inference component's
        copy count, else the variant's instance count), or None in local mode (nothing to scale)."""
        api = deployment.api(client)
        if api is None:
            return None
        return cls(lambda: api.set_count(0), deployment.scale_down_after, clock)

    def note_work(self) -> None:
        """There is work (pending jobs seen, a job claimed or finished): restart the idle timer."""
        with self._lock:
            self._due = self._clock() + self._idle_seconds

    @contextmanager
    def working(self) -> Iterator[None]:
        """Mark a job in progress: however long it takes, the guard does not fire meanwhile."""
        with self._lock:
            if not self._in_progress:
                self._working_since = self._clock()
            self._in_progress += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_progress -= 1
                self._due = self._clock() + self._idle_seconds
                self._held = False

    def tick(self) -> bool:
        """Scale down if idle long enough; True when a scale-down call succeeded now."""
        with self._lock:
            now = self._clock()
            if self._in_progress and not self._held and now - self._working_since >= self._idle_seconds:
                self._held = True  # said once per stretch of work: why the endpoint stays up
                log.info("idle guard: a job is running for over %.0fs; the endpoint stays up", self._idle_seconds)
            if self._in_progress or now < self._due:
                return False
            # Claim this firing before calling out, so concurrent ticks do not call twice.
            self._due = now + self._retry_seconds
        try:
            self._scale_down()
        except Exception as e:  # any failure: log it and try again later, never kill the poller
            log.warning("idle guard: scale-down failed, retrying in %.0fs: %s", self._retry_seconds, e)
            return False
        with self._lock:  # work noted during the call already moved _due later
            self._due = max(self._due, now + self._idle_seconds)
        log.info("idle guard: no work for %.0fs, scaled this endpoint to zero", self._idle_seconds)
        return True

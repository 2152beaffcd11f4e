"""One thread runs the jobs, one at a time: the models (and the GPU) are not shared between threads.

The poller and /invocations hand jobs in; a job already waiting or running is not queued twice
(its Future is shared), and an invocation's job goes to the front. Nothing is claimed while it
waits: the claim is taken when the job starts, so a stopping server leaves no claims behind.
After each job the C allocator's free memory goes back to the system (server2.memory).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING

from server2 import memory
from server2.idle_guard import IdleGuard
from server2.outcome import Outcome, Stopping

if TYPE_CHECKING:  # the worker imports the pipeline (torch): the service imports it once loading
    from server2.worker import Worker

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (user, image id)


class Dispatcher:
    def __init__(self, worker: Worker, stopping: threading.Event, guard: IdleGuard | None = None) -> None:
        self.worker = worker
        self.stopping = stopping
        self.guard = guard  # a running job never counts as idle time
        self._cond = threading.Condition()
        self._waiting: OrderedDict[Key, tuple[str, Future]] = OrderedDict()
        self._running: tuple[Key, Future] | None = None
        self._done = threading.Event()

    def submit(self, user: str, image_id: str, resized_key: str, urgent: bool = False) -> Future:
        key = (user, image_id)
        with self._cond:
            if self.stopping.is_set():
                raise Stopping("the server is shutting down")
            if self._running and self._running[0] == key:
                return self._running[1]
            if key not in self._waiting:
                self._waiting[key] = (resized_key, Future())
                self._cond.notify()
            if urgent:
                self._waiting.move_to_end(key, last=False)
            return self._waiting[key][1]

    def idle(self) -> bool:
        """Nothing waiting (the running job may still be running)."""
        with self._cond:
            return not self._waiting

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._waiting and not self.stopping.is_set():
                        self._cond.wait()
                    if self.stopping.is_set():
                        break
                    key, (resized_key, future) = self._waiting.popitem(last=False)
                    self._running = (key, future)
                try:
                    with self.guard.working() if self.guard else contextlib.nullcontext():
                        outcome = self.worker.run(key[0], key[1], resized_key)
                except Exception as e:  # storage trouble around the claim: the job stays queued
                    log.exception("%s/%s: could not be processed", *key)
                    outcome = Outcome("error", f"{type(e).__name__}: {e}")
                with self._cond:
                    self._running = None
                _resolve(future, outcome)
                memory.release()  # what the job freed: RSS between jobs is what is in use, not its high-water
        finally:
            self._drop_waiting()
            self._done.set()

    def _drop_waiting(self) -> None:
        with self._cond:
            waiting = [future for _, future in self._waiting.values()]
            self._waiting.clear()
        for future in waiting:
            _resolve(future, Outcome("stopped", "the server shut down before the job started"))

    def stop(self, grace: float) -> bool:
        """Let the running job finish within grace seconds; otherwise release its claim uncounted
        (its results, if they come later, are dropped) so another worker takes it at once.
        True when a job was released and its thread is still running."""
        with self._cond:
            self.stopping.set()
            self._cond.notify_all()
        self._drop_waiting()  # their invocations answer now, not when the running job ends
        if self._done.wait(grace):
            return False
        with self._cond:
            running = self._running
        if not (self.worker.abandon() and running):
            return False
        log.info("%s/%s: released unfinished on shutdown", *running[0])
        _resolve(running[1], Outcome("stopped", "the server shut down; the job was released for another worker"))
        return True


def _resolve(future: Future, outcome: Outcome) -> None:
    with contextlib.suppress(InvalidStateError):  # the first answer stands
        future.set_result(outcome)

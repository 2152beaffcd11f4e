"""The poller: every POLL_SECONDS, every user's resized/ folder; new jobs go to the dispatcher.

It scans only when nothing is waiting in the dispatcher, so a long queue costs no listings.
Storage trouble is logged and waited out with a growing pause (up to a minute), never a crash.
"""

from __future__ import annotations

import logging
import threading

from server2.dispatch import Dispatcher
from server2.idle_guard import IdleGuard
from server2.outcome import Stopping
from studio.jobs import Scanner
from studio.storage import StorageError

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


class Poller:
    def __init__(
        self,
        scanner: Scanner,
        dispatcher: Dispatcher,
        poll_seconds: float,
        stopping: threading.Event,
        guard: IdleGuard | None = None,
    ) -> None:
        self.scanner = scanner
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self.stopping = stopping
        self.guard = guard  # SageMaker only: scales this endpoint to zero when Server1 is gone

    def poll_once(self) -> int:
        """Hand every pending job to the dispatcher; returns how many were handed."""
        count = 0
        if self.dispatcher.idle():
            for user in self.scanner.users():
                for image_id, resized_key in self.scanner.pending(user):
                    self.dispatcher.submit(user, image_id, resized_key)
                    count += 1
        return count

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                if self.poll_once() and self.guard:
                    self.guard.note_work()
                failures = 0
            except Stopping:
                return
            except StorageError as e:
                failures += 1
                log.warning("polling failed (%d in a row), waiting: %s", failures, e)
            except Exception:
                failures += 1
                log.exception("polling failed (%d in a row), waiting", failures)
            if self.guard:
                self.guard.tick()
            delay = (
                min(self.poll_seconds * 2 ** min(failures, 10), MAX_BACKOFF_SECONDS) if failures else self.poll_seconds
            )
            self.stopping.wait(delay)

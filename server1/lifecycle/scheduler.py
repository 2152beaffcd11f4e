"""Exactly one background scheduler per deployment, however many gunicorn workers or tasks run.

A lease record in storage names the leader and when its lease ends. It is taken with
studio.lease (the take-over rule the job claims use too: one taker wins) and renewed by the
leader with a conditional replace against the version it wrote. Standbys look at it every ttl/2 and
take over when it has run out, so a dead leader is replaced within about 1.5 x ttl.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from studio import layout, lease
from studio.storage import Storage, StorageError

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, storage: Storage, owner: str, ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.owner = owner
        self.ttl = ttl
        self.clock = clock
        self.key = layout.system("scheduler-lease.json")
        self._version: str | None = None
        self._expires_at = 0.0
        self._renew_at = 0.0

    @property
    def held(self) -> bool:
        return self._version is not None and self.clock() < self._expires_at

    def hold(self) -> bool:
        """Take or renew the lease when due; True while this process is the leader."""
        now = self.clock()
        if self._version is not None and now < self._renew_at:
            return True
        record = {"owner": self.owner, "expires_at": now + self.ttl}
        try:
            version = self._renew(record) if self._version is not None else None
            if version is None:
                taken = lease.take(self.storage, self.key, lambda _: record, now, owner=self.owner)
                version = taken.version if taken else None
        except StorageError as e:
            log.warning("scheduler lease: %s", e)
            return self.held  # keep leading until our lease runs out; a standby then takes over
        if version is None:
            if self._version is not None:
                log.warning("scheduler lease lost: another process leads now")
            self._version = None
            return False
        if self._version is None:
            log.info("scheduler lease taken by %s", self.owner)
        self._version, self._expires_at, self._renew_at = version, now + self.ttl, now + self.ttl / 3
        return True

    def _renew(self, record: dict) -> str | None:
        assert self._version is not None
        return self.storage.replace_if(self.key, lease.dump(record), self._version)

    def release(self) -> None:
        """Give the lease up at once (shutdown), so a standby need not wait for it to run out."""
        if self._version is None:
            return
        record = {"owner": self.owner, "expires_at": 0, "released": True}
        try:
            self.storage.replace_if(self.key, lease.dump(record), self._version)
        except StorageError as e:
            log.warning("scheduler lease: cannot release: %s", e)
        self._version = None


@dataclass(eq=False)
class Scheduler:
    """Runs tick() (which returns the seconds until it wants to run again) while holding the lease."""

    lease: Lease
    tick: Callable[[], float]
    on_lead: Callable[[], None]
    standby_seconds: float
    leading: bool = field(default=False, init=False)
    wake: threading.Event = field(default_factory=threading.Event, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lifecycle-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.standby_seconds
            if self.lease.hold():
                if not self.leading:
                    self.leading = True
                    self.on_lead()
                try:
                    delay = min(self.tick(), self.lease.ttl / 3)
                except Exception:  # the scheduler must outlive any one bad tick
                    log.exception("lifecycle tick failed")
            elif self.leading:
                self.leading = False
            self.wake.wait(delay)
            self.wake.clear()
        self.leading = False
        self.lease.release()

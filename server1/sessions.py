"""Live logins kept in storage, so that logging out ends a session cookie for good.

Flask's session is a signed cookie: on its own, a copy taken before logout would stay
valid. Each login gets a random id recorded under layout.system("session-<id>"); a
request counts as logged in only while that record exists. Records are re-checked at
most every CHECK_SECONDS per process (other gunicorn workers see a logout within that).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time

from studio import layout
from studio.storage import NotFound, Storage, StorageError

CHECK_SECONDS = 5.0
PREFIX = "session-"


class Sessions:
    def __init__(self, storage: Storage, lifetime_seconds: float) -> None:
        self.storage = storage
        self.lifetime = lifetime_seconds
        self._seen: dict[str, tuple[str, float]] = {}  # sid -> (user, checked at)
        self._lock = threading.Lock()

    def start(self, user: str) -> str:
        sid = secrets.token_urlsafe(24)
        record = {"user": user, "created": time.time()}
        self.storage.write_json(layout.system(PREFIX + sid), record)
        with self._lock:
            self._seen[sid] = (user, time.monotonic())
        self._purge()
        return sid

    def user_of(self, sid: object) -> str | None:
        """The user of a live session id, else None."""
        if not isinstance(sid, str):
            return None
        try:
            key = layout.system(PREFIX + sid)
        except layout.BadName:
            return None
        with self._lock:
            seen = self._seen.get(sid)
        if seen and time.monotonic() - seen[1] < CHECK_SECONDS:
            return seen[0]
        try:
            record = self.storage.read_json(key)
            user, created = str(record["user"]), float(record["created"])
        except (NotFound, ValueError, KeyError, TypeError):
            user, created = "", 0.0
        if not user or time.time() - created > self.lifetime:
            with self._lock:
                self._seen.pop(sid, None)
            return None
        with self._lock:
            self._seen[sid] = (user, time.monotonic())
        return user

    def end(self, sid: object) -> None:
        if not isinstance(sid, str):
            return
        with self._lock:
            self._seen.pop(sid, None)
        with contextlib.suppress(layout.BadName):
            self.storage.delete(layout.system(PREFIX + sid))

    def _purge(self) -> None:
        """Drop records of sessions past their lifetime (their cookies have expired too)."""
        cutoff = time.time() - self.lifetime
        try:
            for entry in self.storage.list(layout.system(PREFIX)):
                if entry.mtime < cutoff:
                    self.storage.delete(entry.key)
        except StorageError:
            pass  # best effort; the next login tries again
        with self._lock:
            stale = [sid for sid, (_, at) in self._seen.items() if time.monotonic() - at > self.lifetime]
            for sid in stale:
                del self._seen[sid]

"""Endpoint lifecycle, resized/ watcher and model weights (issue 4) — interface the web app uses.

TEMPORARY SKELETON: the issue-4 work replaces this file with the real implementation,
keeping these names and signatures.
"""

from __future__ import annotations

from studio.storage import Storage


class Lifecycle:
    def __init__(self, storage: Storage, users: list[str]) -> None:
        self.storage = storage
        self.users = users

    def start(self) -> None:
        """Start the background work (weights check, one scheduler per deployment)."""

    def stop(self) -> None:
        """Stop background threads (tests, shutdown)."""

    def notify_login(self) -> None:
        """A user logged in: bring the endpoint up."""

    def notify_work(self) -> None:
        """A new job was just written: look at the queue now rather than at the next poll."""

    def worker_status(self) -> str:
        """'off' | 'starting' | 'ready' | 'busy' — shown in the UI header."""
        return "off"

    def health(self) -> dict:
        """JSON-able state for /healthz (endpoint state, scaler errors, model files); no secrets."""
        return {}

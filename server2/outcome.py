"""What handing a job in can come back with: the Outcome of its run, or Stopping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    """How a job run ended. state: done | failed (final) | retry (failed, attempts remain) |
    in-progress (another worker holds it) | already-processed | stopped | error (storage)."""

    state: str
    error: str | None = None
    status: dict | None = None


class Stopping(Exception):
    """The service is shutting down and takes no new work."""

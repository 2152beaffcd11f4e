"""Taking a lease record in storage: the one take-over rule of the scheduler and the job claims.

A lease record is a JSON object with at least "expires_at" (seconds since the epoch) and
optionally "released": true. It is taken with an exclusive create, or, when it exists and
has ended (released, run out, or unreadable), by a conditional replace against the version
read: of several takers exactly one wins (docs/architecture.md "Job protocol"). The holder
renews and releases it with Storage.replace_if against the version it holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from studio.storage import NotFound, Storage


@dataclass(frozen=True)
class Taken:
    version: str
    record: dict  # what was written
    previous: dict  # the ended lease that was replaced ({} when there was none or it was unreadable)


def dump(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def parse(data: bytes) -> dict:
    """The record, or {} when it is no readable lease (such a record belongs to nobody)."""
    try:
        record = json.loads(data)
        float(record["expires_at"])
    except (ValueError, TypeError, KeyError, IndexError):
        return {}
    return record if isinstance(record, dict) else {}


def live(record: dict, now: float) -> bool:
    return bool(record) and not record.get("released") and float(record["expires_at"]) > now


def take(
    storage: Storage, key: str, make: Callable[[dict], dict], now: float, owner: str | None = None
) -> Taken | None:
    """Write make(previous record) at key if no live lease is there; None when one is (or a rival
    won the race). A live lease of `owner` counts as ended (a leader that lost track of its version)."""
    record = make({})
    version = storage.create_exclusive(key, dump(record))
    if version is not None:
        return Taken(version, record, {})
    try:
        data, current = storage.read_versioned(key)
    except NotFound:
        return None  # deleted under us; the next try decides
    previous = parse(data)
    if live(previous, now) and (owner is None or previous.get("owner") != owner):
        return None
    record = make(previous)
    version = storage.replace_if(key, dump(record), current)
    return Taken(version, record, previous) if version is not None else None

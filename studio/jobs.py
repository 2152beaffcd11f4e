"""The job protocol (docs/architecture.md "Job protocol"), used by every worker and by Server1.

A job is an image file in <user>/resized/. Its life:

1. claim: exclusive create of output/claims/<id>.json (owner, token, lease). An
   existing claim is taken over only when it was released or its lease ran out, by a
   conditional replace against the version read, so exactly one taker wins.
2. The holder renews the lease while it works and writes outputs under
   output/staging/<id>/<token>/.
3. complete: check the claim is still ours, sweep other tokens' staging, move the staged
   outputs into place, write the status record (last), release the claim.
4. A failure is retried until max_attempts; then the status is `failed` with the
   reason. A worker that dies mid-job counts as an attempt too, so an image that kills
   its worker ends as well.

A status record is final when its state is `done` or `failed`; a user's retry makes it
`queued` again and re-publishes the resized file, so pollers that cache "final" by the
resized file's timestamp see it anew.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from studio import image_files, layout, lease
from studio.layout import BadName
from studio.storage import Entry, NotFound, Storage, StorageError

FINAL = ("done", "failed")
# Job files younger than this are re-checked on every scan (see Scanner.pending).
FRESH_SECONDS = 2.0
STATES = ("queued", "processing", "done", "failed")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _attempts(claim_record: dict) -> int:
    try:
        return int(claim_record.get("attempts", 0))
    except (ValueError, TypeError):
        return 0  # an unreadable count: the claim is treated as stale anyway


@dataclass
class Claim:
    user: str
    image_id: str
    owner: str
    token: str
    attempt: int
    expires_at: float
    version: str = field(repr=False)

    @property
    def staging(self) -> str:
        return layout.staging(self.user, self.image_id, self.token)


@dataclass(eq=False)
class Jobs:
    storage: Storage
    owner: str
    lease_seconds: float = 120.0
    max_attempts: int = 3
    clock: Callable[[], float] = time.time

    # -- status records ----------------------------------------------------------
    def read_status(self, user: str, image_id: str) -> dict | None:
        """The status record, or None when there is none (= queued) or it is unreadable."""
        try:
            record = self.storage.read_json(layout.status(user, image_id))
        except (NotFound, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("state") in STATES else None

    def write_status(self, user: str, image_id: str, state: str, attempts: int, **fields: object) -> dict:
        record = {
            "state": state,
            "attempts": attempts,
            "error": None,
            "updated_at": iso(self.clock()),
            "clippings": [],
            **fields,
        }
        self.storage.write_json(layout.status(user, image_id), record)
        return record

    def is_final(self, user: str, image_id: str) -> bool:
        record = self.read_status(user, image_id)
        return bool(record and record["state"] in FINAL)

    # -- claims --------------------------------------------------------------------
    def _claim_record(self, token: str, attempts: int, released: bool = False, error: str | None = None) -> dict:
        return {
            "owner": self.owner,
            "token": token,
            "attempts": attempts,
            "expires_at": self.clock() + self.lease_seconds,
            "released": released,
            "error": error,
        }

    def claim(self, user: str, image_id: str) -> Claim | None:
        """Take the job, or None when it is final, held by a live worker, or lost to a rival."""
        if self.is_final(user, image_id):
            return None
        token = uuid.uuid4().hex
        taken = lease.take(
            self.storage,
            layout.claim(user, image_id),
            lambda previous: self._claim_record(token, _attempts(previous) + 1),
            self.clock(),
        )
        if taken is None:
            return None
        previous, record, version = taken.previous, taken.record, taken.version
        # Whatever the previous holder staged is never published now: remove it.
        if isinstance(previous.get("token"), str):
            with contextlib.suppress(BadName):
                self.storage.delete_prefix(layout.staging(user, image_id, previous["token"]))
        claim = Claim(user, image_id, self.owner, token, record["attempts"], record["expires_at"], version)
        # A finisher writes its status before it releases: now that we hold the claim, a
        # final status written by the previous holder is visible.
        if self.is_final(user, image_id):
            self.release(claim, counted=False)
            return None
        if claim.attempt > self.max_attempts:
            claim.attempt -= 1  # this take-over only records the end: it is no attempt
            reason = previous.get("error") or "the worker stopped while processing it"
            self._finish(claim, "failed", error=f"gave up after {claim.attempt} attempts: {reason}")
            return None
        try:
            self.write_status(user, image_id, "processing", claim.attempt, owner=self.owner)
        except StorageError:
            # Storage failed under us: give the claim back rather than hold it for a whole lease.
            with contextlib.suppress(StorageError):
                self.release(claim, counted=False)
            raise
        return claim

    def renew(self, claim: Claim) -> bool:
        """Extend the lease; False when the claim is no longer ours (never act on it then)."""
        record = self._claim_record(claim.token, claim.attempt)
        version = self.storage.replace_if(layout.claim(claim.user, claim.image_id), lease.dump(record), claim.version)
        if version is None:
            return False
        claim.version, claim.expires_at = version, record["expires_at"]
        return True

    def release(self, claim: Claim, counted: bool = True, error: str | None = None) -> bool:
        """Give the job back. counted=False (e.g. on SIGTERM) does not use up an attempt."""
        attempts = claim.attempt if counted else claim.attempt - 1
        record = self._claim_record(claim.token, attempts, released=True, error=error)
        version = self.storage.replace_if(layout.claim(claim.user, claim.image_id), lease.dump(record), claim.version)
        if version is not None:
            claim.version = version
        self.storage.delete_prefix(claim.staging)
        return version is not None

    # -- endings ---------------------------------------------------------------------
    def complete(self, claim: Claim, staged: dict[str, str], **fields: object) -> bool:
        """Publish the staged outputs ({staging key: final key}), then the `done` status.

        False (and nothing published) when the claim was lost, e.g. after a stall longer
        than the lease: the new holder's result stands."""
        if not self.renew(claim):
            self.storage.delete_prefix(claim.staging)
            return False
        # Staging of any other token is a dead holder's: a write it had in flight when it was killed
        # can land after the take-over cleared its folder. Only the claim's holder may sweep it.
        staging = layout.staging_dir(claim.user, claim.image_id)
        for token in self.storage.list_dir(staging, stat=False)[0]:
            if token != claim.token:
                self.storage.delete_prefix(f"{staging}{token}/")
        image_files.delete_outputs(self.storage, claim.user, claim.image_id)
        for src, dst in staged.items():
            self.storage.move(src, dst)
        self._finish(claim, "done", **fields)
        return True

    def fail(self, claim: Claim, error: str, final: bool = False, **fields: object) -> str:
        """Record a failure: `queued` again while attempts remain, else `failed` (at once when
        final: an unreadable file stays unreadable). Returns the state."""
        if not self.renew(claim):
            self._deleted_meanwhile(claim)  # a delete racing complete() took the claim with it
            return "lost"
        if claim.attempt < self.max_attempts and not final:
            self.write_status(claim.user, claim.image_id, "queued", claim.attempt, error=error, **fields)
            self.release(claim, error=error)
            self._deleted_meanwhile(claim)
            return "queued"
        self._finish(claim, "failed", error=error, **fields)
        return "failed"

    def _finish(self, claim: Claim, state: str, **fields: object) -> None:
        self.write_status(claim.user, claim.image_id, state, claim.attempt, owner=self.owner, **fields)
        self.release(claim, error=fields.get("error"))  # type: ignore[arg-type]
        self._deleted_meanwhile(claim)

    def _deleted_meanwhile(self, claim: Claim) -> None:
        """The user deleted the image while we worked: what we just wrote belongs to nothing, so remove
        it. A delete removes the job file first and lists the other folders after it, so while the job
        file is still there, that delete removes what we wrote."""
        if image_files.job(self.storage, claim.user, claim.image_id) is None:
            image_files.delete(self.storage, claim.user, claim.image_id)

    # -- user actions --------------------------------------------------------------------
    def retry(self, user: str, image_id: str, resized_key: str) -> None:
        """Queue a finished image again with fresh attempts."""
        self.storage.delete(layout.claim(user, image_id))
        self.write_status(user, image_id, "queued", 0)
        # Re-publish the job file: pollers that cached it as final see a new timestamp.
        self.storage.write(resized_key, self.storage.read(resized_key))


class Scanner:
    """Finds unfinished jobs cheaply: one listing of a user's resized/ per call; a status
    record is read only for jobs not yet seen final (cached by the job file's mtime)."""

    def __init__(self, jobs: Jobs, storage_clock: Callable[[], float] = time.time) -> None:
        self.jobs = jobs
        # Compared with the storage's file times, so the wall clock, not the Jobs clock (which
        # times leases and may be simulated, as in the lifecycle's tests and bench/).
        self.storage_clock = storage_clock
        self._final: dict[tuple[str, str], float] = {}

    def users(self) -> list[str]:
        dirs, _ = self.jobs.storage.list_dir("")
        return [d for d in dirs if layout.is_user_dir(d)]

    def pending(self, user: str) -> list[tuple[str, str]]:
        """[(image id, resized key)] of the user's jobs that are not final, oldest first."""
        return [(image_id, entry.key) for image_id, entry in self.pending_entries(user)]

    def pending_entries(self, user: str) -> list[tuple[str, Entry]]:
        """[(image id, job file entry)] like pending(); the entry's mtime tells a re-queued job apart."""
        _, entries = self.jobs.storage.list_dir(layout.resized_dir(user))
        out: list[tuple[float, str, Entry]] = []
        seen = set()
        for entry in entries:
            parsed = layout.job_from_resized(entry.name)
            if parsed is None:
                continue
            image_id = parsed[0]
            seen.add((user, image_id))
            if self._final.get((user, image_id)) == entry.mtime:
                continue
            if self.jobs.is_final(user, image_id):
                # S3 gives whole seconds: a retry that re-writes the job file within the same
                # second would look unchanged, so only a job file older than that is cached.
                if self.storage_clock() - entry.mtime > FRESH_SECONDS:
                    self._final[(user, image_id)] = entry.mtime
            else:
                out.append((entry.mtime, image_id, entry))
        for gone in [k for k in self._final if k[0] == user and k not in seen]:
            del self._final[gone]
        return [(image_id, entry) for _, image_id, entry in sorted(out, key=lambda t: (t[0], t[1]))]

"""The job protocol (docs/architecture.md "Job protocol"), used by every worker and by Server1.

A job is an image file in <user>/resized/. Its life:

1. claim: exclusive create of output/claims/<id>.json (owner, token, lease). An
   existing claim is taken over only when it was released or its lease ran out, by a
   conditional replace against the version read, so exactly one taker wins.
2. The holder renews the lease while it works and writes outputs under
   output/staging/<id>/<token>/.
3. complete: check the claim is still ours, move the staged outputs into place; the ending
   (_finish) sweeps the photo's staging, writes the status record, releases the claim.
4. A failure is retried until max_attempts; then the status is `failed` with the
   reason. A worker that dies mid-job counts as an attempt too, so an image that kills
   its worker ends as well.
5. Delete means deleted: every ending goes through _finish, which removes all of the photo,
   what it wrote included, when the photo's job file is gone.

A status record is final when its state is `done` or `failed`; a user's retry makes it
`queued` again and re-publishes the resized file, so pollers that cache "final" by the
resized file's timestamp see it anew.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from studio import image_files, layout, lease
from studio.layout import BadName
from studio.storage import Entry, NotFound, Storage, StorageError

FINAL = ("done", "failed")
STATUS_TRIES = 20  # conditional writes of one change to a status record before giving up
# Job files younger than this are re-checked on every scan (see Scanner.pending).
FRESH_SECONDS = 2.0
STATES = ("queued", "processing", "done", "failed")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusConflict(StorageError):
    """A status record kept changing under a conditional write (change_status)."""


def _record(raw: bytes) -> dict | None:
    """A status record from its bytes; None when unreadable."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("state") in STATES else None


def hand_made(record: dict | None) -> tuple[list[str], set[str]]:
    """(the clippings the user cut in the editor that the record shows, the names of every file of them:
    those and their earlier versions that undo can restore)."""
    record = record or {}
    shown = [n for n in record.get("hand_made") or [] if n in (record.get("clippings") or [])]
    edits, versions, todo = record.get("edits") or {}, set(shown), list(shown)
    while todo:
        earlier = edits.get(todo.pop())
        if isinstance(earlier, str) and earlier not in versions:
            versions.add(earlier)
            todo.append(earlier)
    return shown, versions


def keep_hand_made(record: dict, old: dict | None) -> dict:
    """record (a worker's or a retry's) with old's hand-made clippings kept: shown first, with their
    positions and earlier versions. The automatic clippings' touch-ups are the automatic pass's to redo."""
    shown, versions = hand_made(old)
    if not shown:
        return record
    assert old is not None
    boxes, edits = old.get("clipping_boxes") or {}, old.get("edits") or {}
    return {
        **record,
        "hand_made": shown,
        "clippings": shown + [n for n in record.get("clippings") or [] if n not in versions],
        "clipping_boxes": {**(record.get("clipping_boxes") or {}), **{n: boxes[n] for n in versions if n in boxes}},
        "edits": {n: edits[n] for n in versions if n in edits},
    }


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
            return _record(self.storage.read(layout.status(user, image_id)))
        except NotFound:
            return None

    def change_status(self, user: str, image_id: str, change: Callable[[dict | None], dict]) -> dict:
        """The one writer of status records: read the record and its version, make the new one with
        change(record, or None when there is none or it is unreadable), write it only if nobody wrote
        meanwhile, else read and change again. change may raise to refuse. Returns the record written."""
        key = layout.status(user, image_id)
        for _ in range(STATUS_TRIES):
            try:
                raw, version = self.storage.read_versioned(key)
            except NotFound:
                raw, version = b"", None
            record = {**change(_record(raw)), "updated_at": iso(self.clock())}
            data = json.dumps(record, separators=(",", ":")).encode()
            written = (
                self.storage.create_exclusive(key, data)
                if version is None
                else self.storage.replace_if(key, data, version)
            )
            if written is not None:
                return record
        raise StatusConflict(f"{key} was changed by others {STATUS_TRIES} times in a row")

    def write_status(self, user: str, image_id: str, state: str, attempts: int, **fields: object) -> dict:
        """A worker's record (or a retry's): state, attempts and fields; the user's hand-made clippings kept."""
        fresh = {"state": state, "attempts": attempts, "error": None, "clippings": [], **fields}
        return self.change_status(user, image_id, lambda old: keep_hand_made(fresh, old))

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
            self._finish(claim, "failed", {"error": f"gave up after {claim.attempt} attempts: {reason}"})
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

        False (and nothing published) when the claim was lost, e.g. after a stall longer than the lease:
        the new holder's result stands. A storage error while publishing (a delete took the staged files:
        NotFound) is raised: the caller ends the job with fail()."""
        if not self.renew(claim):
            self._finish(claim, None)
            return False
        kept = hand_made(self.read_status(claim.user, claim.image_id))[1]
        image_files.delete_outputs(self.storage, claim.user, claim.image_id, keep=kept)
        for src, dst in staged.items():
            self.storage.move(src, dst)
        self._finish(claim, "done", fields)
        return True

    def fail(self, claim: Claim, error: str, final: bool = False, **fields: object) -> str:
        """Record a failure: `queued` again while attempts remain, else `failed` (at once when
        final: an unreadable file stays unreadable). Returns the state, or "lost"."""
        if not self.renew(claim):
            self._finish(claim, None)
            return "lost"
        state = "queued" if claim.attempt < self.max_attempts and not final else "failed"
        self._finish(claim, state, {**fields, "error": error})
        return state

    def abandon(self, claim: Claim) -> None:
        """Give the job back unfinished (shutdown) without using up an attempt: `queued` again."""
        self._finish(claim, "queued" if self.renew(claim) else None, counted=False)

    def _finish(
        self, claim: Claim, state: str | None, fields: dict[str, object] | None = None, counted: bool = True
    ) -> None:
        """The one ending of a claimed job: complete, fail, abandon, a take-over that gives up.

        state None: the claim was lost to another worker, whose work stands: only our staging goes.
        Otherwise, still holding the claim: remove every staging folder of the photo (ours is published,
        any other token's is a dead holder's late write), write the status record, release the claim.
        Then, whatever failed before, "delete means deleted" (docs/architecture.md "Job protocol")."""
        try:
            if state is None:
                self.storage.delete_prefix(claim.staging)
                return
            self.storage.delete_prefix(layout.staging_dir(claim.user, claim.image_id))
            attempts = claim.attempt if counted else claim.attempt - 1
            fields = fields or {}
            self.write_status(claim.user, claim.image_id, state, attempts, owner=self.owner, **fields)
            error = fields.get("error")
            self.release(claim, counted, error=error if isinstance(error, str) else None)
        finally:
            self._deleted_meanwhile(claim)

    def _deleted_meanwhile(self, claim: Claim) -> None:
        """The user deleted the photo while we worked: what we wrote belongs to nothing, so remove all of
        it. A delete removes the job file first and lists the other folders after it: while the job file is
        still there, our writes (all made before this look) come before that delete's listings."""
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

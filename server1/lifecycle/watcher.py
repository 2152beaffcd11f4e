"""The resized/ watcher: finds every user's pending jobs and invokes the endpoint once per job.

Cheap when idle: one listing of each user's resized/ per scan (studio.jobs.Scanner reads a
status record only for jobs it has not yet seen final). Once per job, even across restarts:
after a successful invocation a small record (layout.invocation) keeps the job file's mtime,
so a restarted Server1 does not invoke it again, while a job re-queued by a retry (new
mtime) is invoked anew. A failed invocation is tried again later with a growing pause; the
job protocol's claims make a duplicate harmless in the rare crash between invoking and
writing the record.

Invocations run on a small pool of their own (INVOKE_THREADS), never in the scheduler's tick:
each may wait up to Server2's INVOCATION_WAIT_SECONDS for its job, and a burst of them inside
the tick would outlast the scheduler's lease (docs/architecture.md "Endpoint lifecycle").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from studio import layout
from studio.jobs import Jobs, Scanner, iso
from studio.storage import NotFound, Storage, StorageError

log = logging.getLogger(__name__)

# SageMaker cuts a real-time invocation at 60 s, and InvokeEndpoint's documentation asks for a 70 s
# socket timeout for answers that take 50-60 s (API_runtime_InvokeEndpoint); 80 s leaves a margin.
INVOKE_READ_TIMEOUT = 80
RUNTIME_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 2}, connect_timeout=5, read_timeout=INVOKE_READ_TIMEOUT
)
MAX_RETRY_PAUSE = 300.0
INVOKE_THREADS = 8  # invocations in flight at once (one endpoint instance serves them together)


class InvokeError(Exception):
    """The endpoint (or INFERENCE_URL) did not accept the job; the message says why."""


class Invoker(Protocol):
    target: str

    def invoke(self, user: str, image_id: str) -> None: ...


def _body(user: str, image_id: str) -> bytes:
    return json.dumps({"user": user, "image": image_id}).encode()


class SageMakerInvoker:
    """sagemaker-runtime InvokeEndpoint; AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME is honoured by boto3."""

    def __init__(self, endpoint: str, component: str | None = None, client: Any = None) -> None:
        self.endpoint, self.component = endpoint, component
        self.client = client or boto3.client("sagemaker-runtime", config=RUNTIME_CONFIG)
        self.target = f"endpoint {endpoint!r}" + (f" (inference component {component!r})" if component else "")

    def invoke(self, user: str, image_id: str) -> None:
        extra = {"InferenceComponentName": self.component} if self.component else {}
        try:
            answer = self.client.invoke_endpoint(
                EndpointName=self.endpoint,
                ContentType="application/json",
                Accept="application/json",
                Body=_body(user, image_id),
                **extra,
            )
            answer["Body"].read()
        except (ClientError, BotoCoreError) as e:
            raise InvokeError(str(e)) from e


class HttpInvoker:
    """Local mode: POST INFERENCE_URL/invocations on Server2 directly."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.rstrip("/") + "/invocations"
        self.target = self.url
        self.session = requests.Session()

    def invoke(self, user: str, image_id: str) -> None:
        try:
            answer = self.session.post(
                self.url,
                data=_body(user, image_id),
                headers={"Content-Type": "application/json"},
                timeout=(5, INVOKE_READ_TIMEOUT),
            )
        except requests.RequestException as e:
            raise InvokeError(str(e)) from e
        if answer.status_code >= 400:
            raise InvokeError(f"HTTP {answer.status_code}: {answer.text[:200]}")


@dataclass(frozen=True)
class PendingJob:
    user: str
    image_id: str
    mtime: float  # of the job file: a retry re-publishes it with a new one


class Watcher:
    def __init__(
        self,
        storage: Storage,
        users: list[str],
        invoker: Invoker | None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 5.0,
    ) -> None:
        self.storage = storage
        self.users = list(users)
        self.invoker = invoker
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.scanner = Scanner(Jobs(storage, owner="server1-watcher", clock=clock))
        self.invocations = 0
        self.error: str | None = None
        self._invoked: dict[tuple[str, str], float] = {}  # job -> job-file mtime it was invoked for
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # job -> (failures, retry at)
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # the tick vs the pool's threads
        self._settled = threading.Condition(self._lock)  # nothing in flight
        self._pool = ThreadPoolExecutor(INVOKE_THREADS, thread_name_prefix="lifecycle-invoke")

    def scan(self) -> list[PendingJob]:
        """Every user's unfinished jobs, oldest first per user."""
        pending: list[PendingJob] = []
        scanned: set[str] = set()
        for user in self.users:
            try:
                entries = self.scanner.pending_entries(user)
            except StorageError as e:
                self._error(f"cannot list the jobs of {user!r}: {e}")
                continue
            scanned.add(user)
            pending.extend(PendingJob(user, image_id, entry.mtime) for image_id, entry in entries)
        self._forget_finished(scanned, {(j.user, j.image_id) for j in pending})
        return pending

    def _forget_finished(self, scanned: set[str], pending: set[tuple[str, str]]) -> None:
        """Drop the records of jobs that finished (or were deleted) since we invoked them."""
        with self._lock:
            done = [j for j in self._invoked if j[0] in scanned and j not in pending and j not in self._in_flight]
            for job in [j for j in self._failures if j[0] in scanned and j not in pending]:
                del self._failures[job]
        for job in done:
            try:
                self.storage.delete(layout.invocation(*job))
            except StorageError as e:
                log.warning("cannot remove the invocation record of %s/%s: %s", *job, e)
                continue
            with self._lock:
                self._invoked.pop(job, None)

    def invoke(self, pending: list[PendingJob]) -> None:
        """Hand each pending job not yet invoked (or due for another try) to the pool; returns at once."""
        if self.invoker is None:
            return  # local mode without INFERENCE_URL: Server2's poller takes the jobs
        for job in pending:
            key = (job.user, job.image_id)
            with self._lock:
                if key in self._in_flight or self._invoked.get(key) == job.mtime:
                    continue
                if self.clock() < self._failures.get(key, (0, 0.0))[1]:
                    continue
                self._in_flight.add(key)
            self._pool.submit(self._invoke, self.invoker, job)

    def _invoke(self, invoker: Invoker, job: PendingJob) -> None:
        """One job's invocation, on the pool."""
        key = (job.user, job.image_id)
        try:
            self._invoke_once(invoker, job)
        except Exception:  # else the pool would keep it to itself
            log.exception("invoking %s/%s failed", *key)
        finally:
            with self._lock:
                self._in_flight.discard(key)
                if not self._in_flight:
                    self._settled.notify_all()

    def _invoke_once(self, invoker: Invoker, job: PendingJob) -> None:
        key = (job.user, job.image_id)
        try:
            recorded = self._recorded(job)
            if not recorded:
                invoker.invoke(job.user, job.image_id)
        except (InvokeError, StorageError) as e:
            with self._lock:
                failures = self._failures.get(key, (0, 0.0))[0]
                pause = min(self.poll_seconds * 2**failures, MAX_RETRY_PAUSE)
                self._failures[key] = (failures + 1, self.clock() + pause)
            self._error(f"cannot invoke {invoker.target} for {job.user}/{job.image_id}: {e}")
            return
        with self._lock:
            if not recorded:
                self.invocations += 1
                self.error = None
            self._failures.pop(key, None)
            self._invoked[key] = job.mtime
        if not recorded:  # still in flight: _forget_finished leaves the record alone until it is written
            try:
                self.storage.write_json(layout.invocation(*key), {"mtime": job.mtime, "invoked_at": iso(self.clock())})
            except StorageError as e:
                log.warning("cannot record the invocation of %s/%s: %s", *key, e)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until no invocation is in flight (tests and the simulation step through time)."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._in_flight, timeout)

    def stop(self) -> None:
        """Drop the invocations not yet started; those under way end with their requests."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _recorded(self, job: PendingJob) -> bool:
        """Was this job (this version of its file) invoked before, maybe by an earlier process?"""
        try:
            record = self.storage.read_json(layout.invocation(job.user, job.image_id))
        except NotFound:
            return False
        except ValueError:
            return False  # unreadable record: invoking again is harmless
        return isinstance(record, dict) and record.get("mtime") == job.mtime

    def _error(self, message: str) -> None:
        if message != self.error:
            log.warning("%s", message)
        self.error = message

    def health(self) -> dict:
        return {
            "target": self.invoker.target if self.invoker else None,
            "invocations": self.invocations,
            "error": self.error,
        }

"""Endpoint lifecycle, resized/ watcher and model weights (issue 4): the interface the web app uses.

One process of the deployment leads (scheduler.Lease); its scheduler thread runs tick()
every QUEUE_POLL_SECONDS: scan every user's resized/, keep the GPU wanted while work is
pending and for SCALE_DOWN_AFTER_SECONDS after the last of it (or after a login), step
the scaler towards that, and invoke the endpoint for new jobs once it serves. While the
GPU is off and nothing happens it looks every IDLE_POLL_FACTOR x QUEUE_POLL_SECONDS: a
cold start takes minutes anyway, and logins and uploads wake it at once. The leader
publishes its view (layout.system("lifecycle-status.json")) when it changes, so the other
processes answer worker_status() and health() from it; a login or upload handled by one of
those asks AWS for the GPU directly and the leader sees it up and counts that as activity.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from server1.lifecycle import scaler as scaling
from server1.lifecycle.config import LifecycleConfig
from server1.lifecycle.scheduler import Lease, Scheduler
from server1.lifecycle.watcher import HttpInvoker, Invoker, SageMakerInvoker, Watcher
from server1.lifecycle.weights import Weights, model_files, settings_sam_sizes
from studio import layout
from studio.jobs import iso
from studio.storage import Storage, StorageError

log = logging.getLogger(__name__)

IDLE_POLL_FACTOR = 4
NUDGE_SECONDS = 600.0  # how long a standby process keeps asking for the GPU after a login/upload
STATUS_CACHE_SECONDS = 2.0


class Lifecycle:
    def __init__(
        self,
        storage: Storage,
        users: list[str],
        *,
        config: LifecycleConfig | None = None,
        clock: Callable[[], float] = time.time,
        sagemaker_client: object | None = None,
        runtime_client: object | None = None,
        lease_seconds: float = 60.0,
    ) -> None:
        self.storage = storage
        self.users = users
        self.config = cfg = config or LifecycleConfig.from_env()
        self.clock = clock
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.weights = Weights(
            cfg.models_dir,
            model_files(cfg.model_manifest, cfg.model_base_url, settings_sam_sizes(storage, users)),
            cfg.skip_model_download,
        )
        self.scaler: scaling.Scaler | None = None
        self.endpoint_api: scaling.EndpointApi | None = None
        invoker: Invoker | None = None
        if cfg.endpoint:
            client = sagemaker_client or scaling.sagemaker_client()
            if cfg.inference_component:
                self.endpoint_api = scaling.ComponentApi(client, cfg.inference_component)
            else:
                self.endpoint_api = scaling.VariantApi(client, cfg.endpoint, cfg.variant)
            self.scaler = scaling.Scaler(self.endpoint_api, clock, cfg.poll_seconds)
            invoker = SageMakerInvoker(cfg.endpoint, cfg.inference_component, runtime_client)
        elif cfg.inference_url:
            invoker = HttpInvoker(cfg.inference_url)
        self.watcher = Watcher(storage, users, invoker, clock, cfg.poll_seconds)
        self.lease = Lease(storage, self.owner, lease_seconds, clock)
        self.scheduler = Scheduler(self.lease, self.tick, self.weights.start, lease_seconds / 2)
        self._status_key = layout.system("lifecycle-status.json")
        self._last_active: float | None = None
        self._login_at: float | None = None
        self._status = "off" if self.scaler else "ready"
        self._published: dict | None = None
        self._view: dict = {}
        self._cached: tuple[float, dict] | None = None
        self._nudge: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- the web app's interface -------------------------------------------------------
    def start(self) -> None:
        """Start the background work (weights check, one scheduler per deployment)."""
        self.scheduler.start()

    def stop(self) -> None:
        """Stop background threads (tests, shutdown)."""
        self._stopping.set()
        self.weights.stop()
        self.scheduler.stop()

    def notify_login(self) -> None:
        """A user logged in: bring the endpoint up."""
        self._login_at = self.clock()
        self._wake()

    def notify_work(self) -> None:
        """A new job was just written: look at the queue now rather than at the next poll."""
        self._wake()

    def worker_status(self) -> str:
        """'off' | 'starting' | 'ready' | 'busy' — shown in the UI header."""
        if self.lease.held:
            return self._status
        return str(self._shared().get("worker", "off"))

    def health(self) -> dict:
        """JSON-able state for /healthz (endpoint state, scaler errors, model files); no secrets."""
        if self.lease.held:
            return {"role": "leader", **self._view_now()}
        return {"role": "standby", **self._shared()}

    # -- the leader's work ----------------------------------------------------------------
    def tick(self) -> float:
        """One round; returns the seconds until the next."""
        cfg = self.config
        now = self.clock()
        pending = self.watcher.scan()
        if self._login_at is not None:
            self._last_active = max(self._last_active or self._login_at, self._login_at)
            self._login_at = None
        if pending:
            self._last_active = now
        want = int(self._last_active is not None and now - self._last_active < cfg.scale_down_after)
        if self.scaler is None:
            phase = "ready"
        else:
            if self.scaler.step(want):
                self._last_active, want = now, 1
            phase = self.scaler.phase(want)
        if phase == "ready" and pending:
            self.watcher.invoke(pending)
        self._status = "busy" if phase == "ready" and pending else phase
        self._publish(len(pending))
        idle = self.scaler is not None and not want and not pending and phase == "off"
        return cfg.poll_seconds * (IDLE_POLL_FACTOR if idle else 1)

    def _view_now(self, pending: int | None = None) -> dict:
        if pending is not None:
            self._view = {
                "mode": "sagemaker" if self.scaler else "local",
                "worker": self._status,
                "pending": pending,
                "endpoint": self.scaler.health() if self.scaler else None,
                "invocations": self.watcher.health(),
            }
        return {**self._view, "weights": self.weights.health()}

    def _publish(self, pending: int) -> None:
        """Share the leader's view with the other processes when it changed."""
        view = self._view_now(pending)
        if view == self._published:
            return
        try:
            self.storage.write_json(self._status_key, {**view, "leader": self.owner, "updated_at": iso(self.clock())})
            self._published = view
        except StorageError as e:
            log.warning("cannot publish the lifecycle status: %s", e)

    # -- standby processes ------------------------------------------------------------------
    def _shared(self) -> dict:
        now = time.monotonic()
        if self._cached and now - self._cached[0] < STATUS_CACHE_SECONDS:
            return self._cached[1]
        try:
            view = self.storage.read_json(self._status_key)
        except (StorageError, ValueError):
            view = None
        if not isinstance(view, dict):
            view = {"worker": "off", "error": "no lifecycle status published yet"}
        self._cached = (now, view)
        return view

    def _wake(self) -> None:
        if self.lease.held:
            self.scheduler.wake.set()
        elif self.endpoint_api is not None and not (self._nudge and self._nudge.is_alive()):
            self._nudge = threading.Thread(target=self._ask_for_gpu, name="lifecycle-nudge", daemon=True)
            self._nudge.start()

    def _ask_for_gpu(self) -> None:
        """A standby's login/upload: ask AWS for the GPU until it is wanted (the leader then keeps it)."""
        assert self.endpoint_api is not None
        nudger = scaling.Scaler(self.endpoint_api, time.time, self.config.poll_seconds)
        deadline = time.monotonic() + NUDGE_SECONDS
        while time.monotonic() < deadline and not self._stopping.is_set():
            nudger.step(1)
            if nudger.capacity is not None and nudger.capacity.desired >= 1 and nudger.capacity.state == "InService":
                return
            self._stopping.wait(self.config.poll_seconds)


__all__ = ["Lifecycle", "LifecycleConfig"]

"""Lifecycle: the tick that the leading process runs and the answers every process gives (the package's
docstring says what it does); the scheduler, watcher, scaler and weights it ties together live beside it."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from server1.lifecycle.config import LifecycleConfig
from server1.lifecycle.scaler import Scaler
from server1.lifecycle.scheduler import Lease, Scheduler
from server1.lifecycle.watcher import HttpInvoker, Invoker, SageMakerInvoker, Watcher
from server1.lifecycle.weights import ModelFile, Weights, model_files, settings_sam_models
from studio import layout, sagemaker
from studio.errors import ConfigError
from studio.jobs import iso
from studio.modelfiles import SAM_MODELS, ModelChoice
from studio.storage import Storage, StorageError

log = logging.getLogger(__name__)

IDLE_POLL_FACTOR = 4
# A login keeps the GPU wanted until it is ready, for at most this long: provisioning, the image
# pull and the container's start-up health check (deploy/stack.yaml StartupTimeoutSeconds) together.
MAX_WARMING_SECONDS = 1800.0
NUDGE_SECONDS = 600.0  # how long a standby process keeps asking for the GPU after a login/upload
STATUS_CACHE_SECONDS = 2.0
SETTINGS_SCAN_SECONDS = 60.0  # the leader's look for SAM models picked in the settings through another process
# Local mode's badge from Server2's reported state (no report: ready, as the poller takes jobs when it runs).
LOCAL_PHASES = {"loading": "starting", "error": "starting", "stopped": "off"}


class Lifecycle:
    def __init__(
        self,
        storage: Storage,
        users: list[str],
        *,
        config: LifecycleConfig,
        clock: Callable[[], float] = time.time,
        sagemaker_client: object | None = None,
        runtime_client: object | None = None,
        lease_seconds: float = 60.0,
    ) -> None:
        self.storage = storage
        self.users = users
        self.config = cfg = config
        self.clock = clock
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.endpoint_api = sagemaker.endpoint_api(cfg.endpoint, cfg.inference_component, cfg.variant, sagemaker_client)
        self._report: tuple[float, dict] | None = None  # Server2's report, as last read, and when
        self._sam = self.choice().sam  # the deployment's SAM model whose weights the leader fetches
        self.weights = Weights(cfg.models_dir, self._model_files(), cfg.skip_model_download)
        self.scaler: Scaler | None = None
        invoker: Invoker | None = None
        if self.endpoint_api is not None:
            self.scaler = Scaler(self.endpoint_api, clock, cfg.poll_seconds)
            assert cfg.endpoint is not None  # LifecycleConfig refuses a component without its endpoint
            invoker = SageMakerInvoker(cfg.endpoint, cfg.inference_component, runtime_client)
        elif cfg.inference_url:
            invoker = HttpInvoker(cfg.inference_url)
        self.watcher = Watcher(storage, users, invoker, clock, cfg.poll_seconds)
        self.lease = Lease(storage, self.owner, lease_seconds, clock)
        self.scheduler = Scheduler(self.lease, self.tick, self._lead, lease_seconds / 2)
        self._settings_scan_at = 0.0  # when the leader next looks for SAM sizes picked in other processes
        self._status_key = layout.system("lifecycle-status.json")
        self._last_active: float | None = None
        self._login_lock = threading.Lock()  # notify_login (request threads) vs tick (scheduler)
        self._login_at: float | None = None  # the latest login tick() has not taken yet
        self._warming_since: float | None = None  # a login waits for the GPU to be ready since then
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
        self.watcher.stop()

    def notify_login(self) -> None:
        """A user logged in: bring the endpoint up."""
        with self._login_lock:
            self._login_at = self.clock()
        self._wake()

    def notify_work(self) -> None:
        """A new job was just written: look at the queue now rather than at the next poll."""
        self._wake()

    def want_sam(self, sam_model: str) -> None:
        """A user saved the settings with this SAM: the leader fetches its weights now if missing (a
        standby's save reaches the leader's next look at the settings, SETTINGS_SCAN_SECONDS)."""
        if self.lease.held and sam_model in SAM_MODELS:
            self.weights.want(self._model_files({sam_model}))

    def weights_state(self, name: str) -> dict | None:
        """One model file's state ({"state", "error", "received", "size"}), None while not listed."""
        files = self.health().get("weights", {}).get("files", {})
        return files.get(name) if isinstance(files, dict) else None

    def worker_status(self) -> str:
        """'off' | 'starting' | 'ready' | 'busy' — shown in the UI header."""
        if self.lease.held:
            return self._status
        return str(self._shared().get("worker", "off"))

    def serving(self) -> dict:
        """The album's badge: {"worker": worker_status(), "device": "cuda" | "cpu" | None (not reported yet)}."""
        device = self.server2().get("device")
        return {"worker": self.worker_status(), "device": device if device in ("cuda", "cpu") else None}

    def server2(self) -> dict:
        """Server2's latest report (layout.server2_report()), {} before its first; read at most every
        STATUS_CACHE_SECONDS."""
        now = time.monotonic()
        if self._report and now - self._report[0] < STATUS_CACHE_SECONDS:
            return self._report[1]
        try:
            report = self.storage.read_json(layout.server2_report())
        except (StorageError, ValueError):  # NotFound is a StorageError: Server2 has not started yet
            report = None
        self._report = (now, report if isinstance(report, dict) else {})
        return self._report[1]

    def choice(self) -> ModelChoice:
        """The deployment's models: DETECT_MODEL and MATTE_MODEL, and the SAM model Server2 reports it chose;
        before its first report, the CPU rule for the device expected (a SageMaker endpoint is a GPU)."""
        choice = ModelChoice.from_env(gpu=self.endpoint_api is not None)
        reported = self.server2().get("sam_model")
        return replace(choice, sam=reported) if reported in SAM_MODELS else choice

    def models_in_use(self) -> dict[str, str]:
        """The deployment's models, by role, for the settings page ({"error": why} when misconfigured)."""
        try:
            choice = self.choice()
        except ConfigError as e:
            return {"error": str(e)}
        return {"sam": choice.sam, "detect": choice.detect, "matte": choice.matte}

    def health(self) -> dict:
        """JSON-able state for /healthz (endpoint state, scaler errors, model files); no secrets."""
        if self.lease.held:
            return {"role": "leader", **self._view_now()}
        return {"role": "standby", **self._shared()}

    # -- the leader's work ----------------------------------------------------------------
    def _model_files(self, sam_models: set[str] | frozenset[str] = frozenset()) -> list[ModelFile]:
        return model_files(self.config.model_manifest, self.config.model_base_url, self.choice(), sam_models)

    def _lead(self) -> None:
        """This process leads now: check and fetch the weights, the users' SAM models among them."""
        self._scan_settings()
        self.weights.start()

    def _scan_settings(self) -> None:
        self._settings_scan_at = self.clock() + SETTINGS_SCAN_SECONDS
        try:
            self.weights.want(self._model_files(settings_sam_models(self.storage, self.users)))
        except ConfigError as e:  # MODEL_MANIFEST changed since start-up
            log.error("model weights: %s", e)

    def _follow_server2(self) -> None:
        """Server2 reported a SAM model other than the one fetched so far: fetch its weights now."""
        try:
            sam = self.choice().sam
            if sam != self._sam:
                self._sam = sam
                self.weights.want(self._model_files())
        except ConfigError as e:
            log.error("model weights: %s", e)

    def tick(self) -> float:
        """One round; returns the seconds until the next."""
        cfg = self.config
        now = self.clock()
        if now >= self._settings_scan_at:
            self._scan_settings()
        self._follow_server2()
        pending = self.watcher.scan()
        with self._login_lock:
            login_at, self._login_at = self._login_at, None
        if login_at is not None and self._warming_since is None:
            self._warming_since = login_at
        if self._warming_since is not None and now - self._warming_since >= MAX_WARMING_SECONDS:
            waited = now - self._warming_since
            log.warning("the GPU is not ready %.0f s after a login; no longer keeping it up for that login", waited)
            self._warming_since = None
        if pending:
            self._last_active = now
        want = int(
            self._warming_since is not None
            or (self._last_active is not None and now - self._last_active < cfg.scale_down_after)
        )
        if self.scaler is None:
            phase = LOCAL_PHASES.get(str(self.server2().get("state")), "ready")
        else:
            if self.scaler.step(want):
                self._last_active, want = now, 1
            phase = self.scaler.phase(want)
        if phase == "ready" and self._warming_since is not None:
            # The warm-up window counts from the moment the GPU serves, not from the login: a cold
            # start (instance, image pull, weights) can take longer than the window itself.
            self._last_active = max(self._last_active or now, now, login_at or now)  # login_at: after `now`
            self._warming_since = None
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
                "server2": self.server2(),
            }
        # Live: invocations end on the watcher's pool, weights arrive on their own thread.
        return {**self._view, "invocations": self.watcher.health(), "weights": self.weights.health()}

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
        nudger = Scaler(self.endpoint_api, time.time, self.config.poll_seconds)
        deadline = time.monotonic() + NUDGE_SECONDS
        while time.monotonic() < deadline and not self._stopping.is_set():
            nudger.step(1)
            if nudger.capacity is not None and nudger.capacity.desired >= 1 and nudger.capacity.state == "InService":
                return
            self._stopping.wait(self.config.poll_seconds)


__all__ = ["Lifecycle", "LifecycleConfig"]

"""Server2's moving parts wired together: loading in the background, start and stop.

One Service lives in the gunicorn worker process (server2.app's create_app makes and starts it
there, so each worker process loads the models once). It opens
the storage and loads the models in a thread, so /ping can answer 503 with the reason until
everything is ready; a missing weight file or unreachable storage is retried (Server1 may still
be downloading the weights), any other loading error is final and shown by /ping, as is a GPU
that is required but not usable (server2/gpu_check.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from server2.config import Config
from server2.dispatch import Dispatcher
from server2.gpu_check import GpuUnavailable
from server2.idle_guard import IdleGuard
from server2.outcome import Stopping
from studio import layout
from studio.errors import ConfigError
from studio.jobs import Jobs, Scanner, iso
from studio.storage import Storage, StorageError, open_storage

if TYPE_CHECKING:
    from server2.models import Models

log = logging.getLogger(__name__)

# How often loading is tried again while weights are missing or storage is unreachable.
LOAD_RETRY_SECONDS = 5.0


class Service:
    def __init__(self, cfg: Config, guard: IdleGuard | None = None) -> None:
        self.config = cfg
        self.guard = guard
        self.worker_id = cfg.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.state = "loading"  # loading | error | ready
        self.reason = "loading the models"
        self.stopping = threading.Event()
        self.jobs: Jobs | None = None  # these two once ready
        self.dispatcher: Dispatcher | None = None
        self._stopper: threading.Thread | None = None
        self.abandoned = False  # a job was released on shutdown while its thread still runs
        self._storage: Storage | None = None  # for the report, once opened
        self._serving: dict = {}  # {"device", "sam_model"} once the device is picked

    # -- start -------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self._load, "server2-load")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    def _set(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            (log.info if state != "error" else log.error)("server2 %s: %s", state, reason)
            self._report(state)
        self.state, self.reason = state, reason

    def _report(self, state: str) -> None:
        """Tell Server1 what serves (layout.server2_report()): device, SAM model, and loading | error |
        ready | stopped. Best effort: Server1 keeps its last view when this cannot be written."""
        if self._storage is None or not self._serving:
            return
        report = {**self._serving, "state": state, "worker": self.worker_id, "updated_at": iso(time.time())}
        try:
            self._storage.write_json(layout.server2_report(), report)
        except StorageError as e:
            log.warning("cannot write Server2's report: %s", e)

    def _load(self) -> None:
        # Imported here: torch and friends take seconds, and the process must answer /ping meanwhile.
        from server2.models import Models, ModelsMissing, choose, local_models_dir, pick_device

        retry = True
        device: str | None = None
        while not self.stopping.is_set():
            if retry:
                try:
                    storage = self._storage = open_storage(self.config.shared_dir)
                    on_sagemaker = self.config.deployment.endpoint is not None
                    device = device or pick_device(self.config.device, on_sagemaker)  # decided (and logged) once
                    choice = choose(device)
                    if not self._serving:
                        self._serving = {"device": device, "sam_model": choice.sam}
                        self._report(self.state)
                    models = Models.load(
                        local_models_dir(self.config.models_dir, self.config.models_cache), device, choice
                    )
                except GpuUnavailable as e:  # cannot heal in this container: say so once, stop trying
                    self._set("error", str(e))
                    retry = False
                except (ModelsMissing, ConfigError, StorageError) as e:
                    self._set("error", f"{e} (trying again every {LOAD_RETRY_SECONDS:g} s)")
                except Exception as e:
                    log.exception("loading the models failed")
                    self._set("error", f"cannot load the models: {type(e).__name__}: {e}")
                    retry = False
                else:
                    self._run(storage, models)
                    return
            if self.guard:  # no work can happen while not ready: let the GPU go if Server1 is gone
                self.guard.tick()
            self.stopping.wait(LOAD_RETRY_SECONDS)

    def _run(self, storage: Storage, models: Models) -> None:
        # Imported here for the same reason as the models: the worker imports the pipeline.
        from server2 import embeddings
        from server2.poller import Poller
        from server2.worker import Worker

        try:  # once per checkpoint: later starts find them there
            embeddings.ensure_editor_models(storage, models)
        except Exception:  # the cut-outs do not need them: only Server1's own embeddings wait for a next start
            log.exception("exporting MobileSAM's encoder and decoder for the editor failed")

        self.jobs = Jobs(storage, owner=self.worker_id, lease_seconds=self.config.lease_seconds)
        self.dispatcher = Dispatcher(Worker(storage, self.jobs, models), self.stopping, self.guard)
        poller = Poller(Scanner(self.jobs), self.dispatcher, self.config.poll_seconds, self.stopping, self.guard)
        self._spawn(self.dispatcher.run, "server2-dispatch")
        self._spawn(poller.run, "server2-poll")
        self._set("ready", f"models on {models.device}; worker {self.worker_id}")

    # -- use ---------------------------------------------------------------------------
    def health(self) -> tuple[int, dict]:
        if self.stopping.is_set():
            return 503, {"status": "stopping", "reason": "the server is shutting down"}
        if self.state != "ready":
            return 503, {"status": self.state, "reason": self.reason}
        return 200, {"status": "ready"}

    def submit(self, user: str, image_id: str, resized_key: str) -> Future:
        """Hand a job to the dispatcher ahead of the poller's; raises Stopping once stopping."""
        if self.dispatcher is None:
            raise Stopping("not ready")
        return self.dispatcher.submit(user, image_id, resized_key, urgent=True)

    # -- stop ----------------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Stop taking work at once (from the SIGTERM handler); the current job gets stop_grace
        seconds to finish, else its claim is released uncounted, in a thread of its own."""
        if self._stopper is None:
            self.stopping.set()
            self._stopper = threading.Thread(target=self._finish_or_release, name="server2-stop", daemon=True)
            self._stopper.start()

    def stop(self) -> bool:
        """begin_stop() and wait until the current job has ended one way or the other; True when
        it was released and its thread is still inside the models."""
        self.begin_stop()
        assert self._stopper is not None
        self._stopper.join()
        return self.abandoned

    def _finish_or_release(self) -> None:
        if self.dispatcher is not None:
            self.abandoned = self.dispatcher.stop(self.config.stop_grace)
        self._report("stopped")
        log.info("server2 stopped")

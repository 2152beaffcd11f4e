"""Processing one job under the job protocol (studio.jobs): claim, segment, stage, complete.

Every change to the held claim (heartbeat renewals, complete, fail, a shutdown's release) happens
under one lock, so they never race each other for the claim's version. Outputs are written to
the claim's staging prefix and published by jobs.complete(); a job released on shutdown writes
nothing, whatever its segmentation thread does later.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from server2 import embeddings, pipeline
from server2.models import ModelSet
from server2.outcome import Outcome
from studio import image_files, layout, settings, upright
from studio.jobs import FINAL, Claim, Jobs
from studio.storage import Storage, StorageError

log = logging.getLogger(__name__)


class BadImage(Exception):
    """The image cannot be decoded; the message says why in words."""


def open_image(data: bytes, name: str, decode: Callable[[bytes], Image.Image] = upright.original) -> Image.Image:
    """The upright original (or, with decode=upright.work_copy, the models' copy): studio.upright, the one
    decoder of every path; BadImage naming the file, with the reason."""
    try:
        return decode(data)
    except upright.Unreadable as e:
        raise BadImage(f"{name}: {e}") from None


class Worker:
    def __init__(self, storage: Storage, jobs: Jobs, models: ModelSet) -> None:
        self.storage = storage
        self.jobs = jobs
        self.models = models
        self._lock = threading.Lock()
        self._current: Claim | None = None  # the claim held now; None once ended or abandoned

    # -- the job -----------------------------------------------------------------------
    def run(self, user: str, image_id: str, resized_key: str) -> Outcome:
        claim = self.jobs.claim(user, image_id)
        if claim is None:
            status = self.jobs.read_status(user, image_id)
            final = bool(status and status["state"] in FINAL)
            return Outcome("already-processed" if final else "in-progress", status=status)
        with self._lock:
            self._current = claim
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, beat_stop), name="server2-lease", daemon=True)
        beat.start()
        try:
            return self._process(claim, resized_key)
        finally:
            beat_stop.set()
            beat.join()

    def _process(self, claim: Claim, resized_key: str) -> Outcome:
        user, image_id = claim.user, claim.image_id
        log.info("%s/%s: processing (attempt %d)", user, image_id, claim.attempt)
        started = time.perf_counter()
        try:
            resized, original, source = self._read(claim, resized_key)
            read_s = time.perf_counter() - started
            prefs = settings.load(self.storage, user)
            result = pipeline.segment(self.models, resized, original, prefs)
            editing = embeddings.prepare(self.storage, self.models, result)
        except BadImage as e:
            return self._fail(claim, str(e), final=True)  # retrying cannot help
        except StorageError as e:
            return self._fail(claim, f"storage error: {e}")
        except Exception as e:
            log.exception("%s/%s: segmentation failed", user, image_id)
            return self._fail(claim, f"segmentation failed: {type(e).__name__}: {e}")

        with self._lock:
            if self._current is not claim:
                return Outcome("stopped", "released on shutdown")
            try:
                write_started = time.perf_counter()
                staged, names, editing = self._stage(claim, result, original, editing)
                timings = {
                    **result.timings,
                    "read": read_s,
                    "write": time.perf_counter() - write_started,
                    "total": time.perf_counter() - started,
                }
                fields = {
                    "clippings": names,
                    "method": result.method,
                    "model": result.sam_model or self.models.matte.name,  # the model that made the masks
                    "timings": {k: round(v, 4) for k, v in timings.items()},
                    "width": original.width,
                    "height": original.height,
                    "source": source,
                    "masks": len(result.masks),
                    "device": self.models.device,
                    **({"refined": result.refined} if result.sam_model else {}),
                    **editing,
                }
                if not self.jobs.complete(claim, staged, **fields):
                    log.warning(
                        "%s/%s: lost the claim before publishing; the new holder's result stands", user, image_id
                    )
                    return Outcome("in-progress", "another worker took the job over")
            except StorageError as e:  # e.g. a delete took the staged files: no bug, no traceback
                return self._fail_locked(claim, f"writing the results failed: storage error: {e}")
            except Exception as e:
                log.exception("%s/%s: writing the results failed", user, image_id)
                return self._fail_locked(claim, f"writing the results failed: {type(e).__name__}: {e}", final=False)
            finally:
                self._current = None
        log.info("%s/%s: done in %.2fs, %d clippings (%s)", user, image_id, timings["total"], len(names), result.method)
        return Outcome("done", status=self.jobs.read_status(user, image_id))

    def _read(self, claim: Claim, resized_key: str) -> tuple[Image.Image, Image.Image, str]:
        """(resized, original, source): the job file as the models see it (studio.upright.work_copy: what
        Server1 stored is that already), and the original from input/<id>.*, else the job file itself."""
        job, job_name = self.storage.read(resized_key), resized_key.rsplit("/", 1)[-1]
        resized = open_image(job, job_name, upright.work_copy)
        entry = image_files.original(self.storage, claim.user, claim.image_id)
        if entry is not None:
            try:
                return resized, open_image(self.storage.read(entry.key), entry.name), "input"
            except BadImage as e:
                log.warning(
                    "%s/%s: original unusable, clipping from the resized image: %s", claim.user, claim.image_id, e
                )
        return resized, open_image(job, job_name), "resized"

    def _stage(
        self, claim: Claim, result: pipeline.Result, original: Image.Image, embedding: dict | None
    ) -> tuple[dict[str, str], list[str], dict]:
        """Write every output under the claim's staging prefix: ({staging key: final key}, clipping names,
        the status fields for the editor)."""
        user, image_id = claim.user, claim.image_id
        staged: dict[str, str] = {}

        def put(final_key: str, data: bytes) -> None:
            temp = layout.staged(claim.staging, len(staged))
            self.storage.write(temp, data)
            staged[temp] = final_key

        for n, mask in enumerate(result.masks):
            mask_png = image_files.png(Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255))
            put(layout.mask(user, image_id, n), mask_png)
        names = []
        for clip in result.clippings:
            name = layout.crop_name(image_id, clip.mask_index, clip.component)
            put(layout.crop(user, name), image_files.png(clip.image))
            put(layout.crop_thumb(user, name), image_files.thumb_png(clip.image))
            names.append(name)
        editing = embeddings.stage(result, claim, names, embedding, put)
        put(layout.points(user, image_id), json.dumps(result.points).encode())
        for suffix, image in result.boxes.items():
            put(layout.boxes(user, image_id, suffix), image_files.png(image))
        if not image_files.has_thumb(self.storage, user, image_id):  # a job dropped into resized/ by other means
            put(layout.thumb(user, image_id, ".jpg"), image_files.thumb_jpeg(original))
        return staged, names, editing

    # -- endings -------------------------------------------------------------------------
    def _fail(self, claim: Claim, reason: str, final: bool = False) -> Outcome:
        with self._lock:
            if self._current is not claim:
                return Outcome("stopped", "released on shutdown")
            try:
                return self._fail_locked(claim, reason, final)
            finally:
                self._current = None

    def _fail_locked(self, claim: Claim, reason: str, final: bool = False) -> Outcome:
        log.warning("%s/%s: attempt %d failed: %s", claim.user, claim.image_id, claim.attempt, reason)
        state = self.jobs.fail(claim, reason, final=final)
        if state == "lost":
            return Outcome("in-progress", "another worker took the job over")
        return Outcome(
            "retry" if state == "queued" else "failed", reason, self.jobs.read_status(claim.user, claim.image_id)
        )

    def abandon(self) -> bool:
        """Give the current job back without using up an attempt (shutdown). True if there was one."""
        with self._lock:
            claim, self._current = self._current, None
            if claim is None:
                return False
            try:
                self.jobs.abandon(claim)
            except StorageError as e:
                log.warning(
                    "%s/%s: could not release on shutdown (its lease will run out): %s", claim.user, claim.image_id, e
                )
            return True

    def _heartbeat(self, claim: Claim, done: threading.Event) -> None:
        """Renew the lease every quarter lease while the job runs."""
        while not done.wait(self.jobs.lease_seconds / 4):
            with self._lock:
                if self._current is not claim:
                    return
                try:
                    if not self.jobs.renew(claim):
                        log.warning("%s/%s: lease lost to another worker", claim.user, claim.image_id)
                        return
                except StorageError as e:
                    log.warning("%s/%s: lease renewal failed, trying again: %s", claim.user, claim.image_id, e)

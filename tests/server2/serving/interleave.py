"""Delete means deleted (docs/architecture.md "Job protocol"), checked by interleaving: a user's delete, or a
clear all, injected between every two consecutive storage operations a real Server2 worker performs on one
photo, from its claim to its release, on the matte path and on the SAM path.

The worker is server2.worker.Worker with the real (small) test models; its storage is wrapped so that before
its n-th operation the action runs: whole, as Server1's route does (studio.image_files), or in step with the
worker from there on, one operation each, until the worker is done. After each run: nothing of the photo
under the user's root, no claim, no traceback logged, no exception out of the worker (the dispatcher would
log one), and the next photo is processed to `done`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from server2 import pipeline
from server2.models import Models
from server2.worker import Worker
from studio import image_files, layout
from studio.jobs import Jobs
from studio.storage import Storage
from tests.server2.serving.support import FAST, USER, drawing, encode, set_settings

ACTIONS: dict[str, Callable[[Storage, str], object]] = {
    "delete": lambda storage, image_id: image_files.delete(storage, USER, image_id),
    "clear all": lambda storage, image_id: image_files.delete_all(storage, USER),
}
WAYS = ("between", "beside")  # the whole action between two worker operations | in step with them


@dataclass
class Watched:
    """A storage that records every operation and calls before(n) ahead of the n-th (counted from 1)."""

    storage: Storage
    before: Callable[[int], None] = lambda n: None
    ops: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> object:
        method = getattr(self.storage, name)
        if name.startswith("_") or not callable(method):
            return method

        @functools.wraps(method)
        def operation(*args: object, **kwargs: object) -> object:
            self.ops.append(f"{name} {args[0] if args else ''}")
            self.before(len(self.ops))
            return method(*args, **kwargs)

        return operation


class InStep:
    """The user's action in a thread of its own, its storage operations alternating with the worker's, one
    each, once started: a delete running beside the worker at its pace (the soak's race: outputs moved in
    after the delete listed their folder)."""

    def __init__(self, storage: Storage, action: Callable[[Storage], object]) -> None:
        self.turn, self.taken, self.free, self.ended = (
            threading.Semaphore(0),
            threading.Semaphore(0),
            threading.Event(),
            threading.Event(),
        )
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, args=(Watched(storage, self._wait_turn), action))

    def _run(self, storage: Storage, action: Callable[[Storage], object]) -> None:
        try:
            action(storage)
        except Exception as e:  # noqa: BLE001 - reported by the check
            self.error = e
        finally:
            self.ended.set()
            self.taken.release()

    def _wait_turn(self, n: int) -> None:
        if n > 1:
            self.taken.release()  # its previous operation is done: the worker's turn
        if not self.free.is_set():
            self.turn.acquire()

    def step(self) -> None:
        """Before one of the worker's operations: one of the action's first."""
        if not self.thread.is_alive() and not self.ended.is_set():
            self.thread.start()
        if not self.ended.is_set():
            self.turn.release()
            self.taken.acquire()

    def finish(self) -> None:
        """The worker is done: the action runs to its end."""
        self.free.set()
        self.turn.release()
        if self.thread.is_alive():
            self.thread.join()


def upload(storage: Storage, image_id: str) -> None:
    """As Server1's ingest does: thumbnail, original, then the job file."""
    image = drawing()
    thumb = image_files.thumb_jpeg(image)
    image_files.publish(storage, USER, lambda: image_id, thumb, encode(image), ".png", encode(image))


def leftovers(storage: Storage, image_id: str) -> list[str]:
    """Every key of the photo under the user's root: its files in every folder, and its staging."""
    keys = [e.key for folder in layout.image_folders(USER) for e in image_files.files(storage, USER, image_id, folder)]
    return keys + [e.key for e in storage.list(layout.staging_dir(USER, image_id))]


class Races:
    """Runs one photo per interleaving on one storage, on one path (mode: matte | sam)."""

    def __init__(self, storage: Storage, models: Models, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.storage, self.models, self.n = storage, models, 0
        self.last: tuple[str, Watched] = ("", Watched(storage))
        self.action_error: Exception | None = None
        set_settings(storage, {"mode": mode, **FAST, "max_clippings": 2})  # few outputs: fewer interleavings
        # Segmentation reads nothing from storage and is the slow part: run once per path, then reused.
        segment = pipeline.segment
        cached: list[pipeline.Result] = []
        monkeypatch.setattr(
            pipeline, "segment", lambda *a, **k: cached[0] if cached else cached.append(segment(*a, **k)) or cached[0]
        )

    def run(self, at: int = 0, action: str = "delete", way: str = "between") -> tuple[str, Watched]:
        """Upload a photo and process it with the action injected before the worker's at-th storage operation
        (0: never), whole or in step (WAYS); (the image id, the worker's storage with the operations it saw)."""
        self.n += 1
        image_id = f"p{self.n:03d}"
        upload(self.storage, image_id)
        act = functools.partial(ACTIONS[action], image_id=image_id)
        beside = InStep(self.storage, act)
        before = beside.step if way == "beside" else lambda: act(self.storage)
        wrapped = Watched(self.storage, lambda n: before() if at and (n == at or way == "beside" and n > at) else None)
        self.last, self.action_error = (image_id, wrapped), None
        try:
            Worker(wrapped, Jobs(wrapped, "server2"), self.models).run(USER, image_id, layout.resized(USER, image_id))
        finally:
            beside.finish()
            self.action_error = beside.error
        return self.last

    def operations(self) -> list[str]:
        """The storage operations of one undisturbed job, claim to release (its photo is left done)."""
        image_id, wrapped = self.run()
        assert self.storage.read_json(layout.status(USER, image_id))["state"] == "done"
        return wrapped.ops

    def leaks(self, at: int, action: str, way: str, caplog: pytest.LogCaptureFixture) -> str | None:
        """What is wrong after one interleaving, in words; None when nothing is."""
        caplog.clear()
        raised = ""
        try:
            self.run(at, action, way)
        except Exception as e:  # noqa: BLE001 - the dispatcher would log it with its traceback
            raised = f"the worker raised {type(e).__name__}: {e}"
        image_id, wrapped = self.last
        if at > len(wrapped.ops):
            return None  # this run ended before that operation: the delete never ran
        left = leftovers(self.storage, image_id)
        tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
        after, _ = self.run()
        next_state = (self.storage.read_json(layout.status(USER, after)) or {}).get("state")
        problems = [
            raised,
            f"the {action} raised {self.action_error!r}" if self.action_error else "",
            f"left {sorted(left)}" if left else "",
            f"tracebacks logged: {tracebacks}" if tracebacks else "",
            f"the next photo ended {next_state}" if next_state != "done" else "",
        ]
        found = "; ".join(p for p in problems if p)
        return f"{action} {way} from op {at} ({wrapped.ops[at - 1]}): {found}" if found else None


def check_every_interleaving(
    storage: Storage, models: Models, mode: str, monkeypatch: pytest.MonkeyPatch, caplog, stride: int = 1
) -> None:
    caplog.set_level(logging.INFO)
    races = Races(storage, models, mode, monkeypatch)
    ops = races.operations()
    print(f"{mode}: {len(ops)} storage operations from claim to release:", *ops, sep="\n  ")
    points = list(range(1, len(ops) + 1, stride))
    runs = [(at, action, way) for way in WAYS for action in ACTIONS for at in points]
    problems = [p for run in runs if (p := races.leaks(*run, caplog))]
    assert not problems, f"{len(problems)} of {len(runs)} interleavings leaked:\n" + "\n".join(problems)

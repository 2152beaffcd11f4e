"""Real Server2 processes for the fault tests: started with the small test weights, killed
whole (gunicorn master and worker) with SIGKILL, and watched through their logs."""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from harness.server2 import Server2, kill_hard
from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage
from tests.server2.serving.support import add_image, drawing

# A job in well under a second on a CPU: BiRefNet's path, the fewest SAM points otherwise.
QUICK = {"mode": "matte", "points_per_side": 8, "crop_n_layers": 0, "min_area": 50}


class Servers2:
    """Server2 processes on one storage; logs kept for the whole test."""

    def __init__(self, folder: Path, shared: str, models: Path, **env: str) -> None:
        self.folder = folder
        self.env = {"SHARED_DIR": shared, "MODELS_DIR": str(models), "LEASE_SECONDS": "5", **env}
        self.started: list[Server2] = []

    def start(self) -> Server2:
        server = Server2(self.folder, self.env, module=True)
        self.started.append(server)
        server.wait_ready(timeout=180)
        return server

    def logs(self) -> str:
        return "\n".join(s.log() for s in self.started)

    def stop(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                kill_hard(server)


def add_jobs(storage: Storage, user: str, count: int, prefix: str, size: tuple[int, int] = (160, 120)) -> list[str]:
    ids = []
    for n in range(count):
        image_id = f"{prefix}{n:03d}"
        box = (20 + n % 30, 20, size[0] - 20, size[1] - 20 - n % 20)
        add_image(storage, image_id, drawing(*size, box=box), user=user)
        ids.append(image_id)
    return ids


def states(storage: Storage, user: str, ids: list[str]) -> dict[str, str]:
    jobs = Jobs(storage, "hardening-observer")
    return {i: (jobs.read_status(user, i) or {"state": "queued"})["state"] for i in ids}


def done_lines(logs: str) -> dict[str, int]:
    """How many times each user/image was logged as done."""
    counts: dict[str, int] = {}
    for match in re.finditer(r"(\w+/[\w.-]+): done in", logs):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


@dataclass
class Sampler:
    """Samples the storage while workers run: what is visible must never be partial.

    Each round reads the status records first, then lists the outputs: a `done` record must
    have all its clippings already visible (they are published before it), and every visible
    clipping and mask must decode completely."""

    storage: Storage
    users: list[str]
    rounds: int = 0
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        jobs = Jobs(self.storage, "hardening-sampler")
        while not self._stop.is_set():
            for user in self.users:
                try:
                    self._round(jobs, user)
                except Exception as e:  # the sampler itself must not die silently
                    self.problems.append(f"sampler error: {type(e).__name__}: {e}")
            self.rounds += 1
            self._stop.wait(0.05)

    def _round(self, jobs: Jobs, user: str) -> None:
        records = {}
        for entry in self.storage.list(layout.output_dir(user, "status")):
            image_id = entry.name.removesuffix(".json")
            records[image_id] = jobs.read_status(user, image_id)
        crops = {e.name: e.key for e in self.storage.list(layout.output_dir(user, "crops"))}
        for image_id, record in records.items():
            if record and record["state"] == "done":
                missing = [c for c in record["clippings"] if c not in crops]
                if missing:
                    self.problems.append(f"{user}/{image_id} done but clippings not visible: {missing}")
        for key in list(crops.values())[-6:]:  # the newest few: decode completely
            try:
                data = self.storage.read(key)
            except Exception:
                continue  # replaced or deleted meanwhile (a take-over's clean-up)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            except Exception as e:
                self.problems.append(f"{key} visible but not a complete PNG: {e}")

"""Real Server2 processes (server2/serve or python -m server2 under gunicorn) on 127.0.0.1, and the
images and storage helpers the serving tests share."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image, ImageDraw

from harness import REPO
from harness.images import encode
from harness.server2 import Server2
from studio import layout, settings
from studio.jobs import Jobs
from studio.storage import Storage

USER = "alice"
# Fast jobs on a CPU: the fewest SAM points, no crop layers.
FAST = {"points_per_side": 8, "crop_n_layers": 0, "min_area": 50}


def gated(gate: Path) -> dict[str, str]:
    """A server's environment in which every job waits for the file gate to exist (gated/sitecustomize.py)."""
    return {"PYTHONPATH": f"{Path(__file__).with_name('gated')}{os.pathsep}{REPO}", "TEST_JOB_GATE": str(gate)}


class Servers:
    """Starts servers; kills whatever is still running at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Server2] = []

    def start(self, module: bool = False, **env: str) -> Server2:
        server = Server2(self.folder, env, module)
        self.started.append(server)
        return server

    def kill_all(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)


# -- images and storage -------------------------------------------------------------------
def drawing(width: int = 400, height: int = 300, box: tuple[int, int, int, int] = (100, 75, 300, 225)) -> Image.Image:
    """A dark rectangle on white, filled with one-pixel stripes: detail only the full-size image has."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    for x in range(x0, x1):
        draw.line([(x, y0), (x, y1 - 1)], fill=(40, 40, 160) if x % 2 else (10, 10, 60))
    return image


def add_image(storage: Storage, image_id: str, original: Image.Image | None, user: str = USER) -> None:
    """Upload as Server1 does: the original in input/, then the half-size job file in resized/."""
    base = original or drawing()
    if original is not None:
        storage.write(layout.input_file(user, image_id, ".png"), encode(original))
    resized = base.resize((base.width // 2, base.height // 2), Image.Resampling.LANCZOS)
    storage.write(layout.resized(user, image_id), encode(resized))


def set_settings(storage: Storage, changes: dict, user: str = USER) -> None:
    settings.save(storage, user, changes)


def wait_status(
    storage: Storage,
    image_id: str,
    states: tuple[str, ...] = ("done", "failed"),
    timeout: float = 120,
    user: str = USER,
) -> dict:
    jobs = Jobs(storage, "test")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jobs.read_status(USER, image_id)
        if record and record["state"] in states:
            return record
        time.sleep(0.1)
    raise TimeoutError(f"{image_id}: no status in {states} within {timeout}s (last: {record})")


def outputs_of(storage: Storage, image_id: str, user: str = USER) -> list[str]:
    """Every worker-made file of the image: masks, crops, thumbnails, points, boxes."""
    found = []
    for folder in layout.image_folders(user):
        if folder.endswith(("/masks/", "/crops/", "/points/", "/boxes/", "/thumbs/")):
            found += [e.key for e in storage.list(folder) if layout.owned_by(image_id, folder, e.name)]
    return sorted(found)

"""One Albums shared by many request threads and the event pollers: each user's caches are
updated by one call at a time, so concurrent calls agree and never redo each other's work."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from server1.albums import Albums
from studio import layout
from studio.jobs import Jobs
from studio.storage import FileStorage

THREADS = 16
IMAGES = 40


class SlowStatusStorage(FileStorage):
    """Counts status record reads, each taking a little while as on S3, so threads overlap."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.status_reads: list[str] = []
        self._count_lock = threading.Lock()

    def read(self, key: str) -> bytes:
        if "/output/status/" in key:
            with self._count_lock:
                self.status_reads.append(key)
            time.sleep(0.002)  # the latency of one storage request, not a wait for a condition
        return super().read(key)


def make_album(storage: FileStorage, jobs: Jobs, user: str) -> None:
    for n in range(IMAGES):
        image_id = f"img{n:03d}"
        storage.write(layout.input_file(user, image_id, ".jpg"), b"jpeg")
        storage.write(layout.resized(user, image_id), b"png")
        jobs.write_status(user, image_id, "done", 1, clippings=[layout.crop_name(image_id, 0, 0)])


def call_together(calls: list) -> list:
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_calls_read_each_status_once_and_agree(tmp_path: Path) -> None:
    storage = SlowStatusStorage(tmp_path)
    jobs = Jobs(storage, owner="test")
    for user in ("alice", "bob"):
        make_album(storage, jobs, user)
    expected = {user: Albums(FileStorage(tmp_path), jobs).images(user) for user in ("alice", "bob")}
    storage.status_reads.clear()

    albums = Albums(storage, jobs)
    calls = [lambda u=user: (u, albums.images(u)) for user in ("alice", "bob") for _ in range(THREADS // 2)]
    calls += [lambda: ("alice-json", albums.images_json("alice"))]
    results = call_together(calls)

    for who, got in results:
        if who == "alice-json":
            assert json.loads(got) == {"images": expected["alice"]}
        else:
            assert got == expected[who]
    # Without the per-user lock every thread reads every record again (up to THREADS x IMAGES).
    assert sorted(storage.status_reads) == sorted(
        layout.status(user, f"img{n:03d}") for user in ("alice", "bob") for n in range(IMAGES)
    )


def test_a_change_made_while_others_read_is_seen_by_the_next_call(tmp_path: Path) -> None:
    storage = SlowStatusStorage(tmp_path)
    jobs = Jobs(storage, owner="test")
    make_album(storage, jobs, "alice")
    albums = Albums(storage, jobs)

    def change() -> tuple[str, list]:
        jobs.write_status("alice", "img000", "failed", 3, error="boom")
        return "change", []

    call_together([lambda: ("read", albums.images("alice")) for _ in range(THREADS - 1)] + [change])
    images = {image["id"]: image for image in albums.images("alice")}
    assert images["img000"]["status"]["state"] == "failed" and images["img000"]["clippings"] == []
    assert json.loads(albums.images_json("alice")) == {"images": Albums(storage, jobs).images("alice")}

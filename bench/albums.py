"""Figure 2: GET /api/images for 2,000 images x 5 clippings, filesystem and S3 (moto) backends.

The album is written with the layout's keys and the job protocol's status records (state
`done`, clippings listed), as Server1's ingest and Server2 leave them; file contents are a
few bytes (the listing never reads them). Server time: the real app through Flask's test
client. Storage calls per request are counted by wrapping the app's Storage instance, for
2,000 x 5 and 2,000 x 1, to show they do not grow with the number of clippings. Baseline,
same run: a naive listing that lists each image's crops and reads every status record.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import wraps

from bench.common import QUICK, Row, median, moto, reps, timed, verdict
from harness.aws import new_bucket
from harness.server1 import USERS, csrf_of
from server1 import create_app
from server1.config import Config
from server1.ingest import new_id
from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage, open_storage

IMAGES = 100 if QUICK else 2000
# The moto server answers one request at a time (harness/aws.py) and scans the whole bucket
# for each LIST: 2,000 x 5 there takes many minutes to write and to list naively, so S3 gets fewer.
IMAGES_S3 = 50 if QUICK else 500
CLIPPINGS = 5
# The primitives; read_json/write_json and S3's read -> read_versioned count once (outermost call).
METHODS = (
    "read",
    "write",
    "exists",
    "list",
    "list_dir",
    "delete",
    "delete_prefix",
    "move",
    "read_versioned",
    "create_exclusive",
    "replace_if",
    "read_json",
    "write_json",
)


class CallCounter:
    """Counts the calls made on one Storage instance (the app's), by method."""

    def __init__(self, storage: Storage) -> None:
        self.counts: Counter[str] = Counter()
        self._depth = threading.local()
        for name in METHODS:
            setattr(storage, name, self._wrap(name, getattr(storage, name)))

    def _wrap(self, name: str, method: Callable) -> Callable:
        @wraps(method)
        def counted(*args: object, **kwargs: object) -> object:
            depth = getattr(self._depth, "n", 0)
            if depth == 0:
                self.counts[name] += 1
            self._depth.n = depth + 1
            try:
                result = method(*args, **kwargs)
                return list(result) if name == "list" else result  # a generator's work happens here
            finally:
                self._depth.n = depth

        return counted

    def total(self) -> int:
        return sum(self.counts.values())

    def take(self) -> Counter[str]:
        out, self.counts = self.counts, Counter()
        return out


def populate(storage: Storage, user: str, images: int, clippings: int, thumbs: bool) -> None:
    """thumbs=False leaves out the thumbnails (neither listing looks at them) to save S3 time."""
    jobs = Jobs(storage, owner="bench-server2")

    def one(_: int) -> None:
        image_id = new_id("IMG_0001.jpg")
        if thumbs:
            storage.write(layout.thumb(user, image_id), b"thumb")
        storage.write(layout.input_file(user, image_id, ".jpg"), b"original")
        storage.write(layout.resized(user, image_id), b"resized")
        names = [layout.crop_name(image_id, 0, k) for k in range(clippings)]
        for name in names:
            storage.write(layout.crop(user, name), b"clipping")
            if thumbs:
                storage.write(layout.crop_thumb(user, name), b"thumb")
        jobs.write_status(user, image_id, "done", 1, clippings=names, method="sam")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(images)))


def naive_images(storage: Storage, jobs: Jobs, user: str) -> bytes:
    """The obvious listing: every original, its status read anew, its crops listed."""
    _, originals = storage.list_dir(layout.input_dir(user))
    out = []
    for entry in originals:
        image_id, _ = layout.split_ext(entry.name)
        record = jobs.read_status(user, image_id) or {}
        crops = sorted(storage.list(layout.output_dir(user, "crops") + image_id + "_"), key=lambda e: -e.size)
        out.append(
            {
                "id": image_id,
                "status": {"state": record.get("state", "queued"), "error": record.get("error")},
                "original_url": "/files/" + entry.key,
                "thumb_url": "/files/" + layout.thumb(user, image_id),
                "clippings": [
                    {"url": "/files/" + e.key, "thumb_url": "/files/" + layout.crop_thumb(user, e.name)} for e in crops
                ],
            }
        )
    return json.dumps({"images": out}).encode()


def _logged_in(root: str) -> tuple[object, CallCounter, Storage]:
    app = create_app(
        Config.from_env(shared_dir=root, users=USERS, secret_key="bench-" + "0" * 32, start_background=False)
    )
    storage = app.extensions["server1"].storage
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
    assert answer.status_code == 303, answer.status_code
    return client, CallCounter(storage), storage


def measure(root: str, backend: str, images: int, naive_runs: int) -> dict:
    """Cold (first) and warm requests of a fresh app, their storage calls, and the naive baseline."""
    client, counter, storage = _logged_in(root)
    counter.take()

    answers: list = []

    def get() -> None:  # server time: the JSON is parsed outside the timing
        answers.append(client.get("/api/images"))

    def check() -> None:
        answer = answers.pop()
        assert answer.status_code == 200 and len(answer.get_json()["images"]) == images, answer.status_code
        answers.clear()

    cold = timed(get, 1)[0]
    check()
    cold_calls = counter.take()
    warm = timed(get, reps(15 if backend == "fs" else 7, 3))
    warm_calls = counter.take()
    check()
    runs = len(warm)
    jobs = Jobs(storage, owner="bench")
    naive = timed(lambda: naive_images(storage, jobs, "alice"), naive_runs)
    naive_calls = counter.take()
    return {
        "cold": cold,
        "cold_calls": cold_calls,
        "warm": median(warm),
        "warm_calls": Counter({k: v // runs for k, v in warm_calls.items()}),
        "naive": median(naive),
        "naive_calls": Counter({k: v // len(naive) for k, v in naive_calls.items()}),
    }


def _calls(counts: Counter[str]) -> str:
    return " + ".join(f"{n:,} {name}" for name, n in sorted(counts.items())) or "0"


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-albums-") as tmp:
        roots = {"fs": (f"{tmp}/shared", IMAGES), "s3": (f"s3://{new_bucket(moto().url)}/shared", IMAGES_S3)}
        results: dict[str, dict] = {}
        for backend, (root, images) in roots.items():
            shape = f"{images:,}x{CLIPPINGS}"
            begin = time.monotonic()
            populate(open_storage(root), "alice", images, CLIPPINGS, thumbs=backend == "fs")
            populated = time.monotonic() - begin
            results[backend] = r = measure(root, backend, images, reps(3 if backend == "fs" else 1))
            note = f"calls/request {_calls(r['warm_calls'])}; naive {_calls(r['naive_calls'])}"
            target = "<= 50 ms" if backend == "fs" else ""
            rows.append(
                Row(
                    "2 albums",
                    f"GET /api/images {shape}, {backend}, warm",
                    r["warm"] * 1000,
                    "ms",
                    r["naive"] * 1000,
                    target,
                    verdict(r["warm"] <= 0.05) if target else None,
                    note,
                )
            )
            rows.append(
                Row(
                    "2 albums",
                    f"GET /api/images {shape}, {backend}, first request",
                    r["cold"] * 1000,
                    "ms",
                    r["naive"] * 1000,
                    "",
                    None,
                    f"calls {_calls(r['cold_calls'])} (reads each status once); populating took {populated:.0f} s",
                )
            )
        # The same album with one clipping per image: the call counts must not change.
        one = f"{tmp}/one"
        populate(open_storage(one), "alice", IMAGES, 1, thumbs=True)
        single = measure(one, "fs", IMAGES, 1)
        five, shape = results["fs"], f"{IMAGES:,}x{CLIPPINGS}"
        same = single["warm_calls"] == five["warm_calls"] and single["cold_calls"] == five["cold_calls"]
        rows.append(
            Row(
                "2 albums",
                f"storage calls per GET /api/images, {shape}, warm",
                five["warm_calls"].total(),
                "calls",
                five["naive_calls"].total(),
                "O(1) in clippings",
                verdict(same),
                f"{IMAGES:,}x1: {single['warm_calls'].total()} warm, {single['cold_calls'].total():,} first; "
                f"{shape}: {five['warm_calls'].total()} warm, {five['cold_calls'].total():,} first",
            )
        )
    return rows

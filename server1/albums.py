"""A user's album: every image with its status and clippings, from three folder listings.

Cost per call is O(1) storage listings (input/, resized/, output/status/) whatever the
number of images or clippings; status records are read only when their listing entry
(mtime, size) changed since the last call. Clipping URLs come from the status record's
"clippings" list (largest first, as the worker wrote it), never from listing crops/.

Up to 128 request threads and the event pollers call one Albums: each user's caches are read
and replaced under that user's lock, so two calls never interleave their updates.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable

from server1 import urls
from server1.ingest import display_name
from studio import image_files, layout
from studio.jobs import STATES, Jobs, iso
from studio.storage import UNKNOWN, Entry, NotFound, Storage


def _job_id(file_name: str) -> str | None:
    parsed = layout.job_from_resized(file_name)
    return parsed[0] if parsed else None


def _image_id(file_name: str) -> str | None:
    image_id, ext = layout.split_ext(file_name)
    try:
        return layout.check_name(image_id, "image id") if ext else None
    except layout.BadName:
        return None


class Albums:
    def __init__(self, storage: Storage, jobs: Jobs) -> None:
        self.storage = storage
        self.jobs = jobs
        # Per user, each rebuilt whole on every call so it never outgrows the album:
        self._ids: dict[str, dict[str, str | None]] = {}  # file key -> image id (None: not an image)
        self._records: dict[str, dict[str, tuple[tuple[float, int], dict | None]]] = {}  # id -> (stamp, status)
        self._objects: dict[str, dict[str, tuple[tuple, dict]]] = {}  # id -> (stamp, image object)
        self._times: dict[str, dict[str, Entry]] = {}  # folder -> file key -> entry with its time
        self._json: dict[str, tuple[list[dict], bytes]] = {}  # the last /api/images body and its images
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, user: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(user, threading.Lock())

    @staticmethod
    def _parse(entries: list[Entry], parse: Callable[[str], str | None], known: dict, fresh: dict) -> dict[str, Entry]:
        """{image id: entry}; file names are parsed once, then looked up in known."""
        out = {}
        for entry in entries:
            image_id = known[entry.key] if entry.key in known else parse(entry.name)
            fresh[entry.key] = image_id
            if image_id:
                out[image_id] = entry
        return out

    def _timed(self, user: str, folder: str) -> list[Entry]:
        """The folder's files with their times. Originals and job files are written once (an
        upload never overwrites, a retry changes the status record too), so a file's time is
        looked up once, not stat'ed on every call: on a filesystem that is most of the cost."""
        _, entries = self.storage.list_dir(folder, stat=False)
        known = self._times.setdefault(folder, {})
        fresh = {}
        for entry in entries:
            if entry.mtime == UNKNOWN:
                try:
                    entry = known.get(entry.key) or self.storage.info(entry.key)
                except NotFound:
                    continue  # deleted since the listing
            fresh[entry.key] = entry
        self._times[folder] = fresh
        return list(fresh.values())

    def _status_records(self, user: str, entries: dict[str, Entry]) -> dict[str, tuple[tuple[float, int], dict | None]]:
        cached = self._records.get(user, {})
        fresh = {}
        for image_id, entry in entries.items():
            stamp = (entry.mtime, entry.size)
            hit = cached.get(image_id)
            fresh[image_id] = hit if hit and hit[0] == stamp else (stamp, self.jobs.read_status(user, image_id))
        self._records[user] = fresh
        return fresh

    def images(self, user: str) -> list[dict]:
        """Every image of the user, newest first, as /api/images and /events show them."""
        with self._lock(user):
            return self._images(user)

    def _images(self, user: str) -> list[dict]:
        inputs = self._timed(user, layout.input_dir(user))
        resized = self._timed(user, layout.resized_dir(user))
        _, statuses = self.storage.list_dir(layout.output_dir(user, "status"))
        known = self._ids.get(user, {})
        ids: dict[str, str | None] = {}
        originals = self._parse(inputs, _image_id, known, ids)
        jobs = self._parse(resized, _job_id, known, ids)
        records = self._status_records(user, self._parse(statuses, _image_id, known, ids))
        self._ids[user] = ids
        # An image object is rebuilt only when one of its three files changed.
        cached = self._objects.get(user, {})
        fresh: dict[str, tuple[tuple, dict]] = {}
        for image_id in originals.keys() | jobs.keys():
            original, job = originals.get(image_id), jobs.get(image_id)
            stamp, record = records.get(image_id, (None, None))
            key = (original, job, stamp)
            hit = cached.get(image_id)
            fresh[image_id] = (
                hit if hit and hit[0] == key else (key, image_object(user, image_id, original, job, record))
            )
        self._objects[user] = fresh
        out = [image for _, image in fresh.values()]
        out.sort(key=lambda image: (image["created_at"], image["id"]), reverse=True)
        return out

    def images_json(self, user: str) -> bytes:
        """The /api/images body; encoded again only when an image object changed (encoding
        2,000 images costs more than listing them)."""
        with self._lock(user):
            current = self._images(user)
            last = self._json.get(user)
            if (
                last is None
                or len(last[0]) != len(current)
                or any(a is not b for a, b in zip(last[0], current, strict=True))
            ):
                last = (current, json.dumps({"images": current}, separators=(",", ":")).encode())
                self._json[user] = last
            return last[1]

    def find(self, user: str, image_id: str) -> tuple[str | None, str | None]:
        """(key of the original, key of the job file) of one image; None where absent."""
        original, job = (
            image_files.original(self.storage, user, image_id),
            image_files.job(self.storage, user, image_id),
        )
        return (original.key if original else None), (job.key if job else None)


def image_object(user: str, image_id: str, original: Entry | None, job: Entry | None, record: dict | None) -> dict:
    source = original or job
    assert source is not None  # an image is known by one of the two
    record = record or {}
    clippings = []
    for name in record.get("clippings") or []:  # before Server2's pass too: the user's hand-made ones
        try:
            clippings.append(urls.clipping(user, name))
        except layout.BadName:
            continue  # a name no worker of ours writes; never turn it into a URL
    return {
        "id": image_id,
        "name": display_name(image_id),
        "created_at": iso(source.mtime),
        "status": {
            "state": record.get("state", "queued"),
            "error": record.get("error"),
            "attempts": record.get("attempts", 0),
            "updated_at": record.get("updated_at"),
        },
        "original_url": urls.file_url(source.key),
        # Our ingest writes the thumbnail before the original; a job dropped into resized/
        # by other means has none, and its work copy stands in.
        "thumb_url": urls.file_url(layout.thumb(user, image_id) if original else source.key),
        "clippings": clippings,
        "zip_url": urls.zip_url(image_id) if clippings else None,
    }


def counts(album: list[dict]) -> dict[str, int]:
    states = Counter(image["status"]["state"] for image in album)
    return {state: states.get(state, 0) for state in STATES}

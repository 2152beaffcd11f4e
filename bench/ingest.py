"""Figure 1: ingest of a 12-MP JPEG and HEIC -> stored original + resized + thumbnail.

Measured in process (server1.ingest.ingest on a filesystem storage, this process pinned to
one core) and through the real endpoint (`python -m server1` on 127.0.0.1 pinned to one
core, POST /upload, time to the answer). Baseline, same run, same storage: full decode,
LANCZOS resize, PNG optimize=True of original and resized.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from functools import partial

from PIL import Image, ImageOps

from bench.common import QUICK, Row, encode, heic, median, one_core, photo, pin, reps, timed, verdict
from harness.server1 import Server
from server1 import ingest
from studio import layout
from studio.storage import FileStorage, Storage

SIZE = (1000, 750) if QUICK else (4000, 3000)
LABEL = f"{SIZE[0] * SIZE[1] / 1e6:.0f}-MP"
USER = "alice"


def naive_ingest(storage: Storage, user: str, file_name: str, data: bytes) -> str:
    """The obvious way: decode everything, LANCZOS, keep PNGs with optimize=True."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    resized = image.copy()
    resized.thumbnail((layout.RESIZED_MAX, layout.RESIZED_MAX), Image.Resampling.LANCZOS)
    thumb = resized.copy()
    thumb.thumbnail((layout.THUMB_MAX, layout.THUMB_MAX), Image.Resampling.LANCZOS)
    image_id = ingest.new_id(file_name)
    storage.write(layout.thumb(user, image_id), encode(thumb, "JPEG", quality=80))
    storage.write(layout.input_file(user, image_id, ".png"), encode(image, "PNG", optimize=True))
    storage.write(layout.resized(user, image_id), encode(resized, "PNG", optimize=True))
    return image_id


def _store(how: Callable[..., str], storage: Storage, name: str, data: bytes, ids: list[str]) -> None:
    ids.append(how(storage, USER, name, data))


def _check_stored(storage: Storage, image_id: str) -> None:
    """Both paths must really have produced the three files."""
    for key in (layout.thumb(USER, image_id), layout.resized(USER, image_id)):
        Image.open(io.BytesIO(storage.read(key))).verify()


def run() -> list[Row]:
    image = photo(*SIZE)
    files = {"JPEG": ("photo.jpg", encode(image, "JPEG", quality=90)), "HEIC": ("photo.heic", heic(image))}
    rows: list[Row] = []
    baselines: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        storage = FileStorage(f"{tmp}/shared")
        with one_core():
            for kind, (name, data) in files.items():
                ids: list[str] = []
                fast = timed(partial(_store, ingest.ingest, storage, name, data, ids), reps(9, 2))
                slow = timed(partial(_store, naive_ingest, storage, name, data, ids), reps(3))
                _check_stored(storage, ids[0])
                _check_stored(storage, ids[-1])
                baselines[kind] = median(slow)
                rows.append(
                    _row(kind, f"{LABEL} {kind}, in process, 1 core", median(fast), median(slow), data, len(slow))
                )
                if kind == "HEIC":
                    rows.append(_decode_floor(data, median(slow)))
        rows += _http(f"{tmp}/http", files, baselines)
    return rows


def _decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def _decode_floor(data: bytes, baseline: float) -> Row:
    """HEIC's floor: libheif (libde265) decoding the full image, nothing else. HEVC has no
    reduced-size decode (unlike JPEG's DCT scaling), so no ingest can be faster than this;
    baseline / this is the best ratio any ingest could reach against the same baseline."""
    seconds = median(timed(partial(_decode, data), reps(9, 2)))
    ceiling = baseline / seconds
    return Row(
        "1 ingest",
        f"{LABEL} HEIC full decode alone (libheif/libde265), 1 core: the floor",
        seconds * 1000,
        "ms",
        baseline * 1000,
        "—",
        None,
        f"no ingest can beat {ceiling:.1f}x against this baseline",
    )


def _http(shared: str, files: dict[str, tuple[str, bytes]], baselines: dict[str, float]) -> list[Row]:
    server = Server(shared, START_BACKGROUND="0").start()
    try:
        pin(server.proc.pid, min(os.sched_getaffinity(0)))
        session = server.login(USER)
        rows = []
        for kind, (name, data) in files.items():

            def upload(name: str = name, data: bytes = data) -> None:
                answer = session.post(server.url + "/upload", files={"file": (name, data)}, timeout=60)
                answer.raise_for_status()
                assert answer.json()["images"], answer.text

            upload()  # the first request warms the process up (imports, caches)
            times = timed(upload, reps(9, 2))
            measure = f"{LABEL} {kind}, POST /upload, server on 1 core"
            rows.append(_row(kind, measure, median(times), baselines[kind], data, None))
        return rows
    finally:
        server.stop()


def _row(kind: str, measure: str, seconds: float, baseline: float, data: bytes, baseline_runs: int | None) -> Row:
    ms, base_ms = seconds * 1000, baseline * 1000
    note = f"{len(data) / 1e6:.1f} MB file"
    note += f"; baseline median of {baseline_runs}" if baseline_runs else "; baseline: in-process naive, no HTTP"
    if kind == "JPEG":
        return Row(
            "1 ingest", measure, ms, "ms", base_ms, "<= 250 ms, >= 10x", verdict(ms <= 250 and base_ms >= 10 * ms), note
        )
    return Row("1 ingest", measure, ms, "ms", base_ms, ">= 10x", verdict(base_ms >= 10 * ms), note)

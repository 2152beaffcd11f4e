"""Jobs through a real server on a shared folder: the poller's and /invocations' work, its outputs,
poison images, and one image asked for by the poller and several invocations at once."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from harness.images import encode
from harness.server2 import Server2
from studio import layout
from studio.storage import Storage, open_storage
from tests.server2.serving.support import FAST, USER, Servers, add_image, drawing, outputs_of, set_settings, wait_status


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_models_dir: Path) -> Iterator[tuple[Server2, Storage]]:
    folder = tmp_path_factory.mktemp("serving-jobs")
    storage = open_storage(str(folder / "shared"))
    set_settings(storage, {"mode": "matte", **FAST})
    servers = Servers(folder)
    server = servers.start(SHARED_DIR=str(folder / "shared"), MODELS_DIR=str(test_models_dir))
    server.wait_ready()
    yield server, storage
    servers.kill_all()


def read_png(storage: Storage, key: str) -> Image.Image:
    image = Image.open(io.BytesIO(storage.read(key)))
    image.load()
    assert image.format == "PNG"
    return image


def test_dropped_images_end_done_with_clippings_at_the_originals_resolution(server: tuple[Server2, Storage]) -> None:
    _, storage = server
    add_image(storage, "sheet", drawing(800, 600, (200, 150, 600, 450)))  # original 800x600, job 400x300
    add_image(storage, "loose", None)  # only a resized/ file, dropped there by other means

    record = wait_status(storage, "sheet")
    assert record["state"] == "done", record
    assert (record["width"], record["height"], record["source"], record["attempts"]) == (800, 600, "input", 1)
    assert record["method"] == "matte" and record["model"] == "birefnet-dis"  # the matting model that ran
    assert {"read", "write", "total", "matte"} <= record["timings"].keys()
    assert len(record["clippings"]) == 1
    name = record["clippings"][0]
    clip = read_png(storage, layout.crop(USER, name))
    assert clip.mode == "RGBA"
    # The 400x300 rectangle at full size (plus the stand-in model's small margin), not the job's 200x150.
    assert 400 <= clip.width <= 480 and 300 <= clip.height <= 380, clip.size
    rgba = np.asarray(clip)
    assert rgba[clip.height // 2, clip.width // 2, 3] == 255
    # One-pixel stripes survive only in the original: the clipping was cut from it.
    row = rgba[clip.height // 2, clip.width // 2 - 50 : clip.width // 2 + 50, :3].astype(int)
    assert (np.abs(np.diff(row, axis=0)).sum(axis=1) > 60).sum() >= 95
    assert read_png(storage, layout.crop_thumb(USER, name)).mode == "RGBA"
    assert read_png(storage, layout.mask(USER, "sheet", 0)).size == (400, 300)
    assert storage.exists(layout.thumb(USER, "sheet", ".jpg"))

    loose = wait_status(storage, "loose")
    assert loose["state"] == "done" and loose["source"] == "resized"
    assert (loose["width"], loose["height"]) == (200, 150)
    assert read_png(storage, layout.crop(USER, loose["clippings"][0])).mode == "RGBA"
    assert storage.list_dir(layout.output_dir(USER, "staging") + "sheet/")[1] == []


def test_a_photo_goes_through_yolo_and_sam(server: tuple[Server2, Storage]) -> None:
    srv, storage = server
    photo = Image.fromarray(data.astronaut()).resize((256, 256))
    storage.write(layout.input_file(USER, "astronaut", ".png"), encode(photo))
    storage.write(layout.resized(USER, "astronaut"), encode(photo.resize((128, 128))))
    set_settings(storage, {"mode": "sam"})
    try:
        answer = srv.invoke({"user": USER, "image": "astronaut"})
    finally:
        set_settings(storage, {"mode": "matte"})
    assert answer.status_code == 200
    assert answer.json()["state"] in ("done", "already-processed"), answer.json()
    record = wait_status(storage, "astronaut")
    assert record["state"] == "done" and record["method"] == "sam" and record["model"] == "vit_l"
    assert {"detect", "sam_auto"} <= record["timings"].keys()
    points = json.loads(storage.read(layout.points(USER, "astronaut")))
    assert {"points", "labels", "boxes"} <= points.keys()
    assert read_png(storage, layout.boxes(USER, "astronaut", "det")).size == (128, 128)


def test_corrupt_images_end_failed_with_a_readable_reason_and_the_worker_goes_on(
    server: tuple[Server2, Storage],
) -> None:
    _, storage = server
    storage.write(layout.resized(USER, "garbage"), b"this is not a picture at all")
    storage.write(layout.resized(USER, "cut-short", ".jpg"), encode(drawing(), "JPEG")[:600])

    garbage = wait_status(storage, "garbage")
    assert garbage["state"] == "failed"
    assert garbage["error"] == "garbage.png: not an image this server accepts (JPEG, PNG, WebP, BMP, TIFF or HEIC/HEIF)"
    assert garbage["attempts"] == 1  # an unreadable file is not retried
    cut = wait_status(storage, "cut-short")
    assert cut["state"] == "failed"
    assert cut["error"] == "cut-short.jpg: the image is damaged or truncated and cannot be read"
    assert "Traceback" not in cut["error"]
    assert outputs_of(storage, "garbage") == [] and outputs_of(storage, "cut-short") == []

    add_image(storage, "after", drawing())
    assert wait_status(storage, "after")["state"] == "done"


def test_the_poller_and_several_invocations_on_one_image_process_it_once(server: tuple[Server2, Storage]) -> None:
    srv, storage = server
    add_image(storage, "wanted", drawing(600, 400, (50, 50, 250, 350)))
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: srv.invoke({"user": USER, "image": "wanted"}), range(4)))
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] in ("done", "already-processed"), answer.json()
        assert answer.json()["status"]["state"] == "done"
    record = wait_status(storage, "wanted")
    assert record["state"] == "done" and record["attempts"] == 1
    assert srv.log().count(f"{USER}/wanted: processing") == 1
    crops = [k.rsplit("/", 1)[-1] for k in outputs_of(storage, "wanted") if "/crops/" in k]
    assert crops == record["clippings"]

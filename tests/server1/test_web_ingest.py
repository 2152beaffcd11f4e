"""server1.ingest: formats by content, upright images, refusals, unique ids, sheet correction."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harness.images import encode, exif_rotated_jpeg, marked, photo, png_bomb
from server1 import ingest
from studio import layout
from studio.storage import StorageError, open_storage
from tests.server1.support import is_upright_marked, samples


@pytest.mark.parametrize("name", sorted(samples()))
def test_every_format_becomes_a_work_copy(name: str) -> None:
    data = samples()[name]
    prepared = ingest.prepare(data)
    resized = Image.open(io.BytesIO(prepared.resized))
    assert resized.format == "PNG" and resized.mode == "RGB"
    assert max(resized.size) <= layout.RESIZED_MAX and resized.size == (800, 600)
    assert prepared.original == data  # kept as uploaded
    assert Image.open(io.BytesIO(prepared.thumb)).format == "JPEG"
    assert (prepared.width, prepared.height) == (800, 600)
    expected = {"jpg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "tif": ".tif", "heic": ".heic"}
    assert prepared.ext == expected[name.rsplit(".", 1)[1]]


def test_format_is_decided_by_content_not_name() -> None:
    png = encode(photo(300, 200), "PNG")
    assert ingest.prepare(png).ext == ".png"  # whatever it was called on upload
    with pytest.raises(ingest.Rejected, match="not an image"):
        ingest.prepare(b"<html><script>alert(1)</script></html>")
    with pytest.raises(ingest.Rejected, match="not an image"):
        ingest.prepare(encode(photo(50, 50), "GIF"))  # a real image, but not an accepted format


def test_large_jpeg_is_shrunk_to_1024_and_kept_as_uploaded() -> None:
    data = encode(photo(4000, 3000), "JPEG", quality=85)
    prepared = ingest.prepare(data)
    assert Image.open(io.BytesIO(prepared.resized)).size == (1024, 768)
    assert max(Image.open(io.BytesIO(prepared.thumb)).size) == layout.THUMB_MAX
    assert prepared.original is data
    assert (prepared.width, prepared.height) == (4000, 3000)


def test_exif_orientation_is_applied() -> None:
    prepared = ingest.prepare(exif_rotated_jpeg())
    resized = Image.open(io.BytesIO(prepared.resized))
    assert resized.size == (600, 400)
    assert is_upright_marked(resized)
    assert is_upright_marked(Image.open(io.BytesIO(prepared.thumb)))
    assert (prepared.width, prepared.height) == (600, 400)


def test_heic_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = marked(600, 400).transpose(Image.Transpose.ROTATE_90)
    prepared = ingest.prepare(encode(stored, "HEIF", exif=exif.tobytes()))
    assert is_upright_marked(Image.open(io.BytesIO(prepared.resized)))


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"\x00" * 1000, 400, "not an image"),
        (encode(photo(800, 600), "JPEG")[:3000], 400, "damaged or truncated"),
        (encode(photo(800, 600), "PNG")[:5000], 400, "damaged or truncated"),
        (encode(photo(800, 600), "WEBP")[:500], 400, "damaged or truncated|not an image"),
        (encode(photo(800, 600), "HEIF")[:800], 400, "damaged or truncated|not an image"),
    ],
    ids=["empty", "zeros", "truncated-jpeg", "truncated-png", "truncated-webp", "truncated-heic"],
)
def test_bad_files_are_refused(data: bytes, status: int, message: str) -> None:
    with pytest.raises(ingest.Rejected, match=message) as refused:
        ingest.prepare(data)
    assert refused.value.status == status


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = png_bomb(20000, 20000)  # 400 MP declared in a header of a few bytes
    with pytest.raises(ingest.Rejected, match="too many pixels") as refused:
        ingest.prepare(bomb)
    assert refused.value.status == 413
    with pytest.raises(ingest.Rejected, match="limit 0.1 MP|the limit is 0.1 MP"):
        ingest.prepare(encode(photo(400, 300), "JPEG"), max_pixels=100_000)


def test_ids_are_safe_and_unique() -> None:
    ids = {ingest.new_id("IMG_0001.HEIC") for _ in range(200)}
    assert len(ids) == 200
    for name in ["../../etc/passwd", "C:\\x\\y.jpg", "фото 1.jpg", ".hidden", "a" * 500 + ".png", "..", ""]:
        image_id = ingest.new_id(name)
        assert layout.check_name(image_id) == image_id
        assert "/" not in image_id and ".." not in image_id
    assert ingest.display_name(ingest.new_id("IMG 0001.HEIC")) == "IMG_0001"


def test_store_never_overwrites_and_writes_the_job_last(tmp_path) -> None:
    storage = open_storage(str(tmp_path))
    prepared = ingest.prepare(samples()["photo.heic"])
    first = ingest.store(storage, "alice", "IMG_0001.HEIC", prepared)
    second = ingest.store(storage, "alice", "IMG_0001.HEIC", prepared)
    assert first != second
    for image_id in (first, second):
        job = storage.local_path(layout.resized(image_id=image_id, user="alice"))
        original = storage.local_path(layout.input_file("alice", image_id, ".heic"))
        thumb = storage.local_path(layout.thumb("alice", image_id))
        assert job and original and thumb
        assert original.read_bytes() == samples()["photo.heic"]
        assert job.stat().st_mtime_ns >= original.stat().st_mtime_ns >= thumb.stat().st_mtime_ns


def test_store_leaves_nothing_when_storage_fails(tmp_path) -> None:
    class FailingJob(type(open_storage(str(tmp_path)))):
        def write(self, key: str, data: bytes) -> None:
            if "/resized/" in key:
                raise StorageError("disk full")
            super().write(key, data)

    storage = FailingJob(str(tmp_path))
    with pytest.raises(StorageError):
        ingest.store(storage, "alice", "a.jpg", ingest.prepare(samples()["photo.jpg"]))
    assert list(storage.list("alice/")) == []


def _sheet_photo() -> tuple[bytes, float]:
    """A white A4-ish sheet seen in perspective on a dark table, with a dark square drawn on it."""
    import cv2

    width, height = 1600, 1200
    table = np.full((height, width, 3), (60, 45, 35), np.uint8)
    sheet_w, sheet_h = 700, 990  # portrait sheet, aspect ~0.707
    sheet = np.full((sheet_h, sheet_w, 3), 245, np.uint8)
    sheet[400:600, 250:450] = (20, 20, 160)
    corners = np.float32([[520, 150], [1150, 170], [1170, 1060], [500, 1040]])
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [sheet_w, 0], [sheet_w, sheet_h], [0, sheet_h]]), corners)
    warped = cv2.warpPerspective(sheet, matrix, (width, height))
    mask = cv2.warpPerspective(np.full((sheet_h, sheet_w), 255, np.uint8), matrix, (width, height))
    table[mask > 0] = warped[mask > 0]
    return encode(Image.fromarray(table), "JPEG", quality=92), sheet_w / sheet_h


def test_sheet_is_straightened_when_asked() -> None:
    data, aspect = _sheet_photo()
    prepared = ingest.prepare(data, straighten_sheet=True)
    assert prepared.straightened
    resized = np.asarray(Image.open(io.BytesIO(prepared.resized)))
    h, w, _ = resized.shape
    assert abs(w / h - aspect) < 0.1
    border = np.concatenate([resized[:8].reshape(-1, 3), resized[-8:].reshape(-1, 3)])
    assert border.mean() > 200  # the dark table is gone: only paper at the edges
    # The original is the straightened sheet too (clippings are cut from it).
    original = Image.open(io.BytesIO(prepared.original))
    assert original.format == "JPEG" and abs(original.width / original.height - aspect) < 0.1
    # Not asked: nothing changes.
    plain = ingest.prepare(data)
    assert not plain.straightened and plain.original == data


def test_no_sheet_means_no_crop() -> None:
    data = encode(photo(1200, 900), "JPEG")
    prepared = ingest.prepare(data, straighten_sheet=True)
    assert not prepared.straightened
    assert Image.open(io.BytesIO(prepared.resized)).size == (1024, 768)
    assert prepared.original == data

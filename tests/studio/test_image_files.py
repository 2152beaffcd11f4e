"""One image's files (studio.image_files) on both backends: exactly that image's, never a
neighbour whose id starts the same; an upload published whole or not at all."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio import image_files, layout
from studio.storage import Storage, StorageError

USER = "alice"


def test_delete_removes_exactly_that_image(storage: Storage) -> None:
    ids = ["a", "a.1", "a_mask1", "a-x", "b"]
    for image_id in ids:
        crop = layout.crop_name(image_id, 1, 1)
        for key in [
            layout.input_file(USER, image_id, ".jpg"),
            layout.resized(USER, image_id),
            layout.thumb(USER, image_id),
            layout.mask(USER, image_id, 1),
            layout.mask(USER, image_id, 12),
            layout.crop(USER, crop),
            layout.crop_thumb(USER, crop),
            layout.points(USER, image_id),
            layout.boxes(USER, image_id, "yolo"),
            layout.boxes(USER, image_id, "seg_2"),
            layout.status(USER, image_id),
            layout.claim(USER, image_id),
            layout.staging(USER, image_id, "tok") + "mask1.png",
        ]:
            storage.write(key, image_id.encode())
    before = {e.key: storage.read(e.key) for e in storage.list("")}

    image_files.delete_outputs(storage, USER, "a")
    gone = {k for k, v in before.items() if v == b"a" and "/output/" in k and "/thumbs/a.jpg" not in k}
    gone -= {layout.status(USER, "a"), layout.claim(USER, "a"), layout.staging(USER, "a", "tok") + "mask1.png"}
    after = {e.key for e in storage.list("")}
    assert after == set(before) - gone
    assert gone >= {layout.crop_thumb(USER, "a_mask1_1.png"), layout.boxes(USER, "a", "seg_2")}

    image_files.delete(storage, USER, "a")
    after = {e.key: storage.read(e.key) for e in storage.list("")}
    assert after == {k: v for k, v in before.items() if v != b"a"}
    assert "a" not in storage.list_dir(layout.output_dir(USER, "staging"))[0]


def test_find_and_publish(storage: Storage) -> None:
    ids = iter(["a", "a", "a-x"])  # the second "a" is taken: publish asks for another id
    first = image_files.publish(storage, USER, lambda: next(ids), b"thumb", b"jpeg", ".jpg", b"png")
    second = image_files.publish(storage, USER, lambda: next(ids), b"thumb2", b"jpeg2", ".jpg", b"png2")
    assert (first, second) == ("a", "a-x")
    assert image_files.original(storage, USER, "a").key == layout.input_file(USER, "a", ".jpg")
    assert image_files.job(storage, USER, "a").key == layout.resized(USER, "a")
    assert image_files.has_thumb(storage, USER, "a")
    storage.write(layout.crop_thumb(USER, layout.crop_name("b", 0, 0)), b"clipping thumb")
    assert not image_files.has_thumb(storage, USER, "b")  # a clipping's thumbnail is not the original's
    assert image_files.original(storage, USER, "b") is None and image_files.job(storage, USER, "b") is None
    storage.write(layout.resized(USER, "c", ".txt"), b"no job")
    assert image_files.job(storage, USER, "c") is None


def test_publish_leaves_nothing_when_storage_fails(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(key: str, data: bytes) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(storage, "write", broken)
    with pytest.raises(StorageError, match="disk full"):
        image_files.publish(storage, USER, lambda: "a", b"thumb", b"jpeg", ".jpg", b"png")
    monkeypatch.undo()
    assert list(storage.list("")) == []


def test_thumbnails_fit_the_layout_size() -> None:
    photo = Image.new("RGB", (1000, 500), (200, 10, 10))
    clipping = Image.new("RGBA", (300, 900), (0, 0, 0, 0))
    assert image_files.thumbnail(photo).size == (layout.THUMB_MAX, layout.THUMB_MAX // 2)
    assert image_files.thumb_png(clipping)[:8] == b"\x89PNG\r\n\x1a\n"
    assert image_files.thumb_jpeg(photo)[:2] == b"\xff\xd8"


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
def test_png_keeps_every_visible_pixel_and_blanks_transparent_colour(mode: str) -> None:
    seed = 15
    print("seed", seed)
    pixels = np.random.default_rng(seed).integers(0, 256, (97, 131, 4), dtype=np.uint8)
    pixels[:40, :, 3] = 0  # a transparent band, with colour under it
    pixels[40:45, :, 3] = 1  # barely visible: its colour must survive
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    with Image.open(io.BytesIO(image_files.png(image)), formats=["PNG"]) as read:
        assert read.mode == mode
        decoded = np.asarray(read)
    expected = np.asarray(image).copy()
    if mode == "RGBA":
        assert not decoded[:40].any()  # colour and alpha 0 where alpha was 0
        expected[expected[:, :, 3] == 0] = 0
    np.testing.assert_array_equal(decoded, expected)

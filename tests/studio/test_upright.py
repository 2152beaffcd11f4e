"""The upright original (studio/upright.py): one decoder, the same pixels on every path (Server1's ingest,
Server2's worker, the CLI, the editor's cuts), for the images where the paths used to differ: 16-bit and
float samples, transparency, EXIF orientation. A clipping keeps the original's alpha times the mask."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from harness.images import exif_rotated_jpeg
from harness.server1 import USERS, csrf_of
from server1 import ingest
from server1.app import create_app
from server1.config import Config
from server2 import cli
from server2.pipeline import clippings
from server2.worker import open_image
from studio import layout, upright

SIZE = (160, 120)
SQUARE = (slice(30, 90), slice(40, 120))  # rows, columns of the object on each sample
WHITE = (255, 255, 255)


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _two_tone(background: object, square: object, dtype: type) -> np.ndarray:
    pixels = np.full((SIZE[1], SIZE[0]), background, dtype=dtype)
    pixels[SQUARE] = square
    return pixels


def _rgb(background: tuple, square: tuple) -> np.ndarray:
    pixels = np.zeros((SIZE[1], SIZE[0], len(background)), dtype=np.uint8)
    pixels[:] = background
    pixels[SQUARE] = square
    return pixels


def _palette() -> bytes:
    image = Image.fromarray(_two_tone(0, 1, np.uint8), "P")
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    return _encode(image, "PNG", transparency=0)


def _rotated() -> tuple[bytes, np.ndarray]:
    data = exif_rotated_jpeg()
    return data, np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


# name -> (file bytes, the upright original's pixels: RGB, or RGBA with straight alpha)
SAMPLES = {
    # A mid-grey 16-bit sample (32768) stays mid-grey (128); 8000 -> 31.
    "grey16.png": (_encode(Image.fromarray(_two_tone(32768, 8000, np.uint16)), "PNG"), _rgb((128,) * 3, (31,) * 3)),
    "grey16.tif": (_encode(Image.fromarray(_two_tone(32768, 8000, np.uint16)), "TIFF"), _rgb((128,) * 3, (31,) * 3)),
    # Float samples: 0.0 black .. 1.0 white.
    "float.tif": (_encode(Image.fromarray(_two_tone(0.5, 0.2, np.float32)), "TIFF"), _rgb((128,) * 3, (51,) * 3)),
    "rgba.png": (
        _encode(Image.fromarray(_rgb((0, 0, 0, 0), (200, 30, 30, 255)), "RGBA"), "PNG"),
        _rgb((0, 0, 0, 0), (200, 30, 30, 255)),
    ),
    "palette.png": (_palette(), _rgb((0, 0, 0, 0), (200, 30, 30, 255))),
    "rotated.jpg": _rotated(),
}


def flat(pixels: np.ndarray) -> np.ndarray:
    """The original as the models see it: transparent pixels white (the samples have no partial alpha)."""
    if pixels.shape[2] == 3:
        return pixels
    return np.where(pixels[..., 3:] == 255, pixels[..., :3], np.array(WHITE, dtype=np.uint8))


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("name", SAMPLES)
def test_every_path_decodes_the_same_upright_original(name: str, tmp_path: Path) -> None:
    data, expected = SAMPLES[name]
    np.testing.assert_array_equal(np.asarray(upright.original(data)), expected)
    # Server1's ingest: the job file is the work copy (here the full size: the samples are small).
    prepared = ingest.prepare(data)
    np.testing.assert_array_equal(png_pixels(prepared.resized), flat(expected))
    assert (prepared.width, prepared.height) == expected.shape[1::-1]
    # Server2's worker: the original clippings are cut from, and the job file as the models see it.
    np.testing.assert_array_equal(np.asarray(open_image(data, name)), expected)
    np.testing.assert_array_equal(np.asarray(open_image(prepared.resized, "job", upright.work_copy)), flat(expected))
    # The command line.
    path = tmp_path / name
    path.write_bytes(data)
    original, work = cli.decode(path)
    np.testing.assert_array_equal(np.asarray(original), expected)
    np.testing.assert_array_equal(np.asarray(work), flat(expected))


def check_clipping(clipping: Image.Image, box: tuple | list, expected: np.ndarray) -> None:
    """Where the clipping is not transparent it shows the original's colours; its alpha is the original's
    (the masks here cover the whole object)."""
    x0, y0, x1, y1 = box
    pixels = np.asarray(clipping)
    part = expected[y0:y1, x0:x1]
    alpha = part[..., 3] if part.shape[2] == 4 else np.full(part.shape[:2], 255, np.uint8)
    np.testing.assert_array_equal(pixels[..., 3], alpha)
    shown = pixels[..., 3] > 0
    np.testing.assert_array_equal(pixels[..., :3][shown], part[..., :3][shown])


@pytest.mark.parametrize("name", ["rgba.png", "palette.png"])
def test_a_clipping_keeps_the_originals_transparency(name: str, tmp_path: Path) -> None:
    data, expected = SAMPLES[name]
    original = upright.original(data)
    assert original.mode == "RGBA"
    # Server2's pipeline, with a mask over the whole image: the transparent background stays out.
    (part,) = clippings.components(np.ones((SIZE[1], SIZE[0]), dtype=bool), 0, 1)
    image, box = clippings.cut(original, part, SIZE, soft=False)
    assert box == (SQUARE[1].start, SQUARE[0].start, SQUARE[1].stop, SQUARE[0].stop)
    check_clipping(image, box, expected)
    # The editor: a touch-up whose mask covers the whole image, on the upload as Server1 stored it.
    app = create_app(Config.from_env(shared_dir=str(tmp_path / "shared"), users=dict(USERS), start_background=False))
    try:
        client = app.test_client()
        token = csrf_of(client.get("/login").text)
        client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
        client.environ_base["HTTP_X_CSRFTOKEN"] = csrf_of(client.get("/").text)
        sent = client.post("/upload", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
        image_id = sent.json["images"][0]["id"]
        old = layout.crop_name(image_id, 0, 0)
        record = {"state": "done", "clippings": [old], "clipping_boxes": {old: [0, 0, *SIZE]}}
        storage = app.extensions["server1"].storage
        storage.write(
            layout.status("alice", image_id), json.dumps({**record, "width": SIZE[0], "height": SIZE[1]}).encode()
        )
        mask = _encode(Image.new("L", SIZE, 255), "PNG")
        answer = client.post(
            f"/api/images/{image_id}/clippings/{old}/mask",
            data={"mask": (io.BytesIO(mask), "mask.png")},
            content_type="multipart/form-data",
        )
        assert answer.status_code == 200, answer.json
        made = answer.json["clipping"]
        assert tuple(made["box"]) == box
        check_clipping(Image.open(io.BytesIO(client.get(made["url"]).data)), made["box"], expected)
    finally:
        app.extensions["server1"].events.stop()


def test_the_command_line_cuts_clippings_from_the_same_pixels(tmp_path: Path, test_models_dir: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, (data, _) in SAMPLES.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "out"
    assert cli.main(["--mode", "matte", "--models", str(test_models_dir), "--out", str(out), str(folder)]) == 0
    for name, (_, expected) in SAMPLES.items():
        record = json.loads((out / Path(name).stem / "result.json").read_text())
        assert record["clippings"], name
        for clip in record["clippings"]:
            pixels = np.asarray(Image.open(out / Path(name).stem / f"clipping-{clip['n']}.png"))
            x0, y0, x1, y1 = clip["box"]
            part = expected[y0:y1, x0:x1]
            opaque = pixels[..., 3] == 255
            np.testing.assert_array_equal(pixels[..., :3][opaque], part[..., :3][opaque], err_msg=name)
            if part.shape[2] == 4:  # the original's transparent pixels stay transparent
                assert not pixels[..., 3][part[..., 3] == 0].any(), name

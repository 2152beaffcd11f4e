"""Models loaded once from the small test weights, and the test images: real photos and drawn ones."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFilter

from harness.realworld import REAL_MODELS_ENV
from server2.models import Models
from studio.modelfiles import ModelChoice
from tests.conftest import realworld


@pytest.fixture(scope="session")
def models(test_models_dir: Path) -> Models:
    return Models.load(test_models_dir, "cpu")


@pytest.fixture(scope="session")
def real_models(real_models_dir: Path) -> Models:
    """The real weights as CPU local mode loads them: MobileSAM, YOLO11n, U2-Netp (harness/realworld.py)."""
    env = REAL_MODELS_ENV
    return Models.load(
        real_models_dir, "cpu", ModelChoice(detect=env["DETECT_MODEL"], matte=env["MATTE_MODEL"], sam=env["SAM_MODEL"])
    )


def labelled(name: str) -> tuple[Path, dict[str, np.ndarray]]:
    """A labelled photo of ../shared/realworld/photos and its human-made masks, by object key."""
    photo_path = next(p for p in realworld("photos").glob(name + ".*") if not p.name.endswith(".npz"))
    with np.load(realworld("photos", name + ".masks.npz")) as data:
        return photo_path, {key: data[key].astype(bool) for key in data.files if key != "ignore"}


def photo(name: str, longest: int = 256) -> Image.Image:
    """One of scikit-image's bundled photos (astronaut, coffee, chelsea, rocket, camera, moon...), RGB."""
    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    image.thumbnail((longest, longest))
    return image


def line_art(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Black outlines on white: a circle, a box, a line and an arc, apart from each other."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 50, 200, 190), outline="black", width=3)
    draw.line((230, 150, 360, 250), fill="black", width=2)
    draw.rectangle((240, 30, 330, 110), outline=(30, 30, 30), width=2)
    draw.arc((40, 210, 200, 290), 0, 180, fill="black", width=3)
    return image


def flat_shapes(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A flat graphic: three filled shapes in plain colours on an off-white ground."""
    image = Image.new("RGB", size, (240, 240, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 40, 180, 180), fill=(220, 40, 40))
    draw.rectangle((220, 60, 360, 200), fill=(40, 90, 200))
    draw.polygon([(100, 280), (200, 200), (300, 280)], fill=(250, 200, 0))
    return image


def photographed(image: Image.Image, seed: int = 0, noise: float = 4.0) -> Image.Image:
    """The image as a phone would see it on paper: uneven light, a warm cast, sensor noise, blur, JPEG."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float64)
    h, w = pixels.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    light = 0.75 + 0.25 * (xx / w) * (1 - 0.3 * yy / h)
    pixels = pixels * light[..., None] * np.array([1.0, 0.97, 0.9]) + rng.normal(0, noise, pixels.shape)
    blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    buffer = io.BytesIO()
    blurred.save(buffer, "JPEG", quality=85)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


# Light settings for a CPU: the real code path, a fraction of the work of the defaults.
FAST = {
    "points_per_side": 8,
    "crop_n_layers": 0,
    "min_area": 20,
    "pred_iou_thresh": 0.9,
    "stability_score_thresh": 0.95,
}

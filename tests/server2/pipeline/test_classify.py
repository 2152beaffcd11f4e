"""Line drawing / flat graphic vs photo on real photos (scikit-image's) and drawn images."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from server2.pipeline.classify import image_stats, is_line_drawing
from tests.server2.pipeline.conftest import flat_shapes, line_art, photo, photographed

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera", "coins", "moon"]


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_are_photos(name: str) -> None:
    assert not is_line_drawing(photo(name, 512)), image_stats(photo(name, 512))


@pytest.mark.parametrize(
    "drawing",
    [
        line_art(),
        flat_shapes(),
        photographed(line_art()),
        photographed(flat_shapes(), seed=1),
        photographed(line_art((1000, 750)), seed=2, noise=6.0),
        Image.fromarray(~skimage.data.horse()).convert("RGB"),  # a black silhouette on white
    ],
    ids=["line-art", "flat", "photographed-line-art", "photographed-flat", "big-noisy-line-art", "silhouette"],
)
def test_drawings_are_drawings(drawing: Image.Image) -> None:
    assert is_line_drawing(drawing), image_stats(drawing)


def test_stats_are_shares() -> None:
    stats = image_stats(Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)))
    assert (stats.flat, stats.soft_edges) == (1.0, 0.0)

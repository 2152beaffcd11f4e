"""Line drawing / flat graphic vs photo, from two simple image statistics.

A drawing (or a flat graphic, or either photographed on paper) is mostly flat areas split by a few sharp
edges; a photo has texture and soft shading almost everywhere. Measured on a copy at most 512 px wide:
- flat: the share of pixels whose 7x7 neighbourhood varies by less than 4 grey levels (std);
- soft_edges: the share of pixels with a gentle gradient (3-20 grey levels per pixel): shading, texture.
Calibrated on scikit-image's photos (astronaut, coffee, chelsea, rocket, moon, camera...: soft_edges >= 0.086)
and drawn images, clean and "photographed" (lighting gradient, noise, blur, JPEG: soft_edges <= 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

SIZE = 512
FLAT_STD = 4.0
SOFT_GRADIENT = (3.0, 20.0)
MIN_FLAT = 0.75
MAX_SOFT_EDGES = 0.07


@dataclass(frozen=True)
class ImageStats:
    flat: float
    soft_edges: float


def image_stats(image: Image.Image) -> ImageStats:
    small = image.convert("L")
    small.thumbnail((SIZE, SIZE))
    grey = ndimage.uniform_filter(np.asarray(small, dtype=np.float32), 3)  # JPEG and sensor noise
    mean = ndimage.uniform_filter(grey, 7)
    std = np.sqrt(np.maximum(ndimage.uniform_filter(grey * grey, 7) - mean * mean, 0))
    gradient = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)) / 8  # grey levels per pixel
    low, high = SOFT_GRADIENT
    return ImageStats(
        flat=float((std < FLAT_STD).mean()),
        soft_edges=float(((gradient > low) & (gradient < high)).mean()),
    )


def is_line_drawing(image: Image.Image) -> bool:
    stats = image_stats(image)
    return stats.flat >= MIN_FLAT and stats.soft_edges <= MAX_SOFT_EDGES

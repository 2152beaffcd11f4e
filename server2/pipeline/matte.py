"""The matte path (mode matte, and drawings in auto): the matting model's foreground, split per object.

One whole-image matte is excellent on a single subject (IoU 0.95-0.98 on the DAVIS photos) but merges
touching objects into one clipping and misses background objects. So each detected object gets its own
piece: the matte inside its box; where the whole-image matte left a big box nearly empty (the matte
kept only the most salient thing), the matting model runs again on that box's crop. Matte pixels in
no box (undetected objects, drawings) stay as they are and are split into connected parts later.
Figures: bench/quality.py (README "Cut-out quality").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from server2.pipeline.detect import Detection

MISSED = 0.4  # the whole-image matte covers less than this share of a box: it missed (part of) that object
CROP_MIN_SHARE = 0.01  # boxes at least this share of the image get their own matte when missed ...
MAX_CROPS = 4  # ... at most this many (largest first): each is one more matting run
CROP_PAD = 0.1  # of the box's size, on each side: the matting model needs some context


def box_pixels(box: tuple[float, ...], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    height, width = shape
    x0, y0, x1, y1 = box
    return max(0, int(x0)), max(0, int(y0)), min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))


def crop_matte(
    image: Image.Image, box: tuple[int, int, int, int], matte: Callable[[Image.Image], np.ndarray]
) -> np.ndarray:
    """The matting model on the box's crop (padded), as a full-size mask limited to the box."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = int((x1 - x0) * CROP_PAD), int((y1 - y0) * CROP_PAD)
    cx0, cy0 = max(0, x0 - pad_x), max(0, y0 - pad_y)
    cx1, cy1 = min(image.width, x1 + pad_x), min(image.height, y1 + pad_y)
    out = np.zeros((image.height, image.width), dtype=bool)
    out[cy0:cy1, cx0:cx1] = matte(image.crop((cx0, cy0, cx1, cy1)))
    inside = np.zeros_like(out)
    inside[y0:y1, x0:x1] = True
    return out & inside


def split(
    image: Image.Image, whole: np.ndarray, found: list[Detection], matte: Callable[[Image.Image], np.ndarray]
) -> list[np.ndarray]:
    """One mask per detected object (largest box first) plus the matte outside every box."""
    shape = whole.shape
    boxes = sorted((box_pixels(d.box, shape) for d in found), key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    pieces, crops = [], 0
    outside = whole.copy()
    for x0, y0, x1, y1 in boxes:
        area = (x1 - x0) * (y1 - y0)
        if area <= 0:
            continue
        piece = np.zeros(shape, dtype=bool)
        piece[y0:y1, x0:x1] = whole[y0:y1, x0:x1]
        outside[y0:y1, x0:x1] = False
        if piece.sum() < MISSED * area and area >= CROP_MIN_SHARE * whole.size and crops < MAX_CROPS:
            piece = crop_matte(image, (x0, y0, x1, y1), matte)
            crops += 1
        pieces.append(piece)
    return [*pieces, outside]

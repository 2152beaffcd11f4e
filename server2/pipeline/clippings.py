"""Clippings: each connected component of each kept mask, cut from the full-resolution original
(studio.edges.cut: soft edges when the user's setting says so; the original's own transparency stays).

The mask is scaled up to the original's size (bilinear, so edges stay smooth) only over the component's
box, so a 12-MP original costs no full-size mask per clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from studio import edges

Box = tuple[int, int, int, int]
CONNECTIVITY = np.ones((3, 3), dtype=bool)  # diagonal neighbours belong to the same object


@dataclass(frozen=True)
class Component:
    mask_index: int
    component: int  # 0-based, per mask, largest first
    area: int
    box: Box  # x0, y0, x1, y1 (exclusive) in mask pixels
    pixels: np.ndarray  # bool, the box's area of the mask holding only this component


def components(mask: np.ndarray, mask_index: int, min_area: int) -> list[Component]:
    """The mask's connected components of at least min_area pixels, largest first."""
    labels, count = ndimage.label(mask, structure=CONNECTIVITY)
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    found = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or areas[label] < max(min_area, 1):
            continue
        ys, xs = box
        found.append((int(areas[label]), (xs.start, ys.start, xs.stop, ys.stop), labels[box] == label))
    found.sort(key=lambda f: -f[0])
    return [Component(mask_index, k, area, b, pixels) for k, (area, b, pixels) in enumerate(found)]


def cut(
    original: Image.Image, part: Component, mask_size: tuple[int, int], soft: bool
) -> tuple[Image.Image, Box] | None:
    """The component as an RGBA image cut from the original, transparent outside it, cropped tight;
    and where that image lies in the original (x0, y0, x1, y1). soft: its edge solved (studio.edges);
    None when nothing of it is visible (the original transparent there)."""
    scale_x, scale_y = original.width / mask_size[0], original.height / mask_size[1]
    x0, y0, x1, y1 = part.box
    padded = np.pad(part.pixels, 1)  # one mask pixel around the box, not this component: edges fade out
    height, width = padded.shape
    # ...except at the image's edge, where the object goes on: no fade there.
    if x0 == 0:
        padded[:, 0] = padded[:, 1]
    if x1 == mask_size[0]:
        padded[:, -1] = padded[:, -2]
    if y0 == 0:
        padded[0] = padded[1]
    if y1 == mask_size[1]:
        padded[-1] = padded[-2]
    # The padded box in the original's pixels, rounded inwards so its source box stays inside `padded`.
    ox0 = max(0, int(np.ceil((x0 - 1) * scale_x)))
    oy0 = max(0, int(np.ceil((y0 - 1) * scale_y)))
    ox1 = min(original.width, int((x1 + 1) * scale_x))
    oy1 = min(original.height, int((y1 + 1) * scale_y))
    source = (
        min(max(ox0 / scale_x - (x0 - 1), 0.0), width),
        min(max(oy0 / scale_y - (y0 - 1), 0.0), height),
        min(max(ox1 / scale_x - (x0 - 1), 0.0), width),
        min(max(oy1 / scale_y - (y0 - 1), 0.0), height),
    )
    alpha = Image.fromarray(padded.astype(np.uint8) * 255).resize(
        (ox1 - ox0, oy1 - oy0), Image.Resampling.BILINEAR, box=source
    )
    return edges.cut(original, (ox0, oy0, ox1, oy1), np.asarray(alpha), soft)


def select(masks: list[np.ndarray], min_area: int, max_clippings: int) -> list[Component]:
    """Every mask's components, largest first over all masks, at most max_clippings."""
    parts = [c for i, m in enumerate(masks) for c in components(m, i, min_area)]
    parts.sort(key=lambda c: -c.area)
    return parts[:max_clippings]


def full_mask(clipping: Image.Image, box: Box, size: tuple[int, int]) -> np.ndarray:
    """A clipping as a bool mask at the original's size (its alpha >= 128, placed at its box)."""
    canvas = Image.new("L", size)
    canvas.paste(clipping.getchannel("A"), box[:2])
    return np.asarray(canvas) >= 128

"""Which masks to keep: not the background, not tiny, not a near copy of a bigger one, and of the
automatic generator's only those of something no detection covers."""

from __future__ import annotations

import numpy as np

BORDER_SHARE = 0.5  # a mask touching more than this share of the image border is the background
COVER_SHARE = 0.9  # ... as is one covering more than this share of the image
DUPLICATE_IOU = 0.9
COVERED_SHARE = 0.5  # a generator mask more than this share inside the detections' masks is (part of) one
# A detection this confident covers its mask's pixels: the generator leaves them alone. Ultralytics' own default
# confidence; boxes below it (down to detect.CONFIDENCE) still prompt SAM, but often name junk (a "suitcase"
# box around a whole tote of products), so the generator still looks inside them.
CONFIDENT = 0.25


def border_share(mask: np.ndarray) -> float:
    edge = np.concatenate([mask[0, :], mask[-1, :], mask[1:-1, 0], mask[1:-1, -1]])
    return float(edge.mean())


def is_background(mask: np.ndarray) -> bool:
    return border_share(mask) > BORDER_SHARE or float(mask.mean()) > COVER_SHARE


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def keep_masks(masks: list[np.ndarray], min_area: int) -> list[np.ndarray]:
    """Masks that are neither background, nor under min_area pixels, nor a duplicate; largest first."""
    sized = sorted(((int(m.sum()), m) for m in masks), key=lambda pair: -pair[0])
    kept: list[tuple[int, np.ndarray]] = []
    for area, m in sized:
        if area < max(min_area, 1) or is_background(m):
            continue
        # IoU >= t needs the smaller area >= t * the larger: only those pairs are compared.
        if all(area < DUPLICATE_IOU * k_area or iou(m, k) < DUPLICATE_IOU for k_area, k in kept):
            kept.append((area, m))
    return [m for _, m in kept]


def covered(detected: list[np.ndarray], scores: list[float], shape: tuple[int, int]) -> np.ndarray:
    """The union of the confident detections' masks (score >= CONFIDENT) that are not the background."""
    out = np.zeros(shape, dtype=bool)
    for mask, score in zip(detected, scores, strict=True):
        if score >= CONFIDENT and not is_background(mask):
            out |= mask
    return out


def spans_the_frame(mask: np.ndarray) -> bool:
    """Whether the mask touches two or more sides of the image: sky, road, wall, table top."""
    sides = (mask[0, :].any(), mask[-1, :].any(), mask[:, 0].any(), mask[:, -1].any())
    return bool(sum(sides) >= 2)


def new_masks(covered: np.ndarray, generated: list[np.ndarray]) -> list[np.ndarray]:
    """The generated masks of unnamed objects: mostly outside the covered pixels (the confident detections'
    masks; the generator's parts of a detected object, its shirt, its wheel, would be clippings of something
    already cut whole), and not spanning the frame (an unnamed region from one side of the photo to another
    is the scene around the objects; an object YOLO names is kept whatever its extent)."""
    return [
        m for m in generated if np.logical_and(m, covered).sum() <= COVERED_SHARE * m.sum() and not spans_the_frame(m)
    ]

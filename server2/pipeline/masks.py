"""Which masks to keep: not the background, not tiny, not a near copy of another, and of the uncertain ones (the
generator's, and those of low-confidence detections) only those of something no kept mask already holds."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from server2.pipeline import clippings

BORDER_SHARE = 0.5  # a mask touching more than this share of the image border is the background
COVER_SHARE = 0.9  # ... as is one covering more than this share of the image
# Two masks this alike are one object: SAM's own NMS threshold (its generator's box_nms_thresh, and YOLO's NMS IoU).
DUPLICATE_IOU = 0.7
COVERED_SHARE = 0.5  # an uncertain mask more than this share inside the kept masks is (part of) one of them
# A detection this confident covers its mask's pixels: the generator leaves them alone. Ultralytics' own default
# confidence; boxes below it (down to detect.CONFIDENCE) still prompt SAM, but often name junk (a "suitcase"
# box around a whole tote of products, a "chair" on a person's leg), so their masks are uncertain: the generator
# still looks inside them, and they are kept only where they hold something new.
CONFIDENT = 0.25
CUT_SHARE = 0.5  # a mask lying on a side of the photo for this share of its own extent there is cut off by it
# A piece of a mask under this share of its largest piece is a fragment (a speck or sliver the decoder's upscaled
# logits left beside the object), not an object: SAM's mask is of one thing.
FRAGMENT_SHARE = 0.25
# The smallest unnamed object, on every path: a quarter of a cell of the CPU's 8 x 8 point grid (1/256 of the
# photo). That grid finds every object of a cell or more; a denser grid (the GPU's 32 x 32 and its crops) adds
# masks far under it that are the photo's specks, knots and stickers rather than its objects, so what counts as
# an object must not depend on the machine that ran it.
UNNAMED_SHARE = 1 / 256


def border_share(mask: np.ndarray) -> float:
    edge = np.concatenate([mask[0, :], mask[-1, :], mask[1:-1, 0], mask[1:-1, -1]])
    return float(edge.mean())


def is_background(mask: np.ndarray) -> bool:
    return border_share(mask) > BORDER_SHARE or float(mask.mean()) > COVER_SHARE


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def keep_masks(masks: list[np.ndarray], min_area: int) -> list[np.ndarray]:
    """Masks that are neither background, nor under min_area pixels, nor a duplicate of one listed before them
    (IoU >= DUPLICATE_IOU: the list's order is the priority, the detections by confidence first); largest first."""
    kept: list[tuple[int, np.ndarray]] = []
    for m in masks:
        area = int(m.sum())
        if area < max(min_area, 1) or is_background(m):
            continue
        # IoU >= t needs the smaller area >= t * the larger: only those pairs are compared.
        if all(min(area, k) < DUPLICATE_IOU * max(area, k) or iou(m, k_mask) < DUPLICATE_IOU for k, k_mask in kept):
            kept.append((area, m))
    return [m for _, m in sorted(kept, key=lambda pair: -pair[0])]


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


def cut_by_the_frame(mask: np.ndarray) -> bool:
    """Whether a side of the image cuts the mask off: it lies on that side for at least CUT_SHARE of its own
    extent along it (a strip of wall or floor, a thing mostly outside the photo; an object merely touching the
    edge does not)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return False
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    along = (mask[0].sum() / width, mask[-1].sum() / width, mask[:, 0].sum() / height, mask[:, -1].sum() / height)
    return bool(max(along) >= CUT_SHARE)


def unnamed_objects(generated: list[np.ndarray]) -> list[np.ndarray]:
    """The generator's masks that can be objects: not spanning the frame (an unnamed region from one side of the
    photo to another is the scene around the objects), not cut off by it, not under UNNAMED_SHARE of the photo.
    A mask YOLO names is kept whatever its extent."""
    return [
        m for m in generated if m.sum() >= UNNAMED_SHARE * m.size and not spans_the_frame(m) and not cut_by_the_frame(m)
    ]


def new_masks(covered: np.ndarray, generated: list[np.ndarray], unsure: list[np.ndarray]) -> list[np.ndarray]:
    """The uncertain masks of something new, largest first: the generator's (generated) and the low-confidence
    detections' (unsure), each kept when mostly (more than COVERED_SHARE) outside the covered pixels (the
    confident detections' masks) and the uncertain masks kept before it, and kept without the covered pixels:
    those are a confident detection's object, which is cut already (a low-confidence box around a swan and the
    cow behind it gives a mask of both; the swan is what is new). SAM gives a point's sub-part, part and
    whole: the whole is kept, its parts (a shirt, a wheel, a bottle's label) and a low-confidence box on one (a
    "chair" on a person's leg) would be clippings of something already cut. A low-confidence detection's mask
    holds no generator mask (a "suitcase" 0.18 around a tote: the products in it are new), nor does a
    background mask."""
    holds_all, holds_unsure = covered.copy(), covered.copy()
    pairs = [(m, False) for m in generated] + [(m, True) for m in unsure]
    kept = []
    for m, low_confidence in sorted(pairs, key=lambda pair: -int(pair[0].sum())):
        held = holds_unsure if low_confidence else holds_all
        if is_background(m) or np.logical_and(m, held).sum() > COVERED_SHARE * m.sum():
            continue
        new = m & ~covered
        kept.append(new)
        holds_unsure |= new
        if not low_confidence:
            holds_all |= new
    return kept


def without_fragments(mask: np.ndarray) -> np.ndarray:
    """The mask without its pieces under FRAGMENT_SHARE of its largest piece."""
    labels, count = ndimage.label(mask, structure=clippings.CONNECTIVITY)
    if count < 2:
        return mask
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    return np.isin(labels, np.flatnonzero(areas >= FRAGMENT_SHARE * areas.max()))


def object_masks(
    detected: list[np.ndarray], scores: list[float], generated: list[np.ndarray], covered: np.ndarray
) -> list[np.ndarray]:
    """SAM's masks of objects, in keep_masks' priority order: every confident detection's (score >= CONFIDENT,
    in the detections' order), then the uncertain masks that hold something new (new_masks: low-confidence
    detections' and the generator's unnamed_objects), then the low-confidence detections' background masks;
    each without its fragments. covered: the confident detections' masks (covered())."""
    sure = [m for m, score in zip(detected, scores, strict=True) if score >= CONFIDENT]
    unsure = [m for m, score in zip(detected, scores, strict=True) if score < CONFIDENT and not is_background(m)]
    # A background mask (a tote filling the photo's edges) is no object but stays for refine, where the largest
    # one-colour mask is the surface the objects lie on; keep_masks drops it.
    background = [m for m, score in zip(detected, scores, strict=True) if score < CONFIDENT and is_background(m)]
    found = sure + new_masks(covered, unnamed_objects(generated), unsure) + background
    return [without_fragments(m) for m in found]

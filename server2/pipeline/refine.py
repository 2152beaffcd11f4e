"""BiRefNet (rembg's birefnet-dis session): the whole cut-out for drawings, a refinement for SAM.

When SAM's largest mask is nearly one colour it is usually the paper or table the objects lie on, not an
object: it is replaced by its part that the matting model (MATTE_MODEL) finds salient (the objects on it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

COLOUR_DISTANCE = 32.0  # RGB distance from the mask's median colour that still counts as "the same colour"
ONE_COLOUR_SHARE = 0.9
SAMPLE = 20_000


def nearly_one_colour(image: np.ndarray, mask: np.ndarray, seed: int = 0) -> bool:
    """Whether at least 90% of the mask's pixels lie close to its median colour."""
    pixels = image[mask].astype(np.float32)
    if len(pixels) == 0:
        return False
    if len(pixels) > SAMPLE:  # a fixed-seed sample keeps this fast and repeatable on big masks
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), SAMPLE, replace=False)]
    distance = np.linalg.norm(pixels - np.median(pixels, axis=0), axis=1)
    return float((distance <= COLOUR_DISTANCE).mean()) >= ONE_COLOUR_SHARE


def refine_largest(
    masks: list[np.ndarray], image: np.ndarray, salient: Callable[[], np.ndarray]
) -> tuple[list[np.ndarray], bool]:
    """masks with the largest replaced by (largest AND salient()) when it is nearly one colour.

    salient is called only when needed (the matting model costs time). Returns (masks, whether it refined).
    """
    if not masks:
        return masks, False
    largest = max(range(len(masks)), key=lambda i: int(masks[i].sum()))
    if not nearly_one_colour(image, masks[largest]):
        return masks, False
    refined = masks[largest] & salient()
    out = [m for i, m in enumerate(masks) if i != largest]
    if refined.any():
        out.insert(0, refined)
    return out, True

"""Soft edges: a clipping's alpha solved in a band around its mask's boundary, and its edge colours without
the old background (docs/architecture.md "What a clipping keeps"). The one implementation for Server2's
clippings (server2/pipeline/clippings.py) and the editor's cuts and touch-ups (server1/cutting.py).

A mask (SAM's or the matte's, upscaled to the original; or the editor's) says which pixels are the object;
it is exact to a few pixels at best and cannot say how much of a pixel of fur or hair the object covers.
So within `radius` of its boundary the mask is only a guess: a trimap (inside that band: unknown; deeper
inside: the object, alpha 1; further out: background, alpha 0) is solved with closed-form matting
(pymatting, Levin et al. 2008) on the original's pixels, and the foreground colour of every partly
transparent pixel is estimated (pymatting's multilevel estimate_foreground_ml), so a clipping put on a new
background carries none of the old one.

Guarantees: alpha is 255 deeper than the band inside and 0 beyond it outside; every pixel the mask holds
keeps alpha >= 1, so no hole opens; a partly transparent pixel not connected to the mask is dropped, so no
island appears; mask parts thinner than the band (a leg, a cable, one pixel wide) keep their binary alpha
as the known object; a pixel with alpha 255 keeps the original's colour.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from studio import layout, upright

Box = tuple[int, int, int, int]
# The band's half-width: BAND_SHARE of the object's size (the square root of its area), so a big animal's
# fur gets a wider band than a cup's rim, within [BAND_MIN, BAND_MAX] pixels of the original; and at least
# BAND_MASK_PIXELS pixels of the work copy the mask was made on (SAM's decoder answers 256 x 256 logits
# for a 1024-px work copy: its boundary is only placed to about one logit cell, 4 px).
BAND_SHARE = 0.02
BAND_MIN, BAND_MAX = 2, 40
BAND_MASK_PIXELS = 4
EPSILON = 1e-6  # closed-form matting's regulariser: pymatting's example value; 1e-7 converges far slower
# Conjugate gradients stop at this relative residual: alpha is stored in 8 bits (steps of 1/255), and the
# iteration cap bounds a bad case.
CG_TOLERANCE, CG_ITERATIONS = 1e-4, 300
SNAP = 2 / 255
TILE = 256  # the band is solved in tiles of this side (soften)


def radius(area: int, scale: float = 1.0) -> int:
    """The band's half-width in original pixels for an object of `area` original pixels whose mask was
    made at 1/scale of the original's resolution."""
    by_size = min(max(BAND_SHARE * math.sqrt(max(area, 0)), BAND_MIN), BAND_MAX)
    return math.ceil(max(by_size, BAND_MASK_PIXELS * scale))


def _distance(inside: np.ndarray) -> np.ndarray:
    """Each pixel's Euclidean distance to the nearest pixel not `inside` (0 for those); beyond the array's
    edge nothing counts as outside."""
    return cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def trimap(mask: np.ndarray, r: int) -> np.ndarray:
    """float64 trimap of a bool mask: 1 object, 0 background, 0.5 the band of half-width r around its
    boundary. Parts of the mask thinner than the band (further than the band's width 2r from the part
    that is deeper than r; nearer, a bump of the mask's outline, a blocky upscaled one's included) stay 1:
    the band would leave nothing of them to start from. Beyond the array's edge the mask
    goes on as it is there: where the photo ends no band is put (the callers grow the crop by r
    elsewhere)."""
    core = _distance(mask) > r
    thin = mask & (_distance(~core) > 2 * r) if core.any() else mask
    near = _distance(~mask) <= r
    return np.where(core | thin, 1.0, np.where(near, 0.5, 0.0))


def _tiles(where: np.ndarray, margin: int):
    """(the tile, the tile grown by margin, the tile within the grown one) as slice pairs, for every
    TILE x TILE tile holding a pixel of `where`."""
    height, width = where.shape
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            tile = (slice(y, min(y + TILE, height)), slice(x, min(x + TILE, width)))
            if not where[tile].any():
                continue
            grown = (
                slice(max(y - margin, 0), min(y + TILE + margin, height)),
                slice(max(x - margin, 0), min(x + TILE + margin, width)),
            )
            inner = (
                slice(y - grown[0].start, tile[0].stop - grown[0].start),
                slice(x - grown[1].start, tile[1].stop - grown[1].start),
            )
            yield tile, grown, inner


def soften(rgb: np.ndarray, mask: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(colours uint8 HxWx3, alpha uint8 HxW) for the object `mask` (bool HxW) in `rgb` (uint8 HxWx3),
    the alpha solved in the band of half-width r (trimap), colours decontaminated where alpha < 255.
    Solved tile by tile, only where the band is: memory and time follow the band, not the object's box
    (one solve over a 12-MP object's box needs gigabytes); each tile is solved over itself grown by the
    band's width, so every unknown pixel sees the known ones nearest it on both sides."""
    from pymatting import estimate_alpha_cf, estimate_foreground_ml  # numba: compiled once, cached on disk

    tri = trimap(mask, r)
    image = rgb.astype(np.float64) / 255.0
    alpha = tri.copy()
    for tile, grown, inner in _tiles(tri == 0.5, 2 * r + 2):
        known = tri[grown]
        if not ((known == 0).any() and (known == 1).any()):  # e.g. a band that runs into the photo's edge
            alpha[tile] = np.where(tri[tile] == 0.5, mask[tile], tri[tile])  # nothing to solve from: binary
            continue
        alpha[tile] = estimate_alpha_cf(
            image[grown],
            tri[grown],
            laplacian_kwargs={"epsilon": EPSILON},
            cg_kwargs={"rtol": CG_TOLERANCE, "maxiter": CG_ITERATIONS},
        )[inner]
    # Within SNAP of 0 or 1 is the solver's tolerance, not a colour: snapped, so no faint film of 1/255
    # spreads over the band's background (and the clipping's box stays tight).
    alpha = np.where(alpha < SNAP, 0.0, np.where(alpha > 1 - SNAP, 1.0, alpha))
    alpha = _no_islands(np.rint(alpha * 255).astype(np.uint8), mask)
    alpha[mask & (alpha == 0)] = 1  # no hole where the mask held the object
    soft = (alpha > 0) & (alpha < 255)
    colours = rgb.copy()
    for tile, grown, inner in _tiles(soft, 2 * r + 2):
        foreground = estimate_foreground_ml(image[grown], alpha[grown] / 255.0)[inner]
        estimated = np.rint(np.clip(foreground, 0, 1) * 255).astype(np.uint8)
        colours[tile][soft[tile]] = estimated[soft[tile]]
    return colours, alpha


def _no_islands(alpha: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """alpha without its visible parts (8-connected) that touch no pixel of the mask."""
    count, labels = cv2.connectedComponents((alpha > 0).astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[np.unique(labels[mask & (alpha > 0)])] = True
    keep[0] = False
    return np.where(keep[labels], alpha, 0).astype(np.uint8)


def cut(original: Image.Image, box: Box, alpha: np.ndarray, soft: bool) -> tuple[Image.Image, Box] | None:
    """The clipping under alpha (uint8, the size of box (x0, y0, x1, y1) in the original), cropped tight
    around what is visible, and where it lies in the original; None when nothing is. soft: the edge solved
    (soften) in a band grown around the box, the object being alpha >= 128 (a mask made on the models'
    work copy, so exact to about one of its pixels); else alpha as it is (today's binary cut).
    upright.cut_out keeps the original's own transparency either way."""
    if soft:
        mask = alpha >= 128
        if not mask.any():
            return None
        r = radius(int(mask.sum()), max(1.0, max(original.size) / layout.RESIZED_MAX))
        x0, y0, x1, y1 = box
        grown = (max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, original.width), min(y1 + r, original.height))
        pad = ((y0 - grown[1], grown[3] - y1), (x0 - grown[0], grown[2] - x1))
        mask = np.pad(mask, pad)
        rgb = np.asarray(original.crop(grown).convert("RGB"))
        colours, alpha = soften(rgb, mask, r)
        source = Image.fromarray(colours)
        if original.mode == "RGBA":
            source.putalpha(original.crop(grown).getchannel("A"))
        box, part = grown, upright.cut_out(source, (0, 0, *source.size), Image.fromarray(alpha))
    else:
        part = upright.cut_out(original, box, Image.fromarray(np.ascontiguousarray(alpha)))
    tight = part.getchannel("A").getbbox()
    if tight is None:
        return None
    return part.crop(tight), (box[0] + tight[0], box[1] + tight[1], box[0] + tight[2], box[1] + tight[3])

"""Soft edges: a clipping's alpha solved in a band around its mask's boundary, and its edge colours without
the old background (docs/architecture.md "What a clipping keeps"). The one implementation for Server2's
clippings (server2/pipeline/clippings.py) and the editor's cuts and touch-ups (server1/cutting.py).

A mask (SAM's or the matte's, upscaled to the original; or the editor's) says which pixels are the object;
it is exact to a few pixels at best and cannot say how much of a pixel of fur or hair the object covers.
So within `radius` of its boundary the mask is only a guess: in that band (a trimap: inside it unknown;
deeper inside the object, alpha 1; further out background, alpha 0) alpha is the guided filter (He et al.
2010) of the mask by the original's colours, run twice (the second time on its own first output): in
windows as wide as the band, alpha is fitted as a linear function of colour, the local colour-line model
that closed-form matting (Levin et al. 2008) solves for, but in O(pixels) box filters instead of a sparse
solve. For an original larger than the models' work copy, the filter's coefficients are found at the work
copy's resolution (where the mask was made) and applied to every pixel of the original (He and Sun's fast
guided filter, 2015), so alpha follows the original's own pixels at full resolution. The foreground colour
of every partly transparent pixel is estimated by blur fusion (Forte and Pitie 2021), so a clipping put on
a new background carries none of the old one. Everything is computed on the clipping's crop, tile by tile
where the band is. bench/edges.py measures it (README "Soft edges").

Guarantees: alpha is 255 deeper than the band inside and 0 beyond it outside; every pixel the mask holds
keeps alpha >= 1, so no hole opens; a partly transparent pixel not connected to the mask is dropped, so no
island appears; mask parts thinner than the band (a leg, a cable, one pixel wide) keep their binary alpha
as the known object; a pixel with alpha 255 keeps the original's colour.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image

from studio import layout, upright

Box = tuple[int, int, int, int]
Slices = tuple[slice, slice]
# The band's half-width: BAND_SHARE of the object's size (the square root of its area), so a big animal's
# fur gets a wider band than a cup's rim, within [BAND_MIN, BAND_MAX] pixels of the original; and at least
# BAND_MASK_PIXELS pixels of the work copy the mask was made on (SAM's decoder answers 256 x 256 logits
# for a 1024-px work copy: its boundary is only placed to about one logit cell, 4 px).
BAND_SHARE = 0.02
BAND_MIN, BAND_MAX = 2, 40
BAND_MASK_PIXELS = 4
# The guided filter's window (He et al. 2010): radius WINDOW x r, the band's whole width, so that the window
# of every band pixel holds pixels of the object's core and of the background beyond the band. Its
# regulariser EPSILON (colours in 0..1) and FILTER_PASSES were chosen by leave-one-photo-out over
# bench/edges.py's 7 composites (every fold chose these; one pass more lowers the band's MSE by 1 %).
WINDOW = 2
EPSILON = 1e-4
FILTER_PASSES = 2
SNAP = 2 / 255
TILE = 256  # the band is filtered in tiles of at least this side (soften)
# Blur fusion (Forte & Pitie 2021, foreground): its coarse pass twice, then its fine box of 6 pixels,
# the paper's.
FUSION_COARSE_PASSES, FUSION_FINE = 2, 6


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


def _tiles(where: np.ndarray, margin: int, side: int = TILE) -> Iterator[tuple[Slices, Slices, Slices]]:
    """(the tile, the tile grown by margin, the tile within the grown one) as slice pairs, for every
    side x side tile holding a pixel of `where`."""
    height, width = where.shape
    for y in range(0, height, side):
        for x in range(0, width, side):
            tile = (slice(y, min(y + side, height)), slice(x, min(x + side, width)))
            if not where[tile].any():
                continue
            grown = (
                slice(max(y - margin, 0), min(y + side + margin, height)),
                slice(max(x - margin, 0), min(x + side + margin, width)),
            )
            inner = (
                slice(y - grown[0].start, tile[0].stop - grown[0].start),
                slice(x - grown[1].start, tile[1].stop - grown[1].start),
            )
            yield tile, grown, inner


def _dot(a: np.ndarray, image: np.ndarray) -> np.ndarray:
    """a . colour at each pixel (both HxWx3)."""
    return a[..., 0] * image[..., 0] + a[..., 1] * image[..., 1] + a[..., 2] * image[..., 2]


def _box(values: np.ndarray, rad: int) -> np.ndarray:
    """The mean over the (2 rad + 1)^2 window around each pixel (the array's edge mirrored)."""
    return cv2.blur(values, (2 * rad + 1, 2 * rad + 1), borderType=cv2.BORDER_REFLECT)


class Guide:
    """He et al.'s guided filter (2010) by a colour image (float32 HxWx3, 0..1) with windows of radius rad,
    regularised by eps: the windows' colour means and inverted covariances, computed once for every input
    filtered."""

    def __init__(self, image: np.ndarray, rad: int, eps: float) -> None:
        self.image, self.rad = image, rad
        self.mean = _box(image, rad)
        var = {}
        for i in range(3):
            for j in range(i, 3):
                var[i, j] = _box(image[..., i] * image[..., j], rad) - self.mean[..., i] * self.mean[..., j]
            var[i, i] += eps
        # Each window's symmetric 3 x 3 covariance inverted by cofactors, all windows at once.
        c00 = var[1, 1] * var[2, 2] - var[1, 2] ** 2
        c01 = var[0, 2] * var[1, 2] - var[0, 1] * var[2, 2]
        c02 = var[0, 1] * var[1, 2] - var[0, 2] * var[1, 1]
        c11 = var[0, 0] * var[2, 2] - var[0, 2] ** 2
        c12 = var[0, 1] * var[0, 2] - var[0, 0] * var[1, 2]
        c22 = var[0, 0] * var[1, 1] - var[0, 1] ** 2
        det = var[0, 0] * c00 + var[0, 1] * c01 + var[0, 2] * c02
        self.inverse = [[c / det for c in row] for row in ((c00, c01, c02), (c01, c11, c12), (c02, c12, c22))]

    def coefficients(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The filter's coefficients for p (float32 HxW): (a HxWx3, b HxW), each the mean over the pixel's
        windows of the least-squares fit a . colour + b ~ p in a window (ridge eps on a); the filtered p is
        a . colour + b."""
        mean_p = _box(p, self.rad)
        cov = _box(self.image * p[..., None], self.rad) - self.mean * mean_p[..., None]
        a = np.dstack([sum(row[k] * cov[..., k] for k in range(3)) for row in self.inverse])
        b = mean_p - _dot(a, self.mean)
        return _box(a, self.rad), _box(b, self.rad)


def _coefficients(
    rgb: np.ndarray, mask: np.ndarray, tri: np.ndarray, r: int, step: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The coefficients of alpha, a . colour + b, found at 1/step of rgb's resolution (step <= 1: at it)
    where the band needs them: (a, b, and the scales (x, y) from rgb's grid to theirs). The guided
    filter of the mask, then FILTER_PASSES - 1 times of its own output within the band (the trimap's
    known parts held): each pass fits the colour lines anew to a better alpha than the binary mask."""
    height, width = mask.shape
    if step > 1:
        size = (max(round(width / step), 1), max(round(height / step), 1))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        r = max(math.ceil(r / step), 1)
        tri = trimap(mask, r)
    band = tri == 0.5
    image = rgb.astype(np.float32) / 255
    rad = WINDOW * r
    a = np.zeros(image.shape, np.float32)
    b = tri.astype(np.float32)
    # a at a pixel: the windows within rad of it, the sums of each within rad again; per pass
    margin = (2 * rad + 1) * FILTER_PASSES
    # where a is read: the band; for bilinear upsampling, its neighbours too
    need = cv2.dilate(band.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 if step > 1 else band
    for tile, grown, inner in _tiles(need, margin, max(TILE, 4 * margin)):
        guide = Guide(image[grown], rad, EPSILON)
        p = mask[grown].astype(np.float32)
        for _ in range(FILTER_PASSES):
            ga, gb = guide.coefficients(p)
            p = np.where(band[grown], np.clip(_dot(ga, image[grown]) + gb, 0, 1), tri[grown]).astype(np.float32)
        a[tile], b[tile] = ga[inner], gb[inner]
    return a, b, (mask.shape[1] / width, mask.shape[0] / height)


def soften(rgb: np.ndarray, mask: np.ndarray, r: int, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(colours uint8 HxWx3, alpha uint8 HxW) for the object `mask` (bool HxW) in `rgb` (uint8 HxWx3),
    alpha in the band of half-width r (trimap) the guided filter of the mask by the photo's colours,
    colours decontaminated where alpha < 255 (blur fusion). step > 1: the filter's coefficients are found
    at 1/step of the resolution (the work copy's, where the mask was made) and applied to every pixel of
    rgb (He and Sun's fast guided filter): alpha follows the original's pixels at its full resolution.
    Computed tile by tile, only where the band is: memory and time follow the band, not the object's box."""
    tri = trimap(mask, r)
    band = tri == 0.5
    alpha = tri.copy()
    if band.any():
        a, b, scale = _coefficients(rgb, mask, tri, r, step)
        reach = 2 * WINDOW * r + 1  # what a band pixel's windows see
        for tile, grown, _ in _tiles(band, reach):
            known = tri[grown]
            if not ((known == 0).any() and (known == 1).any()):  # e.g. a band that runs into the photo's edge
                alpha[tile] = np.where(band[tile], mask[tile], tri[tile])  # nothing to learn colours from: binary
                continue
            if step > 1:
                at, bt = _resample(a, tile, scale), _resample(b, tile, scale)
            else:
                at, bt = a[tile], b[tile]
            q = _dot(at, rgb[tile].astype(np.float32) / 255) + bt
            alpha[tile] = np.where(band[tile], np.clip(q, 0, 1), tri[tile])
    # Within SNAP of 0 or 1 is the filter's noise, not a colour: snapped, so no faint film of 1/255
    # spreads over the band's background (and the clipping's box stays tight).
    alpha = np.where(alpha < SNAP, 0.0, np.where(alpha > 1 - SNAP, 1.0, alpha))
    alpha = _no_islands(np.rint(alpha * 255).astype(np.uint8), mask)
    alpha[mask & (alpha == 0)] = 1  # no hole where the mask held the object
    return foreground(rgb, alpha, 2 * r + 1, step), alpha


def foreground(rgb: np.ndarray, alpha: np.ndarray, reach: int, step: float = 1.0) -> np.ndarray:
    """rgb with each partly transparent pixel's colour (0 < alpha < 255) replaced by its foreground
    colour, estimated by blur fusion (Forte and Pitie 2021): in a box around the pixel, the alpha-weighted
    mean colour of the object and (1 - alpha)-weighted of the background; the pixel's own colour minus
    that mix is the residual, alpha of which goes to the object's colour and 1 - alpha to the
    background's. A coarse box first, its half side `reach` so that every partly transparent pixel's box
    holds pixels of the core and of the background; twice, as the first pass's means still hold the
    mixed pixels' colours (an 8-px ramp of red on green kept 23 levels of green, tests/studio/test_edges.py),
    the second pass's means are of the first's decontaminated colours; then the paper's fine box, for the
    colours' detail. O(pixels) per pass, whatever the box's size (cv2.blur). step > 1: the coarse passes
    at 1/step of the resolution (their means are smooth over the box anyway), the fine one at rgb's."""
    soft = (alpha > 0) & (alpha < 255)
    colours = rgb.copy()
    if not soft.any():
        return colours
    height, width = soft.shape
    near = cv2.dilate(soft.astype(np.uint8), np.ones((FUSION_FINE + 1,) * 2, np.uint8))  # the fine box's pixels
    if step > 1:
        size = (max(round(width / step), 1), max(round(height / step), 1))
        rgb_coarse = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        alpha_coarse = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        # every pixel of the small grid under one of `near`, and its neighbours (bilinear upsampling)
        near = cv2.dilate(cv2.resize(near, size, interpolation=cv2.INTER_AREA), np.ones((3, 3), np.uint8))
        reach = max(math.ceil(reach / step), 1)
    else:
        rgb_coarse, alpha_coarse = rgb, alpha
    front_coarse = rgb_coarse.astype(np.float32) / 255
    back_coarse = front_coarse.copy()
    margin = FUSION_COARSE_PASSES * reach
    for tile, grown, inner in _tiles(near > 0, margin, max(TILE, 4 * margin)):
        image = rgb_coarse[grown].astype(np.float32) / 255
        alphas = (alpha_coarse[grown].astype(np.float32) / 255)[..., None]
        front, back = image, image
        for _ in range(FUSION_COARSE_PASSES):
            front, back = _fusion(image, front, back, alphas, 2 * reach + 1)
        front_coarse[tile], back_coarse[tile] = front[inner], back[inner]
    scale = (front_coarse.shape[1] / width, front_coarse.shape[0] / height)
    for tile, grown, inner in _tiles(soft, FUSION_FINE):
        image = rgb[grown].astype(np.float32) / 255
        alphas = (alpha[grown].astype(np.float32) / 255)[..., None]
        if step > 1:
            front, back = _resample(front_coarse, grown, scale), _resample(back_coarse, grown, scale)
        else:
            front, back = front_coarse[grown], back_coarse[grown]
        front, _ = _fusion(image, front, back, alphas, FUSION_FINE)
        estimated = np.rint(front[inner] * 255).astype(np.uint8)
        colours[tile][soft[tile]] = estimated[soft[tile]]
    return colours


def _resample(values: np.ndarray, tile: Slices, scale: tuple[float, float]) -> np.ndarray:
    """values (on a grid scale = (x, y) times as fine as the full one) at the full grid's pixels of
    `tile`, bilinear, pixel centres aligned."""
    ys = (np.arange(tile[0].start, tile[0].stop, dtype=np.float32) + 0.5) * scale[1] - 0.5
    xs = (np.arange(tile[1].start, tile[1].stop, dtype=np.float32) + 0.5) * scale[0] - 0.5
    map_x, map_y = np.meshgrid(xs, ys)
    return cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _fusion(
    image: np.ndarray, front: np.ndarray, back: np.ndarray, alpha: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """One pass of blur fusion with a side x side box: (the foreground's colours, the background's)."""
    box = (side, side)
    weight = cv2.blur(alpha, box)[..., None]
    mean_front = cv2.blur(front * alpha, box)
    mean_front /= weight + 1e-5
    mean_back = cv2.blur(back * (1 - alpha), box)
    mean_back /= 1 - weight + 1e-5
    residual = image - alpha * mean_front - (1 - alpha) * mean_back
    mean_front += alpha * residual
    mean_back += (1 - alpha) * residual
    return np.clip(mean_front, 0, 1, out=mean_front), np.clip(mean_back, 0, 1, out=mean_back)


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
        scale = max(1.0, max(original.size) / layout.RESIZED_MAX)  # the original's pixels per work-copy pixel
        r = radius(int(mask.sum()), scale)
        x0, y0, x1, y1 = box
        grown = (max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, original.width), min(y1 + r, original.height))
        pad = ((y0 - grown[1], grown[3] - y1), (x0 - grown[0], grown[2] - x1))
        mask = np.pad(mask, pad)
        rgb = np.asarray(original.crop(grown).convert("RGB"))
        colours, alpha = soften(rgb, mask, r, scale)
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

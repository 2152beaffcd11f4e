"""Upload ingest: check an uploaded file by its content and turn it into a job.

`prepare` is pure (bytes in, bytes out); `store` publishes the result through
studio.image_files, the job file (resized/<id>.png) last. `ingest` does both; bench/ calls it in
process. Decoding is studio.upright's (the one decoder of "the upright original"). Speed matters
here (a 12-MP JPEG in well under 250 ms on one core): JPEGs are decoded at a reduced scale (draft
mode), the original is kept as uploaded rather than re-encoded, and PNGs are written with a low
compression level.
"""

from __future__ import annotations

import io
import re
import secrets
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

import cv2
import numpy as np
from PIL import Image

from studio import image_files, layout, upright
from studio.storage import Storage

# Pillow format name (decided from the bytes, never from the file name) -> stored extension.
FORMATS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",  # multi-picture JPEG, as many phones write
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "HEIF": ".heic",
}
ACCEPTED = upright.ACCEPTED
SHEET_PROBE_MAX = 512  # paper detection runs on a copy this small
Rejected = upright.Unreadable  # the upload is refused: the message is for the user, status the HTTP status


@dataclass
class Prepared:
    original: bytes  # what goes under input/: the upload itself unless it was straightened
    ext: str  # extension of the original, from its content
    resized: bytes  # PNG, longest side <= layout.RESIZED_MAX, upright
    thumb: bytes  # JPEG, longest side <= layout.THUMB_MAX
    width: int  # of the upright original
    height: int
    straightened: bool


def find_sheet(image: Image.Image) -> np.ndarray | None:
    """Corners (4x2, clockwise from top-left, in image pixels) of a sheet of paper that
    covers a good part of the photo and is brighter than its surroundings; else None."""
    small = image.copy()
    small.thumbnail((SHEET_PROBE_MAX, SHEET_PROBE_MAX))
    gray = cv2.GaussianBlur(cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, bright = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    total = gray.shape[0] * gray.shape[1]
    # Too small to be the sheet the objects lie on, or the whole frame (nothing to correct).
    if not 0.2 * total <= area <= 0.95 * total:
        return None
    quad = cv2.approxPolyDP(contour, 0.02 * cv2.arcLength(contour, True), True)
    if len(quad) != 4 or not cv2.isContourConvex(quad):
        return None
    points = quad.reshape(4, 2).astype(np.float32)
    # Order: top-left (smallest x+y), top-right, bottom-right, bottom-left.
    sums, diffs = points.sum(axis=1), np.diff(points, axis=1).ravel()
    ordered = np.array(
        [points[np.argmin(sums)], points[np.argmin(diffs)], points[np.argmax(sums)], points[np.argmax(diffs)]]
    )
    if len({tuple(p) for p in ordered}) != 4:
        return None
    return ordered * (image.width / small.width)


def straighten(image: Image.Image, corners: np.ndarray) -> Image.Image:
    """The sheet inside corners, warped to a flat rectangle."""
    tl, tr, br, bl = corners
    width = round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    warped = cv2.warpPerspective(np.asarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR)
    return Image.fromarray(warped)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # Fast, and for photos smaller than zlib's default strategy: the work copy is read once.
    image.save(out, "PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return out.getvalue()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def prepare(data: bytes, max_pixels: int = 100_000_000, straighten_sheet: bool = False) -> Prepared:
    """Check and convert one upload; Rejected with a clear message when it is not usable."""
    image = upright.check(data, max_pixels)
    ext = FORMATS[image.format or ""]
    try:
        width, height = upright.size(data)
        work = upright.work_copy(data, max_pixels)
        original = data
        corners = find_sheet(work) if straighten_sheet else None
        if corners is not None:
            # Clippings are cut from the original, so it must show the same flat sheet: straighten it at
            # full resolution and keep that as the original (a JPEG: transparency flattened as in the work copy).
            full = upright.flatten(upright.original(data, max_pixels))
            flat = straighten(full, corners * (full.width / work.width))
            original, ext, (width, height) = _jpeg(flat, 92), ".jpg", flat.size
            work = upright.shrink(flat, layout.RESIZED_MAX)
    except Rejected:
        raise
    except Exception:  # untrusted bytes: a decoder failure means a damaged file
        raise Rejected(upright.DAMAGED) from None
    return Prepared(original, ext, _png(work), image_files.thumb_jpeg(work), width, height, corners is not None)


def new_id(file_name: str) -> str:
    """An id from the upload's file name plus a random suffix: 'IMG 0001.HEIC' -> 'IMG_0001-3fa2c1d9'."""
    stem = layout.split_ext(PurePosixPath(file_name.replace("\\", "/")).name)[0]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:48] or "image"
    return layout.check_name(f"{stem}-{secrets.token_hex(4)}", "image id")


def display_name(image_id: str) -> str:
    """The file name part of an id made by new_id: 'IMG_0001-3fa2c1d9' -> 'IMG_0001'."""
    stem, dash, suffix = image_id.rpartition("-")
    return stem if dash and stem and re.fullmatch(r"[0-9a-f]{8}", suffix) else image_id


def store(storage: Storage, user: str, file_name: str, prepared: Prepared) -> str:
    """Publish the upload's files (studio.image_files.publish); returns the new image id."""
    return image_files.publish(
        storage, user, lambda: new_id(file_name), prepared.thumb, prepared.original, prepared.ext, prepared.resized
    )


def ingest(
    storage: Storage,
    user: str,
    file_name: str,
    data: bytes,
    max_pixels: int = 100_000_000,
    straighten_sheet: bool = False,
) -> str:
    """prepare + store: the whole ingest of one upload; returns the image id."""
    return store(storage, user, file_name, prepare(data, max_pixels, straighten_sheet))

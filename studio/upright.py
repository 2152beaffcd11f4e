"""The upright original: the one decoder of an uploaded image, for both servers, the editor and the CLI.

docs/architecture.md "The upright original". Server1's ingest (work copy, thumbnail), Server2's worker
(the original clippings are cut from, and a job's work copy), the editor's /cut and touch-ups and
`python -m server2 segment` all decode here, so every path sees the same pixels:

- upright by the EXIF orientation;
- 8 bits per channel: 16-bit samples scaled by 255/65535 (a mid-grey stays mid-grey), floating-point
  samples taken as 0.0 = black .. 1.0 = white (clipped), any other mode converted by Pillow;
- transparency (an alpha channel, or a palette's or a colour's `transparency`) kept: `original` is RGBA
  when some pixel is not opaque, else RGB. What the models see (`work_copy`, thumbnails) is flattened onto
  white; a clipping keeps the original's alpha multiplied by the mask (`cut_out`), so a transparent pixel
  never becomes opaque and the clipping's colours are the original's.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageChops, UnidentifiedImageError

from studio import layout

pillow_heif.register_heif_opener()  # originals may be HEIC/HEIF from phones

OPENERS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "HEIF"]  # Pillow opens MPO with its JPEG opener
ACCEPTED = "JPEG, PNG, WebP, BMP, TIFF or HEIC/HEIF"
DAMAGED = "the image is damaged or truncated and cannot be read"
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # "I": how Pillow opens some 16-bit files
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
# EXIF orientation -> the transpose that makes the image upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SIDEWAYS = (5, 6, 7, 8)  # orientations that swap width and height


class Unreadable(ValueError):
    """The bytes are no image this code decodes; the message says why for the user, status is HTTP's."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """The image opened (format and size known, not decoded); Unreadable when it is no image of an accepted
    format or has more than max_pixels pixels (None: Pillow's own decompression-bomb limit only)."""
    if not data:
        raise Unreadable("the file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=OPENERS)
    except Image.DecompressionBombError:
        limit = f" (limit {max_pixels / 1e6:g} MP)" if max_pixels else ""
        raise Unreadable(f"the image has too many pixels{limit}", 413) from None
    except UnidentifiedImageError:
        raise Unreadable(f"not an image this server accepts ({ACCEPTED})") from None
    except Exception:  # untrusted bytes: a format's opener failing on them (e.g. a cut-short JPEG header)
        raise Unreadable(DAMAGED) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise Unreadable("the image has no pixels")
    if max_pixels and width * height > max_pixels:
        raise Unreadable(
            f"the image has too many pixels: {width}x{height} is {width * height / 1e6:.0f} MP, "
            f"the limit is {max_pixels / 1e6:g} MP",
            413,
        )
    return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when some pixel is not opaque; 16-bit and float samples scaled (module docstring)."""
    if image.mode in _SIXTEEN_BIT or image.mode == "F":
        scale = 255.0 / 65535.0 if image.mode in _SIXTEEN_BIT else 255.0
        values = np.asarray(image, dtype=np.float32) * np.float32(scale)
        image = Image.fromarray(np.rint(np.clip(values, 0, 255)).astype(np.uint8), "L")
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema() != (255, 255):
            return rgba
        return rgba.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _decode(data: bytes, max_pixels: int | None, longest: int | None) -> Image.Image:
    image = check(data, max_pixels)
    try:
        if longest is not None and image.format in ("JPEG", "MPO"):
            image.draft("RGB", _fit(image.size, longest))  # DCT scaling: 1/2, 1/4 or 1/8 of the pixels
        image.load()
        orientation = image.getexif().get(0x0112)
        out = _eight_bit(image)
        if longest is not None:
            out = shrink(flatten(out), longest)  # before turning: fewer pixels to move
        return out.transpose(_ORIENTATION[orientation]) if orientation in _ORIENTATION else out
    except Exception:  # untrusted bytes: a decoder failure means a damaged file
        raise Unreadable(DAMAGED) from None


def original(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """The upright original at full resolution: RGB, or RGBA when it has transparency. What clippings are
    cut from (cut_out). Unreadable when unusable."""
    return _decode(data, max_pixels, None)


def size(data: bytes) -> tuple[int, int]:
    """(width, height) of the upright original, from the file's header alone (no decode)."""
    with Image.open(io.BytesIO(data)) as image:
        sideways = image.getexif().get(0x0112) in SIDEWAYS
        return (image.height, image.width) if sideways else image.size


def work_copy(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """What the models see: the upright original flattened onto white (RGB), longest side at most
    layout.RESIZED_MAX (a JPEG decoded at reduced scale). Server1 stores it as the job file."""
    return _decode(data, max_pixels, layout.RESIZED_MAX)


def flatten(image: Image.Image) -> Image.Image:
    """RGB: an RGBA image composed onto white; any other image as it is."""
    if image.mode != "RGBA":
        return image
    flat = Image.new("RGB", image.size, (255, 255, 255))
    flat.paste(image, mask=image.getchannel("A"))
    return flat


def _fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(image: Image.Image, longest: int) -> Image.Image:
    """Downscale with pixel-area averaging: sharp, and several times faster than LANCZOS.
    A whole-number factor goes first through Pillow's reduce() (a plain box average, the
    cheap part of area averaging); INTER_AREA does the fractional rest on far fewer pixels."""
    if max(image.size) <= longest:
        return image
    factor = max(image.size) // longest
    if factor >= 2:
        image = image.reduce(factor)
    return Image.fromarray(cv2.resize(np.asarray(image), _fit(image.size, longest), interpolation=cv2.INTER_AREA))


def cut_out(original: Image.Image, box: tuple[int, int, int, int], alpha: Image.Image) -> Image.Image:
    """A clipping: the original's pixels in box (x0, y0, x1, y1) as RGBA under alpha (mode L, the box's
    size), multiplied by the original's own alpha when it has one."""
    part = original.crop(box)
    if part.mode == "RGBA":
        alpha = ImageChops.multiply(alpha, part.getchannel("A"))
    part = part.convert("RGBA")
    part.putalpha(alpha)
    return part

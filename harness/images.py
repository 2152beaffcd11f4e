"""Images the tests and benchmarks upload: a real photo at any size, one that shows which way is up (as a
camera turned by 90 degrees stores it), and a decompression bomb's header."""

from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
import skimage.data
from PIL import Image

pillow_heif.register_heif_opener()


def photo(width: int = 640, height: int = 480) -> Image.Image:
    """A real photo (scikit-image's astronaut) at the given size."""
    return Image.fromarray(skimage.data.astronaut()).resize((width, height))


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def marked(width: int = 600, height: int = 400) -> Image.Image:
    """Landscape image, red in the top-left corner, else gray: shows which way is up."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, width // 4, height // 4))
    return image


def exif_rotated_jpeg() -> bytes:
    """The pixels stored sideways, as a camera turned by 90 degrees writes them, with EXIF
    orientation 6 ("rotate clockwise to view"): upright it is marked(600, 400)."""
    stored = marked(600, 400).transpose(Image.Transpose.ROTATE_90)  # what the sensor saw
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header declares width x height pixels (a decompression bomb's shape) in
    a few dozen bytes; nothing may decode it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )

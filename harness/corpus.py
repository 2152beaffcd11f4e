"""Uploads an attacker or a broken phone sends: valid images of every format and mode, and
the damaged, hostile and odd files made from them."""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np
import pillow_heif
from PIL import Image

from harness.images import encode, exif_rotated_jpeg, photo, png_bomb

pillow_heif.register_heif_opener()


def formats(base: Image.Image) -> dict[str, bytes]:
    """base as a file of every accepted format, and in the modes cameras and editors write (name -> bytes)."""
    return {
        "photo.jpg": encode(base, "JPEG", quality=85),
        "photo.png": encode(base, "PNG"),
        "photo.webp": encode(base, "WEBP"),
        "photo.bmp": encode(base, "BMP"),
        "photo.tif": encode(base, "TIFF"),
        "photo.heic": encode(base, "HEIF"),
        "alpha.png": encode(base.convert("RGBA"), "PNG"),
        "gray16.png": encode(gray16(base), "PNG"),
        "palette.png": encode(base.convert("P"), "PNG"),
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
    }


def gray16(base: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)


@functools.cache
def valid() -> dict[str, bytes]:
    """Small valid files (name -> bytes): every accepted format, odd modes, animation."""
    base = photo(96, 64)
    frames = [photo(48, 32), photo(48, 32).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return {
        **formats(base),
        "progressive.jpg": encode(base, "JPEG", progressive=True),
        "cmyk.tif": encode(base.convert("CMYK"), "TIFF"),
        "gray.jpg": encode(base.convert("L"), "JPEG"),
        "gray16.tif": encode(gray16(base), "TIFF"),
        "float.tif": encode(base.convert("F"), "TIFF"),
        "bilevel.png": encode(base.convert("1"), "PNG"),
        "palette-transparent.png": encode(base.convert("P"), "PNG", transparency=0),
        "la.png": encode(base.convert("LA"), "PNG"),
        "alpha.webp": encode(base.convert("RGBA"), "WEBP"),
        "alpha.heic": encode(base.convert("RGBA"), "HEIF"),
        "rgba.tif": encode(base.convert("RGBA"), "TIFF"),
        "lzw.tif": encode(base, "TIFF", compression="tiff_lzw"),
        "multipage.tif": encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "animated.png": encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100),
        "animated.webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
        "exif-rotated.jpg": exif_rotated_jpeg(),
        "tiny-1x1.png": encode(Image.new("RGB", (1, 1)), "PNG"),
        "strip-1x2000.png": encode(Image.new("RGB", (1, 2000), "white"), "PNG"),
    }


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) declaring another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
    raise ValueError("no SOF marker")


def _bad_exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(photo(64, 48), "JPEG", exif=exif.tobytes())


def hostile() -> dict[str, bytes]:
    """Deterministic bad and odd files (name -> bytes)."""
    files = valid()
    out: dict[str, bytes] = {
        "empty.jpg": b"",
        "one-byte.png": b"\x89",
        "magic-only.png": b"\x89PNG\r\n\x1a\n",
        "magic-only.jpg": b"\xff\xd8\xff",
        "text.jpg": b"hello, this is not an image\n" * 10,
        "page.html": b"<html><script>alert(1)</script></html>",
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "archive.zip": b"PK\x03\x04" + b"\x00" * 60,
        "pdf.png": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 100,
        "bomb-20000x20000.png": png_bomb(20000, 20000),
        "bomb-100000x1.png": png_bomb(100000, 1),
        "bomb-65535x65535.jpg": _jpeg_with_size(files["photo.jpg"], 65535, 65535),
        "bomb-30000x30000-progressive.jpg": _jpeg_with_size(files["progressive.jpg"], 30000, 30000),
        "zero-width.png": png_bomb(0, 10),
        "zero-height.jpg": _jpeg_with_size(files["photo.jpg"], 10, 0),
        "zip-bomb-idat.png": b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 3000, 3000, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * (3000 * 9001), 9))
        + _png_chunk(b"IEND", b""),
        "bad-crc.png": files["photo.png"][:30] + bytes([files["photo.png"][30] ^ 0xFF]) + files["photo.png"][31:],
        "jpeg-as-png.png": files["photo.jpg"],
        "png-as-heic.heic": files["photo.png"],
        "heic-as-jpg.jpg": files["photo.heic"],
        "tiff-as-webp.webp": files["photo.tif"],
        "no-extension": files["photo.webp"],
        "double.jpg.exe": files["photo.jpg"],
        "png-then-garbage.png": files["photo.png"] + b"\x00GARBAGE" * 100,
        "two-jpegs.jpg": files["photo.jpg"] + files["photo.jpg"],
    }
    for orientation in (0, 9, 255, 65535):
        out[f"exif-orientation-{orientation}.jpg"] = _bad_exif_jpeg(orientation)
    for name, data in files.items():
        for fraction in (0.1, 0.5, 0.9):
            out[f"truncated-{fraction}-{name}"] = data[: int(len(data) * fraction)]
    return out

"""One image's files, for both servers: publish, find, list, delete, thumbnails.

The keys come from studio.layout (docs/architecture.md "Storage layout"); this module knows
which of them belong to one image and how to find them with a listing of only that image's
names, never a whole folder. Server1 (albums, API, ingest) and Server2 (HTTP, worker) and the
job protocol (studio.jobs) all go through it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Collection

import cv2
import numpy as np
from PIL import Image

from studio import layout, upright
from studio.storage import Entry, Storage, StorageError

THUMB_QUALITY = 80  # JPEG quality of an original's thumbnail
# What a worker makes for an image: removed before a new result is published.
OUTPUT_KINDS = ("masks", "crops", "points", "boxes")


# -- finding and listing -------------------------------------------------------------------
def files(storage: Storage, user: str, image_id: str, folder: str, clippings: bool = True) -> list[Entry]:
    """The image's files in folder (one of layout.image_folders(user)), from a listing of its names only.

    In output/thumbs, clippings=False leaves out the clippings' thumbnails (the original's only)."""
    starts = [image_id]
    if clippings and folder == layout.output_dir(user, "thumbs"):
        starts.append(layout.CLIPPING_THUMB + image_id)
    return [e for start in starts for e in storage.list(folder + start) if layout.owned_by(image_id, folder, e.name)]


def original(storage: Storage, user: str, image_id: str) -> Entry | None:
    """The original as uploaded (input/<id>.<ext>), or None."""
    found = files(storage, user, image_id, layout.input_dir(user))
    return found[0] if found else None


def job(storage: Storage, user: str, image_id: str) -> Entry | None:
    """The job file (resized/<id>.<ext>), or None."""
    folder = layout.resized_dir(user)
    found = [e for e in files(storage, user, image_id, folder) if layout.job_from_resized(e.name)]
    return found[0] if found else None


def has_thumb(storage: Storage, user: str, image_id: str) -> bool:
    """Is there a thumbnail of the original? (A job dropped into resized/ by other means has none.)"""
    return bool(files(storage, user, image_id, layout.output_dir(user, "thumbs"), clippings=False))


# -- publishing an upload -------------------------------------------------------------------
def publish(
    storage: Storage, user: str, new_id: Callable[[], str], thumb: bytes, uploaded: bytes, ext: str, resized: bytes
) -> str:
    """Write an upload's thumbnail, the original as uploaded (input/<id><ext>), then its job
    file (resized/, last: that makes it work); returns the image id. The thumbnail is created
    exclusively, which reserves the id new_id() gave: two uploads never share one. On a
    storage error nothing of it is left."""
    for _ in range(8):
        image_id = new_id()
        if storage.create_exclusive(layout.thumb(user, image_id), thumb) is not None:
            break
    else:
        raise StorageError("could not find a free image id")
    written = [layout.thumb(user, image_id), layout.input_file(user, image_id, ext)]
    try:
        storage.write(written[1], uploaded)
        storage.write(layout.resized(user, image_id), resized)
    except StorageError:
        for key in written:
            with contextlib.suppress(StorageError):  # storage may be down: the error above is the news
                storage.delete(key)
        raise
    return image_id


# -- deleting --------------------------------------------------------------------------------
def delete_outputs(storage: Storage, user: str, image_id: str, keep: Collection[str] = ()) -> None:
    """Remove what a worker made for the image: masks, clippings and their thumbnails, points,
    boxes, and Server1's own embedding (not the original, the job file, the original's thumbnail, status or
    claim), except the clippings named in keep (the user's hand-made ones)."""
    kept = {*keep, *(layout.CLIPPING_THUMB + name for name in keep)}
    made = [e for kind in OUTPUT_KINDS for e in files(storage, user, image_id, layout.output_dir(user, kind))]
    thumbs = files(storage, user, image_id, layout.output_dir(user, "thumbs"))
    made += [e for e in thumbs if e.name.startswith(layout.CLIPPING_THUMB + image_id)]
    _delete(storage, [e for e in made if e.name not in kept])
    # Server1's own embedding (server1/encoding.py): a new result, Server2's embedding with it or not, replaces it.
    _delete(storage, files(storage, user, image_id, layout.output_dir(user, "cpu_embeddings")))


def delete(storage: Storage, user: str, image_id: str) -> None:
    """Remove every file of the image: the job file first so no worker picks it up again, then the status
    record, so an editor save still running fails to record its new clipping (and removes it) rather than
    adding a file after the listings below; then the rest, staging last."""
    first = [layout.resized_dir(user), layout.output_dir(user, "status")]
    for folder in first + [f for f in layout.image_folders(user) if f not in first]:
        _delete(storage, files(storage, user, image_id, folder))
    storage.delete_prefix(layout.staging_dir(user, image_id))


def delete_all(storage: Storage, user: str) -> int:
    """Every image of the user (not the settings); the job folder first so no worker starts on
    one. Returns how many originals there were."""
    count = sum(1 for _ in storage.list(layout.input_dir(user)))
    storage.delete_prefix(layout.resized_dir(user))
    for folder in layout.image_folders(user):  # resized/ again: jobs that arrived meanwhile
        storage.delete_prefix(folder)
    storage.delete_prefix(layout.output_dir(user, "staging"))
    return count


def delete_clipping(storage: Storage, user: str, name: str) -> None:
    """Remove one clipping: its PNG and its thumbnail (e.g. a version the editor replaced and undid)."""
    storage.delete(layout.crop(user, name))
    storage.delete(layout.crop_thumb(user, name))


def _delete(storage: Storage, entries: list[Entry]) -> None:
    for entry in entries:
        storage.delete(entry.key)


# -- thumbnails: the one writer ---------------------------------------------------------
def thumbnail(image: Image.Image) -> Image.Image:
    """A copy, longest side at most layout.THUMB_MAX (bilinear: fast, and enough at this size)."""
    small = image.copy()
    small.thumbnail((layout.THUMB_MAX, layout.THUMB_MAX), Image.Resampling.BILINEAR)
    return small


def thumb_jpeg(image: Image.Image) -> bytes:
    """The original's thumbnail (output/thumbs/<id>.jpg)."""
    out = io.BytesIO()
    upright.flatten(thumbnail(image)).convert("RGB").save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def thumb_png(image: Image.Image) -> bytes:
    """A clipping's thumbnail (output/thumbs/crop-<clipping>.png), transparency kept."""
    return png(thumbnail(image))


# -- PNGs of outputs: the one encoder -----------------------------------------------------
_PNG_FAST = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_SUB,
]


def png(image: Image.Image) -> bytes:
    """A clipping, mask or other output as PNG, 8 bits per channel (L, RGB or RGBA; other modes
    become RGBA). Fast: zlib's level 1 with run-length matching after the SUB filter, about three
    times faster than Pillow's level 1 on a 12-MP clipping, whose encoding is most of a cut's time.
    Where alpha is 0 the colour is written as 0: a transparent pixel shows nothing, and the long
    runs of zeros make the file smaller; every pixel with alpha > 0 is kept exactly."""
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA")
    pixels = np.asarray(image)
    if image.mode == "RGBA":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
        pixels = cv2.bitwise_and(pixels, pixels, dst=np.zeros_like(pixels), mask=pixels[:, :, 3])  # 0 where alpha is
    elif image.mode == "RGB":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", pixels, _PNG_FAST)
    if not ok:
        raise ValueError(f"could not encode a {image.mode} image of {image.width}x{image.height} as PNG")
    return encoded.tobytes()

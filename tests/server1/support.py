"""Helpers of the Server1 suites: sample images in every format, and a job finished as Server2 does."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from harness.corpus import formats
from harness.images import encode, photo
from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage


def is_upright_marked(image: Image.Image) -> bool:
    """Landscape, as marked() draws it, with its red corner at the top left."""
    rgb = np.asarray(image.convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    corner = rgb[: h // 10, : w // 10].mean(axis=(0, 1))
    other = rgb[-h // 10 :, -w // 10 :].mean(axis=(0, 1))
    return w > h and corner[0] > 200 and corner[1] < 60 and abs(other[0] - 128) < 30


@functools.cache
def samples() -> dict[str, bytes]:
    """Every accepted format and common mode of one 800 x 600 photo (harness.corpus.formats)."""
    return formats(photo(800, 600))


def finish_job(storage: Storage, user: str, image_id: str, clippings: int = 2, fail: str | None = None) -> list[str]:
    """Do what Server2 does for a job, through the job protocol: claim it, stage clippings
    (largest first) and their thumbnails, complete (status record last); or fail it."""
    jobs = Jobs(storage, owner="test-worker", max_attempts=1)
    claim = jobs.claim(user, image_id)
    assert claim is not None
    if fail:
        jobs.fail(claim, fail)
        return []
    names, staged = [], {}
    for k in range(clippings):
        name = layout.crop_name(image_id, 0, k)
        size = 200 - 40 * k
        clip = encode(Image.new("RGBA", (size, size), (255, 0, 0, 255)), "PNG")
        storage.write(claim.staging + name, clip)
        storage.write(claim.staging + "thumb-" + name, clip)
        staged[claim.staging + name] = layout.crop(user, name)
        staged[claim.staging + "thumb-" + name] = layout.crop_thumb(user, name)
        names.append(name)
    assert jobs.complete(claim, staged, clippings=names, method="sam")
    return names

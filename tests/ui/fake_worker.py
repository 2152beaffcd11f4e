"""A stand-in for Server2 in the UI tests: real job protocol (studio.jobs), simple cut-outs.

It claims a job the way Server2 does, writes RGBA clippings and their thumbnails into
the claim's staging folder, and completes (or fails) the job, so Server1 sees exactly
what a real worker leaves behind. The "segmentation" is two ellipses cut from the image.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage

# Two clippings per image: (left, top, right, bottom) as fractions of the image.
REGIONS = ((0.08, 0.12, 0.58, 0.82), (0.55, 0.3, 0.95, 0.9))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def cut_out(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """An RGBA clipping: the ellipse inside box, transparent around it."""
    w, h = image.size
    left, top, right, bottom = int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)
    piece = image.convert("RGB").crop((left, top, right, bottom)).convert("RGBA")
    mask = Image.new("L", piece.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, piece.width - 1, piece.height - 1), fill=255)
    piece.putalpha(mask)
    return piece


class FakeWorker:
    def __init__(self, storage: Storage, user: str) -> None:
        self.storage = storage
        self.user = user
        self.jobs = Jobs(storage, owner="ui-test-worker", max_attempts=1)

    def pending(self) -> list[str]:
        _, entries = self.storage.list_dir(layout.resized_dir(self.user))
        ids = [parsed[0] for e in entries if (parsed := layout.job_from_resized(e.name))]
        return [i for i in ids if not self.jobs.is_final(self.user, i)]

    def claim(self, image_id: str):
        claim = self.jobs.claim(self.user, image_id)
        assert claim is not None, f"could not claim {image_id}"
        return claim

    def finish(self, claim) -> list[str]:
        """Cut the clippings, stage them with their thumbnails, complete the job."""
        _, entries = self.storage.list_dir(layout.resized_dir(self.user))
        key = next(e.key for e in entries if layout.job_from_resized(e.name)[0] == claim.image_id)
        image = Image.open(io.BytesIO(self.storage.read(key)))
        staged: dict[str, str] = {}
        names = []
        for k, box in enumerate(REGIONS):
            name = layout.crop_name(claim.image_id, 0, k)
            piece = cut_out(image, box)
            thumb = piece.copy()
            thumb.thumbnail((256, 256))
            for final, data in (
                (layout.crop(self.user, name), _png(piece)),
                (layout.crop_thumb(self.user, name), _png(thumb)),
            ):
                staging_key = claim.staging + final.rsplit("/", 1)[1] + (".thumb" if "thumbs" in final else "")
                self.storage.write(staging_key, data)
                staged[staging_key] = final
            names.append(name)
        assert self.jobs.complete(
            claim,
            staged,
            clippings=names,
            method="sam",
            timings={"total": 0.01},
            width=image.width,
            height=image.height,
        )
        return names

    def fail(self, claim, error: str) -> str:
        return self.jobs.fail(claim, error)

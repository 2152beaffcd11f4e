"""Saving clippings from the editor: a cut with SAM's prompt decoder over the stored embedding, and touch-ups.

POST /api/images/<id>/cut           {"points", "labels", "box"} in the original's pixels -> {"clipping": {...}};
                                     on a photo not processed yet the state stays: Server2's clippings are added later
POST /api/images/<id>/clippings/<name>/mask   multipart "mask": PNG at the original's size (its alpha, or
                                     its gray levels when it has none) -> a new version of the clipping
POST /api/images/<id>/clippings/<name>/undo   back to the version before the last touch-up

The page is server1/editor_page.py, the embedding and decoder files server1/editor_models.py. All need
the owner's session (like every file route) and the CSRF token on POSTs; no GPU is involved. /cut decodes
with the decoder the embedding goes with (one onnxruntime session per decoder, the app's
Services.decoders).
Clipping files are never rewritten: a cut or a touch-up writes a new name (<id>_mask<N>_0.png, N >= 1000)
and the status record says which names are shown ("clippings"), where each lies in the original
("clipping_boxes") and which version each replaced ("edits", for undo).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import numpy as np
from flask import Blueprint, Response, request
from PIL import Image

from server1 import cutting, encoding
from server1.editor_images import RETRY_FIRST, clipping_json, known, status_record
from server1.editor_models import cpu_embedding, embedding_meta, unavailable
from server1.responses import current_user, json_body, json_error
from server1.services import services
from studio import image_files, layout, settings, upright
from studio.errors import Refused
from studio.jobs import StatusConflict
from studio.storage import NotFound

bp = Blueprint("editor", __name__)

FIRST_EDIT = 1000  # mask numbers of cut and touched-up clippings start here (the pipeline's count from 0)


def _editable(user: str, image_id: str) -> dict:
    if not known(user, image_id):
        raise Refused(404, "no such image")
    record = status_record(user, image_id)
    if not record or record.get("state") != "done":
        raise Refused(409, f"the image is {(record or {}).get('state', 'queued')}; " + RETRY_FIRST)
    return record


def _original(user: str, image_id: str) -> Image.Image:
    """The upright original at full resolution (studio.upright: as the worker cut its clippings from it)."""
    key, job = services().albums.find(user, image_id)
    source = key or job
    if not source:
        raise NotFound(f"{image_id} was deleted")
    data = services().storage.read(source)
    return upright.original(data, services().config.max_image_pixels)


def _soft_edges(user: str) -> bool:
    return bool(settings.load(services().storage, user)["soft_edges"])


def _next_edit(image_id: str, record: dict) -> int:
    """The first mask number above every edit the record names (shown, replaced or boxed): a save then
    usually claims its name at the first try instead of trying every earlier number."""
    names = [*(record.get("clippings") or []), *(record.get("clipping_boxes") or {})]
    names += [n for pair in (record.get("edits") or {}).items() for n in pair]
    found = [n for n in (layout.crop_mask_number(image_id, str(name)) for name in names) if n is not None]
    return max([FIRST_EDIT - 1, *found]) + 1


def _save(
    user: str,
    image_id: str,
    record: dict,
    image: Image.Image,
    box: list[int],
    update: Callable[[dict, str], None],
    cut: bool = False,
) -> dict:
    """Write the clipping under a fresh name and its thumbnail, then change the status record with
    update(record, name) under its version (a concurrent change makes it try again); cut: see
    _change_record. If the change is refused or the image was deleted meanwhile, the new files are removed
    again."""
    storage = services().storage
    data = image_files.png(image)
    number = _next_edit(image_id, record)
    while True:
        name = layout.crop_name(image_id, number, 0)
        if storage.create_exclusive(layout.crop(user, name), data) is not None:
            break
        number += 1
    storage.write(layout.crop_thumb(user, name), image_files.thumb_png(image))

    def change(record: dict) -> None:
        record.setdefault("clipping_boxes", {})[name] = box
        update(record, name)

    try:
        record = _change_record(user, image_id, change, cut)
    except (Refused, NotFound):
        image_files.delete_clipping(storage, user, name)
        raise
    return clipping_json(user, image_id, name, record)


def _change_record(user: str, image_id: str, change: Callable[[dict], None], cut: bool = False) -> dict:
    """Apply change to the done image's status record (studio.jobs: a conditional write, applied again after
    a concurrent change, e.g. another tab's save); the record written. cut: a hand-made clipping, also
    allowed on a queued or failed image (or one with no record yet), whose state it leaves as it is."""

    def apply(record: dict | None) -> dict:
        if record is None:
            if not known(user, image_id):
                raise NotFound(f"{image_id} was deleted")  # 404, and _save removes what it wrote
            record = {"state": "queued", "attempts": 0, "error": None, "clippings": []}
        state = record["state"]
        if state != "done" and (not cut or state == "processing"):
            raise Refused(409, f"the image is {state} now; try again once it is done")
        change(record)
        return record

    try:
        return services().jobs.change_status(user, image_id, apply)
    except StatusConflict:
        raise Refused(409, "the image is being changed by another request; try again") from None


def _refusal(handler: Callable[..., Response]) -> Callable[..., Response | tuple[Response, int]]:
    def wrapped(**kwargs: str) -> Response | tuple[Response, int]:
        try:
            return handler(**kwargs)
        except NotFound:  # the image (its original or status record) was deleted meanwhile
            return json_error("no such image", 404)
        except cutting.BadPrompt as e:
            return json_error(f"bad prompt: {e}", 400)
        except encoding.Unavailable as e:
            return unavailable(e)

    wrapped.__name__ = handler.__name__
    return wrapped


@bp.post("/api/images/<image_id>/cut")
@_refusal
def cut(image_id: str) -> Response:
    user, storage = current_user(), services().storage
    if not known(user, image_id):
        raise Refused(404, "no such image")
    record = status_record(user, image_id) or {}
    if record.get("state") == "processing":
        raise Refused(409, "the photo is being processed now; cut it out here once it is done")
    started = time.perf_counter()
    original = _original(user, image_id)
    size = original.size
    if record.get("state") == "done" and (record.get("width"), record.get("height")) != size:
        raise Refused(409, "the original changed size since it was processed; retry the image")
    points, labels, box = cutting.parse_prompt(json_body(), *size)
    meta = embedding_meta(record)
    try:
        if meta:
            npy = storage.read(layout.embedding(user, image_id))
        else:
            meta, npy = cpu_embedding(user, image_id)
        features = np.load(io.BytesIO(npy), allow_pickle=False)
        session = services().decoders.session(meta["decoder"], lambda: storage.read(layout.decoder(meta["decoder"])))
    except NotFound:
        if not known(user, image_id):
            raise  # the photo was deleted meanwhile: 404
        raise Refused(409, "the embedding or decoder is missing: " + RETRY_FIRST) from None
    embedded = (meta["width"], meta["height"])
    logits = cutting.replay(session, features, (points, labels, box), size, embedded, meta["input_size"])
    if logits is None:
        raise cutting.BadPrompt("the prompt has no positive click and no box; click inside the object")
    mask = cutting.upscale(logits, embedded, meta["input_size"], size)
    made = cutting.clip(original, mask, _soft_edges(user))
    if made is None:
        raise cutting.BadPrompt("the prompt selects nothing; click inside the object")

    def add(record: dict, name: str) -> None:
        record["clippings"] = [name, *(record.get("clippings") or [])]
        record["hand_made"] = [name, *(record.get("hand_made") or [])]  # kept by Server2's passes (studio.jobs)

    clipping = _save(user, image_id, record, *made, add, cut=True)
    return Response(
        json.dumps({"clipping": clipping, "seconds": round(time.perf_counter() - started, 3)}),
        mimetype="application/json",
    )


@bp.post("/api/images/<image_id>/clippings/<name>/mask")
@_refusal
def touch_up(image_id: str, name: str) -> Response:
    user = current_user()
    record = _editable(user, image_id)
    if name not in (record.get("clippings") or []):
        raise Refused(404, "no such clipping")
    if name not in (record.get("clipping_boxes") or {}):
        raise Refused(409, "this clipping was made before touch-ups existed: retry the image to edit it")
    upload = request.files.get("mask")
    if upload is None:
        raise Refused(400, 'send the edited mask as a PNG in the form field "mask"')
    size = (int(record["width"]), int(record["height"]))
    try:
        with Image.open(upload.stream, formats=["PNG"]) as image:
            image.load()
            if image.size != size:
                raise Refused(400, f"the mask is {image.width}x{image.height}; it must be {size[0]}x{size[1]}")
            alpha = np.asarray(image.getchannel("A") if "A" in image.getbands() else image.convert("L"))
    except (OSError, ValueError, Image.DecompressionBombError):
        raise Refused(400, "the mask is not a readable PNG") from None
    made = cutting.clip(_original(user, image_id), alpha, _soft_edges(user))
    if made is None:
        raise Refused(400, "the mask is empty: nothing would be left of the clipping")

    def replace(record: dict, new: str) -> None:
        shown = record.get("clippings") or []
        if name not in shown:
            raise Refused(409, "the clipping was changed meanwhile; reload the editor")
        record["clippings"] = [new if n == name else n for n in shown]
        record["hand_made"] = [new if n == name else n for n in record.get("hand_made") or []]
        record.setdefault("edits", {})[new] = name

    return Response(
        json.dumps({"clipping": _save(user, image_id, record, *made, replace)}), mimetype="application/json"
    )


@bp.post("/api/images/<image_id>/clippings/<name>/undo")
@_refusal
def undo(image_id: str, name: str) -> Response:
    user, storage = current_user(), services().storage
    _editable(user, image_id)
    previous: list[str] = []

    def revert(record: dict) -> None:
        edits, shown = record.get("edits") or {}, record.get("clippings") or []
        if name not in shown:
            raise Refused(404, "no such clipping")
        if name not in edits:
            raise Refused(409, "this clipping has no earlier version")
        previous[:] = [edits.pop(name)]
        record["clippings"] = [previous[0] if n == name else n for n in shown]
        record["hand_made"] = [previous[0] if n == name else n for n in record.get("hand_made") or []]
        record["clipping_boxes"].pop(name, None)

    record = _change_record(user, image_id, revert)
    image_files.delete_clipping(storage, user, name)
    return Response(
        json.dumps({"clipping": clipping_json(user, image_id, previous[0], record)}), mimetype="application/json"
    )

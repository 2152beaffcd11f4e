"""POST /upload: one or more files in the multipart field `file`, each ingested on its own.

Answer: {"images": [image objects as in /api/images], "errors": [{"name", "error"}]};
when no file was accepted, the status of the first refusal (400, 413) with {"error", "errors"}.
Form field `straighten` (1/0, default 0) asks for paper-sheet perspective correction.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify, request

from server1 import ingest
from server1.albums import image_object
from server1.responses import current_user, json_error
from server1.services import services
from studio import config, layout
from studio.storage import Entry

bp = Blueprint("upload", __name__)
log = logging.getLogger(__name__)


@bp.post("/upload")
def upload() -> tuple[Response, int]:
    user = current_user()
    files = request.files.getlist("file")
    if not files:
        return json_error("no file: send one or more images in the multipart field 'file'", 400)
    straighten = config.parse_bool(request.form.get("straighten")) is True
    storage = services().storage
    images: list[dict] = []
    errors: list[dict] = []
    statuses: list[int] = []
    for upload in files:
        name = upload.filename or "image"
        try:
            prepared = ingest.prepare(upload.read(), services().config.max_image_pixels, straighten)
        except ingest.Rejected as e:
            errors.append({"name": name, "error": f"{name}: {e}"})
            statuses.append(e.status)
            continue
        image_id = ingest.store(storage, user, name, prepared)
        original = Entry(layout.input_file(user, image_id, prepared.ext), len(prepared.original), time.time())
        images.append(image_object(user, image_id, original, None, None))
        log.info("upload %s/%s (%dx%d)", user, image_id, prepared.width, prepared.height)
    if not images:
        return json_error(errors[0]["error"], statuses[0], errors=errors)
    services().lifecycle.notify_work()
    return jsonify(images=images, errors=errors), 200

"""The JSON API of the page. Shapes:

GET  /api/images                 {"images": [{"id", "name", "created_at", "status": {"state", "error", "attempts",
                                  "updated_at"}, "original_url", "thumb_url", "clippings": [{"name", "url",
                                  "thumb_url"}], "zip_url"}]}   newest first; clippings largest first
GET  /api/settings               {"settings", "defaults", "choices", "ranges", "models" (the deployment's, by role),
                                  "sam_weights" (the chosen SAM's download, null once its weights are there)}
POST /api/settings               JSON object of changes -> {"settings", "sam_weights"}, and the chosen SAM's
                                  weights are fetched if missing; 400 {"error", "errors": {field: why}}
POST /api/images/<id>/retry      failed/done images only -> {"retried": id}; 409 otherwise
DELETE /api/images/<id>          -> {"deleted": id}
POST /api/clear                  every image of the user (settings kept) -> {"deleted": count}
GET|PUT /api/canvas              the user's composition (a JSON object); GET {} when none
GET  /api/images/<id>/clippings.zip
GET  /api/status                 {"worker": off|starting|ready|busy, "device": cuda|cpu|null, "queue": {state: n}}
"""

from __future__ import annotations

import io
import json
import zipfile

from flask import Blueprint, Response, jsonify, request, send_file

from server1.responses import current_user, json_body, json_error
from server1.services import services
from studio import image_files, layout, modelfiles, settings
from studio.storage import NotFound

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/images")
def images() -> Response:
    return Response(services().albums.images_json(current_user()), mimetype="application/json")


@bp.get("/settings")
def get_settings() -> Response:
    ranges = {**settings.INT_RANGES, **settings.FLOAT_RANGES}
    stored = settings.load(services().storage, current_user())
    return jsonify(
        settings=stored,
        defaults=settings.DEFAULTS,
        choices=settings.CHOICES,
        ranges=ranges,
        models=services().lifecycle.models_in_use(),
        sam_weights=_sam_weights(str(stored["sam_model"])),
    )


@bp.post("/settings")
def save_settings() -> Response | tuple[Response, int]:
    changes = json_body()
    if changes is None:
        return json_error("send the settings as a JSON object", 400, errors={"settings": "must be a JSON object"})
    try:
        merged = settings.save(services().storage, current_user(), changes)
    except settings.InvalidSettings as e:
        return json_error(f"invalid settings: {e}", 400, errors=e.errors)
    sam_model = str(merged["sam_model"])
    services().lifecycle.want_sam(sam_model)
    return jsonify(settings=merged, sam_weights=_sam_weights(sam_model))


def _sam_weights(sam_model: str) -> dict | None:
    """{"model", "state", "percent", "error"} while a SAM's weights are not there (queued: not yet
    listed by the leader; unchecked, checking, downloading, failed, missing), else None. "deployment": the
    deployment's own model, fetched by the leader whatever the settings say."""
    if sam_model == modelfiles.DEPLOYMENT:
        return None
    weights = services().lifecycle.weights_state(modelfiles.sam_file(sam_model)) or {"state": "queued", "error": None}
    if weights["state"] == "present":
        return None
    received, size = weights.get("received"), weights.get("size")
    percent = int(100 * received / size) if isinstance(received, int) and isinstance(size, int) and size else None
    return {"model": sam_model, "state": weights["state"], "percent": percent, "error": weights.get("error")}


@bp.post("/images/<image_id>/retry")
def retry(image_id: str) -> Response | tuple[Response, int]:
    user = current_user()
    _, job = services().albums.find(user, layout.check_name(image_id, "image id"))  # BadName: 404
    if not job:
        return json_error("no such image", 404)
    record = services().jobs.read_status(user, image_id)
    state = record["state"] if record else "queued"
    if state not in ("failed", "done"):
        return json_error(f"the image is {state}; only failed or done images can be retried", 409)
    services().jobs.retry(user, image_id, job)
    services().lifecycle.notify_work()
    return jsonify(retried=image_id)


@bp.delete("/images/<image_id>")
def delete(image_id: str) -> Response | tuple[Response, int]:
    user = current_user()
    layout.check_name(image_id, "image id")  # BadName: 404
    shown = services().albums.find(user, image_id) != (None, None)
    # Also without an original or job file: the rest of a delete that storage cut short (503) goes now.
    image_files.delete(services().storage, user, image_id)
    if not shown:
        return json_error("no such image", 404)
    return jsonify(deleted=image_id)


@bp.post("/clear")
def clear() -> Response:
    """Everything of this user but the settings; the job folder first so no worker starts on it."""
    user, storage = current_user(), services().storage
    deleted = image_files.delete_all(storage, user)
    storage.delete(layout.canvas(user))  # it showed clippings that are gone now
    return jsonify(deleted=deleted)


@bp.get("/canvas")
def get_canvas() -> Response:
    try:
        canvas = services().storage.read_json(layout.canvas(current_user()))
    except (NotFound, ValueError):
        canvas = {}
    return jsonify(canvas if isinstance(canvas, dict) else {})


@bp.put("/canvas")
def put_canvas() -> Response | tuple[Response, int]:
    limit = services().config.canvas_max_bytes
    if (request.content_length or 0) > limit:
        return json_error(f"the canvas is too large (limit {limit // 1000} kB)", 413)
    canvas = json_body()
    if not isinstance(canvas, dict):
        return json_error("send the canvas as a JSON object", 400)
    try:  # NaN/Infinity parse here but are no JSON: the page could not read the canvas back
        data = json.dumps(canvas, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return json_error("the canvas may hold only plain JSON numbers (no NaN or Infinity)", 400)
    if len(data) > limit:
        return json_error(f"the canvas is too large (limit {limit // 1000} kB)", 413)
    services().storage.write(layout.canvas(current_user()), data)
    return jsonify(saved=True, bytes=len(data))


@bp.get("/images/<image_id>/clippings.zip")
def clippings_zip(image_id: str) -> Response | tuple[Response, int]:
    user = current_user()
    record = services().jobs.read_status(user, layout.check_name(image_id, "image id"))  # BadName: 404
    names = (record or {}).get("clippings")
    if not names:
        return json_error("this image has no clippings", 404)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for name in names:
            try:
                archive.writestr(name, services().storage.read(layout.crop(user, name)))
            except (layout.BadName, NotFound):
                continue
    buffer.seek(0)
    return send_file(buffer, mimetype="application/zip", as_attachment=True, download_name=f"{image_id}-clippings.zip")


@bp.get("/status")
def status() -> Response:
    return jsonify(services().events.status_payload(services().albums.images(current_user())))

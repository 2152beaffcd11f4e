"""The editor's image data: an image's editor state, its SAM embedding and the prompt decoder.

GET  /api/images/<id>/editor        {"id", "width", "height", "original_url", "resized_url", "state",
                                     "embedding": {"url", "decoder_url", "width", "height", "input_size"} | null,
                                     "message", "clippings": [{"name", "url", "box", "undo"}]}
GET  /api/images/<id>/embedding     the embedding (.npy, float16 1x256xgxg): Server2's, else (and for
                                     ?v=cpu-<digest>) Server1's own, computed on its CPU the first time
                                     (server1/encoding.py, the app's Services.encoder); 503 with Retry-After
                                     while another is computed
GET  /api/models/sam-decoder.onnx   ?v=<digest>: that decoder; without: the newest one exported

The embedding and the decoder are immutable under their versioned URL (?v=...), so the browser keeps
them. Each embedding comes with the digest of the decoder that goes with it (Server2's in the status
record, Server1's own in its meta file): the page and /cut always decode with that one.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, Response, request

from server1 import encoding, urls
from server1.editor_images import RETRY_FIRST, clipping_json, known, status_record
from server1.responses import current_user, json_error
from server1.services import services
from studio import layout, upright
from studio.storage import NotFound, Storage

bp = Blueprint("editor_models", __name__)

IMMUTABLE = 365 * 86400
CPU = "cpu-"  # the embedding URL's version for Server1's own embedding: cpu-<decoder digest>


def embedding_meta(record: dict | None) -> dict | None:
    meta = (record or {}).get("embedding") if (record or {}).get("state") == "done" else None
    return meta if isinstance(meta, dict) and layout.MODEL_DIGEST_RE.fullmatch(str(meta.get("decoder", ""))) else None


def _version(record: dict) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", str(record.get("updated_at", "")))


def _cached(data: bytes, mimetype: str, immutable: bool) -> Response:
    response = Response(data, mimetype=mimetype)
    response.add_etag()
    response.cache_control.private = True
    if immutable:
        response.cache_control.max_age = IMMUTABLE
        response.cache_control.immutable = True
    else:
        response.cache_control.no_cache = True
    response.make_conditional(request)  # in place
    return response


@bp.get("/api/images/<image_id>/editor")
def editor(image_id: str) -> Response | tuple[Response, int]:
    user = current_user()
    if not known(user, image_id):
        return json_error("no such image", 404)
    original, job = services().albums.find(user, image_id)
    source = original or job
    if source is None:  # deleted meanwhile
        return json_error("no such image", 404)
    record = status_record(user, image_id) or {}
    meta = embedding_meta(record)
    state = record.get("state", "queued")
    url = meta and f"/api/images/{image_id}/embedding?v={_version(record)}"
    if not meta and job:  # none from Server2: Server1's own, kept or computed when the page asks for it
        meta = encoding.plan(services().storage, user, image_id, job)
        url = meta and f"/api/images/{image_id}/embedding?v={CPU}{meta['decoder']}"
    message = "Click the object to cut it out." if meta else f"This photo cannot be cut yet: {encoding.NO_ENCODER}."
    size = (record.get("width"), record.get("height"))
    if None in size:  # not processed yet: prompts are in the original's pixels all the same
        size = upright.size(services().storage.read(source))
    return Response(
        json.dumps(
            {
                "id": image_id,
                "state": state,
                "width": size[0],
                "height": size[1],
                "original_url": urls.file_url(source),
                "resized_url": urls.file_url(job) if job else None,
                "embedding": meta
                and {
                    "url": url,
                    "decoder_url": f"/api/models/sam-decoder.onnx?v={meta['decoder']}",
                    **{k: meta[k] for k in ("width", "height", "input_size")},
                },
                "message": message,
                "clippings": [clipping_json(user, image_id, n, record) for n in record.get("clippings") or []],
            }
        ),
        mimetype="application/json",
    )


@bp.get("/api/images/<image_id>/embedding")
def embedding(image_id: str) -> Response | tuple[Response, int]:
    user, version = current_user(), request.args.get("v", "")
    if not known(user, image_id):
        return json_error("no such image", 404)
    record = status_record(user, image_id) or {}
    if embedding_meta(record) and not version.startswith(CPU):
        try:
            data = services().storage.read(layout.embedding(user, image_id))
        except NotFound:
            return json_error("this image has no embedding yet: " + RETRY_FIRST, 404)
        return _cached(data, "application/octet-stream", version == _version(record))
    try:
        meta, data = cpu_embedding(user, image_id)
    except encoding.Unavailable as e:
        return unavailable(e)
    if version.startswith(CPU) and version != CPU + meta["decoder"]:  # a newer encoder came meanwhile
        return json_error("this photo's embedding goes with another decoder now: reload the editor", 409)
    return _cached(data, "application/octet-stream", version == CPU + meta["decoder"])


def cpu_embedding(user: str, image_id: str) -> tuple[dict, bytes]:
    """Server1's own embedding of the photo (meta, .npy bytes): kept, or computed now."""
    _, job = services().albums.find(user, image_id)
    if job is None:
        raise encoding.Unavailable("the photo has no work image to embed: upload it again", None)
    return services().encoder.embedding(services().storage, user, image_id, job)


def unavailable(e: encoding.Unavailable) -> tuple[Response, int]:
    response, status = json_error(str(e), 503)
    if e.retry_after is not None:
        response.headers["Retry-After"] = str(e.retry_after)
    return response, status


def _newest_decoder(storage: Storage) -> str | None:
    _, entries = storage.list_dir(layout.models_dir())
    found = [(e.mtime, digest) for e in entries if (digest := layout.decoder_digest(e.name))]
    return max(found)[1] if found else None


@bp.get("/api/models/sam-decoder.onnx")
def decoder() -> Response | tuple[Response, int]:
    storage = services().storage
    digest = request.args.get("v")
    if digest is not None and not layout.MODEL_DIGEST_RE.fullmatch(digest):
        return json_error("no such decoder", 404)
    digest = digest or _newest_decoder(storage)
    try:
        data = storage.read(layout.decoder(digest)) if digest else None
    except NotFound:
        data = None
    if data is None:
        return json_error("no decoder yet: it is exported when the first photo is processed with SAM", 404)
    return _cached(data, "application/octet-stream", immutable=request.args.get("v") == digest)

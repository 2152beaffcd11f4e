"""The editor's routes: click to cut with SAM's prompt decoder over the stored embedding, and touch-ups.

GET  /edit/<id>                     the editor page: cross-origin isolated for onnxruntime-web's threads, its
                                     CSP with 'wasm-unsafe-eval' (so are onnxruntime-web's files)
GET  /api/images/<id>/editor        {"id", "width", "height", "original_url", "resized_url", "state",
                                     "embedding": {"url", "decoder_url", "width", "height", "input_size"} | null,
                                     "message", "clippings": [{"name", "url", "box", "undo"}]}
GET  /api/images/<id>/embedding     the embedding (.npy, float16 1x256xgxg): Server2's, else (and for
                                     ?v=cpu-<digest>) Server1's own, computed on its CPU the first time
                                     (server1/encoding.py); 503 with Retry-After while another is computed
GET  /api/models/sam-decoder.onnx   ?v=<digest>: that decoder; without: the newest one exported
POST /api/images/<id>/cut           {"points", "labels", "box"} in the original's pixels -> {"clipping": {...}};
                                     on a photo not processed yet it makes the photo done, cut by hand
POST /api/images/<id>/clippings/<name>/mask   multipart "mask": PNG at the original's size (its alpha, or
                                     its gray levels when it has none) -> a new version of the clipping
POST /api/images/<id>/clippings/<name>/undo   back to the version before the last touch-up

All need the owner's session (like every file route) and the CSRF token on POSTs. The embedding and the
decoder are immutable under their versioned URL (?v=...), so the browser keeps them; no GPU is involved.
Each embedding comes with the digest of the decoder that goes with it (Server2's in the status record,
Server1's own in its meta file): the page and /cut always decode with that one.
Clipping files are never rewritten: a cut or a touch-up writes a new name (<id>_mask<N>_0.png, N >= 1000)
and the status record says which names are shown ("clippings"), where each lies in the original
("clipping_boxes") and which version each replaced ("edits", for undo).
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
import time
from collections.abc import Callable

import numpy as np
from flask import Blueprint, Response, abort, current_app, render_template, request
from PIL import Image

from server1 import cutting, encoding, urls
from server1.responses import CSP, current_user, json_body, json_error
from server1.services import services
from studio import image_files, layout, upright
from studio.errors import Refused
from studio.jobs import iso
from studio.storage import NotFound, Storage

bp = Blueprint("editor", __name__)

FIRST_EDIT = 1000  # mask numbers of cut and touched-up clippings start here (the pipeline's count from 0)
IMMUTABLE = 365 * 86400
# The app's policy plus 'wasm-unsafe-eval', for the editor page and onnxruntime-web's files only: it compiles
# its vendored WebAssembly, in the page and in its worker threads (a worker takes the policy of its own
# script's response). It allows no JavaScript eval; everything else stays as strict.
EDITOR_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")
# Cross-origin isolation gives the page SharedArrayBuffer, which onnxruntime-web's threads need. The page
# loads only same-origin resources, so requiring CORP costs nothing; its workers' scripts carry it too.
ISOLATED = {
    "Content-Security-Policy": EDITOR_CSP,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
ORT_STATIC = "/static/vendor/onnxruntime-web/"
RETRY_FIRST = "process it first: retry the image and the editor can cut it once it is done"
CPU = "cpu-"  # the embedding URL's version for Server1's own embedding: cpu-<decoder digest>
EMBED_WAIT = 3.0  # seconds a request waits for its turn to compute an embedding before a 503
decoders = cutting.Decoders()
encoder = encoding.Encoder(wait=EMBED_WAIT)
# onnxruntime-web's files under /static: a module script and WebAssembly must carry their types (a slim
# image may have no /etc/mime.types, and the page sends nosniff).
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")


def _record(user: str, image_id: str) -> dict | None:
    """The image's status record; None for none (BadName, a 404, for a name that is no image id)."""
    return services().jobs.read_status(user, layout.check_name(image_id, "image id"))


def _embedding_meta(record: dict | None) -> dict | None:
    meta = (record or {}).get("embedding") if (record or {}).get("state") == "done" else None
    return meta if isinstance(meta, dict) and layout.MODEL_DIGEST_RE.fullmatch(str(meta.get("decoder", ""))) else None


def _version(record: dict) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", str(record.get("updated_at", "")))


def _clipping(user: str, image_id: str, name: str, record: dict) -> dict:
    return {
        **urls.clipping(user, name),
        "box": (record.get("clipping_boxes") or {}).get(name),
        "undo": name in (record.get("edits") or {}),
    }


def _cached(data: bytes, mimetype: str, immutable: bool) -> Response:
    response = Response(data, mimetype=mimetype)
    response.add_etag()
    response.cache_control.private = True
    if immutable:
        response.cache_control.max_age = IMMUTABLE
        response.cache_control.immutable = True
    else:
        response.cache_control.no_cache = True
    return response.make_conditional(request)


@bp.get("/edit/<image_id>")
def page(image_id: str) -> Response:
    """The editor page for one of the user's images."""
    if not _known(current_user(), image_id):
        abort(404)
    response = Response(render_template("editor.html", user=current_user(), image_id=image_id))
    response.headers.update(ISOLATED)
    return response


@bp.after_app_request
def isolate_decoder_files(response: Response) -> Response:
    """onnxruntime-web's files run in the isolated page and its workers: they get the page's headers."""
    if request.path.startswith(ORT_STATIC):
        response.headers.update(ISOLATED)
    return response


@bp.get("/api/images/<image_id>/editor")
def editor(image_id: str) -> Response | tuple[Response, int]:
    user = current_user()
    if not _known(user, image_id):
        return json_error("no such image", 404)
    original, job = services().albums.find(user, image_id)
    record = _record(user, image_id) or {}
    meta = _embedding_meta(record)
    state = record.get("state", "queued")
    url = meta and f"/api/images/{image_id}/embedding?v={_version(record)}"
    if not meta and job:  # none from Server2: Server1's own, kept or computed when the page asks for it
        meta = encoding.plan(services().storage, user, image_id, job)
        url = meta and f"/api/images/{image_id}/embedding?v={CPU}{meta['decoder']}"
    message = "Click the object to cut it out." if meta else f"This photo cannot be cut yet: {encoding.NO_ENCODER}."
    size = (record.get("width"), record.get("height"))
    if None in size and (original or job):  # not processed yet: prompts are in the original's pixels all the same
        size = upright.size(services().storage.read(original or job))
    return Response(
        json.dumps(
            {
                "id": image_id,
                "state": state,
                "width": size[0],
                "height": size[1],
                "original_url": urls.file_url(original or job),
                "resized_url": urls.file_url(job) if job else None,
                "embedding": meta
                and {
                    "url": url,
                    "decoder_url": f"/api/models/sam-decoder.onnx?v={meta['decoder']}",
                    **{k: meta[k] for k in ("width", "height", "input_size")},
                },
                "message": message,
                "clippings": [_clipping(user, image_id, n, record) for n in record.get("clippings") or []]
                if state == "done"
                else [],
            }
        ),
        mimetype="application/json",
    )


@bp.get("/api/images/<image_id>/embedding")
def embedding(image_id: str) -> Response | tuple[Response, int]:
    user, version = current_user(), request.args.get("v", "")
    if not _known(user, image_id):
        return json_error("no such image", 404)
    record = _record(user, image_id)
    if _embedding_meta(record) and not version.startswith(CPU):
        try:
            data = services().storage.read(layout.embedding(user, image_id))
        except NotFound:
            return json_error("this image has no embedding yet: " + RETRY_FIRST, 404)
        return _cached(data, "application/octet-stream", version == _version(record))
    try:
        meta, data = _cpu_embedding(user, image_id)
    except encoding.Unavailable as e:
        return _unavailable(e)
    if version.startswith(CPU) and version != CPU + meta["decoder"]:  # a newer encoder came meanwhile
        return json_error("this photo's embedding goes with another decoder now: reload the editor", 409)
    return _cached(data, "application/octet-stream", version == CPU + meta["decoder"])


def _cpu_embedding(user: str, image_id: str) -> tuple[dict, bytes]:
    """Server1's own embedding of the photo (meta, .npy bytes): kept, or computed now."""
    _, job = services().albums.find(user, image_id)
    if job is None:
        raise encoding.Unavailable("the photo has no work image to embed: upload it again", None)
    return encoder.embedding(services().storage, user, image_id, job)


def _unavailable(e: encoding.Unavailable) -> tuple[Response, int]:
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


# -- saving clippings ---------------------------------------------------------------------------
def _known(user: str, image_id: str) -> bool:
    """Whether the user has this image (BadName, a 404, for a name that is no image id)."""
    return services().albums.find(user, layout.check_name(image_id, "image id")) != (None, None)


def _editable(user: str, image_id: str) -> dict:
    if not _known(user, image_id):
        raise Refused(404, "no such image")
    record = _record(user, image_id)
    if not record or record.get("state") != "done":
        raise Refused(409, f"the image is {(record or {}).get('state', 'queued')}; " + RETRY_FIRST)
    return record


def _original(user: str, image_id: str) -> Image.Image:
    """The upright original at full resolution (studio.upright: as the worker cut its clippings from it)."""
    key, job = services().albums.find(user, image_id)
    if not (key or job):
        raise NotFound(f"{image_id} was deleted")
    data = services().storage.read(key or job)
    return upright.original(data, current_app.config["MAX_IMAGE_PIXELS"])


def _next_edit(image_id: str, record: dict) -> int:
    """The first mask number above every edit the record names (shown, replaced or boxed): a save then
    usually claims its name at the first try instead of trying every earlier number."""
    names = [*(record.get("clippings") or []), *(record.get("clipping_boxes") or {})]
    names += [n for pair in (record.get("edits") or {}).items() for n in pair]
    pattern = re.compile(re.escape(image_id) + r"_mask(\d+)_\d+\.png")
    found = [int(m.group(1)) for m in map(pattern.fullmatch, map(str, names)) if m]
    return max([FIRST_EDIT - 1, *found]) + 1


def _save(
    user: str,
    image_id: str,
    record: dict,
    image: Image.Image,
    box: list[int],
    update: Callable[[dict, str], None],
    by_hand: tuple[int, int] | None = None,
) -> dict:
    """Write the clipping under a fresh name and its thumbnail, then change the status record with
    update(record, name) under its version (a concurrent change makes it try again); by_hand: see
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
        record = _change_record(user, image_id, change, by_hand)
    except (Refused, NotFound):
        image_files.delete_clipping(storage, user, name)
        raise
    return _clipping(user, image_id, name, record)


def _change_record(
    user: str, image_id: str, change: Callable[[dict], None], by_hand: tuple[int, int] | None = None
) -> dict:
    """Apply change to the done image's status record with a conditional write (a concurrent change,
    e.g. another tab's save, makes it read and apply again); the record written. by_hand: the original's
    size, for a cut: a queued or failed image (or one with no record yet) becomes done, method "editor"."""
    storage, key = services().storage, layout.status(user, image_id)
    for _ in range(20):
        try:
            raw, version = storage.read_versioned(key)
            record = json.loads(raw)
        except NotFound:
            if not _known(user, image_id):
                raise  # deleted meanwhile: 404, and _save removes what it wrote
            version, record = None, {"state": "queued"}
        state = record.get("state")
        if state != "done" and (by_hand is None or state == "processing"):
            raise Refused(409, f"the image is {state} now; try again once it is done")
        if state != "done":
            record = {
                "state": "done",
                "attempts": record.get("attempts", 0),
                "error": None,
                "method": "editor",
                "width": by_hand[0],
                "height": by_hand[1],
                "clippings": [],
            }
        change(record)
        record["updated_at"] = iso(services().jobs.clock())
        data = json.dumps(record, separators=(",", ":")).encode()
        if storage.create_exclusive(key, data) if version is None else storage.replace_if(key, data, version):
            return record
    raise Refused(409, "the image is being changed by another request; try again")


def _refusal(handler: Callable[..., Response]) -> Callable[..., Response | tuple[Response, int]]:
    def wrapped(**kwargs: str) -> Response | tuple[Response, int]:
        try:
            return handler(**kwargs)
        except NotFound:  # the image (its original or status record) was deleted meanwhile
            return json_error("no such image", 404)
        except cutting.BadPrompt as e:
            return json_error(f"bad prompt: {e}", 400)
        except encoding.Unavailable as e:
            return _unavailable(e)

    wrapped.__name__ = handler.__name__
    return wrapped


@bp.post("/api/images/<image_id>/cut")
@_refusal
def cut(image_id: str) -> Response:
    user, storage = current_user(), services().storage
    if not _known(user, image_id):
        raise Refused(404, "no such image")
    record = _record(user, image_id) or {}
    if record.get("state") == "processing":
        raise Refused(409, "the photo is being processed now; cut it out here once it is done")
    started = time.perf_counter()
    original = _original(user, image_id)
    size = original.size
    if record.get("state") == "done" and (record.get("width"), record.get("height")) != size:
        raise Refused(409, "the original changed size since it was processed; retry the image")
    points, labels, box = cutting.parse_prompt(json_body(), *size)
    meta = _embedding_meta(record)
    try:
        if meta:
            npy = storage.read(layout.embedding(user, image_id))
        else:
            meta, npy = _cpu_embedding(user, image_id)
        features = np.load(io.BytesIO(npy), allow_pickle=False)
        session = decoders.session(meta["decoder"], lambda: storage.read(layout.decoder(meta["decoder"])))
    except NotFound:
        if not _known(user, image_id):
            raise  # the photo was deleted meanwhile: 404
        raise Refused(409, "the embedding or decoder is missing: " + RETRY_FIRST) from None
    coords, point_labels = cutting.decoder_inputs(
        points, labels, box, size, (meta["width"], meta["height"]), meta["input_size"]
    )
    logits = cutting.low_res_logits(session, features, coords, point_labels)
    mask = cutting.upscale(logits, (meta["width"], meta["height"]), meta["input_size"], size)
    made = cutting.clip(original, mask)
    if made is None:
        raise cutting.BadPrompt("the prompt selects nothing; click inside the object")

    def add(record: dict, name: str) -> None:
        record["clippings"] = [name, *(record.get("clippings") or [])]

    clipping = _save(user, image_id, record, *made, add, by_hand=size)
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
    made = cutting.clip(_original(user, image_id), alpha)
    if made is None:
        raise Refused(400, "the mask is empty: nothing would be left of the clipping")

    def replace(record: dict, new: str) -> None:
        shown = record.get("clippings") or []
        if name not in shown:
            raise Refused(409, "the clipping was changed meanwhile; reload the editor")
        record["clippings"] = [new if n == name else n for n in shown]
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
        record["clipping_boxes"].pop(name, None)

    record = _change_record(user, image_id, revert)
    image_files.delete_clipping(storage, user, name)
    return Response(
        json.dumps({"clipping": _clipping(user, image_id, previous[0], record)}), mimetype="application/json"
    )

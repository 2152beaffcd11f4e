"""The editor page (GET /edit/<id>) and the headers it and onnxruntime-web's files need.

The page is cross-origin isolated for onnxruntime-web's threads, with the app's CSP plus
'wasm-unsafe-eval'; so are onnxruntime-web's files under /static, which also get their content types
here (a slim image may have no /etc/mime.types, and the page sends nosniff), without changing the
process's mimetypes table.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request

from server1.editor_images import known
from server1.responses import CSP, current_user

bp = Blueprint("editor_page", __name__)

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
# onnxruntime-web's files: a module script and WebAssembly must carry their types.
ORT_TYPES = {".mjs": "text/javascript", ".wasm": "application/wasm"}


@bp.get("/edit/<image_id>")
def page(image_id: str) -> Response:
    """The editor page for one of the user's images."""
    if not known(current_user(), image_id):
        abort(404)
    response = Response(render_template("editor.html", user=current_user(), image_id=image_id))
    response.headers.update(ISOLATED)
    return response


@bp.after_app_request
def isolate_decoder_files(response: Response) -> Response:
    """onnxruntime-web's files run in the isolated page and its workers: they get the page's headers."""
    if request.path.startswith(ORT_STATIC):
        response.headers.update(ISOLATED)
        kind = ORT_TYPES.get(request.path[request.path.rfind(".") :])
        if kind and response.status_code == 200:
            response.mimetype = kind
    return response

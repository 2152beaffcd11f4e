"""GET /files/<key>: the logged-in user's own files (originals, thumbnails, clippings...).

The key must be exactly <one of the user's served folders, from the layout> + <a valid
file name>; anything else, including another user's folder, a symlink or a path trick,
answers 404. The storage opens the file (Storage.open_file), whatever its backend. Content
types come from the extension our ingest chose by content; formats browsers do not show
(HEIC, TIFF) and unknown ones are sent as downloads.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_file

from server1 import urls
from server1.responses import current_user
from server1.services import services
from studio import layout
from studio.storage import NotFound, StorageError
from studio.storage.base import check_key

bp = Blueprint("files", __name__)

INLINE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
DOWNLOAD_TYPES = {".heic": "image/heic", ".heif": "image/heif", ".tif": "image/tiff", ".tiff": "image/tiff"}
SERVED_KINDS = ("thumbs", "crops", "masks", "boxes")
# A served file is never a page, whatever its bytes: no scripts, no plugins, no framing.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def _served_folders(user: str) -> set[str]:
    return {layout.input_dir(user), layout.resized_dir(user)} | {layout.output_dir(user, k) for k in SERVED_KINDS}


@bp.get(urls.FILES_URL + "<path:key>")
def serve(key: str) -> Response:
    user = current_user()
    folder, _, name = key.rpartition("/")
    try:
        check_key(key)
    except StorageError:
        abort(404)
    layout.check_name(name, "file name")  # BadName: 404
    if folder + "/" not in _served_folders(user):
        abort(404)
    ext = layout.split_ext(name)[1]
    mimetype = INLINE_TYPES.get(ext) or DOWNLOAD_TYPES.get(ext) or "application/octet-stream"
    download = ext not in INLINE_TYPES
    try:
        served = services().storage.open_file(key)  # refuses symlinks (another user's folder)
    except NotFound:
        abort(404)
    response = send_file(
        served.file, mimetype=mimetype, as_attachment=download, download_name=name, etag=served.etag, max_age=0
    )
    if response.status_code == 200:  # not on a 304: it has no body
        response.content_length = served.size
    response.cache_control.private = True
    response.cache_control.no_cache = True
    response.headers["Content-Security-Policy"] = FILE_CSP
    return response

"""What the editor's routes know of one of the user's images: whether it is there, its status record, a
clipping as the page shows it."""

from __future__ import annotations

from server1 import urls
from server1.services import services
from studio import layout

RETRY_FIRST = "process it first: retry the image and the editor can cut it once it is done"


def known(user: str, image_id: str) -> bool:
    """Whether the user has this image (BadName, a 404, for a name that is no image id)."""
    return services().albums.find(user, layout.check_name(image_id, "image id")) != (None, None)


def status_record(user: str, image_id: str) -> dict | None:
    """The image's status record; None for none (BadName, a 404, for a name that is no image id)."""
    return services().jobs.read_status(user, layout.check_name(image_id, "image id"))


def clipping_json(user: str, image_id: str, name: str, record: dict) -> dict:
    return {
        **urls.clipping(user, name),
        "box": (record.get("clipping_boxes") or {}).get(name),
        "undo": name in (record.get("edits") or {}),
    }

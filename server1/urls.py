"""Server1's URLs of a user's files and downloads, as the album and the editor hand them to the page."""

from __future__ import annotations

from studio import layout

FILES_URL = "/files/"  # the route serving the user's files (server1/files.py)


def file_url(key: str) -> str:
    return FILES_URL + key


def clipping(user: str, name: str) -> dict[str, str]:
    """A clipping as the album shows it; BadName for a name no worker of ours writes."""
    return {
        "name": name,
        "url": file_url(layout.crop(user, name)),
        "thumb_url": file_url(layout.crop_thumb(user, name)),
    }


def zip_url(image_id: str) -> str:
    return f"/api/images/{layout.check_name(image_id, 'image id')}/clippings.zip"

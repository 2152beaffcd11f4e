"""GET /files/<key> on both storage backends: the same bytes, headers and revalidation, and
404 for another user's file, whichever backend Server1 has (it never asks which)."""

from __future__ import annotations

import io

from harness.server1 import USERS, csrf_of
from server1 import create_app
from server1.config import Config
from tests.server1.support import samples


def test_files_are_served_alike_on_every_backend(storage_root: str) -> None:
    app = create_app(Config.from_env(shared_dir=storage_root, users=dict(USERS), start_background=False))
    try:
        alice, bob = app.test_client(), app.test_client()
        for client, user in ((alice, "alice"), (bob, "bob")):
            token = csrf_of(client.get("/login").text)
            client.post("/login", data={"username": user, "password": USERS[user], "csrf_token": token})
            client.environ_base["HTTP_X_CSRFTOKEN"] = csrf_of(client.get("/").text)
        data = samples()["photo.jpg"]
        form = {"file": (io.BytesIO(data), "photo.jpg")}
        image = alice.post("/upload", data=form, content_type="multipart/form-data").json["images"][0]

        original = alice.get(image["original_url"])
        assert original.status_code == 200 and original.data == data
        assert original.mimetype == "image/jpeg" and original.headers["Content-Length"] == str(len(data))
        assert "sandbox" in original.headers["Content-Security-Policy"] and original.headers["ETag"]
        again = alice.get(image["original_url"], headers={"If-None-Match": original.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""
        thumb = alice.get(image["thumb_url"])
        assert thumb.status_code == 200 and thumb.data[:2] == b"\xff\xd8"

        assert bob.get(image["original_url"]).status_code == 404  # alice's folder
        assert alice.get("/files/alice/input/missing.jpg").status_code == 404
    finally:
        app.extensions["server1"].events.stop()

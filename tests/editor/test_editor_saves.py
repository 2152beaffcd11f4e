"""The editor's saves without models: an uploaded photo with a `done` record written by the test, touched up
through the route. How many writes a save costs, and a photo deleted while a touch-up runs."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from harness.images import encode, photo
from harness.server1 import USERS, csrf_of
from server1 import cutting, editor
from server1.app import create_app
from server1.config import Config
from studio import layout

SIZE = (320, 240)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = create_app(Config.from_env(shared_dir=str(tmp_path / "shared"), users=dict(USERS), start_background=False))
    yield app
    app.extensions["server1"].events.stop()


def login(app: Flask) -> FlaskClient:
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
    client.environ_base["HTTP_X_CSRFTOKEN"] = csrf_of(client.get("/").text)
    return client


def done_photo(app: Flask, client: FlaskClient) -> tuple[str, str]:
    """An uploaded photo whose status record says done with one clipping (as a worker leaves it)."""
    data = encode(photo(*SIZE), "PNG")
    answer = client.post("/upload", data={"file": (io.BytesIO(data), "p.png")}, content_type="multipart/form-data")
    image_id = answer.json["images"][0]["id"]
    name = layout.crop_name(image_id, 0, 0)
    record = {
        "state": "done",
        "attempts": 1,
        "error": None,
        "updated_at": "2026-01-01T00:00:00.000Z",
        "clippings": [name],
        "clipping_boxes": {name: [0, 0, *SIZE]},
        "width": SIZE[0],
        "height": SIZE[1],
    }
    app.extensions["server1"].storage.write(layout.status("alice", image_id), json.dumps(record).encode())
    return image_id, name


def touch_up(client: FlaskClient, image_id: str, name: str):
    mask = np.zeros((SIZE[1], SIZE[0]), dtype=np.uint8)
    mask[20:200, 30:250] = 255
    return client.post(
        f"/api/images/{image_id}/clippings/{name}/mask",
        data={"mask": (io.BytesIO(encode(Image.fromarray(mask), "PNG")), "mask.png")},
        content_type="multipart/form-data",
    )


def test_the_nth_save_writes_the_clipping_once(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    client = login(app)
    image_id, name = done_photo(app, client)
    storage = app.extensions["server1"].storage
    created: list[str] = []
    create_exclusive = storage.create_exclusive

    def counted(key: str, data: bytes) -> object:
        created.append(key)
        return create_exclusive(key, data)

    monkeypatch.setattr(storage, "create_exclusive", counted)
    for n in range(1, 7):
        created.clear()
        answer = touch_up(client, image_id, name)
        assert answer.status_code == 200, answer.json
        name = answer.json["clipping"]["name"]
        crops = [k for k in created if k.startswith(layout.output_dir("alice", "crops"))]
        assert crops == [layout.crop("alice", name)], f"save {n} tried {len(crops)} names"


@pytest.mark.parametrize("gate", ["_original", "clip"])  # before reading the original; before saving
def test_deleting_the_photo_during_a_touch_up_answers_404_and_leaves_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch, gate: str
) -> None:
    editing, deleting = login(app), login(app)
    image_id, name = done_photo(app, editing)
    reached, release = threading.Event(), threading.Event()
    module = editor if gate == "_original" else cutting
    step = getattr(module, gate)

    def gated(*args: object) -> object:
        reached.set()  # the touch-up waits here while the test deletes the photo
        assert release.wait(60)
        return step(*args)

    monkeypatch.setattr(module, gate, gated)
    answers = []
    worker = threading.Thread(target=lambda: answers.append(touch_up(editing, image_id, name)))
    worker.start()
    assert reached.wait(60)
    assert deleting.delete(f"/api/images/{image_id}").status_code == 200
    release.set()
    worker.join(60)
    (answer,) = answers
    assert answer.status_code == 404, answer.json
    left = [e.key for e in app.extensions["server1"].storage.list("alice/") if image_id in e.key]
    assert left == []


def test_matte_path_records_new_and_old_still_show_and_wait_for_servers_own_embedding(app: Flask) -> None:
    """A matte-path photo keeps no SAM embedding: the editor shows its clippings and offers Server1's own
    embedding, which needs the exported encoder (none in this app, so the page says how to get it)."""
    client = login(app)
    image_id, _ = done_photo(app, client)
    storage, key = app.extensions["server1"].storage, layout.status("alice", image_id)
    record = json.loads(storage.read(key))
    for method, model in (("matte", "u2netp"), ("birefnet", None)):
        storage.write(key, json.dumps({**record, "method": method, "model": model}).encode())
        answer = client.get(f"/api/images/{image_id}/editor").json
        assert answer["state"] == "done" and len(answer["clippings"]) == 1
        assert answer["embedding"] is None and "image encoder" in answer["message"], answer["message"]


def test_a_touch_up_follows_the_soft_edges_setting(app: Flask) -> None:
    client = login(app)
    image_id, name = done_photo(app, client)
    storage = app.extensions["server1"].storage

    def saved_alpha(name: str) -> tuple[str, np.ndarray]:
        answer = touch_up(client, image_id, name)
        assert answer.status_code == 200, answer.json
        name = answer.json["clipping"]["name"]
        return name, np.asarray(Image.open(io.BytesIO(storage.read(layout.crop("alice", name)))).getchannel("A"))

    name, alpha = saved_alpha(name)
    assert ((alpha > 0) & (alpha < 255)).any()  # on, the default: a solved edge
    assert (alpha[30:-30, 30:-30] == 255).all()  # deeper than the band: the object
    assert client.post("/api/settings", json={"soft_edges": False}).status_code == 200
    _, alpha = saved_alpha(name)
    assert set(np.unique(alpha)) <= {0, 255}  # off: today's binary cut

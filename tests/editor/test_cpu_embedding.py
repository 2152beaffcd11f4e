"""The editor on photos Server2 never processed, on the real mobile_sam.pt: Server1 embeds them on its CPU with
the exported encoder (as SamPredictor.set_image does), keeps the embedding once for the owner, cuts with the
decoder that goes with it, one embedding at a time while uploads and the album still answer."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from segment_anything import SamPredictor

from harness.images import encode, photo
from harness.server1 import USERS
from server1.app import create_app
from server1.config import Config
from server2.models import Models, load_sam
from studio import image_files, layout
from studio.jobs import Jobs
from tests.conftest import realworld
from tests.editor.support import REAL, Reference, install_editor_models, iou, process, random_prompts
from tests.editor.test_editor_api import FAST, login

SEED = 2121
PHOTO = "coco_000000343934.jpg"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    shared = tmp_path_factory.mktemp("cpu-embedding") / "shared"
    app = create_app(Config.from_env(shared_dir=str(shared), users=dict(USERS), start_background=False))
    yield app
    app.extensions["server1"].events.stop()


@pytest.fixture(scope="module")
def alice(app: Flask) -> FlaskClient:
    return login(app, "alice")


def upload(client: FlaskClient, data: bytes, name: str) -> str:
    answer = client.post("/upload", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.json
    return answer.json["images"][0]["id"]


def work_image(app: Flask, image_id: str) -> Image.Image:
    storage = app.extensions["server1"].storage
    return Image.open(io.BytesIO(storage.read(layout.resized("alice", image_id)))).convert("RGB")


def test_without_an_exported_encoder_the_editor_says_what_to_do(app: Flask, alice: FlaskClient) -> None:
    image_id = upload(alice, encode(photo(400, 300), "PNG"), "a.png")
    meta = alice.get(f"/api/images/{image_id}/editor").json
    assert meta["embedding"] is None and "python -m server2 segment" in meta["message"]
    assert (meta["width"], meta["height"]) == (400, 300)
    answer = alice.get(f"/api/images/{image_id}/embedding")
    assert answer.status_code == 503 and "start Server2" in answer.json["error"]
    assert "Retry-After" not in answer.headers  # waiting does not help: an operator must start something
    cut = alice.post(f"/api/images/{image_id}/cut", json={"points": [[200, 150]], "labels": [1], "box": None})
    assert cut.status_code == 503 and "python -m server2 segment" in cut.json["error"]
    assert not app.extensions["server1"].storage.exists(layout.status("alice", image_id))


def test_an_unprocessed_photo_is_embedded_as_sam_predictor_does_and_cut_with_the_matching_decoder(
    app: Flask, alice: FlaskClient, real_editor_models: Path, real_models_dir: Path
) -> None:
    print("seed", SEED)
    storage = app.extensions["server1"].storage
    digest = install_editor_models(storage, real_editor_models)
    original = realworld("photos", PHOTO).read_bytes()
    image_id = upload(alice, original, PHOTO)
    size = Image.open(io.BytesIO(original)).size
    meta = alice.get(f"/api/images/{image_id}/editor").json
    assert meta["state"] == "queued" and (meta["width"], meta["height"]) == size
    assert meta["embedding"]["url"].endswith(f"?v=cpu-{digest}")
    assert meta["embedding"]["decoder_url"].endswith(f"?v={digest}")
    answer = alice.get(meta["embedding"]["url"])
    assert answer.status_code == 200 and "immutable" in answer.headers["Cache-Control"]
    ours = np.load(io.BytesIO(answer.data))
    assert ours.dtype == np.float16 and ours.shape == (1, 256, 64, 64)
    assert not storage.exists(layout.status("alice", image_id))  # still a queued job for Server2

    work = work_image(app, image_id)
    assert (meta["embedding"]["width"], meta["embedding"]["height"]) == work.size
    sam = load_sam(real_models_dir / "mobile_sam.pt", "cpu")
    predictor = SamPredictor(sam)
    with torch.no_grad():
        predictor.set_image(np.asarray(work))
    theirs = predictor.features.numpy()
    diff = float(np.abs(ours.astype(np.float32) - theirs).max())
    print(f"embedding: max abs diff {diff:.2e} (values up to {np.abs(theirs).max():.2f})")
    assert diff <= 2e-3

    out = io.BytesIO()
    np.save(out, theirs)
    ref = Reference("", out.getvalue(), work.size, sam=sam)
    full = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))
    # Soft edges off: the cuts are compared pixel for pixel with SamPredictor's masks.
    assert alice.post("/api/settings", json={"soft_edges": False}).status_code == 200
    ious = []
    for prompt in random_prompts(SEED, 8, *size):
        expected = ref.mask(prompt, size)
        cut = alice.post(f"/api/images/{image_id}/cut", json=prompt)
        if not expected.any():
            assert cut.status_code == 400, cut.json
            continue
        assert cut.status_code == 200, cut.json
        clip = cut.json["clipping"]
        x0, y0, x1, y1 = clip["box"]
        image = np.asarray(Image.open(io.BytesIO(alice.get(clip["url"]).data)))
        alpha = np.zeros(expected.shape, dtype=bool)
        alpha[y0:y1, x0:x1] = image[..., 3] > 0
        ious.append(iou(alpha, expected))
        opaque = image[..., 3] == 255
        np.testing.assert_array_equal(image[..., :3][opaque], full[y0:y1, x0:x1][opaque])
    print(f"/cut against SamPredictor on torch's embedding: IoU min {min(ious):.4f} mean {np.mean(ious):.4f}")
    assert len(ious) >= 4 and min(ious) >= 0.97
    record = json.loads(storage.read(layout.status("alice", image_id)))  # cut by hand: still Server2's job
    assert record["state"] == "queued" and record["hand_made"] == record["clippings"]
    assert len(record["clippings"]) == len(ious) and "embedding" not in record
    hand = record["clippings"]

    # A hand-made cut never costs the automatic ones: Server2's pass adds its clippings after them, and a
    # retry redoes only its own.
    models = Models.load(real_models_dir, "cpu", REAL)
    assert alice.post("/api/settings", json={**FAST, "mode": "sam"}).status_code == 200
    automatic = []
    for _ in range(2):
        done = process(storage, models, "alice", image_id)
        assert done["clippings"][: len(hand)] == hand and done["hand_made"] == hand
        automatic.append(done["clippings"][len(hand) :])
        assert automatic[-1] and set(automatic[-1]).isdisjoint(hand)
        shown = [c["name"] for c in alice.get(f"/api/images/{image_id}/editor").json["clippings"]]
        assert shown == done["clippings"]
        assert all(storage.exists(layout.crop("alice", n)) for n in done["clippings"])
        assert alice.post(f"/api/images/{image_id}/retry").status_code == 200
        assert Jobs(storage, "test").read_status("alice", image_id)["clippings"] == hand


def test_the_cpu_embedding_is_kept_once_for_its_owner_until_server2s_replaces_it(
    app: Flask, alice: FlaskClient, real_editor_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = app.extensions["server1"].storage
    digest = install_editor_models(storage, real_editor_models)
    runs = []
    encode_now = app.extensions["server1"].encoder.encode
    monkeypatch.setattr(app.extensions["server1"].encoder, "encode", lambda *a: runs.append(1) or encode_now(*a))
    image_id = upload(alice, encode(photo(640, 480), "JPEG"), "kept.jpg")
    url = alice.get(f"/api/images/{image_id}/editor").json["embedding"]["url"]
    bob = login(app, "bob")
    assert bob.get(url).status_code == 404 and runs == []
    first = alice.get(url)
    assert alice.get(url).data == first.data and alice.get(f"/api/images/{image_id}/embedding").data == first.data
    assert runs == [1]
    assert storage.exists(layout.cpu_embedding("alice", image_id))
    other = alice.get(f"/api/images/{image_id}/embedding?v=cpu-{'0' * 16}")  # the page's decoder is not this one's
    assert other.status_code == 409 and "reload the editor" in other.json["error"]
    # Server2's result comes with its own embedding: it wins, and publishing it removes Server1's.
    image_files.delete_outputs(storage, "alice", image_id)
    storage.write(layout.embedding("alice", image_id), b"server2's")
    fields = {"width": 640, "height": 480, "clipping_boxes": {}}
    embedding = {"decoder": digest, "width": 640, "height": 480, "input_size": 1024}
    Jobs(storage, owner="test").write_status("alice", image_id, "done", 1, embedding=embedding, **fields)
    shown = alice.get(f"/api/images/{image_id}/editor").json["embedding"]["url"]
    assert "cpu-" not in shown and alice.get(shown).data == b"server2's"
    assert not storage.exists(layout.cpu_embedding("alice", image_id))
    assert not storage.exists(layout.cpu_embedding_meta("alice", image_id))
    # A matte-path photo (done, no embedding): Server1's own again; deleting the photo deletes it.
    Jobs(storage, owner="test").write_status("alice", image_id, "done", 1, method="matte", **fields)
    shown = alice.get(f"/api/images/{image_id}/editor").json["embedding"]["url"]
    assert shown.endswith(f"?v=cpu-{digest}") and alice.get(shown).status_code == 200 and runs == [1, 1]
    assert alice.delete(f"/api/images/{image_id}").status_code == 200
    for key in (layout.cpu_embedding("alice", image_id), layout.cpu_embedding_meta("alice", image_id)):
        assert not storage.exists(key), key


def test_one_embedding_at_a_time_while_uploads_and_the_album_answer(
    app: Flask, real_editor_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_editor_models(app.extensions["server1"].storage, real_editor_models)
    clients = [login(app, "alice") for _ in range(3)]
    first, second = (upload(clients[0], encode(photo(320, 240), "PNG"), f"{n}.png") for n in "ab")
    entered, release = threading.Event(), threading.Event()
    encode_now = app.extensions["server1"].encoder.encode

    def held(*args: object) -> np.ndarray:
        entered.set()
        assert release.wait(60)
        return encode_now(*args)

    monkeypatch.setattr(app.extensions["server1"].encoder, "encode", held)
    monkeypatch.setattr(app.extensions["server1"].encoder, "wait", 0.2)
    answers = {}
    running = threading.Thread(target=lambda: answers.update(first=clients[0].get(f"/api/images/{first}/embedding")))
    running.start()
    try:
        assert entered.wait(60)  # the first embedding holds the turn
        busy = clients[1].get(f"/api/images/{second}/embedding")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2" and "try again" in busy.json["error"]
        album = clients[2].get("/api/images")
        assert album.status_code == 200 and {first, second} <= {i["id"] for i in album.json["images"]}
        upload(clients[2], encode(photo(200, 100), "PNG"), "c.png")
        assert not release.is_set() and running.is_alive()  # all that while the embedding was running
    finally:
        release.set()
        running.join(60)
    assert answers["first"].status_code == 200
    assert clients[1].get(f"/api/images/{second}/embedding").status_code == 200  # its turn now


def test_mobile_sam_loads_with_its_own_attention_biases(real_models_dir: Path) -> None:
    """TinyViT caches its attention biases when put in eval mode: load_sam must cache the loaded ones, not
    the random initial ones (the torch encoder then disagreed with its own ONNX export by 0.39)."""
    sam = load_sam(real_models_dir / "mobile_sam.pt", "cpu")
    attentions = [m for m in sam.image_encoder.modules() if hasattr(m, "attention_bias_idxs")]
    assert attentions
    for attention in attentions:
        torch.testing.assert_close(attention.ab, attention.attention_biases[:, attention.attention_bias_idxs])

"""The editor's server side on the real worker and the real weights (MobileSAM, YOLO11n, U2-Netp): the stored
embedding and decoder, /cut against SamPredictor, touch-ups with undo, and the routes' refusals (owner only, CSRF,
bad prompts)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from harness.images import encode, photo
from harness.server1 import USERS, csrf_of
from server1 import cutting
from server1.app import create_app
from server1.config import Config
from server2.models import Models
from studio import layout
from tests.editor.support import REAL, Reference, iou, process, random_prompts

SEED = 1515
FAST = {"points_per_side": 8, "crop_n_layers": 0, "min_area": 20}  # the automatic generator in seconds
ORIGINAL = (1600, 1200)  # the upload; its resized job copy is 1024 x 768


@pytest.fixture(scope="module")
def models(real_models_dir: Path) -> Models:
    return Models.load(real_models_dir, "cpu", REAL)


# One app and one processed photo for the module (the worker takes a while on a CPU); the tests that
# change the image's record come last.
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    shared = tmp_path_factory.mktemp("editor") / "shared"
    app = create_app(Config.from_env(shared_dir=str(shared), users=dict(USERS), start_background=False))
    yield app
    app.extensions["server1"].events.stop()


def login(app: Flask, user: str) -> FlaskClient:
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"username": user, "password": USERS[user], "csrf_token": token})
    client.environ_base["HTTP_X_CSRFTOKEN"] = csrf_of(client.get("/").text)
    return client


@pytest.fixture(scope="module")
def alice(app: Flask) -> FlaskClient:
    return login(app, "alice")


@pytest.fixture(scope="module")
def processed(app: Flask, alice: FlaskClient, models: Models) -> tuple[str, dict]:
    """alice's photo, uploaded and processed by the real worker: (image id, status record). Soft edges off:
    the tests here compare the editor's cuts pixel for pixel with SamPredictor's masks (the soft edge is
    tests/studio/test_edges.py's, and test_editor_saves.py's for the editor)."""
    settings = {**FAST, "sam_model": "mobile_sam", "mode": "sam", "soft_edges": False}
    assert alice.post("/api/settings", json=settings).status_code == 200
    data = encode(photo(*ORIGINAL), "JPEG", quality=92)
    answer = alice.post("/upload", data={"file": (io.BytesIO(data), "photo.jpg")}, content_type="multipart/form-data")
    image_id = answer.json["images"][0]["id"]
    return image_id, process(app.extensions["server1"].storage, models, "alice", image_id)


def original_of(app: Flask, image_id: str) -> Image.Image:
    storage = app.extensions["server1"].storage
    (entry,) = storage.list(layout.input_dir("alice") + image_id)
    return Image.open(io.BytesIO(storage.read(entry.key))).convert("RGB")


def reference(app: Flask, real_models_dir: Path, image_id: str, record: dict) -> Reference:
    npy = app.extensions["server1"].storage.read(layout.embedding("alice", image_id))
    meta = record["embedding"]
    return Reference(real_models_dir / "mobile_sam.pt", npy, (meta["width"], meta["height"]))


def test_the_worker_keeps_the_embedding_and_exports_the_decoder_once(app: Flask, processed: tuple, models) -> None:
    image_id, record = processed
    storage = app.extensions["server1"].storage
    meta = record["embedding"]
    assert (meta["width"], meta["height"], meta["input_size"]) == (1024, 768, 1024)
    embedding = np.load(io.BytesIO(storage.read(layout.embedding("alice", image_id))))
    assert embedding.dtype == np.float16 and embedding.shape == (1, 256, 64, 64)
    decoders = [e.name for e in storage.list("models/") if e.name.startswith("sam-decoder-")]
    assert decoders == [f"sam-decoder-{meta['decoder']}.onnx"]
    assert set(record["clipping_boxes"]) == set(record["clippings"])
    # A second image: same decoder, not exported again.
    stamp = storage.info(layout.decoder(meta["decoder"])).mtime
    again = process(storage, models, "alice", _upload_other(app))
    assert again["embedding"]["decoder"] == meta["decoder"]
    assert storage.info(layout.decoder(meta["decoder"])).mtime == stamp


def _upload_other(app: Flask) -> str:
    client = login(app, "alice")
    data = encode(photo(500, 400), "PNG")
    answer = client.post("/upload", data={"file": (io.BytesIO(data), "b.png")}, content_type="multipart/form-data")
    return answer.json["images"][0]["id"]


def test_embedding_and_decoder_are_served_to_their_owner_and_cached(
    app: Flask, alice: FlaskClient, processed: tuple
) -> None:
    image_id, record = processed
    meta = alice.get(f"/api/images/{image_id}/editor").json
    assert meta["embedding"]["input_size"] == 1024 and (meta["width"], meta["height"]) == ORIGINAL
    answer = alice.get(meta["embedding"]["url"])
    assert answer.status_code == 200 and np.load(io.BytesIO(answer.data)).shape == (1, 256, 64, 64)
    assert "immutable" in answer.headers["Cache-Control"] and "private" in answer.headers["Cache-Control"]
    again = alice.get(meta["embedding"]["url"], headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304
    plain = alice.get(f"/api/images/{image_id}/embedding")
    assert plain.status_code == 200 and "no-cache" in plain.headers["Cache-Control"]
    decoder = alice.get(meta["embedding"]["decoder_url"])
    assert decoder.status_code == 200 and decoder.data.startswith(b"\x08")  # an ONNX protobuf
    assert "immutable" in decoder.headers["Cache-Control"]
    assert alice.get("/api/models/sam-decoder.onnx").data == decoder.data  # the newest one
    bob = login(app, "bob")
    for url in (meta["embedding"]["url"], f"/api/images/{image_id}/editor", f"/api/images/{image_id}/embedding"):
        assert bob.get(url).status_code == 404
    for trick in ("../alice/x", "..%2F..%2Fvit_l.pth", "0123456789abcdeg", "vit_l.pth", ""):
        answer = alice.get(f"/api/models/sam-decoder.onnx?v={trick}")
        assert answer.status_code == 404 or (trick == "" and answer.data == decoder.data), trick
    for path in ("/api/models/..%2Fvit_l.pth", "/api/models/vit_l.pth", "/api/images/..%2Fbob/embedding"):
        assert alice.get(path).status_code == 404, path
    page = alice.get(f"/edit/{image_id}")
    assert (
        page.status_code == 200 and "script-src 'self' 'wasm-unsafe-eval';" in page.headers["Content-Security-Policy"]
    )
    assert page.headers["Cross-Origin-Embedder-Policy"] == "require-corp"  # isolated: onnxruntime-web's threads
    ort_file = alice.get("/static/vendor/onnxruntime-web/ort-wasm-simd-threaded.mjs")  # a worker's script
    assert ort_file.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert "'wasm-unsafe-eval'" in ort_file.headers["Content-Security-Policy"]
    for other in ("/", "/static/js/editor.js"):  # the editor page and its decoder's files only
        assert "wasm-unsafe-eval" not in alice.get(other).headers["Content-Security-Policy"], other
        assert "Cross-Origin-Embedder-Policy" not in alice.get(other).headers, other
    assert bob.get(f"/edit/{image_id}").status_code == 404
    logged_out = app.test_client()
    assert logged_out.get(meta["embedding"]["decoder_url"]).status_code in (302, 401)


def test_decoder_on_the_cpu_matches_sam_predictor(app: Flask, processed: tuple, real_models_dir: Path) -> None:
    """Server1's onnxruntime run of the exported decoder == SamPredictor, over the same stored embedding."""
    image_id, record = processed
    print("seed", SEED)
    ref = reference(app, real_models_dir, image_id, record)
    storage = app.extensions["server1"].storage
    meta = record["embedding"]
    session = cutting.Decoders().session(meta["decoder"], lambda: storage.read(layout.decoder(meta["decoder"])))
    features = np.load(io.BytesIO(storage.read(layout.embedding("alice", image_id))))
    embedded = (meta["width"], meta["height"])
    nonempty = 0
    for prompt in random_prompts(SEED, 24, *ORIGINAL):
        clicks = (prompt["points"], prompt["labels"], prompt["box"])
        logits = cutting.replay(session, features, clicks, ORIGINAL, embedded, meta["input_size"])
        theirs, their_logits = ref.mask(_scaled(prompt, embedded[0] / ORIGINAL[0]), embedded, logits=True)
        assert iou(logits > 0, their_logits > 0) >= 0.99, prompt
        ours = cutting.upscale(logits, embedded, meta["input_size"], embedded)
        assert iou(ours, theirs) >= 0.99, prompt
        nonempty += bool(theirs.any())
    assert nonempty >= 12  # the comparison is about real masks, not empty ones


def _scaled(prompt: dict, scale: float) -> dict:
    box = prompt["box"]
    return {
        "points": [[x * scale, y * scale] for x, y in prompt["points"]],
        "labels": prompt["labels"],
        "box": [v * scale for v in box] if box else None,
    }


def test_cut_saves_the_original_under_the_mask_at_full_resolution(
    app: Flask, alice: FlaskClient, processed: tuple, real_models_dir: Path
) -> None:
    image_id, record = processed
    ref = reference(app, real_models_dir, image_id, record)
    original = np.asarray(original_of(app, image_id))
    made = 0
    for prompt in random_prompts(SEED + 1, 8, *ORIGINAL):
        expected = ref.mask(prompt, ORIGINAL)
        answer = alice.post(f"/api/images/{image_id}/cut", json=prompt)
        if not expected.any():
            assert answer.status_code == 400 and "selects nothing" in answer.json["error"]
            continue
        assert answer.status_code == 200, answer.json
        clip = answer.json["clipping"]
        x0, y0, x1, y1 = clip["box"]
        image = np.asarray(Image.open(io.BytesIO(alice.get(clip["url"]).data)))
        assert image.shape == (y1 - y0, x1 - x0, 4)
        alpha = np.zeros(expected.shape, dtype=bool)
        alpha[y0:y1, x0:x1] = image[..., 3] > 0
        assert iou(alpha, expected) >= 0.99
        assert set(np.unique(image[..., 3])) <= {0, 255}
        opaque = image[..., 3] == 255
        np.testing.assert_array_equal(image[..., :3][opaque], original[y0:y1, x0:x1][opaque])
        made += 1
        listed = json.loads(alice.get("/api/images").data)["images"]
        album = next(i for i in listed if i["id"] == image_id)
        assert album["clippings"][0]["url"] == clip["url"]  # newest first in the album
    assert made >= 3


def test_touch_up_saves_a_new_version_and_undo_restores_the_old(
    app: Flask, alice: FlaskClient, processed: tuple
) -> None:
    image_id, _ = processed
    cut = alice.post(f"/api/images/{image_id}/cut", json={"points": [], "labels": [], "box": [200, 150, 1400, 1100]})
    assert cut.status_code == 200, cut.json
    clip = cut.json["clipping"]
    x0, y0, x1, y1 = clip["box"]
    before = np.asarray(Image.open(io.BytesIO(alice.get(clip["url"]).data)))
    mask = np.zeros((ORIGINAL[1], ORIGINAL[0]), dtype=np.uint8)
    mask[y0:y1, x0:x1] = before[..., 3]
    erased = (slice(y0, y0 + (y1 - y0) // 2), slice(x0, x1))  # the top half, as a brush would
    mask[erased] = 0
    restored = (slice(0, 40), slice(0, 60))  # outside the old clipping: restore brings the original back
    mask[restored] = 255
    answer = alice.post(
        f"/api/images/{image_id}/clippings/{clip['name']}/mask",
        data={"mask": (io.BytesIO(encode(Image.fromarray(mask), "PNG")), "mask.png")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 200, answer.json
    new = answer.json["clipping"]
    assert new["name"] != clip["name"] and new["undo"] and new["box"][:2] == [0, 0]
    after = np.asarray(Image.open(io.BytesIO(alice.get(new["url"]).data)))
    full = np.zeros_like(mask)
    nx0, ny0, nx1, ny1 = new["box"]
    full[ny0:ny1, nx0:nx1] = after[..., 3]
    np.testing.assert_array_equal(full, mask)  # alpha changed exactly where the strokes went
    original = np.asarray(original_of(app, image_id))
    np.testing.assert_array_equal(after[:40, :60, :3], original[:40, :60])
    shown = alice.get(f"/api/images/{image_id}/editor").json["clippings"]
    assert [c["name"] for c in shown][0] == new["name"] and clip["name"] not in [c["name"] for c in shown]

    undo = alice.post(f"/api/images/{image_id}/clippings/{new['name']}/undo")
    assert undo.status_code == 200 and undo.json["clipping"]["name"] == clip["name"]
    assert alice.get(new["url"]).status_code == 404
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(alice.get(clip["url"]).data))), before)
    again = alice.post(f"/api/images/{image_id}/clippings/{clip['name']}/undo")
    assert again.status_code == 409 and "no earlier version" in again.json["error"]


def test_bad_prompts_and_masks_are_refused_with_a_reason(alice: FlaskClient, processed: tuple) -> None:
    image_id, record = processed
    url = f"/api/images/{image_id}/cut"
    cases = {
        "no points": {"points": [], "labels": [], "box": None},
        "only negatives": {"points": [[10, 10]], "labels": [0], "box": None},
        "out of range": {"points": [[1700, 10]], "labels": [1], "box": None},
        "negative": {"points": [[-1, 10]], "labels": [1], "box": None},
        "labels": {"points": [[10, 10]], "labels": [1, 0], "box": None},
        "label value": {"points": [[10, 10]], "labels": [2], "box": None},
        "too many": {"points": [[10, 10]] * 33, "labels": [1] * 33, "box": None},
        "box order": {"points": [], "labels": [], "box": [100, 100, 50, 200]},
        "box shape": {"points": [], "labels": [], "box": [1, 2, 3]},
        "string": {"points": [["a", 1]], "labels": [1], "box": None},
    }
    for why, body in cases.items():
        answer = alice.post(url, json=body)
        assert answer.status_code == 400 and answer.json["error"].startswith("bad prompt"), why
    nan = alice.post(url, data='{"points": [[NaN, 1]], "labels": [1], "box": null}', content_type="application/json")
    assert nan.status_code == 400
    assert alice.post(url, data="nonsense", content_type="application/json").status_code == 400
    name = record["clippings"][0] if record["clippings"] else None
    if name:
        touch = f"/api/images/{image_id}/clippings/{name}/mask"
        small = encode(Image.new("L", (10, 10), 255), "PNG")
        answer = alice.post(touch, data={"mask": (io.BytesIO(small), "m.png")}, content_type="multipart/form-data")
        assert answer.status_code == 400 and "must be 1600x1200" in answer.json["error"]
        junk = alice.post(touch, data={"mask": (io.BytesIO(b"junk"), "m.png")}, content_type="multipart/form-data")
        assert junk.status_code == 400
        empty = encode(Image.new("L", ORIGINAL, 0), "PNG")
        answer = alice.post(touch, data={"mask": (io.BytesIO(empty), "m.png")}, content_type="multipart/form-data")
        assert answer.status_code == 400 and "empty" in answer.json["error"]


def no_token_post(app: Flask, client: FlaskClient, url: str, **kwargs: object):
    """POST in the client's session, without the CSRF header."""
    other = app.test_client()
    other._cookies = client._cookies
    return other.post(url, **kwargs)


def test_cut_is_refused_to_others_without_csrf_and_without_an_embedding(
    app: Flask, alice: FlaskClient, processed: tuple
) -> None:
    image_id, record = processed
    prompt = {"points": [[800, 600]], "labels": [1], "box": None}
    bob = login(app, "bob")
    assert bob.post(f"/api/images/{image_id}/cut", json=prompt).status_code == 404
    assert bob.post(f"/api/images/{image_id}/clippings/x_mask0_0.png/undo").status_code == 404
    for path in ("mask", "undo"):
        answer = no_token_post(app, alice, f"/api/images/{image_id}/clippings/{image_id}_mask0_0.png/{path}")
        assert answer.status_code == 400 and "CSRF" in answer.json["error"], path
    assert bob.post(f"/api/images/..%2F..%2Falice%2F{image_id}/cut", json=prompt).status_code == 404
    answer = no_token_post(app, alice, f"/api/images/{image_id}/cut", json=prompt)
    assert answer.status_code == 400 and "CSRF" in answer.json["error"]
    # An image processed before the editor existed: no embedding in its record. Server1 would embed it itself
    # (tests/editor/test_cpu_embedding.py) with MobileSAM's encoder, which the worker does not export.
    storage = app.extensions["server1"].storage
    old = {k: v for k, v in record.items() if k not in ("embedding", "clipping_boxes")}
    storage.write(layout.status("alice", image_id), json.dumps(old).encode())
    answer = alice.post(f"/api/images/{image_id}/cut", json=prompt)
    assert answer.status_code == 503 and "python -m server2 segment" in answer.json["error"]
    assert alice.get(f"/api/images/{image_id}/embedding").status_code == 503
    assert "python -m server2 segment" in alice.get(f"/api/images/{image_id}/editor").json["message"]
    # Deleting the image deletes its embedding.
    assert storage.exists(layout.embedding("alice", image_id))
    assert alice.delete(f"/api/images/{image_id}").status_code == 200
    assert not storage.exists(layout.embedding("alice", image_id))

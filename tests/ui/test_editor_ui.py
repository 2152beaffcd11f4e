"""The editor in Debian's Chromium against the real Server1 process, on the real weights (MobileSAM, YOLO11n,
U2-Netp): over an image processed by the real Server2 worker, onnxruntime-web's masks against SamPredictor's,
and the journey (open -> hover -> click -> save -> album and canvas; brush erase -> save -> undo); over a real
photo Server2 never processed, Server1's own embedding and a click that cuts the object out. Screenshots go
to test-artifacts/ui/editor-*.png."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from scipy import ndimage

from harness.browser import wait_in_page
from harness.images import encode, photo
from harness.server1 import Server
from server1 import cutting
from server1.ingest import ingest
from server2.models import Models, load_sam
from studio import layout, settings
from tests.conftest import realworld
from tests.editor.support import REAL, Reference, install_editor_models, iou, process, random_prompts
from tests.ui.conftest import PASSWORD, USER, Problems, shot

SEED = 2015
ORIGINAL = (1200, 900)
FAST = {"points_per_side": 8, "crop_n_layers": 0, "min_area": 20}


@pytest.fixture(scope="module")
def image_id(server: Server, real_models_dir: Path) -> str:
    """A photo ingested as an upload is, then processed by the real worker (real weights, CPU). Soft edges
    off: the cuts are compared with SamPredictor's masks, and a touch-up's change with the stroke, pixel
    for pixel."""
    settings.save(server.storage, USER, {**FAST, "sam_model": "mobile_sam", "mode": "sam", "soft_edges": False})
    image_id = ingest(server.storage, USER, "street.jpg", encode(photo(*ORIGINAL), "JPEG", quality=92))
    process(server.storage, Models.load(real_models_dir, "cpu", REAL), USER, image_id)
    return image_id


def open_editor(page: Page, server: Server, image_id: str) -> None:
    page.goto(f"{server.url}/edit/{image_id}")
    expect(page.locator("#editor")).to_have_attribute("data-ready", "1", timeout=60_000)


def record(server: Server, image_id: str) -> dict:
    return json.loads(server.storage.read(layout.status(USER, image_id)))


def test_the_browser_decoder_matches_sam_predictor(
    page: Page, server: Server, login: Callable[[Page], None], image_id: str, real_models_dir: Path
) -> None:
    print("seed", SEED)
    login(page)
    open_editor(page, server, image_id)
    meta = record(server, image_id)["embedding"]
    ref = Reference(
        real_models_dir / "mobile_sam.pt",
        server.storage.read(layout.embedding(USER, image_id)),
        (meta["width"], meta["height"]),
    )
    scale = meta["width"] / ORIGINAL[0]
    nonempty = 0
    for prompt in random_prompts(SEED, 24, *ORIGINAL):
        answer = page.evaluate("(prompt) => window.samEditor.lowRes(prompt)", prompt)
        ours = np.array(answer["bits"], dtype=bool).reshape(answer["side"], answer["side"])
        scaled = {
            "points": [[x * scale, y * scale] for x, y in prompt["points"]],
            "labels": prompt["labels"],
            "box": [v * scale for v in prompt["box"]] if prompt["box"] else None,
        }
        _, logits = ref.mask(scaled, (meta["width"], meta["height"]), logits=True)
        assert iou(ours, logits > 0) >= 0.99, prompt
        nonempty += bool(ours.any())
    assert nonempty >= 12


def test_the_preview_is_the_mask_cut_saves(
    page: Page, server: Server, login: Callable[[Page], None], image_id: str, real_models_dir: Path
) -> None:
    """The page's mask (postprocess_masks in editor.js) against server1.cutting.upscale on the same logits, and
    against SamPredictor's own mask, at the original's size: what the user previews is what /cut saves."""
    print("seed", SEED + 1)
    login(page)
    open_editor(page, server, image_id)
    meta = record(server, image_id)["embedding"]
    embedded = (meta["width"], meta["height"])
    ref = Reference(real_models_dir / "mobile_sam.pt", server.storage.read(layout.embedding(USER, image_id)), embedded)
    compared = 0
    for prompt in random_prompts(SEED + 1, 8, *ORIGINAL):
        answer = page.evaluate("([p, w, h]) => window.samEditor.mask(p, w, h)", [prompt, *ORIGINAL])
        shown = np.frombuffer(answer["bits"].encode(), dtype=np.uint8).reshape(ORIGINAL[1], ORIGINAL[0]) == ord("1")
        logits = np.array(answer["logits"], dtype=np.float32).reshape(answer["side"], answer["side"])
        saved = cutting.upscale(logits, embedded, meta["input_size"], ORIGINAL)
        assert (shown != saved).sum() <= 0.0005 * shown.size, prompt  # float rounding at the threshold only
        assert iou(shown, ref.mask(prompt, ORIGINAL)) >= 0.99, prompt
        compared += bool(shown.any())
    assert compared >= 4


def _canvas_point(page: Page, fx: float, fy: float) -> tuple[float, float]:
    box = page.locator("#ed-overlay").bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def test_cut_and_touch_up_journey(
    page: Page, server: Server, login: Callable[[Page], None], image_id: str, artifacts: Path
) -> None:
    blocked: list[str] = []  # by COEP / CORP (net::ERR_BLOCKED_BY_RESPONSE); navigations abort others
    page.on("requestfailed", lambda r: "BLOCKED" in (r.failure or "") and blocked.append(f"{r.url}: {r.failure}"))
    login(page)
    before = list(record(server, image_id)["clippings"])
    page.get_by_role("link", name="Open the original of street in the editor").click()
    expect(page.locator("#editor")).to_have_attribute("data-ready", "1", timeout=60_000)
    expect(page.locator("#ed-gpu-note")).to_contain_text("works while the GPU is off")
    # Cross-origin isolated, so onnxruntime-web may run on threads (all cores but one, at most 4); the photo
    # and every file still load.
    assert page.evaluate("window.crossOriginIsolated") is True
    threads = min(4, max(1, page.evaluate("navigator.hardwareConcurrency") - 1))
    expect(page.locator("#editor")).to_have_attribute("data-threads", str(threads))
    assert page.evaluate("document.getElementById('ed-image').naturalWidth") > 0

    # Hover previews, a click adds a point, save makes the clipping.
    decodes = int(page.locator("#editor").get_attribute("data-decodes") or 0)
    page.mouse.move(*_canvas_point(page, 0.45, 0.4))
    wait_in_page(page, f"Number(document.querySelector('#editor').dataset.decodes) > {decodes}")
    shot(page, artifacts, "editor-1-hover")
    # Moves during a decode do not queue up: after the running decode, only the latest position is decoded.
    wait_in_page(page, "document.querySelector('#editor').dataset.busy === '0'")
    decodes = int(page.locator("#editor").get_attribute("data-decodes"))
    page.evaluate(
        """() => {
          const overlay = document.getElementById('ed-overlay');
          const r = overlay.getBoundingClientRect();
          for (let i = 0; i < 20; i += 1) {
            const at = { clientX: r.left + r.width * (0.3 + i / 50), clientY: r.top + r.height / 2 };
            overlay.dispatchEvent(new PointerEvent('pointermove', { bubbles: true, pointerType: 'mouse', ...at }));
          }
        }"""
    )
    wait_in_page(page, "document.querySelector('#editor').dataset.busy === '0'")
    # 20 queued would make 21; one more than 2 is allowed for a mouse move Chromium itself may send.
    assert decodes + 2 <= int(page.locator("#editor").get_attribute("data-decodes")) <= decodes + 3
    page.mouse.move(*_canvas_point(page, 0.2, 0.3))
    page.mouse.down()
    page.mouse.move(*_canvas_point(page, 0.5, 0.55), steps=5)
    page.mouse.move(*_canvas_point(page, 0.8, 0.85), steps=5)
    page.mouse.up()
    expect(page.locator("#ed-status")).to_contain_text("Box drawn")
    page.mouse.click(*_canvas_point(page, 0.5, 0.6))
    expect(page.locator("#ed-save-cut")).to_be_enabled()
    shot(page, artifacts, "editor-2-prompt")
    page.get_by_role("button", name="Save as clipping").click()
    expect(page.locator("#ed-status")).to_contain_text("Saved as a new clipping", timeout=30_000)
    after = record(server, image_id)["clippings"]
    assert len(after) == len(before) + 1
    new = after[0]
    assert new not in before

    # The album shows it (first), and it goes on the canvas.
    page.get_by_role("link", name="Back to the album").click()
    card = page.locator(f'.card[data-id="{image_id}"]')
    expect(card.get_by_role("img", name=f"Clipping {len(after)} of street")).to_be_visible()
    card.get_by_role("button", name="Open clipping 1 of street").click()
    viewer = page.get_by_role("dialog", name="Clipping 1 of street")
    expect(viewer.locator("img").first).to_have_attribute("src", f"/files/{layout.crop(USER, new)}")
    viewer.get_by_role("button", name="Add to canvas").click()
    expect(page.locator("#canvas-count")).to_have_text("1")
    page.get_by_role("button", name="Open canvas").click()
    expect(page.locator("#stage-empty")).to_be_hidden()
    shot(page, artifacts, "editor-3-canvas")
    assert not blocked, blocked  # the editor's isolation blocked nothing, there or on the album and canvas

    # Touch-up: erase a stroke across the new clipping, save, check the alpha; then undo.
    open_editor(page, server, image_id)
    page.get_by_label("What to edit").select_option(new)
    expect(page.locator("#ed-status")).to_contain_text("Paint to erase")
    clip_box = record(server, image_id)["clipping_boxes"][new]
    old = np.asarray(Image.open(io.BytesIO(server.storage.read(layout.crop(USER, new)))))
    y = (clip_box[1] + clip_box[3]) / 2 / ORIGINAL[1]
    x0, x1 = clip_box[0] / ORIGINAL[0] - 0.05, clip_box[2] / ORIGINAL[0] + 0.05
    page.mouse.move(*_canvas_point(page, max(x0, 0.01), y))
    page.mouse.down()
    page.mouse.move(*_canvas_point(page, min(x1, 0.99), y), steps=12)
    page.mouse.up()
    shot(page, artifacts, "editor-4-brush")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#ed-status")).to_contain_text("Saved as a new version", timeout=30_000)
    edited = record(server, image_id)
    version = edited["clippings"][0]
    assert version != new and edited["edits"][version] == new
    alpha = _full_alpha(server, version, edited["clipping_boxes"][version])
    alpha_old = _full_alpha(server, new, clip_box)
    changed = np.argwhere(alpha != alpha_old)
    assert len(changed), "the stroke changed nothing"
    row = y * ORIGINAL[1]
    radius = 24 / 2 * ORIGINAL[0] / page.locator("#ed-overlay").bounding_box()["width"]
    assert np.abs(changed[:, 0] - row).max() <= radius + 3, "alpha changed away from the stroke"
    assert (alpha[int(row)] == 0).all(), "the stroke's middle line is not erased"
    assert old.shape[2] == 4
    shot(page, artifacts, "editor-5-saved")
    page.get_by_role("button", name="Back to the previous version").click()
    expect(page.locator("#ed-status")).to_contain_text("Restored the previous version")
    assert record(server, image_id)["clippings"][0] == new
    assert not server.storage.exists(layout.crop(USER, version))
    np.testing.assert_array_equal(_full_alpha(server, new, clip_box), alpha_old)


def _full_alpha(server: Server, name: str, box: list[int]) -> np.ndarray:
    image = np.asarray(Image.open(io.BytesIO(server.storage.read(layout.crop(USER, name)))))
    full = np.zeros((ORIGINAL[1], ORIGINAL[0]), dtype=np.uint8)
    full[box[1] : box[3], box[0] : box[2]] = image[..., 3]
    return full


def test_the_editor_cuts_a_real_photo_server2_never_processed(
    page: Page,
    server: Server,
    login: Callable[[Page], None],
    real_editor_models: Path,
    real_models_dir: Path,
    artifacts: Path,
) -> None:
    """Album -> editor on a queued photo: Server1 embeds it on its CPU, a hover previews, a click at the swan's
    most interior point cuts it out (against the human mask and SamPredictor); the photo stays Server2's job."""
    install_editor_models(server.storage, real_editor_models)
    data = realworld("photos", "davis_blackswan.jpg").read_bytes()
    truth = np.load(realworld("photos", "davis_blackswan.masks.npz"))
    (name,) = [k for k in truth.files if k != "ignore"]
    swan = truth[name]
    height, width = swan.shape
    inside = ndimage.distance_transform_edt(swan)
    y, x = np.unravel_index(int(inside.argmax()), inside.shape)
    other = ingest(server.storage, USER, "blackswan.jpg", data)
    assert not server.storage.exists(layout.status(USER, other))  # queued: Server2 never saw it
    login(page)
    page.get_by_role("link", name="Open the original of blackswan in the editor").click()
    expect(page.locator("#editor")).to_have_attribute("data-ready", "1", timeout=60_000)
    page.mouse.move(*_canvas_point(page, x / width, y / height))
    wait_in_page(page, "Number(document.querySelector('#editor').dataset.decodes) > 0")
    page.mouse.click(*_canvas_point(page, x / width, y / height))
    expect(page.locator("#ed-save-cut")).to_be_enabled()
    shot(page, artifacts, "editor-7-unprocessed")
    with page.expect_request(lambda r: r.url.endswith(f"/api/images/{other}/cut")) as sent:
        page.get_by_role("button", name="Save as clipping").click()
    expect(page.locator("#ed-status")).to_contain_text("Saved as a new clipping", timeout=30_000)
    prompt = sent.value.post_data_json
    done = record(server, other)
    assert done["state"] == "queued" and done["hand_made"] == done["clippings"] and len(done["clippings"]) == 1
    box = done["clipping_boxes"][done["clippings"][0]]
    image = np.asarray(Image.open(io.BytesIO(server.storage.read(layout.crop(USER, done["clippings"][0])))))
    cut = np.zeros(swan.shape, dtype=bool)
    cut[box[1] : box[3], box[0] : box[2]] = image[..., 3] > 0
    meta = json.loads(server.storage.read(layout.cpu_embedding_meta(USER, other)))
    ref = Reference(
        "",
        server.storage.read(layout.cpu_embedding(USER, other)),
        (meta["width"], meta["height"]),
        sam=load_sam(real_models_dir / "mobile_sam.pt", "cpu"),
    )
    assert prompt["labels"] == [1] and np.allclose(prompt["points"][0], (x, y), atol=3)
    expected = ref.mask(prompt, (width, height))
    print(f"clicked {prompt['points']}; IoU with the human mask {iou(cut, swan):.3f}")
    assert iou(cut, expected) >= 0.97
    assert iou(cut, swan) >= 0.8  # one click on real SAM weights finds the swan


def test_a_phone_taps_points_and_saves(
    browser: Browser, server: Server, image_id: str, problems: Problems, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.on("pageerror", lambda error: problems.add(f"page error: {error}"))
    try:
        page.goto(server.url + "/login")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(server.url + "/")
        open_editor(page, server, image_id)
        expect(page.locator("#ed-gpu-note")).to_be_visible()
        page.get_by_label("Clicks mark background").uncheck()
        page.locator("#ed-overlay").tap(position={"x": 150, "y": 100})
        expect(page.locator("#ed-status")).to_contain_text("Point added")
        page.get_by_label("Clicks mark background").check()
        page.locator("#ed-overlay").tap(position={"x": 40, "y": 30})
        expect(page.locator("#ed-status")).to_contain_text("Background point added")
        expect(page.locator("#ed-save-cut")).to_be_enabled()
        shot(page, artifacts, "editor-6-phone", full_page=True)
    finally:
        context.close()

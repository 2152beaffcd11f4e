"""The browser UI in Debian's Chromium against the real Server1 process.

The scenario follows a user through the album (upload with progress, live statuses,
clippings, failure and retry, downloads), the canvas composer (add, move, undo/redo,
export at full resolution, reload) and clean-up (delete, clear all, log out). Screenshots
of each state go to test-artifacts/ui/.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from skimage import data

from harness.browser import wait_in_page
from harness.server1 import Server
from tests.ui.conftest import PASSWORD, USER, Problems, shot, start_server
from tests.ui.fake_worker import FakeWorker

LIVE = 30_000  # ms: how long to wait for a status change to reach the open page (SSE, no reload)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    out = {
        "astronaut.jpg": folder / "astronaut.jpg",
        "coffee.png": folder / "coffee.png",
        "IMG_0001.HEIC": folder / "IMG_0001.HEIC",
        "notes.jpg": folder / "notes.jpg",
    }
    Image.fromarray(data.astronaut()).save(out["astronaut.jpg"], quality=90)
    Image.fromarray(data.coffee()).save(out["coffee.png"])
    pillow_heif.from_pillow(Image.fromarray(data.chelsea())).save(out["IMG_0001.HEIC"], quality=80)
    out["notes.jpg"].write_text("a shopping list, not a photo")
    return out


def card(page: Page, image_id: str):
    return page.locator(f'.card[data-id="{image_id}"]')


def api_json(page: Page, path: str) -> dict:
    response = page.request.get(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + path)
    assert response.ok, response.status
    return response.json()


def test_login_page_refuses_a_wrong_password(page: Page, server: Server, problems: Problems, artifacts: Path) -> None:
    problems.allowed.append("status of 401")
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
    shot(page, artifacts, "01-login")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    shot(page, artifacts, "02-login-failed")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="Album")).to_be_visible()


def test_album_canvas_and_cleanup(
    page: Page, server: Server, login, photos, problems: Problems, artifacts: Path
) -> None:
    problems.allowed.append("status of 400")  # the refused upload
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(request.url.split("?")[0]))
    login(page)
    expect(page.locator("#album-empty")).to_be_visible()
    # The header shows the worker state Server1 reports (local mode without Server2: off).
    worker_state = api_json(page, "/api/status")["worker"]
    expect(page.locator("#worker-status")).to_have_attribute("data-state", worker_state)
    expect(page.locator("#worker-status")).to_have_text(f"GPU {worker_state}")

    # -- upload, with the network slowed so the per-file progress can be watched --------------
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 192 * 1024},
    )
    page.get_by_label("Upload images").set_input_files([str(p) for p in photos.values()])
    wait_in_page(
        page, """() => [...document.querySelectorAll('.upload-progress')].some((p) => p.value > 0 && p.value < 100)"""
    )
    shot(page, artifacts, "03-uploading")
    refused = page.locator('.upload[data-state="failed"]')
    expect(refused).to_contain_text("notes.jpg")
    expect(refused).to_contain_text("Refused:")
    expect(page.locator(".card")).to_have_count(3, timeout=20_000)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    reason = refused.locator(".upload-state").inner_text()
    assert len(reason) > len("Refused: ") + 5, reason  # the server's own words, not a blank
    images = api_json(page, "/api/images")["images"]
    ids = {image["id"].rsplit("-", 1)[0]: image["id"] for image in images}
    assert set(ids) == {"astronaut", "coffee", "IMG_0001"}
    for image_id in ids.values():
        expect(card(page, image_id).locator(".badge")).to_have_text("Queued")
    # The header counts the images waiting or in progress (the status event's "queue").
    expect(page.locator("#worker-status .worker-count")).to_have_text("· 3 in queue", timeout=LIVE)
    expect(page.locator("#worker-status .worker-count")).to_be_visible()
    expect(card(page, ids["IMG_0001"]).locator("img").first).to_have_attribute("loading", "lazy")
    shot(page, artifacts, "04-queued")

    # -- the worker takes them: states change live -----------------------------------------------
    worker = FakeWorker(server.storage, USER)
    claim = worker.claim(ids["astronaut"])
    expect(card(page, ids["astronaut"]).locator(".badge")).to_have_text("Processing", timeout=LIVE)
    names = worker.finish(claim)
    done = card(page, ids["astronaut"])
    expect(done.locator(".badge")).to_have_text("Done", timeout=LIVE)
    expect(done.get_by_role("img", name="Clipping 1 of astronaut")).to_be_visible()
    expect(done.get_by_role("img", name="Clipping 2 of astronaut")).to_be_visible()
    worker.finish(worker.claim(ids["coffee"]))
    worker.fail(worker.claim(ids["IMG_0001"]), "the GPU ran out of memory (test)")
    failed = card(page, ids["IMG_0001"])
    expect(failed.locator(".badge")).to_have_text("Failed", timeout=LIVE)
    expect(failed).to_contain_text("the GPU ran out of memory (test)")
    expect(card(page, ids["coffee"]).locator(".badge")).to_have_text("Done", timeout=LIVE)
    expect(page.locator("#worker-status .worker-count")).to_be_hidden(timeout=LIVE)  # none waiting
    page.locator(".upload").first.wait_for(state="attached")
    shot(page, artifacts, "05-album", full_page=True)

    failed.get_by_role("button", name="Retry").click()
    expect(failed.locator(".badge")).to_have_text("Queued", timeout=LIVE)
    worker.finish(worker.claim(ids["IMG_0001"]))
    expect(failed.locator(".badge")).to_have_text("Done", timeout=LIVE)
    expect(failed.get_by_role("img", name="Clipping 1 of IMG_0001")).to_be_visible()
    # Live means pushed: the album list was fetched on load and after the upload batch, not polled.
    assert requests_seen.count(server.url + "/api/images") <= 3, requests_seen
    assert requests_seen.count(server.url + "/events") >= 1

    # -- canvas composer: a 4 x 3 in page at 150 DPI, then a clipping on it ----------------------
    page.get_by_role("button", name="Canvas").click()
    expect(page.locator("#view-canvas")).to_be_visible()
    expect(page.locator("#stage-empty")).to_be_visible()
    page.get_by_label("Width (in)").fill("4")
    page.get_by_label("Height (in)").fill("3")
    page.get_by_label("Resolution").select_option("150")
    page.get_by_role("button", name="Apply size").click()
    expect(page.locator("#page-pixels")).to_have_text("Exports at 600 × 450 pixels.")
    page.get_by_role("button", name="Album").click()

    # -- downloads: all clippings as ZIP, one clipping full size as PNG ---------------------------
    with page.expect_download() as zipped:
        done.get_by_role("link", name="Download all clippings of astronaut as ZIP").click()
    with zipfile.ZipFile(zipped.value.path()) as archive:
        assert sorted(archive.namelist()) == sorted(names)
    done.get_by_role("button", name="Open clipping 1 of astronaut").click()
    viewer = page.get_by_role("dialog", name="Clipping 1 of astronaut")
    expect(viewer).to_be_visible()
    full = Image.open(io.BytesIO(server.storage.read(f"{USER}/output/crops/{names[0]}")))
    expect(viewer.locator("#viewer-size")).to_have_text(f"{full.width} × {full.height} px")
    shot(page, artifacts, "06-clipping")
    with page.expect_download() as one:
        viewer.get_by_role("link", name="Download PNG").click()
    assert Path(one.value.path()).read_bytes() == server.storage.read(f"{USER}/output/crops/{names[0]}")

    viewer.get_by_role("button", name="Add to canvas").click()
    expect(viewer).to_be_hidden()
    expect(page.locator("#canvas-count")).to_have_text("1")
    page.get_by_role("button", name="Open canvas").click()
    expect(page.locator("#view-canvas")).to_be_visible()
    expect(page.locator("#stage-empty")).to_be_hidden()
    expect(page.get_by_role("button", name="Clipping 1 of astronaut")).to_have_attribute("aria-pressed", "true")

    expect(page.locator("#save-state")).to_have_text("All changes saved")
    before = api_json(page, "/api/canvas")
    assert (before["width_in"], before["height_in"], before["dpi"]) == (4, 3, 150)
    item = before["items"][0]
    assert item["url"].endswith(names[0]) and (item["x"], item["y"]) == (2, 1.5)

    # Drag the clipping from the page's centre 80 px right and 40 px down.
    box = page.locator("#composer-canvas").bounding_box()
    assert box
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 40, cy + 20, steps=4)
    page.mouse.move(cx + 80, cy + 40, steps=4)
    page.mouse.up()
    expect(page.locator("#save-state")).to_have_text("All changes saved")
    moved = api_json(page, "/api/canvas")["items"][0]
    assert moved["x"] > item["x"] + 0.1 and moved["y"] > item["y"] + 0.05, moved

    page.get_by_role("button", name="Undo").click()
    expect(page.locator("#save-state")).to_have_text("All changes saved")
    assert api_json(page, "/api/canvas")["items"][0]["x"] == item["x"]
    page.get_by_role("button", name="Redo").click()
    page.get_by_role("button", name="Rotate right").click()
    page.get_by_role("button", name="Larger").click()
    page.locator("#composer-canvas").focus()
    page.keyboard.press("ArrowUp")  # the keyboard moves the selection too
    expect(page.locator("#save-state")).to_have_text("All changes saved")
    edited = api_json(page, "/api/canvas")["items"][0]
    assert edited["rotation"] == 15
    assert edited["w"] == pytest.approx(moved["w"] * 1.1)
    assert edited["y"] == pytest.approx(moved["y"] - 0.05)
    shot(page, artifacts, "07-canvas")

    with page.expect_download() as exported:
        page.get_by_role("button", name="Download PNG").click()
    png = Image.open(exported.value.path())
    assert png.format == "PNG" and png.size == (600, 450)
    rgba = png.convert("RGBA")
    at = (round(edited["x"] * 150), round(edited["y"] * 150))
    assert rgba.getpixel(at)[:3] != (255, 255, 255), "the clipping is not drawn where the composition has it"
    assert rgba.getpixel((3, 3)) == (255, 255, 255, 255)  # white page background

    page.reload()
    expect(page.locator("#view-canvas")).to_be_visible()  # the view is kept in the URL (#canvas)
    expect(page.locator("#canvas-count")).to_have_text("1")
    expect(page.get_by_role("button", name="Clipping 1 of astronaut")).to_be_visible()
    expect(page.get_by_label("Width (in)")).to_have_value("4")
    assert api_json(page, "/api/canvas")["items"][0] == edited

    # -- phone-sized screen ------------------------------------------------------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="Download PNG")).to_be_in_viewport()
    shot(page, artifacts, "08-phone-canvas")
    page.get_by_role("button", name="Album").click()
    expect(page.get_by_text("Upload images")).to_be_in_viewport()
    shot(page, artifacts, "09-phone-album")
    page.set_viewport_size({"width": 1360, "height": 860})

    # -- delete one image, clear all, log out ---------------------------------------------------------
    card(page, ids["astronaut"]).get_by_role("button", name="Delete astronaut").click()
    confirm = page.get_by_role("dialog", name="Delete this photo?")
    shot(page, artifacts, "10-confirm-delete")
    confirm.get_by_role("button", name="Delete photo").click()
    expect(card(page, ids["astronaut"])).to_have_count(0)
    assert ids["astronaut"] not in {i["id"] for i in api_json(page, "/api/images")["images"]}
    # Its clipping left the canvas with it.
    expect(page.locator("#canvas-count")).to_have_text("0")
    expect(page.locator("#save-state")).to_have_text("All changes saved")
    assert api_json(page, "/api/canvas")["items"] == []

    page.get_by_role("button", name="Clear all").click()
    confirm = page.get_by_role("dialog", name="Clear the whole album?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(page.locator(".card")).to_have_count(2)
    page.get_by_role("button", name="Clear all").click()
    confirm.get_by_role("button", name="Delete everything").click()
    expect(page.locator(".card")).to_have_count(0)
    expect(page.locator("#album-empty")).to_be_visible()
    expect(page.locator("#canvas-count")).to_have_text("0")
    assert api_json(page, "/api/images")["images"] == []
    shot(page, artifacts, "11-cleared")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(server.url + "/login")
    assert page.request.get(server.url + "/api/images").status == 401


def test_settings_show_the_servers_validation(
    page: Page, server: Server, login, problems: Problems, artifacts: Path
) -> None:
    problems.allowed.append("status of 400")
    login(page)
    page.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog.get_by_label("Points per side")).to_have_value("32")
    dialog.get_by_label("Points per side").fill("500")
    dialog.get_by_label("Method").select_option("matte")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.locator('[data-error-for="points_per_side"]')).to_have_text("must be a whole number from 8 to 128")
    expect(dialog.get_by_label("Points per side")).to_have_attribute("aria-invalid", "true")
    shot(page, artifacts, "12-settings-invalid")
    stored = (
        json.loads(server.storage.read(f"{USER}/config/settings.json"))
        if server.storage.exists(f"{USER}/config/settings.json")
        else {}
    )
    assert stored.get("points_per_side") != 500 and stored.get("mode") != "matte"  # refused whole
    dialog.get_by_label("Points per side").fill("64")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_text("Settings saved.")).to_be_visible()
    stored = json.loads(server.storage.read(f"{USER}/config/settings.json"))
    assert stored["points_per_side"] == 64 and stored["mode"] == "matte"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_large_album_renders_incrementally(page: Page, server: Server, login) -> None:
    """300 images: the first screenful of cards is in the page; scrolling adds more."""
    from studio import layout

    thumb = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 90)).save(thumb, "JPEG")
    resized = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 90)).save(resized, "PNG")
    for n in range(300):
        image_id = f"bulk{n:04d}-0000{n:04x}"
        server.storage.write(layout.thumb(USER, image_id), thumb.getvalue())
        server.storage.write(layout.input_file(USER, image_id, ".jpg"), thumb.getvalue())
        server.storage.write(layout.resized(USER, image_id), resized.getvalue())
    login(page)
    expect(page.locator("#album-summary")).to_contain_text("300 photos")
    first = page.locator(".card").count()
    assert 0 < first < 300
    assert page.locator('.card img:not([loading="lazy"])').count() == 0
    deadline = time.monotonic() + 60  # scroll until every card is there (more load at each bottom)
    while page.locator(".card").count() < 300 and time.monotonic() < deadline:
        page.mouse.wheel(0, 20_000)
        page.wait_for_timeout(100)
    assert page.locator(".card").count() == 300
    page.goto("about:blank")  # leave before the files go, or their thumbnails would 404
    server.storage.delete_prefix(f"{USER}/")


def test_throttled_login_says_so(browser, tmp_path: Path, problems: Problems) -> None:
    """On its own server: the throttle would lock the shared one for a minute."""
    problems.allowed.append("status of 4")
    server = start_server(tmp_path)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/login")
        for _ in range(11):
            page.get_by_label("Username").fill(USER)
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_load_state()
        expect(page.get_by_role("alert")).to_contain_text("Too many failed logins")
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
    finally:
        context.close()
        server.stop()


def test_dropping_a_file_uploads_it(page: Page, server: Server, login, photos) -> None:
    login(page)
    payload = list(photos["astronaut.jpg"].read_bytes())
    page.evaluate(
        """(bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], 'dropped.jpg', { type: 'image/jpeg' }));
            const zone = document.getElementById('dropzone');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        payload,
    )
    dropped = page.locator(".card").filter(has_text="dropped")
    expect(dropped.locator(".badge")).to_have_text("Queued")
    assert [i["id"].rsplit("-", 1)[0] for i in api_json(page, "/api/images")["images"]] == ["dropped"]
    page.goto("about:blank")
    server.storage.delete_prefix(f"{USER}/")

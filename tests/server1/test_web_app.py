"""Server1's routes through Flask's test client: auth, CSRF, throttling, album, files, events."""

from __future__ import annotations

import atexit
import io
import json
import os
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from harness.images import encode, photo, png_bomb
from harness.server1 import USERS, csrf_of
from harness.wait import wait_for
from server1 import create_app
from server1.app import start_background, stop_background
from server1.config import Config
from studio import layout
from studio.errors import ConfigError
from studio.jobs import Jobs
from studio.storage import FileStorage, open_storage
from tests.server1.support import finish_job, samples

PUBLIC = {"auth.login", "pages.healthz", "static"}


@pytest.fixture
def shared(tmp_path: Path) -> str:
    return str(tmp_path / "shared")


@pytest.fixture
def app(shared: str) -> Flask:
    app = create_app(
        Config.from_env(
            shared_dir=shared,
            users=dict(USERS),
            start_background=False,
            events_poll_seconds=0.2,
            events_heartbeat_seconds=0.3,
            max_upload_mb=2,
        )
    )
    yield app
    app.extensions["server1"].events.stop()


def login(client: FlaskClient, user: str = "alice", password: str | None = None) -> str:
    """Log in; returns the CSRF token of the app page (also set as the client's default header)."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": user, "password": password or USERS[user], "csrf_token": token})
    assert answer.status_code == 303, answer.text
    token = csrf_of(client.get("/").text)
    client.environ_base["HTTP_X_CSRFTOKEN"] = token
    return token


@pytest.fixture
def alice(app: Flask) -> FlaskClient:
    client = app.test_client()
    login(client, "alice")
    return client


@pytest.fixture
def bob(app: Flask) -> FlaskClient:
    client = app.test_client()
    login(client, "bob")
    return client


def upload(client: FlaskClient, name: str = "photo.jpg", data: bytes | None = None, **form: str):
    payload = {"file": (io.BytesIO(samples()[name] if data is None else data), name), **form}
    return client.post("/upload", data=payload, content_type="multipart/form-data")


def storage_of(app: Flask) -> FileStorage:
    return app.extensions["server1"].storage


def every_file(app: Flask, user: str) -> list[str]:
    return sorted(e.key for e in storage_of(app).list(user + "/"))


def url_for_rule(rule) -> str:
    values = {"image_id": "x", "key": "alice/input/x.jpg", "filename": "x.css"}
    return rule.rule.replace("<path:key>", values["key"]).replace("<image_id>", values["image_id"])


# -- configuration -------------------------------------------------------------------


def test_refuses_to_start_without_a_login(shared: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_USER1", "APP_PASS1", "APP_USER2", "APP_PASS2"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="no login configured"):
        create_app(Config.from_env(shared_dir=shared, start_background=False))
    monkeypatch.setenv("APP_USER1", "alice")
    with pytest.raises(ConfigError, match="APP_USER1 and APP_PASS1 must be set together"):
        create_app(Config.from_env(shared_dir=shared, start_background=False))
    with pytest.raises(ConfigError, match="user name"):
        create_app(Config.from_env(shared_dir=shared, users={"../x": "pw"}, start_background=False))
    monkeypatch.setenv("MAX_UPLOAD_MB", "lots")
    with pytest.raises(ConfigError, match="MAX_UPLOAD_MB must be a number"):
        create_app(Config.from_env(shared_dir=shared, users=USERS, start_background=False))


def test_the_lifecycle_has_the_app_s_config(shared: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app's SHARED_DIR, not the environment's, holds the weights (unless MODELS_DIR says)."""
    monkeypatch.delenv("MODELS_DIR", raising=False)
    monkeypatch.setenv("SHARED_DIR", "/nowhere/shared")
    app = create_app(Config.from_env(shared_dir=shared, users=USERS, start_background=False))
    assert app.extensions["server1"].lifecycle.config.models_dir == f"{shared}/models"


def test_create_app_starts_no_thread_and_registers_no_exit_handler(
    shared: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask's factory pattern: create_app builds; the entry point (gunicorn's post_worker_init) starts."""
    registered: list[tuple] = []
    monkeypatch.setattr(atexit, "register", lambda *args, **kwargs: registered.append(args))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("SKIP_MODEL_DOWNLOAD", "1")
    config = Config.from_env(shared_dir=shared, users=USERS, start_background=True, secret_key="k" * 40)
    before = set(threading.enumerate())
    apps = [create_app(config) for _ in range(2)]
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:  # only the rate limiter's one-shot 10 ms expiry timer, which ends by itself
        thread.join(30)
    assert [t.name for t in started if t.is_alive()] == [] and registered == []
    start_background(apps[0])
    lifecycle = apps[0].extensions["server1"].lifecycle
    wait_for(lambda: lifecycle.lease.held, "the started app's scheduler to lead")
    stop_background(apps[0])
    assert not lifecycle.lease.held and registered == []


def test_secret_key_is_generated_once_and_kept(shared: str) -> None:
    config = Config.from_env(shared_dir=shared, users=USERS, start_background=False)
    first, second = create_app(config), create_app(config)
    assert len(first.secret_key) >= 32 and first.secret_key == second.secret_key
    configured = replace(config, secret_key="from-the-environment-0123456789abcdef")
    assert create_app(configured).secret_key.startswith("from")
    # A session made by one process is valid in the next (sessions survive a restart).
    client = first.test_client()
    login(client)
    cookie = client.get_cookie("studio_session").value
    other = second.test_client()
    other.set_cookie("studio_session", cookie)
    assert other.get("/api/images").status_code == 200


# -- login, sessions, CSRF, throttling ---------------------------------------------------------


def test_every_route_but_the_public_ones_needs_a_session(app: Flask) -> None:
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = client.open(url_for_rule(rule), method=method)
            if not rule.rule.startswith(("/api/", "/upload", "/events", "/files/")):  # pages: to the login
                assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")
            else:
                assert answer.status_code == 401, (rule.rule, method, answer.status_code)
                assert answer.json == {"error": "login required"}
            checked += 1
    assert checked >= 14
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def test_login_logout_and_cookie_flags(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"username": "alice", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    other_users_password = client.post(
        "/login", data={"username": "alice", "password": USERS["bob"], "csrf_token": token}
    )
    assert other_users_password.status_code == 401
    right = client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
    assert right.status_code == 303 and right.headers["Location"] == "/"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text
    out = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert client.get("/api/images").status_code == 401


def test_secure_cookie_when_configured(shared: str) -> None:
    app = create_app(
        Config.from_env(shared_dir=shared, users=USERS, start_background=False, session_cookie_secure=True)
    )
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "bob", "password": USERS["bob"], "csrf_token": token})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_no_session_fixation_and_logout_ends_the_cookie(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    before = client.get_cookie("studio_session").value
    client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
    after = client.get_cookie("studio_session").value
    assert before != after
    # The cookie from before login grants nothing.
    attacker = app.test_client()
    attacker.set_cookie("studio_session", before)
    assert attacker.get("/api/images").status_code == 401
    # A copy of the logged-in cookie stops working at logout.
    thief = app.test_client()
    thief.set_cookie("studio_session", after)
    assert thief.get("/api/images").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    assert thief.get("/api/images").status_code == 401


def test_csrf_is_required_on_every_state_changing_route(app: Flask, alice: FlaskClient) -> None:
    del alice.environ_base["HTTP_X_CSRFTOKEN"]
    checked = 0
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & {"POST", "PUT", "DELETE", "PATCH"}):
            if rule.endpoint == "auth.login":
                continue  # covered below: logged in, /login POST would log in again
            answer = alice.open(url_for_rule(rule), method=method, json={})
            assert answer.status_code == 400, (rule.rule, method, answer.status_code)
            assert "CSRF check failed" in answer.get_data(as_text=True)
            checked += 1
    assert checked >= 7
    bad = alice.post("/api/settings", json={"points_per_side": 16}, headers={"X-CSRFToken": "forged"})
    assert bad.status_code == 400 and "CSRF" in bad.json["error"]
    anonymous = app.test_client()
    anonymous.get("/login")
    refused = anonymous.post("/login", data={"username": "alice", "password": USERS["alice"]})
    assert refused.status_code == 400 and "CSRF" in refused.text
    assert alice.get("/api/settings").json["settings"]["points_per_side"] == 32  # nothing was saved


def test_failed_logins_are_throttled(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    for _ in range(10):
        answer = client.post("/login", data={"username": "alice", "password": "guess", "csrf_token": token})
        assert answer.status_code == 401
    blocked = client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
    as_json = client.post(
        "/login",
        data={"username": "alice", "password": "guess", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert as_json.status_code == 429 and "Too many failed logins" in as_json.json["error"]
    # Other clients are not affected, and successful logins never count.
    for _ in range(12):
        other = app.test_client()
        other.environ_base["REMOTE_ADDR"] = "127.0.0.2"
        login(other, "bob")


# -- upload --------------------------------------------------------------------------------


def test_upload_writes_original_thumb_and_job(app: Flask, alice: FlaskClient) -> None:
    answer = upload(alice, "photo.heic")
    assert answer.status_code == 200, answer.json
    (image,) = answer.json["images"]
    assert image["status"]["state"] == "queued" and image["name"] == "photo"
    image_id = image["id"]
    assert every_file(app, "alice") == [
        layout.input_file("alice", image_id, ".heic"),
        layout.thumb("alice", image_id),
        layout.resized("alice", image_id),
    ]
    assert storage_of(app).read(layout.input_file("alice", image_id, ".heic")) == samples()["photo.heic"]
    again = upload(alice, "photo.heic").json["images"][0]["id"]
    assert again != image_id and len(every_file(app, "alice")) == 6


def test_upload_many_files_at_once_with_a_bad_one(app: Flask, alice: FlaskClient) -> None:
    files = [(io.BytesIO(samples()["photo.png"]), "a.png"), (io.BytesIO(b"not an image"), "b.png")]
    answer = alice.post("/upload", data={"file": files}, content_type="multipart/form-data")
    assert answer.status_code == 200
    assert len(answer.json["images"]) == 1
    assert answer.json["errors"][0]["name"] == "b.png" and "not an image" in answer.json["errors"][0]["error"]
    assert len(every_file(app, "alice")) == 3


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"GIF89a not really", 400, "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 400, "not an image"),
        (None, 400, "damaged or truncated"),
        (png_bomb(), 413, "too many pixels"),
        (os.urandom(3 * 1024 * 1024), 413, "too large"),
    ],
    ids=["empty", "gif-text", "svg", "truncated", "bomb", "over-max-upload"],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    app: Flask, alice: FlaskClient, data: bytes | None, status: int, message: str
) -> None:
    if data is None:
        data = samples()["photo.jpg"][:4000]
    answer = upload(alice, "x.jpg", data)
    assert answer.status_code == status
    assert message in answer.json["error"]
    assert every_file(app, "alice") == []


def test_upload_without_a_file(alice: FlaskClient) -> None:
    answer = alice.post("/upload", data={}, content_type="multipart/form-data")
    assert answer.status_code == 400 and "no file" in answer.json["error"]


# -- album, retry, delete, clear ---------------------------------------------------------------


def test_album_shows_status_and_clippings_newest_first(app: Flask, alice: FlaskClient) -> None:
    ids = []
    for name in ("photo.jpg", "photo.png", "photo.webp"):
        ids.append(upload(alice, name).json["images"][0]["id"])
        time.sleep(0.01)
    storage = storage_of(app)
    clips = finish_job(storage, "alice", ids[0], clippings=3)
    finish_job(storage, "alice", ids[1], fail="CUDA out of memory")
    images = alice.get("/api/images").json["images"]
    assert [image["id"] for image in images] == ids[::-1]
    by_id = {image["id"]: image for image in images}
    done = by_id[ids[0]]
    assert done["status"]["state"] == "done"
    assert [c["url"] for c in done["clippings"]] == [f"/files/{layout.crop('alice', n)}" for n in clips]
    assert [c["thumb_url"] for c in done["clippings"]] == [f"/files/{layout.crop_thumb('alice', n)}" for n in clips]
    assert done["zip_url"] == f"/api/images/{ids[0]}/clippings.zip"
    assert by_id[ids[1]]["status"] == {
        "state": "failed",
        "error": "CUDA out of memory",
        "attempts": 1,
        "updated_at": by_id[ids[1]]["status"]["updated_at"],
    }
    assert by_id[ids[2]]["status"]["state"] == "queued" and by_id[ids[2]]["clippings"] == []
    for image in images:  # every URL the album gives works for its owner
        for url in [image["original_url"], image["thumb_url"]] + [c["url"] for c in image["clippings"]]:
            assert alice.get(url).status_code == 200, url
    # A job dropped straight into resized/ (no upload) is listed too.
    storage.write(layout.resized("alice", "dropped"), encode(photo(100, 80), "PNG"))
    dropped = next(i for i in alice.get("/api/images").json["images"] if i["id"] == "dropped")
    assert dropped["original_url"] == dropped["thumb_url"] == f"/files/{layout.resized('alice', 'dropped')}"


class CountingStorage(FileStorage):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def list_dir(self, prefix: str, stat: bool = True):
        self._count("list")
        return super().list_dir(prefix, stat)

    def list(self, prefix: str):
        self._count("list")
        return super().list(prefix)

    def read(self, key: str) -> bytes:
        self._count("read")
        return super().read(key)


def test_album_listing_needs_a_constant_number_of_storage_calls(app: Flask, alice: FlaskClient) -> None:
    root = storage_of(app).root
    jobs = Jobs(open_storage(root), "bulk")
    status = json.dumps({"state": "done", "clippings": [layout.crop_name("x", 0, k) for k in range(5)]})
    for n in range(300):  # the shape of a big album, written directly
        image_id = f"img{n:04d}"
        jobs.storage.write(layout.input_file("alice", image_id, ".jpg"), b"x")
        jobs.storage.write(layout.resized("alice", image_id), b"x")
        jobs.storage.write(layout.status("alice", image_id), status.replace('"x_', f'"{image_id}_').encode())
    counting = CountingStorage(root)
    albums = app.extensions["server1"].albums
    albums.storage = albums.jobs.storage = counting
    images = alice.get("/api/images").json["images"]
    assert len(images) == 300 and all(len(i["clippings"]) == 5 for i in images)
    assert counting.calls == {"list": 3, "read": 300}
    counting.calls.clear()
    alice.get("/api/images")
    assert counting.calls == {"list": 3}  # unchanged status records come from the cache
    jobs.write_status("alice", "img0007", "failed", 3, error="boom")
    counting.calls.clear()
    changed = {i["id"]: i for i in alice.get("/api/images").json["images"]}["img0007"]
    assert changed["status"]["state"] == "failed" and changed["clippings"] == []
    assert counting.calls == {"list": 3, "read": 1}


def test_retry_only_failed_or_done(app: Flask, alice: FlaskClient) -> None:
    queued = upload(alice).json["images"][0]["id"]
    failed = upload(alice).json["images"][0]["id"]
    finish_job(storage_of(app), "alice", failed, fail="bad")
    answer = alice.post(f"/api/images/{queued}/retry")
    assert answer.status_code == 409 and "queued" in answer.json["error"]
    assert alice.post(f"/api/images/{failed}/retry").status_code == 200
    assert Jobs(storage_of(app), "t").read_status("alice", failed)["state"] == "queued"
    assert alice.post("/api/images/nope/retry").status_code == 404
    assert alice.post("/api/images/..%2f..%2fx/retry").status_code == 404


def test_delete_and_clear(app: Flask, alice: FlaskClient, bob: FlaskClient) -> None:
    first = upload(alice).json["images"][0]["id"]
    second = upload(alice, "photo.png").json["images"][0]["id"]
    finish_job(storage_of(app), "alice", first)
    bobs = upload(bob).json["images"][0]["id"]
    assert alice.post("/api/settings", json={"points_per_side": 64}).status_code == 200
    assert alice.put("/api/canvas", json={"items": [1]}).status_code == 200
    assert alice.delete(f"/api/images/{first}").json == {"deleted": first}
    assert not any(first in key for key in every_file(app, "alice"))
    assert alice.delete(f"/api/images/{first}").status_code == 404
    assert alice.delete(f"/api/images/{bobs}").status_code == 404  # not hers
    assert {i["id"] for i in alice.get("/api/images").json["images"]} == {second}
    assert alice.post("/api/clear").json == {"deleted": 1}
    assert every_file(app, "alice") == [layout.settings("alice")]  # settings kept, canvas gone
    assert alice.get("/api/settings").json["settings"]["points_per_side"] == 64
    assert [i["id"] for i in bob.get("/api/images").json["images"]] == [bobs]  # bob untouched
    assert len(every_file(app, "bob")) == 3


def test_a_delete_cut_short_is_finished_by_the_next_one(app: Flask, alice: FlaskClient) -> None:
    """Storage went away halfway through a delete (503): the original and job file are gone, the rest
    not. The user's repeated delete finds no image (404) and still removes the rest (found by the soak)."""
    image_id = upload(alice).json["images"][0]["id"]
    finish_job(storage_of(app), "alice", image_id)
    storage = storage_of(app)
    for key in [k for k in every_file(app, "alice") if "/input/" in k or "/resized/" in k]:
        storage.delete(key)
    assert alice.delete(f"/api/images/{image_id}").status_code == 404
    assert not any(image_id in key for key in every_file(app, "alice"))


def test_settings(alice: FlaskClient) -> None:
    got = alice.get("/api/settings").json
    assert got["settings"]["sam_model"] == "deployment" and "vit_h" in got["choices"]["sam_model"]
    saved = alice.post("/api/settings", json={"sam_model": "mobile_sam", "pred_iou_thresh": 0.9})
    assert saved.status_code == 200 and saved.json["settings"]["sam_model"] == "mobile_sam"
    bad = alice.post("/api/settings", json={"points_per_side": 1000, "mode": "magic", "x": 1})
    assert bad.status_code == 400
    assert set(bad.json["errors"]) == {"points_per_side", "mode", "x"}
    assert alice.post("/api/settings", data="[1,", content_type="application/json").status_code == 400
    assert alice.post("/api/settings", json=[1, 2]).status_code == 400
    assert alice.get("/api/settings").json["settings"]["sam_model"] == "mobile_sam"


def test_the_settings_page_offers_every_sam_model_with_what_it_trades(alice: FlaskClient) -> None:
    page = alice.get("/").text
    start = page.index('<select id="set-sam_model"')
    select = page[start : page.index("</select>", start)]
    offered = [part.split('"')[0] for part in select.split('<option value="')[1:]]
    assert offered == list(alice.get("/api/settings").json["choices"]["sam_model"])
    assert "MobileSAM (fastest, lower quality than ViT-L)" in select
    assert "The installation's model when Server2 has no GPU." in " ".join(page.split())


def test_canvas(alice: FlaskClient, bob: FlaskClient) -> None:
    assert alice.get("/api/canvas").json == {}
    composition = {"width": 8, "height": 10, "dpi": 300, "items": [{"url": "/files/alice/x.png", "x": 1}]}
    assert alice.put("/api/canvas", json=composition).status_code == 200
    assert alice.get("/api/canvas").json == composition
    assert bob.get("/api/canvas").json == {}
    assert alice.put("/api/canvas", json=[1]).status_code == 400
    assert alice.put("/api/canvas", data="{", content_type="application/json").status_code == 400
    huge = {"items": ["x" * 1000] * 2500}
    assert alice.put("/api/canvas", json=huge).status_code == 413
    assert alice.get("/api/canvas").json == composition


def test_clippings_zip(app: Flask, alice: FlaskClient, bob: FlaskClient) -> None:
    image_id = upload(alice).json["images"][0]["id"]
    assert alice.get(f"/api/images/{image_id}/clippings.zip").status_code == 404  # none yet
    names = finish_job(storage_of(app), "alice", image_id, clippings=3)
    answer = alice.get(f"/api/images/{image_id}/clippings.zip")
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        assert archive.namelist() == names
        assert Image.open(io.BytesIO(archive.read(names[0]))).mode == "RGBA"
    assert bob.get(f"/api/images/{image_id}/clippings.zip").status_code == 404


def test_status_and_health(app: Flask, alice: FlaskClient) -> None:
    upload(alice)
    status = alice.get("/api/status").json
    assert status["worker"] in ("off", "starting", "ready", "busy")
    assert status["queue"] == {"queued": 1, "processing": 0, "done": 0, "failed": 0}
    health = app.test_client().get("/healthz")
    assert health.status_code == 200 and health.json["ok"] and health.json["storage"] == "ok"
    assert "flask" in health.json["versions"]
    text = health.text
    assert app.secret_key not in text and all(p not in text for p in USERS.values())


def test_security_headers(alice: FlaskClient) -> None:
    for url in ("/", "/api/images", "/login", "/healthz"):
        headers = alice.get(url).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"]


def test_errors_are_json_for_api_callers(alice: FlaskClient) -> None:
    assert alice.get("/api/nothing").json["error"]
    assert alice.get("/api/nothing").status_code == 404
    assert alice.patch("/api/images").status_code == 405


# -- files ---------------------------------------------------------------------------------


def test_files_are_served_to_their_owner_only(app: Flask, alice: FlaskClient, bob: FlaskClient) -> None:
    image_id = upload(alice, "photo.heic").json["images"][0]["id"]
    finish_job(storage_of(app), "alice", image_id)
    image = alice.get("/api/images").json["images"][0]
    heic = alice.get(image["original_url"])
    assert heic.status_code == 200 and heic.mimetype == "image/heic"
    assert heic.headers["Content-Disposition"].startswith("attachment")  # browsers cannot show it
    assert "sandbox" in heic.headers["Content-Security-Policy"]
    thumb = alice.get(image["thumb_url"])
    assert thumb.mimetype == "image/jpeg" and thumb.headers["X-Content-Type-Options"] == "nosniff"
    urls = [image["original_url"], image["thumb_url"]] + [c["url"] for c in image["clippings"]]
    urls += [c["thumb_url"] for c in image["clippings"]]
    for url in urls:
        assert alice.get(url).status_code == 200
        assert bob.get(url).status_code == 404, url
    assert alice.get("/files/" + layout.status("alice", image_id)).status_code == 404  # not a served folder
    assert alice.get("/files/" + layout.settings("alice")).status_code == 404


TRICKS = [
    "/files/bob/input/{id}.jpg",
    "/files/alice/../bob/input/{id}.jpg",
    "/files/alice/input/../../bob/input/{id}.jpg",
    "/files/alice/input/..%2f..%2fbob%2finput%2f{id}.jpg",
    "/files/alice/input/%2e%2e/%2e%2e/bob/input/{id}.jpg",
    "/files/alice/input/%252e%252e/bob/input/{id}.jpg",
    "/files//etc/passwd",
    "/files/%2fetc%2fpasswd",
    "/files/alice/input/..\\..\\bob\\input\\{id}.jpg",
    "/files/alice/input/{id}.jpg%00.png",
    "/files/alice/input/\u2025/bob/input/{id}.jpg",
    "/files/alice/input/",
    "/files/alice/",
    "/files/alice",
    "/files/.studio/secret_key",
    "/files/alice/input/.secret_key",
    "/files/ALICE/input/{id}.jpg",
    "/files/alice/output/claims/{id}.json",
    "/files/alice/output/staging/{id}/x.png",
]


def test_path_tricks_never_reach_other_files(app: Flask, alice: FlaskClient, bob: FlaskClient) -> None:
    bobs = upload(bob).json["images"][0]["id"]
    storage = storage_of(app)
    for trick in TRICKS:
        answer = alice.get(trick.format(id=bobs))
        assert answer.status_code in (404, 400, 308), (trick, answer.status_code)
        assert answer.data[:3] != b"\xff\xd8\xff"  # never a JPEG (bob's original)
    # Symlinks planted in alice's folder: one to bob's original, one out of the root.
    Path(storage.root, "alice", "input").mkdir(parents=True, exist_ok=True)
    os.symlink(Path(storage.root, layout.input_file("bob", bobs, ".jpg")), Path(storage.root, "alice/input/a.jpg"))
    os.symlink("/etc/passwd", Path(storage.root, "alice/input/b.png"))
    Path(storage.root, "alice/output").mkdir(parents=True, exist_ok=True)
    os.symlink(Path(storage.root, "bob/input"), Path(storage.root, "alice/output/crops"))
    for url in ("/files/alice/input/a.jpg", "/files/alice/input/b.png", f"/files/alice/output/crops/{bobs}.jpg"):
        assert alice.get(url).status_code == 404, url


# -- events --------------------------------------------------------------------------------


def read_events(response, until: callable, timeout: float = 30.0) -> list[tuple[str, dict]]:
    """Read SSE events from a streamed test response until until(events) or timeout."""
    events: list[tuple[str, dict]] = []
    buffer = ""
    deadline = time.monotonic() + timeout
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if "event" in lines:
                events.append((lines["event"], json.loads(lines["data"])))
        if until(events) or time.monotonic() > deadline:
            break
    return events


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("events-")]


def test_events_deliver_changes_with_one_poller_per_user(app: Flask, alice: FlaskClient) -> None:
    image_id = upload(alice).json["images"][0]["id"]
    streams = [alice.get("/events", buffered=False) for _ in range(3)]
    assert streams[0].mimetype == "text/event-stream"
    first = read_events(streams[0], lambda ev: any(name == "status" for name, _ in ev))
    assert first[0][0] == "status" and first[0][1]["queue"]["queued"] == 1
    assert [t.name for t in poller_threads()] == ["events-alice"]  # three streams, one poller
    finish_job(storage_of(app), "alice", image_id)
    for stream in streams:
        got = read_events(stream, lambda ev: any(n == "image" and d["status"]["state"] == "done" for n, d in ev))
        done = [d for n, d in got if n == "image" and d.get("status", {}).get("state") == "done"]
        assert done and done[0]["id"] == image_id and len(done[0]["clippings"]) == 2
    alice.delete(f"/api/images/{image_id}")
    gone = read_events(streams[0], lambda ev: any(d.get("deleted") for _, d in ev))
    assert ("image", {"id": image_id, "deleted": True}) in gone
    for stream in streams:
        stream.close()
    deadline = time.monotonic() + 30
    while poller_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert poller_threads() == []  # the poller ends with the user's last stream

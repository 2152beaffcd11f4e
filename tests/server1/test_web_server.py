"""The real Server1 process (python -m server1, and gunicorn) on 127.0.0.1, driven by requests."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from harness import REPO
from harness.images import exif_rotated_jpeg, png_bomb
from harness.server1 import USERS, Server, csrf_of
from harness.wait import wait_for
from studio import layout
from studio.storage import open_storage
from tests.server1.support import finish_job, is_upright_marked, samples

EVENTS_ENV = {"EVENTS_POLL_SECONDS": "0.5", "EVENTS_HEARTBEAT_SECONDS": "0.5", "MAX_UPLOAD_MB": "3"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # TRUST_PROXY: the throttling test comes "through a proxy" from another address, so its
    # failed logins do not block the other tests' logins from 127.0.0.1.
    running = Server(str(tmp_path_factory.mktemp("shared")), TRUST_PROXY="1", **EVENTS_ENV).start()
    yield running
    running.stop()


def post_file(session: requests.Session, url: str, name: str, data: bytes) -> requests.Response:
    return session.post(url + "/upload", files={"file": (name, data)}, timeout=30)


def listed(storage_root: str, user: str) -> list[str]:
    return sorted(e.key for e in open_storage(storage_root).list(user + "/"))


def test_refuses_to_start_without_a_login_or_with_a_bad_shared_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in Server(str(tmp_path)).env.items() if not k.startswith("APP_")}
    run = subprocess.run([sys.executable, "-m", "server1"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert run.returncode == 2
    assert b"cannot start: no login configured: set APP_USER1 and APP_PASS1" in run.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {**Server(str(blocker)).env}
    run = subprocess.run([sys.executable, "-m", "server1"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert run.returncode == 2 and b"cannot start: SHARED_DIR" in run.stderr


def test_login_logout_csrf_and_throttling(server: Server) -> None:
    session = server.login("alice")
    assert session.get(server.url + "/api/images", timeout=10).json() == {"images": []}
    refused = session.post(server.url + "/api/clear", headers={"X-CSRFToken": ""}, timeout=10)
    assert refused.status_code == 400 and "CSRF" in refused.json()["error"]
    out = session.post(server.url + "/logout", timeout=10)
    assert out.status_code == 200 and out.url.endswith("/login")
    assert session.get(server.url + "/api/images", timeout=10).status_code == 401
    anonymous = requests.Session()
    assert anonymous.get(server.url + "/", timeout=10, allow_redirects=False).status_code == 302
    # Throttling, per client address (as a load balancer in front reports it).
    anonymous.headers["X-Forwarded-For"] = "203.0.113.9"
    token = csrf_of(anonymous.get(server.url + "/login", timeout=10).text)
    codes = [
        anonymous.post(
            server.url + "/login", data={"username": "bob", "password": "guess", "csrf_token": token}, timeout=10
        ).status_code
        for _ in range(11)
    ]
    assert codes == [401] * 10 + [429]
    blocked = anonymous.post(
        server.url + "/login",
        data={"username": "bob", "password": USERS["bob"], "csrf_token": token},
        headers={"Accept": "application/json"},
        timeout=10,
    )
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.json()["error"]
    server.login("bob")  # from another address: not blocked


def test_uploads_of_every_format(server: Server) -> None:
    session = server.login("alice")
    files = {**samples(), "rotated.jpg": exif_rotated_jpeg()}
    ids = {}
    for name, data in files.items():
        answer = post_file(session, server.url, name, data)
        assert answer.status_code == 200, (name, answer.text)
        ids[name] = answer.json()["images"][0]["id"]
    album = {i["id"]: i for i in session.get(server.url + "/api/images", timeout=10).json()["images"]}
    assert set(ids.values()) <= set(album)
    storage = open_storage(server.env["SHARED_DIR"])
    for name, image_id in ids.items():
        resized = Image.open(io.BytesIO(storage.read(layout.resized("alice", image_id))))
        assert resized.format == "PNG" and max(resized.size) <= 1024
        thumb = session.get(server.url + album[image_id]["thumb_url"], timeout=10)
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
        original = session.get(server.url + album[image_id]["original_url"], timeout=10)
        assert original.content == files[name]
    rotated = ids["rotated.jpg"]
    assert is_upright_marked(Image.open(io.BytesIO(storage.read(layout.resized("alice", rotated)))))
    thumb = session.get(server.url + album[rotated]["thumb_url"], timeout=10)
    assert is_upright_marked(Image.open(io.BytesIO(thumb.content)))


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("empty.jpg", b"", 400),
        ("text.jpg", b"hello, not an image", 400),
        ("page.png", b"<html><script>alert(1)</script></html>", 400),
        ("truncated.jpg", None, 400),
        ("bomb.png", png_bomb(), 413),
        ("huge.bmp", b"BM" + bytes(4 * 1024 * 1024), 413),
    ],
)
def test_bad_uploads_get_a_clear_error_and_write_nothing(
    server: Server, name: str, data: bytes | None, status: int
) -> None:
    session = server.login("bob")
    before = listed(server.env["SHARED_DIR"], "bob")
    data = samples()["photo.jpg"][:5000] if data is None else data
    try:
        answer = post_file(session, server.url, name, data)
    except requests.ConnectionError:
        pytest.fail("the server dropped the connection instead of answering")
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json" and answer.json()["error"]
    assert listed(server.env["SHARED_DIR"], "bob") == before


def test_cross_user_isolation_on_every_file_route(server: Server) -> None:
    alice, bob = server.login("alice"), server.login("bob")
    image_id = post_file(alice, server.url, "mine.png", samples()["photo.png"]).json()["images"][0]["id"]
    finish_job(open_storage(server.env["SHARED_DIR"]), "alice", image_id, clippings=2)
    image = next(i for i in alice.get(server.url + "/api/images", timeout=10).json()["images"] if i["id"] == image_id)
    urls = [image["original_url"], image["thumb_url"], image["zip_url"]]
    urls += [c[k] for c in image["clippings"] for k in ("url", "thumb_url")]
    for url in urls:
        assert alice.get(server.url + url, timeout=10).status_code == 200, url
        answer = bob.get(server.url + url, timeout=10)
        assert answer.status_code == 404 and answer.json()["error"], url
    assert image_id not in {i["id"] for i in bob.get(server.url + "/api/images", timeout=10).json()["images"]}
    assert bob.delete(f"{server.url}/api/images/{image_id}", timeout=10).status_code == 404
    assert bob.post(f"{server.url}/api/images/{image_id}/retry", timeout=10).status_code == 404
    assert alice.get(server.url + image["original_url"], timeout=10).status_code == 200  # still there
    for trick in ("/files/alice/../bob/x", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/alice/input/%00.png"):
        assert bob.get(server.url + trick, timeout=10).status_code in (400, 404)


class Streams:
    """Open /events streams of one session, read by threads into one list of (event, data)."""

    def __init__(self, server: Server, session: requests.Session, count: int) -> None:
        self.received: list[tuple[str, dict]] = []
        self.responses = [session.get(server.url + "/events", stream=True, timeout=10) for _ in range(count)]
        for response in self.responses:
            threading.Thread(target=self._read, args=(response,), daemon=True).start()
        # The poller's first look ends with a status event: from then on, changes are events.
        # Every stream is subscribed already (the GETs above returned).
        wait_for(lambda: any(name == "status" for name, _ in self.received), "the first status event", 30)

    def _read(self, response: requests.Response) -> None:
        event = None
        try:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    self.received.append((event, json.loads(line[6:])))
        except (requests.RequestException, AttributeError, ValueError):
            pass  # the test closed the stream

    def close(self) -> None:
        for response in self.responses:
            response.close()


def test_events_reach_every_stream_and_threads_end(server: Server) -> None:
    session = server.login("alice")
    image_id = post_file(session, server.url, "live.jpg", samples()["photo.jpg"]).json()["images"][0]["id"]
    # gunicorn's thread pool keeps its threads: a first round grows it to what streams need.
    warm_up = Streams(server, session, 4)
    with_poller = server.threads()
    warm_up.close()
    wait_for(lambda: server.threads() < with_poller, "the warm-up's poller to end", 30)
    baseline = server.threads()

    streams = Streams(server, session, 4)
    finish_job(open_storage(server.env["SHARED_DIR"]), "alice", image_id)

    def done() -> list[dict]:
        return [data for name, data in streams.received if name == "image" and data["status"]["state"] == "done"]

    wait_for(lambda: len(done()) >= 4, "a done event on each of the 4 streams", 30)
    assert len(done()) == 4, streams.received
    assert server.threads() > baseline  # the user's poller runs while streams are open
    streams.close()
    # The streams end at their next write (heartbeat) and the poller with the last of them;
    # a stream left running would keep the poller, and so one thread more than the baseline.
    wait_for(lambda: server.threads() <= baseline, f"threads back to {baseline}", 30)


def test_gunicorn_serves_the_app_with_events(tmp_path: Path) -> None:
    env = {k: v for k, v in Server(str(tmp_path)).env.items() if not k.startswith("APP_")}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    run = subprocess.run(
        [gunicorn, "-c", "server1/gunicorn.conf.py", "server1:create_app()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 2 and b"cannot start: no login configured" in run.stderr
    server = Server(str(tmp_path / "shared"), gunicorn=True, **EVENTS_ENV).start()
    try:
        session = server.login("bob")
        image_id = post_file(session, server.url, "g.webp", samples()["photo.webp"]).json()["images"][0]["id"]
        stream = session.get(server.url + "/events", stream=True, timeout=10)
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        deadline = time.monotonic() + 30  # heartbeats (0.5 s) keep the loop going
        for line in lines:  # the poller's first look ends with a status event: the baseline
            assert time.monotonic() < deadline, "no status event from gunicorn"
            if line.startswith("event: status"):
                break
        finish_job(open_storage(server.env["SHARED_DIR"]), "bob", image_id)
        for line in lines:
            assert time.monotonic() < deadline, "no done event from gunicorn"
            if line.startswith("data: ") and '"done"' in line:
                break
        stream.close()
    finally:
        server.stop()


def test_s3_backend_upload_and_list(s3_root: str, moto_server) -> None:
    server = Server(s3_root, AWS_ENDPOINT_URL=moto_server.url).start()
    try:
        session = server.login("alice")
        answer = post_file(session, server.url, "s3.heic", samples()["photo.heic"])
        assert answer.status_code == 200, answer.text
        image_id = answer.json()["images"][0]["id"]
        storage = open_storage(s3_root)
        assert storage.exists(layout.resized("alice", image_id))
        finish_job(storage, "alice", image_id)
        (image,) = session.get(server.url + "/api/images", timeout=10).json()["images"]
        assert image["status"]["state"] == "done" and len(image["clippings"]) == 2
        assert session.get(server.url + image["original_url"], timeout=10).content == samples()["photo.heic"]
        clip = session.get(server.url + image["clippings"][0]["url"], timeout=10)
        assert clip.status_code == 200 and Image.open(io.BytesIO(clip.content)).mode == "RGBA"
        assert server.login("bob").get(server.url + image["original_url"], timeout=10).status_code == 404
    finally:
        server.stop()

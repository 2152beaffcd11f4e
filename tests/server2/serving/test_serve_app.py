"""Server2's routes in process, through its app factory as gunicorn's worker calls it: importing
server2.app starts nothing; create_app() reads the environment once, loads the models in the
background (/ping 503 with the reason until then) and serves /invocations."""

from __future__ import annotations

import importlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

import server2.app
from server2 import config
from server2.service import LOAD_RETRY_SECONDS
from studio.jobs import Jobs
from studio.storage import FileStorage
from tests.server2.serving.support import FAST, USER, add_image, drawing, set_settings


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    shared, models = tmp_path / "shared", tmp_path / "models"
    models.mkdir()
    for name in ("SAGEMAKER_ENDPOINT", "SAGEMAKER_INFERENCE_COMPONENT", "S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHARED_DIR", str(shared))
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("WORKER_ID", "in-process")
    monkeypatch.setenv("POLL_SECONDS", "3600")  # one scan at start; the invocation drives the job
    config.load.cache_clear()
    yield shared, models
    config.load.cache_clear()


def wait_ping(client: FlaskClient, code: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/ping")
        if answer.status_code == code or time.monotonic() > deadline:
            assert answer.status_code == code, answer.json
            return answer.json
        time.sleep(0.05)


def test_the_app_factory_serves_ping_and_invocations(app_env: tuple[Path, Path], test_models_dir: Path) -> None:
    shared, models = app_env
    before = threading.enumerate()
    importlib.reload(server2.app)
    assert threading.enumerate() == before and not hasattr(server2.app, "service")  # the import started nothing
    app = server2.app.create_app()
    service = app.extensions["server2"]
    client = app.test_client()
    try:
        assert config.load() is service.config  # parsed once, shared by every caller in the process
        missing = wait_ping(client, 503)
        assert missing["status"] in ("loading", "error")
        assert client.post("/invocations", json={"user": USER, "image": "a"}).status_code == 503
        assert client.post("/invocations", data=b"{not json").status_code == 400  # checked before readiness

        for weights in test_models_dir.iterdir():  # the weights arrive: loading is retried
            shutil.copy(weights, models / weights.name)
        assert wait_ping(client, 200, timeout=LOAD_RETRY_SECONDS + 120) == {"status": "ready"}

        cases = [
            ({"user": USER}, 400, "missing image"),
            ({"user": USER, "image": "a", "priority": 1}, 400, "unknown field(s) priority"),
            ({"user": "../etc", "image": "a"}, 400, "invalid user name"),
            ({"s3": "s3://bucket/alice/resized/a.png"}, 400, "not S3"),
            ({"user": USER, "image": "never-uploaded"}, 404, "no image 'never-uploaded'"),
        ]
        for body, code, message in cases:
            answer = client.post("/invocations", json=body)
            assert answer.status_code == code and message in answer.json["error"], (body, answer.json)
        assert client.get("/invocations").status_code == 405
        assert client.post("/invocations", json={"user": USER, "image": "a" * 100_000}).status_code == 413

        storage = FileStorage(shared)
        set_settings(storage, {"mode": "matte", **FAST})
        add_image(storage, "cat", drawing())
        answer = client.post("/invocations", json={"user": USER, "image": "cat"})
        # The poller may have taken it first; either way the answer carries the final status.
        assert answer.status_code == 200 and answer.json["state"] in ("done", "already-processed"), answer.json
        assert answer.json["status"]["state"] == "done" and answer.json["status"]["clippings"]
        again = client.post("/invocations", json={"user": USER, "image": "cat"})
        assert again.json["state"] == "already-processed"
        assert Jobs(storage, "test").read_status(USER, "cat")["owner"] == "in-process"
    finally:
        service.stop()
    assert wait_ping(client, 503)["status"] == "stopping"

"""Server2's HTTP contract on a real server process: start-up errors, /ping while the weights are
missing and once they are there, malformed /invocations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import REPO
from harness.server2 import Server2
from studio.storage import open_storage
from tests.server2.serving.support import USER, Servers, add_image, wait_status


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("POLL_SECONDS", "soon", "POLL_SECONDS must be a number, got 'soon'"),
        ("SAGEMAKER_BIND_TO_PORT", "99999", "SAGEMAKER_BIND_TO_PORT must be between 1 and 65535"),
        ("DEVICE", "gpu", "DEVICE must be auto, cuda or cpu, got 'gpu'"),
    ],
)
def test_bad_variable_stops_serve_with_a_clear_message(tmp_path: Path, name: str, value: str, message: str) -> None:
    env = {**os.environ, "SHARED_DIR": str(tmp_path / "shared"), name: value}
    done = subprocess.run(
        [sys.executable, str(REPO / "server2" / "serve")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2  # as Server1 and gunicorn's settings file: a usage error
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def _server_without_weights(folder: Path) -> Iterator[Server2]:
    """A server on a fresh shared folder whose MODELS_DIR starts empty."""
    (folder / "models").mkdir()
    servers = Servers(folder)
    yield servers.start(SHARED_DIR=str(folder / "shared"), MODELS_DIR=str(folder / "models"))
    servers.kill_all()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server2]:
    """Shared by the tests that install the weights first (`ready`)."""
    yield from _server_without_weights(tmp_path_factory.mktemp("serving-http"))


@pytest.fixture
def empty_server(tmp_path: Path) -> Iterator[Server2]:
    """Its own server: whatever ran before, its weights have not arrived yet."""
    yield from _server_without_weights(tmp_path)


def install_weights(source: Path, models_dir: Path) -> None:
    """As Server1 does: each file copied to a temporary name, then renamed into place."""
    for path in source.iterdir():
        if not (models_dir / path.name).exists():
            shutil.copyfile(path, models_dir / f".{path.name}.part")
            (models_dir / f".{path.name}.part").rename(models_dir / path.name)


@pytest.fixture
def ready(server: Server2, test_models_dir: Path) -> Server2:
    install_weights(test_models_dir, Path(server.log_path.parent / "models"))
    server.wait_ready()
    return server


def test_ping_is_503_with_the_reason_until_the_weights_arrive(empty_server: Server2, test_models_dir: Path) -> None:
    server = empty_server
    deadline = time.monotonic() + 60
    body = server.ping().json()
    while body["status"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.2)
        body = server.ping().json()
    answer = server.ping()
    assert answer.status_code == 503
    assert answer.json()["status"] == "error"
    assert "vit_l.pth" in answer.json()["reason"] and "birefnet-dis.onnx" in answer.json()["reason"]
    invoked = server.invoke({"user": USER, "image": "x"})
    assert invoked.status_code == 503
    assert "missing" in invoked.json()["error"]

    install_weights(test_models_dir, server.log_path.parent / "models")
    server.wait_ready()  # loading is retried: no restart needed
    assert server.ping().json() == {"status": "ready"}


def test_malformed_invocations_get_400_with_a_clear_message(ready: Server2) -> None:
    cases = [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 400, "must be a JSON object"),
        ({"user": USER}, 400, "missing image"),
        ({"image": "a"}, 400, "missing user"),
        ({"user": USER, "image": "a", "priority": 1}, 400, "unknown field(s) priority"),
        ({"user": "../etc", "image": "a"}, 400, "invalid user name"),
        ({"user": "models", "image": "a"}, 400, "reserved"),
        ({"user": USER, "image": "a/../../b"}, 400, "invalid image id"),
        ({"user": USER, "image": 7}, 400, "invalid image id"),
        ({"s3": "s3://bucket/alice/resized/a.png"}, 400, "not S3"),
        ({"user": USER, "image": "never-uploaded"}, 404, "no image 'never-uploaded'"),
    ]
    for body, code, message in cases:
        answer = ready.invoke(body)
        assert answer.status_code == code, (body, answer.text)
        assert message in answer.json()["error"], (body, answer.json())

    too_big = ready.invoke({"user": USER, "image": "a" * 100_000})
    assert too_big.status_code == 413 and "error" in too_big.json()
    wrong_method = requests.get(ready.url + "/invocations", timeout=5)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert ready.ping().status_code == 200  # none of it hurt the server


def test_invocation_of_a_finished_image_says_already_processed(ready: Server2) -> None:
    storage = open_storage(str(ready.log_path.parent / "shared"))
    add_image(storage, "known", None)
    record = wait_status(storage, "known")
    answer = ready.invoke({"user": USER, "image": "known"})
    assert answer.status_code == 200
    assert answer.json()["state"] == "already-processed"
    assert answer.json()["status"]["state"] == record["state"]

"""Fixtures shared by every suite: a real moto server on 127.0.0.1 and both storage backends."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from studio.storage import Storage, open_storage
from tests.weights_mirror import Mirror, serving_mirror

REPO = Path(__file__).resolve().parent.parent
# Tests never reach AWS: fake credentials, and every client goes to the local moto server.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)
# The small test weights hold a vit_l.pth (tests/weights.py): the SAM model every test loads unless it says
# otherwise. The tests of the CPU rule (no SAM_MODEL, no GPU: MobileSAM) unset it.
os.environ["SAM_MODEL"] = "vit_l"
os.environ.pop("AWS_PROFILE", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests (marked slow) first: `make test` runs the suite on parallel workers (pytest-xdist),
    and it ends when the last long test ends, so they must not start at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def seed() -> int:
    """The seed of a test's randomness: TEST_SEED if set (to replay a failure), else a fresh one.
    Printed, so pytest shows it with a failing test's captured output."""
    value = int(os.environ.get("TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random seed {value} (replay with TEST_SEED={value})")
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll condition until it holds; timeout only bounds a test that would otherwise hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:  # not listening yet, or (gunicorn) its worker still booting
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


# moto_server, except that it answers one request at a time: moto checks a conditional write
# (If-None-Match / If-Match) and then writes, so two threads could both win; S3 itself is atomic.
SERIAL_MOTO = """
import sys, threading
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

def serial(environ, start_response):
    with lock:
        return list(app(environ, start_response))

run_simple("127.0.0.1", int(sys.argv[1]), serial, threaded=True, request_handler=MotoRequestHandler)
"""


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERIAL_MOTO, str(self.port)],
            env={**os.environ, "MOTO_PORT": str(self.port)},  # as moto_server sets it
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(self.url + "/moto-api/", proc=self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def reset(self) -> None:
        requests.post(self.url + "/moto-api/reset", timeout=10)


def create_endpoint(sagemaker: object, instances: int = 1, prefix: str = "sam") -> str:
    """A SageMaker endpoint with one variant 'AllTraffic' at `instances` on the moto server."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/server2:latest"},
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.g4dn.xlarge",
    }
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if instances != 1:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": instances}],
        )
    return name


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A real moto server process; AWS_ENDPOINT_URL points every boto3 client at it."""
    server = MotoServer()
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = server.url
    yield server
    os.environ.pop("AWS_ENDPOINT_URL", None)
    server.stop()


@pytest.fixture
def s3_root(moto_server: MotoServer) -> str:
    """A fresh bucket on the moto server: s3://bucket/prefix."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server.url).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/shared"


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    """A local HTTP server serving model weights (tests/weights_mirror.py)."""
    with serving_mirror() as m:
        yield m


@pytest.fixture(params=["fs", "s3"])
def storage_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage root for each backend in turn: a temp folder, then a moto bucket."""
    if request.param == "fs":
        return str(tmp_path / "shared")
    return request.getfixturevalue("s3_root")


@pytest.fixture
def storage(storage_root: str) -> Storage:
    return open_storage(storage_root)


@pytest.fixture(scope="session")
def test_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit_l.pth, yolov8n.pt, yolov8n-seg.pt and birefnet-dis.onnx, small (tests/weights.py), built once."""
    from tests.weights import build_test_models  # torch and ultralytics only for suites that need them

    return build_test_models(tmp_path_factory.mktemp("models"))


# Real pretrained weights and human-labelled photos, kept outside the repository (never copied into it).
REALWORLD = Path(os.environ.get("REALWORLD_DIR") or REPO.parent / "shared" / "realworld")
REAL_WEIGHTS = ("mobile_sam.pt", "yolo11n.pt", "u2netp.onnx", "isnet-general-use.onnx")
# The models a test with real weights runs: YOLO11n + MobileSAM, U2-Netp for the matte path (fast on a CPU).
REAL_MODELS_ENV = {"SAM_MODEL": "mobile_sam", "DETECT_MODEL": "yolo11n.pt", "MATTE_MODEL": "u2netp"}


def realworld(*parts: str) -> Path:
    """A path under REALWORLD; a test that needs it fails (never skips) when it is not there."""
    path = REALWORLD.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the real weights and photos live in ../shared/realworld (REALWORLD_DIR)")
    return path


@pytest.fixture(scope="session")
def real_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder of links to the real weights (REAL_WEIGHTS), under the names Server2 loads."""
    folder = tmp_path_factory.mktemp("real-models")
    for name in REAL_WEIGHTS:
        (folder / name).symlink_to(realworld("weights", name))
    return folder


@pytest.fixture
def real_models_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SAM_MODEL, DETECT_MODEL and MATTE_MODEL set to the real weights' models (REAL_MODELS_ENV)."""
    for key, value in REAL_MODELS_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(REAL_MODELS_ENV)


# One Playwright instance for the whole run: its sync API refuses a second one while the first lives.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-packages)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def real_editor_models(real_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileSAM's decoder and image encoder as ONNX (sam-decoder-/sam-encoder-<digest>.onnx), exported once
    from the real mobile_sam.pt by the function Server2 and the command line call when they load it."""
    from server2 import embeddings

    folder = tmp_path_factory.mktemp("editor-models")
    (folder / "mobile_sam.pt").symlink_to(real_models_dir / "mobile_sam.pt")
    embeddings.export_editor_models(folder)
    (folder / "mobile_sam.pt").unlink()
    return folder

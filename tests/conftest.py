"""Fixtures shared by every suite: a real moto server on 127.0.0.1 and both storage backends."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from harness.aws import MotoServer, new_bucket, offline
from harness.browser import CHROMIUM, CHROMIUM_ARGS
from harness.realworld import REAL_MODELS_ENV, REAL_WEIGHTS, REALWORLD
from studio.storage import Storage, open_storage
from tests.weights_mirror import Mirror, serving_mirror

offline()  # tests never reach AWS: every client goes to the local moto server
# The small test weights hold a vit_l.pth (harness/weights.py): the SAM model every test loads unless it says
# otherwise. The tests of the CPU rule (no SAM_MODEL, no GPU: MobileSAM) unset it.
os.environ["SAM_MODEL"] = "vit_l"


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
    return f"s3://{new_bucket(moto_server.url)}/shared"


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
    """vit_l.pth, yolov8n.pt, yolov8n-seg.pt and birefnet-dis.onnx, small (harness/weights.py), built once."""
    from harness.weights import build_test_models

    return build_test_models(tmp_path_factory.mktemp("models"))


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

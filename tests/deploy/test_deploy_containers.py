"""Both images built by `make images` and run as they ship, on this machine's engine (README.md "Run with Docker",
command for command): Server1's container and Server2's, started as SageMaker starts it (`IMAGE serve`, port 8080),
on one bind-mounted shared folder, the real weights from a local HTTP mirror, the real photos. Slow: the first
build takes minutes (the layer cache keeps a re-run short); the conftest runs slow tests first."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from harness import REPO
from harness.images import encode
from harness.server1 import csrf_of
from harness.wait import free_port, wait_for
from studio import layout
from studio.storage import open_storage
from tests.conftest import realworld
from tests.deploy.containers import (
    ENGINE,
    POLL,
    RUN_FLAGS,
    SERVER1,
    SERVER2,
    STOP_SECONDS,
    Container,
    base_fixes,
    engine,
    make_images,
    unreleased_claims,
    weights_mirror,
)
from tests.server2.serving.support import drawing

# The real weights a CPU deployment needs; no SAM_MODEL anywhere: without a GPU, Server2 loads MobileSAM.
WEIGHTS = ["mobile_sam.pt", "yolo11n.pt", "u2netp.onnx"]
MODELS_ENV = {"DETECT_MODEL": "yolo11n.pt", "MATTE_MODEL": "u2netp"}
USER, PASSWORD = "alice", "a long container test password"
PHOTOS = ["coco_000000343934.jpg", "davis_cows.jpg", "lmvoc_2011_000003.jpg"]
DEFAULT_NETWORK = {"podman": "podman", "docker": "bridge"}[ENGINE]
# Generous: a loaded 2-core machine, torch's import and MobileSAM's export on the first start.
READY_SECONDS, JOB_SECONDS = 900, 600
# A cold first build (Server2: torch and its CUDA wheels) plus the containers' work.
TEST_TIMEOUT = 3000


@pytest.fixture(scope="session")
def images() -> str:
    """`make images`: its output (the first build, or a cached re-run)."""
    output, seconds = make_images()
    print(f"make images: {seconds:.0f} s")
    return output


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_make_images_builds_both_and_a_rerun_comes_from_the_cache(images: str) -> None:
    output, seconds = make_images()
    print(f"make images again: {seconds:.0f} s")
    assert "Collecting " not in output, output[-3000:]  # no pip install ran again
    assert ("Using cache" if ENGINE == "podman" else "CACHED") in output
    for image in (SERVER1, SERVER2):
        assert engine("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "1000:1000"
        assert "CMD" in engine("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout


def login(server1: Container, user: str, password: str) -> requests.Session:
    session = requests.Session()
    token = csrf_of(session.get(server1.url + "/login", timeout=30).text)
    answer = session.post(
        server1.url + "/login", data={"username": user, "password": password, "csrf_token": token}, timeout=30
    )
    assert answer.status_code == 200 and answer.url.rstrip("/") == server1.url, answer.text[:300]
    session.headers["X-CSRFToken"] = csrf_of(answer.text)
    return session


def upload(session: requests.Session, server1: Container, files: dict[str, bytes]) -> dict[str, str]:
    """{file name: image id}"""
    parts = [("file", (name, data)) for name, data in files.items()]
    answer = session.post(server1.url + "/upload", files=parts, timeout=120)
    assert answer.status_code == 200 and not answer.json()["errors"], answer.text
    images = answer.json()["images"]  # in the order sent
    assert len(images) == len(files)
    return {name: image["id"] for name, image in zip(files, images, strict=True)}


def records(shared: Path, ids: list[str], user: str = USER) -> dict[str, dict]:
    storage = open_storage(str(shared))
    return {i: storage.read_json(layout.status(user, i)) if storage.exists(layout.status(user, i)) else {} for i in ids}


def wait_done(shared: Path, ids: list[str], server2: Container, user: str = USER) -> dict[str, dict]:
    found: dict[str, dict] = {}

    def finished() -> bool:
        found.update(records(shared, ids, user))
        return all(r.get("state") in ("done", "failed") for r in found.values())

    try:
        wait_for(finished, "the jobs to finish", JOB_SECONDS, POLL)
    except TimeoutError as e:
        raise AssertionError(f"{e}: {found}\n{server2.logs()}") from None
    assert {r["state"] for r in found.values()} == {"done"}, f"{found}\n{server2.logs()}"
    return found


def wait_weights(server1: Container) -> None:
    """Until Server1 has downloaded WEIGHTS (a failed one fails the test at once)."""

    def present() -> bool:
        files = server1.get("/healthz").json()["lifecycle"]["weights"]["files"]
        assert not any(files.get(n, {}).get("state") == "failed" for n in WEIGHTS), files
        return all(files.get(n, {}).get("state") == "present" for n in WEIGHTS)

    wait_for(present, "Server1 to download the weights", READY_SECONDS, POLL)


def wait_healthy(*containers: Container) -> None:
    """Healthy by their images' own HEALTHCHECK, the main process running as uid 1000."""
    for container in containers:
        wait_for(container.healthy, f"{container.name} healthy by its HEALTHCHECK", READY_SECONDS, POLL)
        assert container.uids() == ["1000"] * 4


def cut_out(session: requests.Session, server1: Container, server2: Container, shared: Path, user: str) -> dict:
    """Upload a real photo and a drawing: the photo cut by MobileSAM, the drawing matted, on the CPU; each image's
    clippings served by Server1 and its ZIP downloaded. {file name: image id}"""

    def badge() -> dict:  # what the album shows: Server2's report, read by Server1 from the shared storage
        answer = session.get(server1.url + "/api/status", timeout=30).json()
        return {"worker": answer.get("worker"), "device": answer.get("device")}

    wait_for(lambda: badge() == {"worker": "ready", "device": "cpu"}, "the album's badge: CPU, ready", 60, POLL)
    photo = realworld("photos", PHOTOS[0]).read_bytes()
    sheet = encode(drawing(800, 600, (200, 150, 600, 450)))
    ids = upload(session, server1, {PHOTOS[0]: photo, "sheet.png": sheet})
    done = wait_done(shared, list(ids.values()), server2, user)
    by_name = {name: done[i] for name, i in ids.items()}
    assert by_name[PHOTOS[0]]["method"] == "sam" and by_name[PHOTOS[0]]["model"] == "mobile_sam"
    assert by_name["sheet.png"]["method"] == "matte"
    assert {r["device"] for r in done.values()} == {"cpu"}
    album = {i["id"]: i for i in session.get(server1.url + "/api/images", timeout=30).json()["images"]}
    for image_id, record in done.items():
        assert record["clippings"], record
        shown = album[image_id]
        assert [c["name"] for c in shown["clippings"]] == record["clippings"]
        clipping = session.get(server1.url + shown["clippings"][0]["url"], timeout=30)
        with Image.open(io.BytesIO(clipping.content)) as png:
            assert (png.format, png.mode) == ("PNG", "RGBA")
        answer = session.get(server1.url + shown["zip_url"], timeout=60)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
            assert archive.namelist() == record["clippings"]
            assert archive.testzip() is None
    return ids


def start_server2(shared: Path, fixes: dict[str, str]) -> tuple[Container, float]:
    """As SageMaker starts it (`docker run IMAGE serve`, port 8080); seconds from the start to /ping 200."""
    started = time.monotonic()
    server2 = Container.run(SERVER2, 8080, shared, {**MODELS_ENV, **fixes}, "serve")
    server2.wait_answer("/ping", 200, READY_SECONDS)
    return server2, time.monotonic() - started


def stop(container: Container, shared: Path) -> None:
    seconds, code = container.stop()
    print(f"{container.name}: exited {code} {seconds:.1f} s after SIGTERM")
    assert seconds < STOP_SECONDS and code == 0, container.logs()
    assert unreleased_claims(shared, USER) == []


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_server1_and_server2_containers_serve_the_journey(images: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"  # what `-v /mnt/s3:/mnt/s3` hands both: writable by uid 1000
    shared.mkdir()
    os.chown(shared, 1000, 1000)
    started: list[Container] = []
    try:
        fixes1, fixes2 = base_fixes(SERVER1), base_fixes(SERVER2)
        server2 = Container.run(SERVER2, 8080, shared, {**MODELS_ENV, **fixes2}, "serve")  # waits for the weights
        started.append(server2)
        with weights_mirror(DEFAULT_NETWORK, realworld("weights"), WEIGHTS) as mirror:
            env1 = {"APP_USER1": USER, "APP_PASS1": PASSWORD, "MODEL_BASE_URL": f"{mirror.url}/weights"}
            server1 = Container.run(SERVER1, 5050, shared, {**env1, **MODELS_ENV, **fixes1})
            started.append(server1)
            server1.wait_answer("/healthz", 200, READY_SECONDS)

            wait_weights(server1)
        assert sorted(p for p, _ in mirror.requests if p.endswith(tuple(WEIGHTS))) == sorted(
            f"/weights/{n}" for n in WEIGHTS
        )
        server2.wait_answer("/ping", 200, READY_SECONDS)  # no SAM_MODEL, no GPU, no vit_l.pth: MobileSAM
        wait_healthy(server1, server2)

        alice = login(server1, USER, PASSWORD)
        ids = cut_out(alice, server1, server2, shared, USER)

        asked = requests.post(server2.url + "/invocations", json={"user": USER, "image": ids[PHOTOS[0]]}, timeout=60)
        assert (asked.status_code, asked.json()["state"]) == (200, "already-processed")
        assert requests.post(server2.url + "/invocations", data=b"{", timeout=60).status_code == 400

        # SIGTERM while a photo is being cut: the job is finished or released, never left claimed.
        (busy,) = upload(alice, server1, {PHOTOS[1]: realworld("photos", PHOTOS[1]).read_bytes()}).values()
        wait_for(
            lambda: records(shared, [busy])[busy].get("state") in ("processing", "done"), "the job", JOB_SECONDS, POLL
        )
        stop(server2, shared)

        # The editor on a photo Server2 has not processed: Server1's container embeds it on its CPU.
        (fresh,) = upload(alice, server1, {PHOTOS[2]: realworld("photos", PHOTOS[2]).read_bytes()}).values()
        answer = alice.get(f"{server1.url}/api/images/{fresh}/embedding", timeout=JOB_SECONDS)
        assert answer.status_code == 200, answer.text[:500]
        embedding = np.load(io.BytesIO(answer.content))
        assert embedding.shape == (1, 256, 64, 64) and embedding.dtype == np.float16
        assert records(shared, [fresh])[fresh].get("state") != "done"  # unprocessed: the embedding is Server1's
        stop(server1, shared)

        # Server2's cold start with the weights present; it takes up the work left queued.
        server2, seconds = start_server2(shared, fixes2)
        started.append(server2)
        print(f"Server2 cold start, container start -> /ping 200 with the weights present: {seconds:.1f} s")
        wait_done(shared, [busy, fresh], server2)
        stop(server2, shared)
    finally:
        for container in started:
            container.remove()


def compose(folder: Path, project: str, env: dict[str, str], *args: str) -> str:
    """podman-compose, as README.md runs it (with this machine's run flags), in the folder of compose.yaml."""
    command = ["podman-compose", "--podman-run-args", " ".join(RUN_FLAGS), "-p", project, *args]
    # compose.yaml passes these through from the environment: only what the test gives (the suite sets SAM_MODEL).
    passed = {"SAM_MODEL", "DETECT_MODEL", "MATTE_MODEL", "MODEL_BASE_URL", "APP_USER2", "APP_PASS2"}
    env = {**{k: v for k, v in os.environ.items() if k not in passed}, **env}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_compose_serves_the_journey_on_one_volume(images: str, tmp_path: Path) -> None:
    assert ENGINE == "podman", "podman-compose runs the images podman built; here make images built with docker"
    folder = tmp_path / "compose"  # compose.yaml with its own .env, as a self-hoster has them
    folder.mkdir()
    for name in ("compose.yaml", "compose.gpu.yaml"):
        shutil.copy(REPO / name, folder / name)
    printed = subprocess.run(
        [REPO / "scripts" / "compose-env.sh", folder / ".env"], capture_output=True, text=True, check=True
    ).stdout
    login_env = dict(line.split("=", 1) for line in (folder / ".env").read_text().splitlines())
    user, password = login_env["APP_USER1"], login_env["APP_PASS1"]
    assert f"{user} / {password}" in printed and len(password) >= 20
    assert (folder / ".env").stat().st_mode & 0o077 == 0  # the owner's only

    project = f"samtest{uuid.uuid4().hex[:8]}"
    port = free_port()
    server1, server2 = Container(f"{project}_server1_1", port), Container(f"{project}_server2_1", 0)
    try:
        # The network compose joins, made first so that the weights mirror can listen at its gateway.
        engine("network", "create", f"{project}_default")
        with weights_mirror(f"{project}_default", realworld("weights"), WEIGHTS) as mirror:
            env = {**MODELS_ENV, "MODEL_BASE_URL": f"{mirror.url}/weights", "STUDIO_PORT": str(port)}
            compose(folder, project, env, "up", "-d")
            for container in (server1, server2):
                assert container.running(), container.logs()
                assert container.inspect("{{.HostConfig.RestartPolicy.Name}}") == "unless-stopped"
            server1.wait_answer("/healthz", 200, READY_SECONDS)
            wait_weights(server1)
        wait_healthy(server1, server2)  # Server2: ready on MobileSAM, no SAM_MODEL, no GPU
        volume = Path(engine("volume", "inspect", "--format", "{{.Mountpoint}}", f"{project}_shared").stdout.strip())
        for container in (server1, server2):
            assert str(volume) in container.inspect("{{range .Mounts}}{{.Source}} {{end}}")
        cut_out(login(server1, user, password), server1, server2, volume, user)

        compose(folder, project, {}, "down")
        listed = engine(
            "ps", "--all", "--filter", f"label=io.podman.compose.project={project}", "--format", "{{.Names}}"
        )
        assert listed.stdout.strip() == ""
    finally:
        subprocess.run(["podman-compose", "-p", project, "down"], cwd=folder, capture_output=True, timeout=600)
        engine("volume", "rm", "--force", f"{project}_shared", check=False)
        engine("network", "rm", "--force", f"{project}_default", check=False)

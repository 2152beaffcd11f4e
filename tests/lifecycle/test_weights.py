"""Model weights from a local HTTP server: resume, checks, no partial files, never overwrite."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import boto3
import pytest

from harness.server1 import USERS, csrf_of
from harness.wait import free_port, wait_for
from server1 import create_app
from server1.app import start_background, stop_background
from server1.config import Config
from server1.lifecycle import Lifecycle
from server1.lifecycle.config import LifecycleConfig
from server1.lifecycle.weights import ModelFile, Weights, model_files, read_manifest, settings_sam_models
from studio import layout, modelfiles, settings
from studio.errors import ConfigError
from studio.modelfiles import ModelChoice
from studio.storage import FileStorage
from tests.weights_mirror import blob, entry


def all_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fetch(models: Path, files: list[ModelFile], **kw: object) -> Weights:
    weights = Weights(str(models), files, backoff=0.01, **kw)  # type: ignore[arg-type]
    weights.ensure()
    return weights


def test_downloads_what_is_missing_and_leaves_existing_files_untouched(tmp_path, mirror):
    models = tmp_path / "models"
    models.mkdir()
    (models / "vit_l.pth").write_bytes(b"pre-populated")
    os.utime(models / "vit_l.pth", (1_000_000, 1_000_000))
    files = [entry(mirror, "vit_l.pth", blob(5000)), entry(mirror, "yolov8n.pt", blob(300_000, 7))]
    weights = fetch(models, files)
    assert weights.health()["ok"]
    assert (models / "vit_l.pth").read_bytes() == b"pre-populated"
    assert (models / "vit_l.pth").stat().st_mtime == 1_000_000
    assert (models / "yolov8n.pt").read_bytes() == blob(300_000, 7)
    assert all_files(models) == ["vit_l.pth", "yolov8n.pt"]  # no partial or temporary file
    assert [p for p, _ in mirror.requests] == ["/weights/yolov8n.pt"]


def test_resumes_with_a_range_request_after_a_dropped_connection(tmp_path, mirror):
    data = blob(3 << 20)
    mirror.drop_once.add("birefnet-dis.onnx")
    weights = fetch(tmp_path / "models", [entry(mirror, "birefnet-dis.onnx", data)])
    assert weights.state["birefnet-dis.onnx"]["state"] == "present"
    assert (tmp_path / "models" / "birefnet-dis.onnx").read_bytes() == data
    assert mirror.requests[0][1] is None
    resumed_at = int(mirror.requests[1][1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(data) // 2  # picked up from what had reached the disk
    assert len(mirror.requests) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"sha256": "0" * 64}, "sha256 .* does not match"),
        ({"sha256": None, "md5": "f" * 32}, "md5 .* does not match"),
        ({"size": 999}, "offers 4000 bytes, expected 999"),
    ],
)
def test_a_wrong_hash_or_size_is_rejected_and_leaves_nothing(tmp_path, mirror, override, message):
    weights = fetch(tmp_path / "models", [entry(mirror, "yolov8n-seg.pt", blob(4000), **override)])
    state = weights.state["yolov8n-seg.pt"]
    assert state["state"] == "failed"
    assert __import__("re").search(message, state["error"])
    assert not weights.health()["ok"]
    assert all_files(tmp_path / "models") == []


def test_a_missing_file_upstream_fails_at_once_and_a_dead_mirror_after_retries(tmp_path, mirror):
    dead = f"http://127.0.0.1:{free_port()}"
    files = [ModelFile("yolov8n.pt", f"{mirror.url}/nothing/yolov8n.pt"), ModelFile("vit_l.pth", f"{dead}/vit_l.pth")]
    weights = fetch(tmp_path / "models", files, attempts=3)
    assert "answered HTTP 404" in weights.state["yolov8n.pt"]["error"]
    assert len(mirror.requests) == 1  # a 404 is not retried
    assert weights.state["vit_l.pth"]["state"] == "failed"
    assert "download from http://127.0.0.1" in weights.state["vit_l.pth"]["error"]
    assert all_files(tmp_path / "models") == []


def test_a_dead_mirror_does_not_hold_up_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_BASE_URL", f"http://127.0.0.1:{free_port()}/mirror")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    for name in ("SAGEMAKER_ENDPOINT", "INFERENCE_URL", "MODEL_MANIFEST", "SKIP_MODEL_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    life = Lifecycle(FileStorage(tmp_path / "shared"), ["alice"], config=LifecycleConfig.from_env(), lease_seconds=1.0)
    assert all(f.url.startswith(os.environ["MODEL_BASE_URL"] + "/") for f in life.weights.files)
    life.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and life.health().get("role") != "leader":
            time.sleep(0.05)
        health = life.health()  # answers while the downloads are still failing and retrying
        assert health["role"] == "leader" and life.worker_status() == "ready"
        states = {s["state"] for s in health["weights"]["files"].values()}
        assert states <= {"unchecked", "checking", "downloading", "failed"}
        assert not health["weights"]["ok"]
    finally:
        life.stop()


def test_skip_model_download_reports_missing_files_without_fetching(tmp_path, mirror):
    weights = fetch(tmp_path / "models", [entry(mirror, "vit_l.pth", blob(10))], skip_download=True)
    assert weights.state["vit_l.pth"] == {"state": "missing", "error": "not present and SKIP_MODEL_DOWNLOAD=1"}
    assert mirror.requests == []


def test_an_s3_models_dir_gets_the_file_uploaded_after_its_check(s3_root, tmp_path, mirror):
    data = blob(200_000, 3)
    weights = Weights(s3_root + "/models", [entry(mirror, "yolov8n.pt", data)])
    weights.ensure()
    assert weights.state["yolov8n.pt"]["state"] == "present"
    bucket, _, prefix = s3_root.removeprefix("s3://").partition("/")
    obj = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/models/yolov8n.pt")
    assert obj["Body"].read() == data


MODEL_VARIABLES = ("DETECT_MODEL", "MATTE_MODEL", "SAM_MODEL")


def test_manifest_replaces_the_builtin_list_and_base_url_replaces_urls(tmp_path, monkeypatch):
    for name in MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": [{"name": "vit_b.pth", "url": "https://example.org/v.pth", "size": 3}]}))
    gpu = ModelChoice.from_env(gpu=True)
    assert model_files(str(manifest), None, gpu) == [ModelFile("vit_b.pth", "https://example.org/v.pth", 3)]
    builtin = model_files(None, None, gpu)
    mirrored = model_files(None, "http://mirror.local/w/", gpu)
    assert [f.url for f in mirrored] == [f"http://mirror.local/w/{f.name}" for f in builtin]
    assert [f.md5 for f in mirrored] == [f.md5 for f in builtin]
    assert [f.name for f in builtin] == list(modelfiles.ModelChoice().files())
    assert [f.name for f in builtin] == [
        "vit_l.pth",
        "mobile_sam.pt",
        "yolov8n.pt",
        "yolov8n-seg.pt",
        "birefnet-dis.onnx",
    ]
    urls = {f.name: f.url for f in builtin}
    assert urls["vit_l.pth"] == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"
    assert urls["yolov8n-seg.pt"] == "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8n-seg.pt"


def test_the_download_list_follows_the_configuration(tmp_path, monkeypatch):
    """Only the configured models, plus SAM sizes users picked; each with rembg's own md5 where it has one."""
    monkeypatch.setenv("DETECT_MODEL", "yolo11n.pt")
    monkeypatch.setenv("MATTE_MODEL", "isnet-general-use")
    monkeypatch.setenv("SAM_MODEL", "vit_b")
    files = model_files(None, None, ModelChoice.from_env(gpu=False), {"vit_h"})
    assert [f.name for f in files] == [
        "vit_b.pth",
        "mobile_sam.pt",
        "vit_h.pth",
        "yolo11n.pt",
        "yolo11n-seg.pt",
        "isnet-general-use.onnx",
    ]
    isnet = files[-1]
    assert isnet.url == "https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-general-use.onnx"
    assert isnet.md5 == "fc16ebd8b0c10d971d3513d564d01e29"
    assert files[1].sha256 == "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    assert all(f.md5 is None and f.sha256 is None for f in [files[0], *files[2:-1]])  # no full hash known
    monkeypatch.setenv("MATTE_MODEL", "birefnet-large")
    with pytest.raises(ConfigError, match="MATTE_MODEL must be one of birefnet-dis, "):
        ModelChoice.from_env(gpu=True)
    monkeypatch.setenv("MATTE_MODEL", "u2netp")
    monkeypatch.setenv("DETECT_MODEL", "../yolo.pt")
    with pytest.raises(ConfigError, match="DETECT_MODEL must be an Ultralytics weights file name"):
        ModelChoice.from_env(gpu=True)


def test_sam_models_users_picked_are_fetched_too(tmp_path):
    storage = FileStorage(tmp_path)
    picks = {
        "alice": {"sam_model": "vit_h"},
        "bob": {"sam_model": "deployment"},
        "carol": "not json{",
        "dave": None,
        "erin": {"model_type": "vit_l"},  # an old file: the old default, nobody's choice
        "finn": {"model_type": "vit_b"},  # an old file's real choice
    }
    for user, stored in picks.items():
        if stored is not None:
            defaults = {k: v for k, v in settings.DEFAULTS.items() if k != "sam_model"}
            data = stored if isinstance(stored, str) else json.dumps({**defaults, **stored})
            storage.write(layout.settings(user), data.encode())
    assert settings_sam_models(storage, list(picks)) == {"vit_h", "vit_b"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ('{"files": {}}', 'must be {"files": \\[...\\]}'),
        ('{"files": [{"name": "../x", "url": "https://a/b"}]}', "invalid model file name"),
        ('{"files": [{"name": "a.pt", "url": "ftp://a/b"}]}', "url must be an http"),
        ('{"files": [{"name": "a.pt", "url": "https://a/b", "sha256": "xyz"}]}', "sha256 must be 64 hex digits"),
        ('{"files": [{"name": "a.pt", "url": "https://a/b", "size": -1}]}', "size must be a positive"),
    ],
)
def test_a_bad_manifest_gets_a_clear_error(tmp_path, content, message):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_manifest(str(manifest))


def test_a_missing_manifest_file_stops_start_up_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_MANIFEST", str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="MODEL_MANIFEST .* cannot be read"):
        Lifecycle(FileStorage(tmp_path / "shared"), ["alice"], config=LifecycleConfig.from_env())


def test_the_settings_page_names_the_models_in_use(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECT_MODEL", "yolo11n.pt")
    monkeypatch.setenv("MATTE_MODEL", "u2netp")
    monkeypatch.setenv("SAM_MODEL", "vit_b")
    life = Lifecycle(FileStorage(tmp_path / "shared"), ["alice"], config=LifecycleConfig(models_dir=str(tmp_path)))
    assert life.models_in_use() == {"sam": "vit_b", "detect": "yolo11n.pt", "matte": "u2netp"}
    monkeypatch.setenv("MATTE_MODEL", "nope")
    assert life.models_in_use() == {
        "error": "MATTE_MODEL must be one of " + ", ".join(modelfiles.MATTE) + ", got 'nope'"
    }


def test_server1_fetches_the_sam_model_server2_reports(tmp_path, monkeypatch):
    """Server1 knows no GPU. Before Server2's first report: the CPU rule for the device expected (local mode:
    none, so MobileSAM, fetched anyway for the editor); once Server2 reports the model it chose on its
    device, the leader fetches that one, and the settings page and the badge show it."""
    monkeypatch.delenv("SAM_MODEL")
    for name in ("SAGEMAKER_ENDPOINT", "MODEL_MANIFEST", "MODEL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    storage = FileStorage(tmp_path / "shared")
    config = LifecycleConfig(models_dir=str(tmp_path / "models"), skip_model_download=True)
    life = Lifecycle(storage, ["alice"], config=config, lease_seconds=1.0)
    assert life.models_in_use()["sam"] == "mobile_sam" and "vit_l.pth" not in life.weights.state
    report = {"device": "cuda", "sam_model": "vit_l", "state": "loading", "worker": "w", "updated_at": "t"}
    storage.write_json(layout.server2_report(), report)
    life.start()
    try:
        wait_for(lambda: "vit_l.pth" in life.weights.health()["files"], "vit_l.pth listed once Server2 reports it")
        wait_for(lambda: life.serving() == {"worker": "starting", "device": "cuda"}, "the badge: GPU starting")
        assert life.models_in_use()["sam"] == "vit_l"
        storage.write_json(layout.server2_report(), {**report, "state": "ready"})
        wait_for(lambda: life.serving() == {"worker": "ready", "device": "cuda"}, "the badge: GPU ready")
    finally:
        life.stop()


def test_a_sam_picked_in_the_settings_is_fetched_at_once_and_its_download_shown(tmp_path, mirror, monkeypatch):
    """No restart: saving the settings starts the download, and /api/settings (the settings page) shows
    its progress until the weights are there."""
    for name in MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    models = tmp_path / "models"
    models.mkdir()
    for f in model_files(None, None, ModelChoice.from_env(gpu=False)):  # local mode's models are there already
        (models / f.name).write_bytes(b"present")
    data = blob(4 << 20, 11)
    mirror.files["vit_h.pth"] = data
    mirror.hold["vit_h.pth"] = threading.Event()  # half of it, then wait for the test
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("MODEL_BASE_URL", f"{mirror.url}/weights")
    app = create_app(Config.from_env(shared_dir=str(tmp_path / "shared"), users=dict(USERS), secret_key="k" * 40))
    start_background(app)
    life = app.extensions["server1"].lifecycle
    try:
        wait_for(lambda: life.lease.held and life.weights.health()["ok"], "the configured weights checked")
        client = app.test_client()
        token = csrf_of(client.get("/login").text)
        client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
        client.environ_base["HTTP_X_CSRFTOKEN"] = csrf_of(client.get("/").text)
        saved = client.post("/api/settings", json={"sam_model": "vit_h"})
        assert saved.status_code == 200 and saved.json["sam_weights"]["model"] == "vit_h"
        half = {"model": "vit_h", "state": "downloading", "percent": 50, "error": None}
        wait_for(lambda: client.get("/api/settings").json["sam_weights"] == half, "vit_h downloading, 50 %")
        mirror.hold["vit_h.pth"].set()
        wait_for(lambda: client.get("/api/settings").json["sam_weights"] is None, "vit_h's weights there")
        assert (models / "vit_h.pth").read_bytes() == data
    finally:
        mirror.hold["vit_h.pth"].set()
        stop_background(app)

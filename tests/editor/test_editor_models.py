"""One start of Server2 or of `python -m server2 segment` with the real mobile_sam.pt exports MobileSAM's image
encoder and prompt decoder for Server1's own embeddings, once per checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import server2.app
from harness.realworld import REAL_WEIGHTS
from server2 import cli, config
from server2.embeddings import checkpoint_digest
from studio import layout
from studio.storage import FileStorage
from tests.conftest import realworld
from tests.server2.serving.test_serve_app import wait_ping


def weights_folder(real_models_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in REAL_WEIGHTS:
        (folder / name).symlink_to(real_models_dir / name)
    return folder


def test_server2_exports_the_encoder_and_decoder_when_it_loads_mobile_sam(
    tmp_path: Path, real_models_dir: Path, real_models_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    models = weights_folder(real_models_dir, tmp_path / "models")
    for name in ("SAGEMAKER_ENDPOINT", "SAGEMAKER_INFERENCE_COMPONENT", "S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHARED_DIR", str(shared))
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("POLL_SECONDS", "3600")
    config.load.cache_clear()
    app = server2.app.create_app()
    try:
        assert wait_ping(app.test_client(), 200, timeout=300) == {"status": "ready"}
    finally:
        app.extensions["server2"].stop()
        config.load.cache_clear()
    digest = checkpoint_digest(models / "mobile_sam.pt")
    storage = FileStorage(shared)
    assert storage.exists(layout.encoder(digest)) and storage.exists(layout.decoder(digest))


def test_the_command_line_exports_them_into_its_models_folder_once(
    tmp_path: Path, real_models_dir: Path, real_models_env: dict
) -> None:
    models = weights_folder(real_models_dir, tmp_path / "models")
    photo = str(realworld("photos", "davis_blackswan.jpg"))
    assert cli.main(["--mode", "matte", "--models", str(models), "--out", str(tmp_path / "out"), photo]) == 0
    digest = checkpoint_digest(models / "mobile_sam.pt")
    exported = [models / layout.encoder_file(digest), models / layout.decoder_file(digest)]
    stamps = [path.stat().st_mtime_ns for path in exported]
    assert all(path.stat().st_size > 1_000_000 for path in exported)
    assert cli.main(["--mode", "matte", "--models", str(models), "--out", str(tmp_path / "again"), photo]) == 0
    assert [path.stat().st_mtime_ns for path in exported] == stamps  # not exported again

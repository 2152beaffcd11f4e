"""One start of Server2 or of `python -m server2 segment` with the real mobile_sam.pt exports MobileSAM's image
encoder and prompt decoder for Server1's own embeddings, once per checkpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import server2.app
from harness.realworld import REAL_WEIGHTS
from server2 import cli, config, embeddings
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


def test_server2_on_a_cpu_loads_mobile_sam_and_exports_the_encoder_and_decoder(
    tmp_path: Path, real_models_dir: Path, real_models_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU rule as `python -m server2` and `serve` start it (create_app): no SAM_MODEL and no GPU, so
    MobileSAM, with only its weights there; Server2 reports that choice for Server1."""
    monkeypatch.delenv("SAM_MODEL")
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
        report = FileStorage(shared).read_json(layout.server2_report())
        assert {k: report[k] for k in ("device", "sam_model", "state")} == {
            "device": "cpu",
            "sam_model": "mobile_sam",
            "state": "ready",
        }
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


def test_server2_copies_baked_editor_models_instead_of_exporting(
    tmp_path: Path, real_models_dir: Path, real_editor_models: Path
) -> None:
    """A baked image (BAKE_WEIGHTS=1) holds the exported encoder and decoder beside mobile_sam.pt in its
    models folder: Server2 copies them to the shared models/, exporting nothing (the stand-in for MobileSAM
    cannot be exported)."""
    baked = weights_folder(real_models_dir, tmp_path / "opt-models")
    for exported in real_editor_models.iterdir():
        (baked / exported.name).symlink_to(exported)
    storage = FileStorage(tmp_path / "shared")
    models = SimpleNamespace(sam={"mobile_sam": object()}, folder=baked)
    digest = embeddings.ensure_editor_models(storage, models)
    for key, name in (
        (layout.encoder(digest), layout.encoder_file(digest)),
        (layout.decoder(digest), layout.decoder_file(digest)),
    ):
        assert storage.read(key) == (real_editor_models / name).read_bytes()

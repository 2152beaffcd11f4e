"""server2.models: loading through the real code path, SAM's shape read from checkpoints, devices, S3 cache."""

from __future__ import annotations

import inspect
import logging
import shutil
from pathlib import Path

import boto3
import pytest
import torch
from PIL import Image
from rembg.sessions import sessions_class
from rembg.sessions.birefnet_dis import BiRefNetSessionDIS
from rembg.sessions.dis_general_use import DisSession
from rembg.sessions.u2netp import U2netpSession
from segment_anything import sam_model_registry

from harness.weights import TEST_SAM
from server2.gpu_check import GpuUnavailable
from server2.models import Models, ModelsMissing, build_sam, choose, local_models_dir, pick_device, sam_config
from studio import modelfiles
from studio.errors import ConfigError
from studio.modelfiles import ModelChoice

# The encoders segment_anything's own builders make (build_sam.py).
REGISTRY = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def test_models_load_from_the_test_weights(models: Models) -> None:
    assert models.device == "cpu"
    assert set(models.sam) == {"vit_l"}
    assert sam_config(models.sam["vit_l"].state_dict()) == TEST_SAM
    assert models.detect.yolo.task == "detect" and models.segment.yolo.task == "segment"
    assert models.detect.yolo.names[0] == "person"
    assert isinstance(models.matte.session, BiRefNetSessionDIS)
    assert models.matte.session.inner_session.get_providers() == ["CPUExecutionProvider"]
    assert models.describe() == {
        "sam": "vit_l",
        "sam_loaded": ["vit_l"],
        "detect": "yolov8n.pt",
        "segment": "yolov8n-seg.pt",
        "matte": "birefnet-dis",
    }


def test_yolo_leaves_torch_on_every_core(models: Models) -> None:
    """ultralytics' select_device sets torch to cpu_count - 1 threads (1 on 2 cores) for the whole process:
    SAM then ran on half the cores (bench.cpu_mode)."""
    from ultralytics.utils import NUM_THREADS

    before = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS + 1)
    try:
        models.detect.predict(Image.new("RGB", (64, 64)), 0.25)
        assert torch.get_num_threads() == NUM_THREADS + 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("name", "session"), [("isnet-general-use", DisSession), ("u2netp", U2netpSession)])
def test_models_are_chosen_by_name(tmp_path: Path, test_models_dir: Path, name: str, session: type) -> None:
    """DETECT_MODEL / MATTE_MODEL pick the files and rembg's own session class (its pre/post-processing);
    the file is taken as it is, without rembg's md5 check or download."""
    (tmp_path / "vit_l.pth").symlink_to(test_models_dir / "vit_l.pth")
    (tmp_path / "yolo11n.pt").symlink_to(test_models_dir / "yolov8n.pt")  # no yolo11n-seg.pt: boxes only
    (tmp_path / f"{name}.onnx").symlink_to(test_models_dir / "birefnet-dis.onnx")
    models = Models.load(tmp_path, "cpu", ModelChoice(detect="yolo11n.pt", matte=name))
    assert isinstance(models.matte.session, session) and models.segment is None
    assert models.describe()["detect"] == "yolo11n.pt" and models.describe()["matte"] == name
    picture = Image.new("RGB", (64, 48), "white")
    picture.paste((0, 0, 0), (20, 10, 44, 38))
    mask = models.matte.predict(picture)
    assert mask.shape == (48, 64) and mask[24, 32] and not mask[2, 2]


def test_the_catalogue_has_rembgs_own_files_and_hashes() -> None:
    """studio.modelfiles.MATTE (Server1 has no rembg) against the md5 and file each rembg session checks."""
    by_name = {cls.name(): cls for cls in sessions_class}
    for name, (upstream, md5) in modelfiles.MATTE.items():
        source = inspect.getsource(by_name[name])
        assert f"md5:{md5}" in source and upstream in source, name


def test_model_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECT_MODEL", "yolo11n.pt")
    monkeypatch.setenv("MATTE_MODEL", "u2netp")
    monkeypatch.delenv("SAM_MODEL", raising=False)
    assert ModelChoice.from_env(gpu=True) == ModelChoice("yolo11n.pt", "u2netp", "vit_l")
    assert ModelChoice.from_env(gpu=False).sam == "mobile_sam"
    monkeypatch.setenv("SAM_MODEL", "vit_x")
    with pytest.raises(ConfigError, match="SAM_MODEL must be one of mobile_sam, vit_b, vit_l, vit_h"):
        ModelChoice.from_env(gpu=True)


def test_the_cpu_rule_applies_where_server2_chooses_its_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a GPU, MobileSAM unless SAM_MODEL says otherwise: Models.load (Server2 however started, and its
    command line) asks for mobile_sam.pt on a CPU, vit_l.pth on a GPU, and SAM_MODEL's file on either."""
    monkeypatch.delenv("SAM_MODEL")
    assert (choose("cpu").sam, choose("cuda").sam) == ("mobile_sam", "vit_l")
    for device, first in (("cpu", "mobile_sam.pt"), ("cuda", "vit_l.pth")):
        with pytest.raises(ModelsMissing) as missing:
            Models.load(tmp_path, device)  # nothing is there: it names what it would load
        assert missing.value.missing[0] == first
    monkeypatch.setenv("SAM_MODEL", "vit_b")
    with pytest.raises(ModelsMissing, match="vit_b.pth"):
        Models.load(tmp_path, "cpu")


@pytest.mark.parametrize("size", sorted(REGISTRY))
def test_sam_shape_is_read_from_a_real_architecture(size: str) -> None:
    """The real vit_b/l/h checkpoints' shapes give back segment_anything's configurations (meta tensors: no RAM)."""
    with torch.device("meta"):
        real = sam_model_registry[size]().state_dict()
        config = sam_config(real)
        rebuilt = build_sam(config).state_dict()
    embed_dim, depth, heads, global_blocks = REGISTRY[size]
    assert (config.embed_dim, config.depth, config.num_heads, config.global_attn_indexes) == (
        embed_dim,
        depth,
        heads,
        global_blocks,
    )
    assert (config.window_size, config.patch_size, config.img_size) == (14, 16, 1024)
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in real.items()}


def test_not_a_sam_checkpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="not a SAM checkpoint"):
        sam_config({"weight": torch.zeros(3)})


def test_missing_weights_are_named(tmp_path: Path, test_models_dir: Path) -> None:
    with pytest.raises(ModelsMissing) as empty:
        Models.load(tmp_path, "cpu")
    needed = ["vit_l.pth", "yolov8n.pt", "birefnet-dis.onnx"]  # yolov8n-seg.pt is used when present
    assert empty.value.missing == needed
    for name in needed:
        assert name in str(empty.value)
    for name in ("yolov8n.pt", "birefnet-dis.onnx"):
        shutil.copy(test_models_dir / name, tmp_path / name)
    with pytest.raises(ModelsMissing, match=r"vit_l\.pth$") as partial:
        Models.load(tmp_path, "cpu")
    assert partial.value.missing == ["vit_l.pth"]
    matte_only = Models.load(tmp_path, "cpu", need_sam=False)  # the matte path needs no SAM
    assert matte_only.sam == {} and matte_only.segment is None
    with pytest.raises(ModelsMissing, match=r"vit_l\.pth"):
        matte_only.sam_for("vit_l")


def test_other_sam_sizes_load_when_present_and_the_configured_one_stands_in(
    tmp_path: Path, test_models_dir: Path
) -> None:
    for name in modelfiles.ModelChoice().files():
        (tmp_path / name).symlink_to(test_models_dir / name)
    (tmp_path / "vit_b.pth").symlink_to(test_models_dir / "vit_l.pth")
    models = Models.load(tmp_path, "cpu")
    assert set(models.sam) == {"vit_b", "vit_l"}
    assert models.sam_for("vit_b") == ("vit_b", models.sam["vit_b"])
    assert models.sam_for("vit_h") == ("vit_l", models.sam["vit_l"])


def test_the_deployments_model_is_the_default_and_a_missing_sam_is_said_once(
    tmp_path: Path, test_models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The settings' default, "deployment", is the configured SAM without a word; a missing one is a warning,
    said once."""
    for name in modelfiles.ModelChoice().files():
        if not name.endswith(".pth"):
            (tmp_path / name).symlink_to(test_models_dir / name)
    (tmp_path / "vit_b.pth").symlink_to(test_models_dir / "vit_l.pth")
    models = Models.load(tmp_path, "cpu", ModelChoice(sam="vit_b"))
    with caplog.at_level(logging.INFO, logger="server2.models"):
        for _ in range(3):
            assert models.sam_for(modelfiles.DEPLOYMENT) == ("vit_b", models.sam["vit_b"])
            assert models.sam_for("vit_h") == ("vit_b", models.sam["vit_b"])
    said = [(r.levelno, r.getMessage().split(" requested")[0]) for r in caplog.records if "requested" in r.getMessage()]
    assert said == [(logging.WARNING, "SAM vit_h")]


def test_pick_device() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GpuUnavailable, match="needs a GPU and none is usable"):
            pick_device("cuda")


def test_local_models_dir_is_the_path_itself(tmp_path: Path) -> None:
    assert local_models_dir(str(tmp_path), tmp_path / "cache") == tmp_path


def test_s3_models_are_copied_once_into_the_cache(s3_root: str, tmp_path: Path) -> None:
    bucket, prefix = s3_root.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/models/yolov8n.pt", Body=b"weights-1")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/models/vit_l.pth", Body=b"weights-2")
    cache = tmp_path / "cache"
    folder = local_models_dir(f"{s3_root}/models", cache)
    assert folder == cache
    assert sorted(p.name for p in cache.iterdir()) == ["vit_l.pth", "yolov8n.pt"]
    assert (cache / "yolov8n.pt").read_bytes() == b"weights-1"
    # A file already cached is not fetched again (weights never change under a name).
    s3.put_object(Bucket=bucket, Key=f"{prefix}/models/yolov8n.pt", Body=b"changed")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/models/yolov8n-seg.pt", Body=b"weights-3")
    local_models_dir(f"{s3_root}/models", cache)
    assert (cache / "yolov8n.pt").read_bytes() == b"weights-1"
    assert (cache / "yolov8n-seg.pt").read_bytes() == b"weights-3"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]

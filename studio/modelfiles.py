"""Which model weight files the configuration needs, and where each comes from officially.

One source of truth for both servers (docs/architecture.md "Models"): Server1 downloads exactly these files
at start-up, Server2 (server2/models.py) loads them. Light on purpose (no torch, no rembg): Server1 imports it.

Configuration (environment):
- DETECT_MODEL: an Ultralytics weights file (yolov8n.pt default; yolo11n.pt, yolov8s.pt...). Its "-seg"
  sibling (yolov8n-seg.pt) is fetched too and used when present: its masks give better SAM prompts.
- MATTE_MODEL: a rembg session name (birefnet-dis default; see MATTE below), file <name>.onnx.
- SAM_MODEL: the deployment's SAM model (one of SAM_MODELS). Unset: vit_l on a GPU, mobile_sam without one
  (the CPU rule, ModelChoice.from_env(gpu)). Models users pick in their settings are fetched as well
  (required_files(sam_models=...)). mobile_sam is MobileSAM: SAM's prompt encoder and mask decoder behind a
  small TinyViT image encoder (about 5 M parameters against vit_b's 89 M); much faster, lower quality than vit_l.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import env_str
from studio.errors import ConfigError


@dataclass(frozen=True)
class ModelFile:
    name: str
    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


SAM_MODELS = ("mobile_sam", "vit_b", "vit_l", "vit_h")
SAM_GPU_DEFAULT = "vit_l"
SAM_CPU_DEFAULT = "mobile_sam"  # without a GPU: about 1 s an image embedding on 2 cores (vit_b: 20 s)
EDITOR_SAM = "mobile_sam"  # whose image encoder Server1 runs (server1/encoding.py)
# A user's sam_model meaning "the SAM model the deployment loads" (SAM_MODEL, else the CPU rule): the settings'
# default, so that it never names weights the deployment may not have.
DEPLOYMENT = "deployment"
SAM_SETTING_CHOICES = (DEPLOYMENT, *SAM_MODELS)
DETECT_DEFAULT = "yolov8n.pt"
MATTE_DEFAULT = "birefnet-dis"

# Meta's release; the 6 hex digits in each name are the start of its sha256 (torch.hub's convention).
SAM_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
SAM_SHA256_PREFIX = {size: url.rsplit("_", 1)[1].removesuffix(".pth") for size, url in SAM_URLS.items()}
# MobileSAM's author's checkpoint (github.com/ChaoningZhang/MobileSAM, Apache-2.0), under its upstream name.
MOBILE_SAM = ModelFile(
    "mobile_sam.pt",
    "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/master/weights/mobile_sam.pt",
    size=40_728_226,
    sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
)
# The release ultralytics 8.4 downloads its assets from (ultralytics/utils/downloads.py).
ULTRALYTICS_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
REMBG_RELEASE = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
# rembg session name -> (file name in rembg's release, the md5 rembg 2.0.86 itself checks in
# rembg/sessions/<module>.py). tests/server2/pipeline/test_models.py compares this with rembg's code.
MATTE = {
    "birefnet-dis": ("BiRefNet-DIS-epoch_590.onnx", "2d4d44102b446f33a4ebb2e56c051f2b"),
    "birefnet-general": ("BiRefNet-general-epoch_244.onnx", "7a35a0141cbbc80de11d9c9a28f52697"),
    "birefnet-general-lite": ("BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx", "4fab47adc4ff364be1713e97b7e66334"),
    "isnet-general-use": ("isnet-general-use.onnx", "fc16ebd8b0c10d971d3513d564d01e29"),
    "u2net": ("u2net.onnx", "60024c5c889badc19c04ad937298a77b"),
    "u2netp": ("u2netp.onnx", "8e83ca70e441ab06c318d82300c84806"),
}


@dataclass(frozen=True)
class ModelChoice:
    """The configured models (Server2 loads these; Server1 fetches their files)."""

    detect: str = DETECT_DEFAULT
    matte: str = MATTE_DEFAULT
    sam: str = SAM_GPU_DEFAULT

    @classmethod
    def from_env(cls, gpu: bool) -> ModelChoice:
        """DETECT_MODEL, MATTE_MODEL, SAM_MODEL. The CPU rule: without a GPU, MobileSAM unless SAM_MODEL says
        otherwise (a ViT image encoder takes 20 s and more an image on a CPU)."""
        return cls(
            detect=check_detect(env_str("DETECT_MODEL") or DETECT_DEFAULT),
            matte=check_matte(env_str("MATTE_MODEL") or MATTE_DEFAULT),
            sam=check_sam(env_str("SAM_MODEL") or (SAM_GPU_DEFAULT if gpu else SAM_CPU_DEFAULT)),
        )

    @property
    def segment(self) -> str:
        """The detector's segmentation sibling: yolov8n.pt -> yolov8n-seg.pt."""
        stem = self.detect.removesuffix(".pt")
        return self.detect if stem.endswith("-seg") else f"{stem}-seg.pt"

    @property
    def matte_file(self) -> str:
        return f"{self.matte}.onnx"

    def files(self, sam_models: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """The weight file names, the configured SAM model's first. mobile_sam.pt always (40 MB): Server2 exports
        its image encoder so that Server1 can embed, on its CPU, a photo Server2 has not processed."""
        extra = {*sam_models, EDITOR_SAM}
        sams = [self.sam, *sorted(s for s in extra if s != self.sam and s in SAM_MODELS)]
        return [
            *(sam_file(s) for s in sams),
            self.detect,
            *([self.segment] * (self.segment != self.detect)),
            self.matte_file,
        ]


def sam_file(model: str) -> str:
    """The weights file of a SAM model: mobile_sam.pt (its upstream name), else <model>.pth."""
    return MOBILE_SAM.name if model == "mobile_sam" else f"{model}.pth"


def check_detect(name: str) -> str:
    if not name.endswith(".pt") or "/" in name or name.startswith("."):
        raise ConfigError(f"DETECT_MODEL must be an Ultralytics weights file name like yolov8n.pt, got {name!r}")
    return name


def check_matte(name: str) -> str:
    if name not in MATTE:
        raise ConfigError(f"MATTE_MODEL must be one of {', '.join(MATTE)}, got {name!r}")
    return name


def check_sam(name: str) -> str:
    if name not in SAM_MODELS:
        raise ConfigError(f"SAM_MODEL must be one of {', '.join(SAM_MODELS)}, got {name!r}")
    return name


def official(name: str) -> ModelFile:
    """Where the file comes from, with its authoritative hash when one is known."""
    if name == MOBILE_SAM.name:
        return MOBILE_SAM
    stem = name.removesuffix(".pth")
    if stem in SAM_URLS:
        return ModelFile(name, SAM_URLS[stem])
    if name.endswith(".onnx") and name.removesuffix(".onnx") in MATTE:
        upstream, md5 = MATTE[name.removesuffix(".onnx")]
        return ModelFile(name, REMBG_RELEASE + upstream, md5=md5)
    if name.endswith(".pt"):
        return ModelFile(name, ULTRALYTICS_RELEASE + name)
    raise ConfigError(f"no official source known for model file {name!r}")


def required_files(choice: ModelChoice, sam_models: set[str] | frozenset[str] = frozenset()) -> list[ModelFile]:
    return [official(name) for name in choice.files(sam_models)]

"""Loading the models once: SAM (each size whose weights exist), YOLO detect + segment, rembg's BiRefNet.

SAM's architecture is read from the checkpoint's tensor shapes (embed dim, depth, heads, global-attention
blocks, window, input size), so one code path loads the real vit_b/vit_l/vit_h checkpoints and the small
ones the tests build.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

# Before ultralytics is imported: no DNS probes, analytics or asset (font) downloads; the network may be closed.
os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402  (torch before onnxruntime: its CUDA libraries are the ones onnxruntime finds)

from server2 import gpu_check  # noqa: E402
from studio import layout  # noqa: E402
from studio.errors import ConfigError  # noqa: E402

log = logging.getLogger(__name__)

SAM_SIZES = ("vit_b", "vit_l", "vit_h")
SAM_DEFAULT = "vit_l"
YOLO_DET = "yolov8n.pt"
YOLO_SEG = "yolov8n-seg.pt"
BIREFNET = "birefnet-dis.onnx"
# SAM's prompt encoder and mask decoder are the same for every size.
PROMPT_DIM = 256


class ModelsMissing(Exception):
    """Required weight files are absent; .missing lists their names."""

    def __init__(self, missing: list[str], models_dir: Path | str) -> None:
        super().__init__(f"model weights missing in {models_dir}: {', '.join(missing)}")
        self.missing = missing


def pick_device(requested: str) -> str:
    """'auto' | 'cuda' | 'cpu' -> 'cuda' | 'cpu' (auto: CUDA when torch sees a GPU)."""
    requested = (requested or "auto").strip().lower()
    if requested not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"DEVICE must be auto, cuda or cpu, got {requested!r}")
    gpu_check.check(requested)  # a GPU that is required but not usable: GpuUnavailable, said once
    has_cuda = torch.cuda.is_available()
    device = "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"
    detail = torch.cuda.get_device_name(0) if device == "cuda" else "no CUDA device" if not has_cuda else "by request"
    log.info("device: %s (%s; DEVICE=%s)", device, detail, requested)
    return device


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for the device: CUDA first when asked for and available, CPU always."""
    import onnxruntime as ort

    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        # Load the CUDA/cuDNN libraries torch brought so the CUDA provider finds them.
        ort.preload_dlls()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def local_models_dir(models_dir: str, cache_dir: Path | None = None) -> Path:
    """A local folder holding the weights: models_dir itself, or for s3:// a local copy made once.

    Files already in the cache are kept (weights never change under a name); each copy is written to a
    temporary name and renamed, so an interrupted copy leaves nothing behind.
    """
    if not models_dir.startswith("s3://"):
        return Path(models_dir)
    from studio.storage import open_storage

    storage = open_storage(models_dir, check=False)  # reading is all this needs
    cache = cache_dir or Path(os.environ.get("MODELS_CACHE", "/tmp/sam-studio-models"))  # noqa: S108
    cache.mkdir(parents=True, exist_ok=True)
    wanted = {*layout.MODEL_FILES, *(f"{size}.pth" for size in SAM_SIZES)}
    for entry in storage.list(""):
        target = cache / entry.name
        if entry.key not in wanted or target.exists():
            continue
        log.info("copying %s/%s to %s", models_dir, entry.key, target)
        tmp = target.with_name(f".{entry.name}.part")
        tmp.write_bytes(storage.read(entry.key))
        tmp.replace(target)
    return cache


@dataclass(frozen=True)
class SamConfig:
    """The image encoder's shape; everything else in SAM is the same for every size."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int
    patch_size: int
    img_size: int


def sam_config(state: dict[str, torch.Tensor]) -> SamConfig:
    """Infer the encoder's configuration from a SAM state dict's tensor shapes."""
    prefix = "image_encoder."
    try:
        grid = state[prefix + "pos_embed"].shape[1]
        embed_dim, _, patch, _ = state[prefix + "patch_embed.proj.weight"].shape
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith(prefix + "blocks."))
        rel_pos = [state[f"{prefix}blocks.{i}.attn.rel_pos_h"].shape for i in range(depth)]
    except (KeyError, ValueError, IndexError) as e:
        raise ValueError(f"not a SAM checkpoint (missing or odd tensor: {e})") from None
    head_dim = rel_pos[0][1]
    global_blocks = tuple(i for i, shape in enumerate(rel_pos) if shape[0] == 2 * grid - 1)
    windows = {(shape[0] + 1) // 2 for i, shape in enumerate(rel_pos) if i not in global_blocks}
    return SamConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        global_attn_indexes=global_blocks,
        window_size=windows.pop() if windows else 0,
        patch_size=patch,
        img_size=grid * patch,
    )


def build_sam(config: SamConfig) -> torch.nn.Module:
    """segment_anything's Sam with the given encoder (as its build_sam_vit_* do for the fixed sizes)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = config.img_size // config.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.depth,
            embed_dim=config.embed_dim,
            img_size=config.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size,
            out_chans=PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_sam(path: Path, device: str) -> torch.nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = sam_config(state)
    sam = build_sam(config)
    sam.load_state_dict(state)
    log.info("SAM %s: %s", path.name, config)
    return sam.to(device)


@contextlib.contextmanager
def _rembg_home(folder: Path) -> Iterator[None]:
    """rembg finds <U2NET_HOME>/<model>.onnx before it would download; point it at the models folder."""
    old = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = old


def load_birefnet(models_dir: Path, device: str) -> object:
    """rembg's birefnet-dis session over models_dir/birefnet-dis.onnx."""
    from rembg import new_session

    with _rembg_home(models_dir):
        return new_session(BIREFNET.removesuffix(".onnx"), providers=onnx_providers(device))


@dataclass
class Models:
    """Every model, loaded once and kept in memory."""

    device: str
    sam: dict[str, torch.nn.Module]
    yolo_det: object
    yolo_seg: object
    birefnet: object
    folder: Path = field(default=Path())

    @classmethod
    def load(cls, models_dir: Path, device: str) -> Models:
        models_dir = Path(models_dir)
        missing = [name for name in layout.MODEL_FILES if not (models_dir / name).is_file()]
        if missing:
            raise ModelsMissing(missing, models_dir)
        from ultralytics import YOLO

        sam = {
            size: load_sam(models_dir / f"{size}.pth", device)
            for size in SAM_SIZES
            if (models_dir / f"{size}.pth").is_file()
        }
        yolo_det = YOLO(str(models_dir / YOLO_DET), task="detect")
        yolo_seg = YOLO(str(models_dir / YOLO_SEG), task="segment")
        birefnet = load_birefnet(models_dir, device)
        log.info("models loaded from %s on %s: SAM %s, YOLO, BiRefNet", models_dir, device, ", ".join(sam))
        return cls(device=device, sam=sam, yolo_det=yolo_det, yolo_seg=yolo_seg, birefnet=birefnet, folder=models_dir)

    def sam_for(self, model_type: str) -> tuple[str, torch.nn.Module]:
        """The SAM the user asked for, or vit_l when those weights are not there (logged)."""
        if model_type in self.sam:
            return model_type, self.sam[model_type]
        log.warning(
            "SAM %s requested but %s.pth is not in %s; using %s", model_type, model_type, self.folder, SAM_DEFAULT
        )
        return SAM_DEFAULT, self.sam[SAM_DEFAULT]

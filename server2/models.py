"""The models, one small class each behind one interface (like rembg's sessions): name, files, load, predict.

Which ones is configuration (studio/modelfiles.py, also where each file officially comes from):
DETECT_MODEL (an Ultralytics file, its "-seg" sibling used when present), MATTE_MODEL (a rembg session
name, loaded with rembg's own session class for its pre/post-processing), SAM_MODEL (the deployment's SAM
model; unset, the CPU rule of choose(); every other SAM model whose weights exist is loaded too, for users'
settings).

SAM's architecture is read from the checkpoint's tensor shapes (embed dim, depth, heads, global-attention
blocks, window, input size), so one code path loads the real vit_b/vit_l/vit_h checkpoints and the small
ones the tests build. MobileSAM (mobile_sam.pt) is segment_anything's Sam with Ultralytics' TinyViT as the
image encoder (the architecture Ultralytics itself builds for that file): the predictor, the generator and
the exported decoder are then the same code for every SAM model.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# Before ultralytics is imported: no DNS probes, analytics or asset (font) downloads; the network may be closed.
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402  (torch before onnxruntime: its CUDA libraries are the ones onnxruntime finds)

# ultralytics' import sets OMP_NUM_THREADS=1 when unset, which rembg passes on to onnxruntime: keep torch's
# own default (every physical core) for both instead.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
from PIL import Image  # noqa: E402
from ultralytics.utils import patches as ultralytics_patches  # noqa: E402

# ultralytics wraps PIL.Image.open: on a file Pillow cannot identify it tries to install and import
# pi-heif at run time (an error naming pi_heif, or a download). HEIF is registered by studio.upright,
# which is what its flag records, so a file that is no image fails plainly on every path that loads models
# (the worker and the command line).
ultralytics_patches._pil_plugins_registered = True

from server2 import gpu_check  # noqa: E402
from studio import sam_input  # noqa: E402
from studio.modelfiles import DEPLOYMENT, SAM_MODELS, ModelChoice, sam_file  # noqa: E402

if TYPE_CHECKING:
    from segment_anything.modeling import ImageEncoderViT, Sam  # untyped: checked as Any
    from ultralytics.models.sam.modules.tiny_encoder import TinyViT

log = logging.getLogger(__name__)

# SAM's prompt encoder and mask decoder are the same for every size.
PROMPT_DIM = 256
MOBILE_SAM_INPUT = 1024
MATTE_THRESHOLD = 128  # on the matte's 0-255 mask


class ModelsMissing(Exception):
    """Required weight files are absent; .missing lists their names."""

    def __init__(self, missing: list[str], models_dir: Path | str) -> None:
        super().__init__(f"model weights missing in {models_dir}: {', '.join(missing)}")
        self.missing = missing


def pick_device(requested: str, on_sagemaker: bool = False) -> str:
    """'auto' | 'cuda' | 'cpu' (server2.config checked it) -> 'cuda' | 'cpu' (auto: CUDA when torch
    sees a GPU; on a SageMaker endpoint auto requires one)."""
    gpu_check.check(requested, on_sagemaker)  # a GPU that is required but not usable: GpuUnavailable, said once
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


def local_models_dir(models_dir: str, cache: Path) -> Path:
    """A local folder holding the weights: models_dir itself, or for s3:// a local copy made once.

    Files already in the cache are kept (weights never change under a name); each copy is written to a
    temporary name and renamed, so an interrupted copy leaves nothing behind.
    """
    if not models_dir.startswith("s3://"):
        return Path(models_dir)
    from studio.storage import open_storage

    storage = open_storage(models_dir, check=False)  # reading is all this needs
    cache.mkdir(parents=True, exist_ok=True)
    wanted = {*ModelChoice.from_env(gpu=True).files(), *(sam_file(model) for model in SAM_MODELS)}
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


def build_sam(config: SamConfig) -> Sam:
    """segment_anything's Sam with the given encoder (as its build_sam_vit_* do for the fixed sizes)."""
    from segment_anything.modeling import ImageEncoderViT

    return _sam(
        ImageEncoderViT(
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
        grid=config.img_size // config.patch_size,
    )


def build_mobile_sam() -> Sam:
    """MobileSAM: Ultralytics' TinyViT with the configuration of its build_mobile_sam (1024 px input, a
    64 x 64 x 256 embedding like SAM's), in segment_anything's Sam."""
    from ultralytics.models.sam.modules.tiny_encoder import TinyViT

    encoder = TinyViT(
        img_size=MOBILE_SAM_INPUT,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
    )
    return _sam(encoder, grid=MOBILE_SAM_INPUT // 16)


def _sam(image_encoder: ImageEncoderViT | TinyViT, grid: int) -> Sam:
    """SAM's prompt encoder and mask decoder (the same for every model) behind image_encoder."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    img_size = int(image_encoder.img_size)
    sam = Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(sam_input.PIXEL_MEAN),
        pixel_std=list(sam_input.PIXEL_STD),
    )
    return sam.eval()


def load_sam(path: Path, device: str) -> Sam:
    """A SAM checkpoint: MobileSAM when its encoder is a TinyViT (patch_embed.seq), else a ViT of the
    shape its tensors give."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if any(key.startswith("image_encoder.patch_embed.seq.") for key in state):
        sam, config = build_mobile_sam(), "MobileSAM (TinyViT encoder)"
    else:
        shape = sam_config(state)
        sam, config = build_sam(shape), str(shape)
    sam.load_state_dict(state)
    # eval() again, after loading: TinyViT caches its attention biases (Attention.ab) when put in eval mode,
    # and _sam's eval() cached the random initial ones.
    sam.eval()
    log.info("SAM %s: %s", path.name, config)
    return sam.to(device)


@contextlib.contextmanager
def _rembg_env(folder: Path) -> Iterator[None]:
    """rembg finds <U2NET_HOME>/<model>.onnx before it would download; point it at the models folder, and
    let it take the file there as it is (MODEL_CHECKSUM_DISABLED): Server1 checked what it downloaded, a
    user's own file (an fp16 export, a mirror's) may differ from rembg's, and Server2 never downloads."""
    old = {key: os.environ.get(key) for key in ("U2NET_HOME", "MODEL_CHECKSUM_DISABLED")}
    os.environ.update(U2NET_HOME=str(folder), MODEL_CHECKSUM_DISABLED="1")
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class SamModel:
    """The file of one Segment Anything model (a ViT size or MobileSAM): load_sam loads it; prediction is SAM's
    own predictor/generator (server2.pipeline.sam)."""

    def __init__(self, size: str) -> None:
        self.name = size
        self.files = (sam_file(size),)


class DetectModel:
    """An Ultralytics YOLO model (detect or segment task, from its file)."""

    def __init__(self, file: str) -> None:
        self.name = file
        self.files = (file,)
        self.task = "segment" if file.removesuffix(".pt").endswith("-seg") else "detect"
        self.yolo: Any = None
        self.device = "cpu"

    def load(self, folder: Path, device: str) -> DetectModel:
        from ultralytics import YOLO

        self.yolo, self.device = YOLO(str(folder / self.files[0]), task=self.task), device
        return self

    def predict(self, image: Image.Image, confidence: float) -> Any:
        """The ultralytics Results for the image."""
        threads = torch.get_num_threads()
        (result,) = self.yolo.predict(image.convert("RGB"), conf=confidence, device=self.device, verbose=False)
        torch.set_num_threads(threads)  # ultralytics' select_device sets cpu_count - 1 for the whole process
        return result


class MatteModel:
    """A rembg session (BiRefNet, ISNet, U2-Net...): the salient foreground of an image."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.files = (f"{name}.onnx",)
        self.session: Any = None

    def load(self, folder: Path, device: str) -> MatteModel:
        from rembg import new_session

        with _rembg_env(folder):
            self.session = new_session(self.name, providers=onnx_providers(device))
        return self

    def predict(self, image: Image.Image) -> np.ndarray:
        """The foreground as a bool mask at the image's size."""
        (mask,) = self.session.predict(image.convert("RGB"))
        return np.asarray(mask) >= MATTE_THRESHOLD


def choose(device: str) -> ModelChoice:
    """The models Server2 loads on device: the one place its CPU rule applies (studio.modelfiles: without
    a GPU, MobileSAM unless SAM_MODEL says otherwise), whichever way Server2 or its command line started."""
    return ModelChoice.from_env(gpu=device == "cuda")


@dataclass
class Models:
    """Every configured model, loaded once and kept in memory."""

    device: str
    sam: dict[str, Sam]
    detect: DetectModel
    segment: DetectModel | None  # the detector's "-seg" sibling, when its file is there
    matte: MatteModel
    choice: ModelChoice = field(default_factory=ModelChoice)
    folder: Path = field(default=Path())
    fallbacks: set[str] = field(default_factory=set)  # the SAM models asked for but absent, already logged

    @classmethod
    def load(cls, models_dir: Path, device: str, choice: ModelChoice | None = None, need_sam: bool = True) -> Models:
        """choice: the models to load (default: choose(device)); need_sam=False (the matte-only command line
        and benchmark): SAM weights are loaded when present."""
        models_dir = Path(models_dir)
        choice = choice or choose(device)
        segment = DetectModel(choice.segment) if choice.segment != choice.detect else None
        needed: list[SamModel | DetectModel | MatteModel] = [
            *[SamModel(choice.sam)] * need_sam,
            DetectModel(choice.detect),
        ]
        needed.append(MatteModel(choice.matte))
        missing = [f for model in needed for f in model.files if not (models_dir / f).is_file()]
        if missing:
            raise ModelsMissing(missing, models_dir)
        sam = {
            name: load_sam(models_dir / sam_file(name), device)
            for name in SAM_MODELS
            if (models_dir / sam_file(name)).is_file()
        }
        if segment is not None and (models_dir / segment.files[0]).is_file():
            segment.load(models_dir, device)
        else:
            log.info("%s not in %s: prompts from %s boxes only", choice.segment, models_dir, choice.detect)
            segment = None
        detect = DetectModel(choice.detect).load(models_dir, device)
        matte = MatteModel(choice.matte).load(models_dir, device)
        log.info(
            "models loaded from %s on %s: SAM %s (default %s), %s%s, %s",
            models_dir,
            device,
            ", ".join(sam),
            choice.sam,
            choice.detect,
            f" + {segment.name}" if segment else "",
            choice.matte,
        )
        return cls(device, sam, detect, segment, matte, choice, models_dir)

    def describe(self) -> dict:
        """The models in use, for result.json, logs and the settings page."""
        return {
            "sam": self.choice.sam,
            "sam_loaded": sorted(self.sam),
            "detect": self.detect.name,
            "segment": self.segment.name if self.segment else None,
            "matte": self.matte.name,
        }

    def sam_for(self, sam_model: str) -> tuple[str, Sam]:
        """The SAM a user's settings ask for ("deployment": the configured one), or the configured one when
        those weights are not there (a warning, once per model, not per job)."""
        if sam_model in self.sam:
            return sam_model, self.sam[sam_model]
        if self.choice.sam not in self.sam:
            raise ModelsMissing([sam_file(self.choice.sam)], self.folder)
        if sam_model != DEPLOYMENT and sam_model not in self.fallbacks:
            self.fallbacks.add(sam_model)
            log.warning(
                "SAM %s requested but %s is not in %s; using %s (said once)",
                sam_model,
                sam_file(sam_model),
                self.folder,
                self.choice.sam,
            )
        return self.choice.sam, self.sam[self.choice.sam]


class ModelSet(Protocol):
    """The loaded models as the pipeline, embeddings, the worker and the CLI use them: Models, or a
    stand-in with the same fields (docs/architecture.md "Models")."""

    device: str
    folder: Path
    sam: dict[str, Sam]
    detect: DetectModel
    segment: DetectModel | None
    matte: MatteModel

    def describe(self) -> dict: ...

    def sam_for(self, sam_model: str) -> tuple[str, Sam]: ...

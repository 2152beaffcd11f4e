"""Figure 5: the segmentation pipeline (server2.pipeline.segment), default vs naive.

CPU, always: segment()'s per-stage times with the small test weights (harness/weights.py) and light
settings (the test SAM's 256-px encoder, 8 points per side, no crop layers), for regressions.
GPU, only when torch sees CUDA: segment() per image with real vit_l shapes (random weights; speed
does not depend on their values) at default settings, and peak GPU memory.
Default vs naive, on both: the SAM stages through the pipeline's own functions and knobs (server2.
pipeline.sam): naive = the encoder run twice (no shared embedding), box prompts one by one, fp32.
The random test YOLO finds no objects, so PROMPTS fixed box prompts stand in for its detections.
Masks of both are compared (best-match IoU).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from bench.common import Row, median, reps, verdict
from harness.weights import build_sam_weights, build_test_models
from server2.models import Models, SamConfig
from server2.pipeline import Result, sam, segment
from studio.settings import DEFAULTS

PROMPTS = 6
CPU_SETTINGS = {**DEFAULTS, "points_per_side": 8, "crop_n_layers": 0, "min_area": 100}
# segment_anything's build_sam_vit_l encoder.
VIT_L = SamConfig(
    embed_dim=1024,
    depth=24,
    num_heads=16,
    global_attn_indexes=(5, 11, 17, 23),
    window_size=14,
    patch_size=16,
    img_size=1024,
)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")


def photo(name: str, longest: int) -> Image.Image:
    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    scale = longest / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def mask_iou(ours: list[np.ndarray], naive: list[np.ndarray]) -> float:
    """The worst, over every mask of either result, of its best IoU with a mask of the other (1.0: same set)."""
    if not ours and not naive:
        return 1.0
    if not ours or not naive:
        return 0.0

    def best(mask: np.ndarray, others: list[np.ndarray]) -> float:
        return max(float((mask & o).sum()) / max(float((mask | o).sum()), 1.0) for o in others)

    return min(min(best(m, naive) for m in ours), min(best(m, ours) for m in naive))


def _segment_runs(models: Models, images: list[tuple[Image.Image, Image.Image]], settings: dict, repeat: int):
    """[(seconds, Result)] of segment() over images, `repeat` passes."""
    out: list[tuple[float, Result]] = []
    for _ in range(repeat):
        for resized, original in images:
            start = _now()
            result = segment(models, resized, original, settings)
            out.append((_now() - start, result))
    return out


def _sam_runs(models: Models, image: np.ndarray, settings: dict, repeat: int, naive: bool):
    """[(seconds, masks, encoder runs)] of the SAM stages (box prompts, then automatic masks) with the
    pipeline's knobs; the random test YOLO finds nothing, so PROMPTS boxes stand in for its detections."""
    boxes = _prompts(image)
    out = []
    for _ in range(repeat):
        start = _now()
        predictor = sam.StudioPredictor(
            models.sam_for("vit_l")[1], reuse=not naive, dtype=sam.autocast_dtype(models.device, not naive)
        )
        found = sam.box_masks(predictor, image, boxes, batched=not naive)
        found += sam.automatic_masks(predictor, image, settings)
        out.append((_now() - start, found, predictor.encoder_runs))
    return out


def _prompts(image: np.ndarray) -> list[list[float]]:
    """PROMPTS boxes spread over the image, as YOLO's detections would give."""
    h, w = image.shape[:2]
    cells = [(w * i / 3, h * j / 2) for j in range(2) for i in range(3)]
    return [[x + w * 0.02, y + h * 0.02, x + w / 3 - w * 0.02, y + h / 2 - h * 0.02] for x, y in cells[:PROMPTS]]


def _now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = build_test_models(Path(tmp, "models"))
        rows = _cpu(Models.load(folder, "cpu"))
        rows += _gpu(folder) if torch.cuda.is_available() else [_skipped()]
    return rows


def _compare(where: str, models: Models, image: np.ndarray, settings: dict, repeat: int) -> list[Row]:
    """The SAM stages, default vs naive: time per image and masks."""
    ours = _sam_runs(models, image, settings, repeat, naive=False)
    naive = _sam_runs(models, image, settings, repeat, naive=True)
    iou = mask_iou(ours[-1][1], naive[-1][1])
    ours_s, naive_s = median([t for t, _, _ in ours]), median([t for t, _, _ in naive])
    return [
        Row(
            "5 pipeline",
            f"{where}: SAM stages, {PROMPTS} box prompts + automatic masks",
            ours_s * 1000,
            "ms",
            naive_s * 1000,
            ">= 2x" if models.device == "cuda" else "",
            verdict(naive_s >= 2 * ours_s) if models.device == "cuda" else None,
            f"encoder runs {ours[-1][2]} vs {naive[-1][2]}; median of {repeat}; "
            f"{60 / ours_s:.1f} vs {60 / naive_s:.1f} images/min",
        ),
        Row(
            "5 pipeline",
            f"{where}: masks, default vs naive: worst best-match IoU",
            iou,
            "IoU",
            None,
            ">= 0.95",
            verdict(iou >= 0.95),
            f"{len(ours[-1][1])} vs {len(naive[-1][1])} masks",
        ),
    ]


def _cpu(models: Models) -> list[Row]:
    resized = photo("astronaut", 256)
    image = [(resized, resized.resize((768, 768), Image.Resampling.LANCZOS))]
    _segment_runs(models, image, CPU_SETTINGS, 1)  # warm-up: first-call costs of torch and ultralytics
    runs = _segment_runs(models, image, CPU_SETTINGS, reps(3))
    last = runs[-1][1]
    settings = ", ".join(f"{k}={CPU_SETTINGS[k]}" for k in ("points_per_side", "crop_n_layers", "min_area"))
    rows = [
        Row(
            "5 pipeline",
            f"CPU segment(), test weights, 256-px photo ({settings})",
            median([t for t, _ in runs]) * 1000,
            "ms",
            None,
            "",
            None,
            f"{len(last.points['points'])} YOLO prompts (random test YOLO); {len(last.masks)} masks, "
            f"{len(last.clippings)} clippings",
        )
    ]
    rows += [
        Row(
            "5 pipeline",
            f"CPU segment() stage {stage}",
            median([r.timings.get(stage, 0.0) for _, r in runs]) * 1000,
            "ms",
        )
        for stage in last.timings
    ]
    return rows + _compare("CPU", models, np.asarray(resized), CPU_SETTINGS, reps(3))


def _gpu(folder: Path) -> list[Row]:
    build_sam_weights(folder / "vit_l.pth", VIT_L)  # vit_l's shapes over the test one
    models = Models.load(folder, "cuda")
    name = torch.cuda.get_device_name(0)
    images = [(photo(p, 1024),) * 2 for p in PHOTOS[: reps(len(PHOTOS), 2)]]
    _segment_runs(models, images[:1], DEFAULTS, 1)  # warm-up (CUDA context, kernels)
    torch.cuda.reset_peak_memory_stats()
    runs = _segment_runs(models, images, DEFAULTS, 1)
    peak = torch.cuda.max_memory_allocated() / 2**30
    per_image = median([t for t, _ in runs])
    return [
        Row(
            "5 pipeline",
            f"GPU ({name}): segment(), vit_l shapes, default settings",
            per_image * 1000,
            "ms",
            None,
            "",
            None,
            f"{60 / per_image:.1f} images/min over {len(images)} photos at 1024 px",
        ),
        Row(
            "5 pipeline",
            "GPU peak memory (torch.cuda.max_memory_allocated)",
            peak,
            "GiB",
            None,
            "<= 8 GiB",
            verdict(peak <= 8),
        ),
        *_compare(f"GPU ({name})", models, np.asarray(images[0][0]), DEFAULTS, reps(3)),
    ]


def _skipped() -> Row:
    return Row(
        "5 pipeline",
        "GPU: vit_l shapes, images/minute, naive vs default, peak memory",
        None,
        "",
        None,
        ">= 2x, <= 8 GiB",
        None,
        "skipped: no CUDA device",
    )

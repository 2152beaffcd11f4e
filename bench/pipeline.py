"""Figure 5: the segmentation pipeline (server2.pipeline.segment), default vs naive.

CPU, always: per-stage times with the small test weights (tests/weights.py), light settings
(the test SAM's 256-px encoder; 16 points per side, no crop layers), for regressions.
GPU, only when torch sees CUDA: images/minute with real vit_l shapes (random weights; speed does
not depend on their values) at default settings, and peak GPU memory.
Naive = the pipeline's own knobs turned off: SAM's encoder run twice (no shared embedding), point
prompts one by one, fp32. Masks of both are compared (best-match IoU).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from bench.common import QUICK, Row, median, reps, verdict
from server2.models import Models, SamConfig
from server2.pipeline import Result, segment
from studio.settings import DEFAULTS
from tests.weights import build_sam_weights, build_test_models

NAIVE = {"shared_embedding": False, "batched_points": False, "autocast": False}
CPU_SETTINGS = {"points_per_side": 8 if QUICK else 16, "crop_n_layers": 0, "min_area": 100}
# segment_anything's build_sam_vit_l encoder.
VIT_L = SamConfig(
    embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23), window_size=14, patch_size=16,
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


def _runs(models: Models, images: list[tuple[Image.Image, Image.Image]], settings: dict, repeat: int, **flags: bool):
    """[(seconds, Result)] of `repeat` passes over images; a GPU is synchronised around each call."""
    out: list[tuple[float, Result]] = []
    for _ in range(repeat):
        for resized, original in images:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = segment(models, resized, original, settings, **flags)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            out.append((time.perf_counter() - start, result))
    return out


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = build_test_models(Path(tmp, "models"))
        rows = _cpu(Models.load(folder, "cpu"))
        rows += _gpu(folder) if torch.cuda.is_available() else [_skipped()]
    return rows


def _cpu(models: Models) -> list[Row]:
    resized = photo("astronaut", 512)
    image = [(resized, resized.resize((1536, 1536), Image.Resampling.LANCZOS))]
    _runs(models, image, CPU_SETTINGS, 1)  # warm-up: first-call costs of torch and ultralytics
    ours = _runs(models, image, CPU_SETTINGS, reps(3), **{})
    naive = _runs(models, image, CPU_SETTINGS, reps(3), **NAIVE)
    last, last_naive = ours[-1][1], naive[-1][1]
    settings = ", ".join(f"{k}={v}" for k, v in CPU_SETTINGS.items())
    rows = [
        Row("5 pipeline", f"CPU, test weights, 512-px photo: whole segment() ({settings})", median([t for t, _ in ours])
            * 1000, "ms", median([t for t, _ in naive]) * 1000, "", None,
            f"encoder runs {last.details.get('encoder_runs')} vs {last_naive.details.get('encoder_runs')}; "
            f"{len(last.points['points'])} point prompts; {len(last.masks)} masks, {len(last.clippings)} clippings")
    ]
    for stage in last.timings:
        rows.append(
            Row("5 pipeline", f"CPU stage {stage}", median([r.timings.get(stage, 0.0) for _, r in ours]) * 1000, "ms",
                median([r.timings.get(stage, 0.0) for _, r in naive]) * 1000)
        )
    iou = mask_iou(last.masks, last_naive.masks)
    rows.append(
        Row("5 pipeline", "CPU masks, default vs naive: worst best-match IoU", iou, "IoU", None, ">= 0.95",
            verdict(iou >= 0.95), f"{len(last.masks)} vs {len(last_naive.masks)} masks")
    )
    return rows


def _gpu(folder: Path) -> list[Row]:
    build_sam_weights(folder / "vit_l.pth", VIT_L)  # vit_l's shapes over the test one
    models = Models.load(folder, "cuda")
    images = [(photo(name, 1024),) * 2 for name in PHOTOS[: reps(len(PHOTOS), 2)]]
    _runs(models, images[:1], DEFAULTS, 1)  # warm-up (CUDA context, kernels)
    torch.cuda.reset_peak_memory_stats()
    ours = _runs(models, images, DEFAULTS, 1)
    peak = torch.cuda.max_memory_allocated() / 2**30
    naive = _runs(models, images, DEFAULTS, 1, **NAIVE)
    per_image, per_image_naive = median([t for t, _ in ours]), median([t for t, _ in naive])
    iou = min(mask_iou(a.masks, b.masks) for (_, a), (_, b) in zip(ours, naive, strict=True))
    name = torch.cuda.get_device_name(0)
    return [
        Row("5 pipeline", f"GPU ({name}), vit_l shapes, default settings: per image", per_image, "s", per_image_naive,
            ">= 2x", verdict(per_image_naive >= 2 * per_image),
            f"{60 / per_image:.1f} images/min vs naive {60 / per_image_naive:.1f}; {len(images)} photos at 1024 px"),
        Row("5 pipeline", "GPU peak memory (torch.cuda.max_memory_allocated)", peak, "GiB", None, "<= 8 GiB",
            verdict(peak <= 8)),
        Row("5 pipeline", "GPU masks, default (autocast) vs naive fp32: worst best-match IoU", iou, "IoU", None,
            ">= 0.95", verdict(iou >= 0.95)),
    ]


def _skipped() -> Row:
    return Row("5 pipeline", "GPU images/minute, vit_l shapes, peak memory", None, "", None, ">= 2x, <= 8 GiB", None,
               "skipped: no CUDA device")

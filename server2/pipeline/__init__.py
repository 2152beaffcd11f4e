"""The segmentation pipeline (docs/architecture.md "Data flow"): one call, segment(), per image.

    classify -> YOLO -> (photo) SAM automatic + YOLO point masks -> matte refinement of a one-colour
                                largest mask                                   \\
                     -> (drawing) matte, split per YOLO box (pipeline/matte.py) -> keep masks -> clippings

settings["mode"] (auto | sam | matte) overrides the classification; "matte" is the matte path with
whichever matting model MATTE_MODEL names (studio.settings accepts the old name "birefnet" for it).
Without a GPU the SAM generator is limited (CPU_LIMITS). Masks are at the resized image's size;
clippings are cut from the original. The keyword flags exist for the benchmark's naive baseline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from server2.pipeline import classify, clippings, detect, masks, matte, refine, sam
from studio.settings import DEFAULTS

if TYPE_CHECKING:  # torch and every model library: only the type here
    from server2.models import ModelSet

log = logging.getLogger(__name__)


@dataclass
class Clipping:
    mask_index: int  # index into Result.masks
    component: int  # 0-based connected component of that mask, largest first
    image: Image.Image  # RGBA, at the original's resolution, cropped tight
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # where the image lies in the original: x0, y0, x1, y1


@dataclass
class Result:
    method: str  # "sam" | "matte"
    masks: list[np.ndarray]  # bool HxW at the resized image's size, largest first
    clippings: list[Clipping]  # largest first, at most settings["max_clippings"]
    points: dict  # JSON-able: {"points": [[x, y]], "labels": [1|0], "boxes": [{"box", "label", "score", "source"}]}
    boxes: dict[str, Image.Image]  # suffix ("det", "seg") -> debug image of that YOLO model's boxes
    timings: dict[str, float]  # seconds per stage
    refined: bool = False  # SAM's one-colour largest mask was refined with the matting model
    model_type: str = ""  # the SAM size used ("" on the matte path)
    details: dict = field(default_factory=dict)  # encoder_runs, mask counts: for logs and the benchmark
    embedding: sam.Embedding | None = None  # SAM's embedding of the resized image, kept for the editor


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 4)


# CPU local mode (no GPU): SAM's automatic generator at most 8x8 points on the whole image only. Each point
# costs a mask decoder run plus 3 masks upscaled to the image's size (~0.4 s on the 2-core build machine),
# so 16x16 points took 2.5x as long as vit_b's encoder (studio.modelfiles: SAM_MODEL's CPU default); see
# bench.cpu_mode and README "CPU local mode".
CPU_LIMITS = {"points_per_side": 8, "crop_n_layers": 0}


def cpu_limits(settings: dict) -> dict:
    limited = {key: min(int(settings[key]), cap) for key, cap in CPU_LIMITS.items()}
    if any(limited[key] != settings[key] for key in limited):
        log.info("no GPU: SAM generator limited to %s", limited)
    return {**settings, **limited}


def segment(
    models: ModelSet,
    resized: Image.Image,
    original: Image.Image,
    settings: dict,
    *,
    shared_embedding: bool = True,
    batched_points: bool = True,
    autocast: bool = True,
) -> Result:
    """Segment one image.

    models: server2.models.Models. resized: the models' work copy (studio.upright.work_copy: RGB, longest
    side <= 1024). original: the upright original (studio.upright.original: RGB, or RGBA when it has
    transparency, which its clippings keep), or the job file again when there is none. settings: the
    user's (studio.settings), missing keys take the defaults.
    Flags (defaults are the production pipeline; the benchmark turns them off for its naive baseline):
    shared_embedding: the automatic generator reuses the point prompts' image embedding (else SAM's
    encoder runs twice); batched_points: all point prompts in one decoder call (else one call each);
    autocast: SAM's image encoder in bf16/fp16 on CUDA (no effect on CPU).
    """
    settings = cpu_limits({**DEFAULTS, **settings}) if models.device == "cpu" else {**DEFAULTS, **settings}
    timer = _Timer()
    rgb = resized.convert("RGB")
    image = np.asarray(rgb)
    mode = settings["mode"]
    with timer("classify"):
        drawing = classify.is_line_drawing(rgb) if mode == "auto" else mode == "matte"
    refined, model_type, details, embedding = False, "", {}, None
    with timer("detect"):
        detections = detect.run_yolo(models, rgb)
        prompts = detect.merge(detections.get("seg", []) + detections["det"])
        points = detect.points_record(prompts)
        boxes = {source: detect.draw_boxes(rgb, found) for source, found in detections.items()}
    if drawing:
        with timer("matte"):
            found = matte.split(rgb, models.matte.predict(rgb), prompts, models.matte.predict)
    else:
        model_type, model = models.sam_for(str(settings["model_type"]))
        predictor = sam.StudioPredictor(
            model, reuse=shared_embedding, dtype=sam.autocast_dtype(models.device, autocast)
        )
        with timer("sam_points"):
            found = sam.point_masks(predictor, image, points["points"], points["labels"], batched=batched_points)
            embedding = sam.embedding(predictor, image)
        with timer("sam_auto"):
            found += sam.automatic_masks(predictor, image, settings)
        details = {
            "encoder_runs": predictor.encoder_runs,
            "encoder_s": round(predictor.encoder_seconds, 2),
            "decoder_s": round(predictor.decoder_seconds, 2),
            "sam_masks": len(found),
        }
        with timer("refine"):
            found, refined = refine.refine_largest(found, image, lambda: models.matte.predict(rgb))
    with timer("masks"):
        kept = masks.keep_masks(found, int(settings["min_area"]))
    with timer("clippings"):
        parts = clippings.select(kept, int(settings["min_area"]), int(settings["max_clippings"]))
        cut = [Clipping(p.mask_index, p.component, *clippings.cut(original, p, rgb.size)) for p in parts]
    method = "matte" if drawing else "sam"
    log.info("segmented %dx%d by %s: %d masks, %d clippings, %s", *rgb.size, method, len(kept), len(cut), timer.timings)
    return Result(method, kept, cut, points, boxes, timer.timings, refined, model_type, details, embedding)

"""The segmentation pipeline (docs/architecture.md "Data flow"): one call, segment(), per image.

    classify -> YOLO -> (photo) SAM on YOLO's boxes + automatic masks of what they do not cover -> matte
                                refinement of a one-colour largest mask         \\
                     -> (drawing) matte, split per YOLO box (pipeline/matte.py) -> keep masks -> clippings

settings["mode"] (auto | sam | matte) overrides the classification; "matte" is the matte path with
whichever matting model MATTE_MODEL names (studio.settings accepts the old name "birefnet" for it).
The SAM generator prompts what no confident detection's mask covers; without a GPU its grid is capped
(CPU_LIMITS) unless full=True (`segment --full`). docs/architecture.md "Segmentation pipeline" says why.
Masks are at the resized image's size; clippings are cut from the original. The other keyword flags exist
for the benchmark's naive baseline.
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
from studio import layout
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
    sam_model: str = ""  # the SAM model used ("" on the matte path)
    details: dict = field(default_factory=dict)  # encoder_runs, mask counts, cpu_s per stage: logs, the benchmark
    embedding: sam.Embedding | None = None  # SAM's embedding of the resized image, kept for the editor


class _Timer:
    """Wall seconds per stage (timings), and the process's CPU seconds per stage (cpu: what a stage costs
    whatever else the machine runs)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 4)
            self.cpu[stage] = round(self.cpu.get(stage, 0.0) + time.process_time() - cpu, 4)


# CPU local mode (no GPU): SAM's automatic generator at most 8x8 points on the whole image only (no crops: each
# crop is one more encoder run). See bench.cpu_mode, bench.quality and docs/architecture.md "Segmentation pipeline".
CPU_LIMITS = {"points_per_side": 8, "crop_n_layers": 0}


def cpu_limits(settings: dict) -> dict:
    limited = {key: min(int(settings[key]), cap) for key, cap in CPU_LIMITS.items()}
    if any(limited[key] != settings[key] for key in limited):
        log.info("no GPU: SAM generator limited to %s", limited)
    return {**settings, **limited}


def work_area(min_area: int, size: tuple[int, int]) -> int:
    """settings["min_area"] is in pixels of a full-size work copy (longest side layout.RESIZED_MAX): the work
    copy of a smaller upload scales it by its own size, so a photo gives the same clippings at any size."""
    return round(min_area * min(1.0, max(size) / layout.RESIZED_MAX) ** 2)


def segment(
    models: ModelSet,
    resized: Image.Image,
    original: Image.Image,
    settings: dict,
    *,
    shared_embedding: bool = True,
    batched_prompts: bool = True,
    autocast: bool = True,
    full: bool | None = None,
) -> Result:
    """Segment one image.

    models: server2.models.Models. resized: the models' work copy (studio.upright.work_copy: RGB, longest
    side <= 1024). original: the upright original (studio.upright.original: RGB, or RGBA when it has
    transparency, which its clippings keep), or the job file again when there is none. settings: the
    user's (studio.settings), missing keys take the defaults.
    Flags (defaults are the production pipeline; the benchmark turns them off for its naive baseline):
    shared_embedding: the automatic generator reuses the box prompts' image embedding (else SAM's
    encoder runs twice); batched_prompts: all box prompts in one decoder call (else one call each);
    autocast: SAM's image encoder in bf16/fp16 on CUDA (no effect on CPU).
    full: the generator with the user's settings as they are (default: on a GPU); else under CPU_LIMITS.
    """
    full = models.device != "cpu" if full is None else full
    settings = {**DEFAULTS, **settings} if full else cpu_limits({**DEFAULTS, **settings})
    timer = _Timer()
    rgb = resized.convert("RGB")
    image = np.asarray(rgb)
    mode = settings["mode"]
    with timer("classify"):
        drawing = classify.is_line_drawing(rgb) if mode == "auto" else mode == "matte"
    refined, sam_model, embedding = False, "", None
    details: dict[str, object] = {}
    with timer("detect"):
        detections = detect.run_yolo(models, rgb, "matte" if drawing else "sam")
        prompts = detect.merge(detections.get("seg", []) + detections["det"])
        points = detect.points_record(prompts)
        boxes = {source: detect.draw_boxes(rgb, found) for source, found in detections.items()}
    if drawing:
        with timer("matte"):
            found = matte.split(rgb, models.matte.predict(rgb), prompts, models.matte.predict)
    else:
        sam_model, model = models.sam_for(str(settings["sam_model"]))
        predictor = sam.StudioPredictor(
            model, reuse=shared_embedding, dtype=sam.autocast_dtype(models.device, autocast)
        )
        with timer("sam_boxes"):
            boxed = sam.box_masks(predictor, image, [d.box for d in prompts], batched=batched_prompts)
            embedding = sam.embedding(predictor, image)
        # The generator prompts what no confident detection's mask covers (a low-confidence box's mask, or
        # a background one, covers nothing); masks.object_masks keeps the masks that are objects.
        shape = rgb.size[::-1]
        scores = [d.score for d in prompts]
        covered = masks.covered(boxed, scores, shape)
        with timer("sam_auto"):
            extra = sam.automatic_masks(predictor, image, settings, where=~covered)
        with timer("masks"):
            found = masks.object_masks(boxed, scores, extra, covered)
        details = {
            "encoder_runs": predictor.encoder_runs,
            "encoder_s": round(predictor.encoder_seconds, 2),
            "decoder_s": round(predictor.decoder_seconds, 2),
            "box_masks": len(prompts),
            "covered": round(float(covered.mean()), 3),
            "generator_masks": len(extra),
            "sam_masks": len(found),
        }
        with timer("refine"):
            found, refined = refine.refine_largest(found, image, lambda: models.matte.predict(rgb))
    min_area = work_area(int(settings["min_area"]), rgb.size)
    with timer("masks"):
        kept = masks.keep_masks(found, min_area)
    with timer("clippings"):
        parts = clippings.select(kept, min_area, int(settings["max_clippings"]))
        made = [(p, clippings.cut(original, p, rgb.size, bool(settings["soft_edges"]))) for p in parts]
        cut = [Clipping(p.mask_index, p.component, *m) for p, m in made if m is not None]
    details["cpu_s"] = timer.cpu
    method = "matte" if drawing else "sam"
    log.info("segmented %dx%d by %s: %d masks, %d clippings, %s", *rgb.size, method, len(kept), len(cut), timer.timings)
    return Result(method, kept, cut, points, boxes, timer.timings, refined, sam_model, details, embedding)

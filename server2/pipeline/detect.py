"""YOLO detections as SAM prompts: each detection's box (people included), and a point inside it for the
record and the debug view (docs/architecture.md "Segmentation pipeline")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

if TYPE_CHECKING:
    from server2.models import ModelSet

# YOLO's confidence floor. For SAM's box prompts it is low: SAM finds the object's extent in the box, a
# false detection costs one clipping, a missed one loses the object (0.1 against Ultralytics' 0.25: mean
# best-IoU 0.576 -> 0.624 on the labelled photos, 6.4 -> 8.1 clippings a photo). The matte path splits one
# matte per box, where a false box cuts a true object in two: it keeps 0.25.
CONFIDENCE = {"sam": 0.1, "matte": 0.25}
SAME_OBJECT_IOU = 0.5
COLOUR = (0, 200, 0)


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels
    point: tuple[float, float]  # a point inside the object (the record, the debug view)
    source: str  # "det" | "seg": which YOLO model found it


def _interior_point(polygon: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float] | None:
    """The mask pixel farthest from the mask's edge: inside the object even when its box centre is not."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if len(polygon) < 3 or x1 - x0 < 1 or y1 - y0 < 1:
        return None
    canvas = Image.new("1", (x1 - x0 + 2, y1 - y0 + 2))
    ImageDraw.Draw(canvas).polygon([(x - x0 + 1, y - y0 + 1) for x, y in polygon], fill=1)
    distance = ndimage.distance_transform_edt(np.asarray(canvas))
    if distance.max() == 0:
        return None
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return float(x + x0 - 1), float(y + y0 - 1)


def detections(result: Any, source: str) -> list[Detection]:
    """An ultralytics Results (one image) as Detections; segmentation results give interior points."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    polygons = result.masks.xy if getattr(result, "masks", None) is not None else [None] * len(boxes)
    out = []
    for xyxy, cls, conf, polygon in zip(
        boxes.xyxy.tolist(), boxes.cls.tolist(), boxes.conf.tolist(), polygons, strict=True
    ):
        box = (xyxy[0], xyxy[1], xyxy[2], xyxy[3])
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        point = (_interior_point(polygon, box) if polygon is not None else None) or centre
        out.append(Detection(result.names[int(cls)], float(conf), box, point, source))
    return out


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge(found: list[Detection]) -> list[Detection]:
    """One detection per object: the two models often find the same one; the first listed wins. Boxes of
    one model are never merged with each other: its own NMS already kept them apart (at IoU 0.7), and two
    same-class objects side by side (three bears, a row of bottles) often overlap by more than half."""
    kept: list[Detection] = []
    for d in found:
        if all(d.source == k.source or d.label != k.label or box_iou(d.box, k.box) < SAME_OBJECT_IOU for k in kept):
            kept.append(d)
    return kept


def run_yolo(models: ModelSet, image: Image.Image, path: str) -> dict[str, list[Detection]]:
    """The YOLO models on the image, at path's ("sam" | "matte") CONFIDENCE: {"seg": [...] (when that model
    is loaded), "det": [...]}."""
    rgb = image.convert("RGB")
    pairs = (("seg", models.segment), ("det", models.detect))
    return {source: detections(model.predict(rgb, CONFIDENCE[path]), source) for source, model in pairs if model}


def points_record(kept: list[Detection]) -> dict:
    """The JSON-able record of the prompts (output/points/<id>.json)."""
    return {
        "points": [[round(x, 1), round(y, 1)] for x, y in (d.point for d in kept)],
        "labels": [1] * len(kept),  # every detection is an object to cut (the record keeps SAM's point format)
        "boxes": [
            {"box": [round(v, 1) for v in d.box], "label": d.label, "score": round(d.score, 3), "source": d.source}
            for d in kept
        ],
    }


def draw_boxes(image: Image.Image, found: list[Detection]) -> Image.Image:
    """Debug view: each box (SAM's prompt) with its label and score, and its point."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    for d in found:
        draw.rectangle(d.box, outline=COLOUR, width=2)
        draw.text((d.box[0] + 3, d.box[1] + 2), f"{d.label} {d.score:.2f}", fill=COLOUR)
        x, y = d.point
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=COLOUR, outline=(255, 255, 255))
    return out

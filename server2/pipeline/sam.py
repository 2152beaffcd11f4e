"""SAM: box-prompted masks (YOLO's detections) plus automatic masks with the user's settings, sharing one
image embedding.

The automatic generator embeds each crop with set_image; its crop 0 is the whole image, the same one the
box prompts need. StudioPredictor keeps the whole image's embedding, so the generator's crop 0 reuses it
instead of running the encoder (most of SAM's time) a second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
)
from torchvision.ops.boxes import batched_nms


class StudioPredictor(SamPredictor):
    """SamPredictor that can keep the last image's embedding and run the encoder under autocast.

    reuse: set_image of an image identical to the kept one (same pixels) restores its embedding.
    dtype: reduced precision (torch.float16/bfloat16) for the image encoder only; the embedding is stored
    as float32, so the mask decoder and the generator's filtering run in full precision.
    encoder_seconds, decoder_seconds: time in the image encoder and in predict_torch (prompt encoder, mask
    decoder, masks upscaled to the image's size), for the logs and bench.cpu_mode's breakdown.
    """

    def __init__(self, sam: torch.nn.Module, reuse: bool = True, dtype: torch.dtype | None = None) -> None:
        super().__init__(sam)
        self.reuse = reuse
        self.dtype = dtype
        self.encoder_runs = 0
        self.encoder_seconds = 0.0
        self.decoder_seconds = 0.0
        self._kept: tuple[bytes, torch.Tensor, tuple, tuple] | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        key = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest() + repr(image.shape).encode()
        if self.reuse and self._kept is not None and self._kept[0] == key:
            self.reset_image()
            _, self.features, self.original_size, self.input_size = self._kept
            self.is_image_set = True
            return
        super().set_image(image, image_format)
        if self.reuse:
            self._kept = (key, self.features, self.original_size, self.input_size)

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        self.encoder_runs += 1
        started = time.perf_counter()
        context = (
            torch.autocast(device_type=self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        )
        with context:
            super().set_torch_image(transformed_image, original_image_size)
        self.features = self.features.float()
        self.encoder_seconds += time.perf_counter() - started

    def predict_torch(self, *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        started = time.perf_counter()
        try:
            return super().predict_torch(*args, **kwargs)
        finally:
            self.decoder_seconds += time.perf_counter() - started


@dataclass(frozen=True)
class Embedding:
    """The whole image's embedding (1 x 256 x g x g) and the size of the image it was computed from."""

    features: torch.Tensor
    width: int
    height: int


def embedding(predictor: StudioPredictor, image: np.ndarray) -> Embedding | None:
    """The whole image's embedding for the editor: the kept one (no extra encoder run), or encoded now
    when no box prompt needed it yet (the generator's crop 0 then reuses it). None when the predictor
    keeps nothing (the benchmark's naive baseline, which should not pay for it)."""
    if not predictor.reuse:
        return None
    predictor.set_image(image)
    return Embedding(predictor.features, width=image.shape[1], height=image.shape[0])


def autocast_dtype(device: str, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; none on CPU (slower there, not faster)."""
    if not enabled or device != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# SamAutomaticMaskGenerator's fixed parameters (its defaults), for the generator below.
BOX_NMS_IOU = 0.7  # within a crop
CROP_NMS_IOU = 0.7  # between crops
CROP_OVERLAP = 512 / 1500
STABILITY_OFFSET = 1.0
# Prompts through one decoder call. The decoder repeats the 4 MiB embedding per prompt, and every step over
# those copies is bound by memory: a GPU takes upstream's 64 points a call; a CPU is fastest with a few, whose
# copies stay in its cache (2 cores, MobileSAM: 64 points 13.5 s in one call, 6.4 s in calls of 4; 20 boxes
# 4.2 s in one call, 2.6 s in calls of 4; the same masks).
DECODER_BATCH = {"cuda": 64, "cpu": 4}


def decoder_batch(predictor: StudioPredictor) -> int:
    return DECODER_BATCH.get(predictor.device.type, DECODER_BATCH["cpu"])


def low_res_size(predictor: StudioPredictor) -> tuple[int, int, int]:
    """The image's part of the decoder's low-res masks (4g x 4g over the encoder's square input, g the
    embedding's grid; the rest is the encoder's padding): (height, width, input pixels a low-res pixel)."""
    model = predictor.model
    side = model.image_encoder.img_size // (4 * model.prompt_encoder.image_embedding_size[0])
    low_h, low_w = (math.ceil(n / side) for n in predictor.input_size)
    return low_h, low_w, side


@torch.no_grad()
def point_logits(
    predictor: StudioPredictor, points: np.ndarray, crop_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's three masks for each point (x, y in the crop's pixels; crop_size: height, width), one
    decoder call: low-res logits over the image's part (3N x low_h x low_w, point i's at 3i..3i+2) and their
    predicted IoUs (3N)."""
    model = predictor.model
    low_h, low_w, _ = low_res_size(predictor)
    coords = predictor.transform.apply_coords(points, crop_size)
    coords = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)[:, None, :]
    labels = torch.ones(coords.shape[:2], dtype=torch.int, device=predictor.device)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    low, iou = model.mask_decoder(
        image_embeddings=predictor.features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    return low.flatten(0, 1)[:, :low_h, :low_w], iou.flatten()


def kept_logits(
    predictor: StudioPredictor, low: torch.Tensor, iou: torch.Tensor, crop_size: tuple[int, int], settings: dict
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SamAutomaticMaskGenerator's per-mask filters on low-res logits: predicted IoU and stability at the
    user's thresholds. Returns the kept (logits, predicted IoUs, boxes in the crop's pixels)."""
    threshold = predictor.model.mask_threshold
    low_h, low_w, _ = low_res_size(predictor)
    keep = iou > float(settings["pred_iou_thresh"])
    low, iou = low[keep], iou[keep]
    stable = calculate_stability_score(low, threshold, STABILITY_OFFSET)
    keep = stable >= float(settings["stability_score_thresh"])
    low, iou = low[keep], iou[keep]
    # Boxes in the crop's pixels, each low-res pixel's extent.
    box = batched_mask_to_box(low > threshold).float()
    box[:, 2:] += 1
    box *= torch.tensor([crop_size[1] / low_w, crop_size[0] / low_h] * 2, device=box.device)
    return low, iou, box


def crop_masks(
    predictor: StudioPredictor, low: torch.Tensor, iou: torch.Tensor, box: torch.Tensor, crop_box: list[int]
) -> tuple[list[np.ndarray], torch.Tensor]:
    """The kept masks of one crop: those the crop's edge (not the image's) cuts off left to a crop that
    holds them whole, box NMS, and only then the survivors scaled up to the crop's size. Returns (bool masks
    at the crop's size, their indices in low)."""
    low_h, low_w, side = low_res_size(predictor)
    crop_h, crop_w = crop_box[3] - crop_box[1], crop_box[2] - crop_box[0]
    index = torch.nonzero(~is_box_near_crop_edge(box, crop_box, [0, 0, *predictor.original_size[::-1]]))[:, 0]
    index = index[batched_nms(box[index], iou[index], torch.zeros_like(iou[index]), iou_threshold=BOX_NMS_IOU)]
    if not len(index):
        return [], index
    full = F.interpolate(low[index, None], (low_h * side, low_w * side), mode="bilinear", align_corners=False)
    full = full[..., : predictor.input_size[0], : predictor.input_size[1]]
    full = F.interpolate(full, (crop_h, crop_w), mode="bilinear", align_corners=False)[:, 0]
    return list((full > predictor.model.mask_threshold).cpu().numpy()), index


@torch.no_grad()
def _crop_masks(
    predictor: StudioPredictor, points: np.ndarray, crop_box: list[int], settings: dict
) -> tuple[list[np.ndarray], torch.Tensor, torch.Tensor]:
    """SamAutomaticMaskGenerator's work on one crop (its embedding set), at the decoder's low resolution:
    the points' three masks each filtered by predicted IoU, stability and box NMS there, and only the kept
    ones scaled up. Returns (bool masks at the crop's size, their boxes in the crop, predicted IoUs)."""
    crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
    logits, scores, boxes = [], [], []
    batch = decoder_batch(predictor)
    for start in range(0, len(points), batch):
        low, iou = point_logits(predictor, points[start : start + batch], crop_size)
        low, iou, box = kept_logits(predictor, low, iou, crop_size, settings)
        logits.append(low)
        scores.append(iou)
        boxes.append(box)
    low, iou, box = torch.cat(logits), torch.cat(scores), torch.cat(boxes)
    masks, index = crop_masks(predictor, low, iou, box, crop_box)
    return masks, box[index], iou[index]


def automatic_masks(
    predictor: StudioPredictor, image: np.ndarray, settings: dict, where: np.ndarray | None = None
) -> list[np.ndarray]:
    """SAM's automatic masks with the user's settings (points_per_side, crop_n_layers, pred_iou_thresh,
    stability_score_thresh), as SamAutomaticMaskGenerator makes them but filtered at the decoder's low
    resolution before any mask is scaled up (upstream scales three masks a point up to the image's size
    first: ~0.3 s a point on a CPU). where: bool at the image's size; grid points outside it are not
    prompted (the parts of the photo the detections' masks already cover)."""
    height, width = image.shape[:2]
    crop_boxes, layers = generate_crop_boxes((height, width), int(settings["crop_n_layers"]), CROP_OVERLAP)
    grids = build_all_layer_point_grids(int(settings["points_per_side"]), int(settings["crop_n_layers"]), 1)
    found, boxes, crop_areas = [], [], []
    for crop_box, layer in zip(crop_boxes, layers, strict=True):
        x0, y0, x1, y1 = crop_box
        points = grids[layer] * np.array([x1 - x0, y1 - y0])
        if where is not None:
            inside = where[(points[:, 1] + y0).astype(int), (points[:, 0] + x0).astype(int)]
            points = points[inside]
        if not len(points):
            continue
        predictor.set_image(image[y0:y1, x0:x1])
        started = time.perf_counter()
        masks, box, _ = _crop_masks(predictor, points, crop_box, settings)
        predictor.decoder_seconds += time.perf_counter() - started
        for mask in masks:
            whole = np.zeros((height, width), dtype=bool)
            whole[y0:y1, x0:x1] = mask
            found.append(whole)
        boxes.append(box + torch.tensor([x0, y0, x0, y0], dtype=box.dtype))
        crop_areas += [(x1 - x0) * (y1 - y0)] * len(masks)
    if len(crop_boxes) > 1 and found:  # the same mask from two crops: the smaller crop's is kept
        keep = batched_nms(
            torch.cat(boxes),
            1 / torch.tensor(crop_areas, dtype=torch.float),
            torch.zeros(len(found)),
            iou_threshold=CROP_NMS_IOU,
        )
        found = [found[i] for i in sorted(keep.tolist())]
    return found


def box_masks(predictor: StudioPredictor, image: np.ndarray, boxes: list, batched: bool = True) -> list[np.ndarray]:
    """One mask per box (x0, y0, x1, y1 in the image's pixels): SAM's single-mask output, the one its
    authors advise for a box prompt (it measured better than the best of three: docs/architecture.md
    "Segmentation pipeline").

    batched: the boxes through predict_torch decoder_batch() at a time; else one predict call per box (the
    naive way).
    """
    if not boxes:
        return []
    predictor.set_image(image)
    prompts = np.array(boxes, dtype=np.float32)
    if batched:
        coords = torch.as_tensor(predictor.transform.apply_boxes(prompts, image.shape[:2]), device=predictor.device)
        found, batch = [], decoder_batch(predictor)
        with torch.no_grad():
            for start in range(0, len(coords), batch):
                masks, _, _ = predictor.predict_torch(
                    None, None, boxes=coords[start : start + batch], multimask_output=False
                )
                found += list(masks[:, 0].cpu().numpy())
        return found
    return [predictor.predict(box=box, multimask_output=False)[0][0] for box in prompts]

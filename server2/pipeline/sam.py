"""SAM: box-prompted masks (YOLO's detections) plus automatic masks with the user's settings, sharing one
image embedding.

The automatic generator embeds each crop with set_image; its crop 0 is the whole image, the same one the
box prompts need. StudioPredictor keeps the whole image's embedding, so the generator's crop 0 reuses it
instead of running the encoder (most of SAM's time) a second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.utils.amg import MaskData


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


class _Generator(SamAutomaticMaskGenerator):
    """segment_anything's generator, fixed for crops that yield no mask.

    Upstream stores such a crop's crop_boxes as shape (0,) instead of (0, 4), and with crop_n_layers > 0
    an image where no crop yields a mask then fails in box_area.
    """

    def _process_crop(self, *args: object, **kwargs: object) -> MaskData:
        data = super()._process_crop(*args, **kwargs)
        if len(data["rles"]) == 0:
            data["crop_boxes"] = torch.zeros((0, 4))
        return data


def automatic_masks(predictor: StudioPredictor, image: np.ndarray, settings: dict) -> list[np.ndarray]:
    """SamAutomaticMaskGenerator with the user's settings, driven through the shared predictor."""
    generator = _Generator(
        predictor.model,
        points_per_side=int(settings["points_per_side"]),
        pred_iou_thresh=float(settings["pred_iou_thresh"]),
        stability_score_thresh=float(settings["stability_score_thresh"]),
        crop_n_layers=int(settings["crop_n_layers"]),
        output_mode="binary_mask",
    )
    generator.predictor = predictor
    return [ann["segmentation"] for ann in generator.generate(image)]


def box_masks(predictor: StudioPredictor, image: np.ndarray, boxes: list, batched: bool = True) -> list[np.ndarray]:
    """One mask per box (x0, y0, x1, y1 in the image's pixels): SAM's single-mask output, the one its
    authors advise for a box prompt (it measured better than the best of three: docs/architecture.md
    "Segmentation pipeline").

    batched: every box in one predict_torch call; else one predict call per box (the naive way).
    """
    if not boxes:
        return []
    predictor.set_image(image)
    prompts = np.array(boxes, dtype=np.float32)
    if batched:
        coords = predictor.transform.apply_boxes(prompts, image.shape[:2])
        with torch.no_grad():
            masks, _, _ = predictor.predict_torch(
                None, None, boxes=torch.as_tensor(coords, device=predictor.device), multimask_output=False
            )
        return list(masks[:, 0].cpu().numpy())
    return [predictor.predict(box=box, multimask_output=False)[0][0] for box in prompts]

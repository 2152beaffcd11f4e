"""Small model weights for tests, written in the same file formats as the real ones (no download).

build_test_models(folder) writes, under the names Server2 loads (docs/architecture.md "Storage layout"):
- vit_l.pth: a SAM state dict with a tiny image encoder (256 px input); server2.models reads the encoder's
  shape from the tensors, exactly as it does for the real vit_l checkpoint.
- yolov8n.pt / yolov8n-seg.pt: ultralytics models built from yolov8n.yaml / yolov8n-seg.yaml with random
  weights and the COCO class names, saved with YOLO.save().
- birefnet-dis.onnx: an ONNX graph with BiRefNet's input/output names and shapes (1x3xHxW, 1024 for
  BiRefNet -> 1x1xHxW logits; H and W free, so the same file also stands in for rembg's other sessions,
  e.g. u2netp's 320 px, under their names). Random weights would give noise, so its few fixed operations
  make a plain saliency map instead: pixels far in brightness from the image border's are foreground,
  slightly grown. Tests of the matte path can then check where a clipping is opaque.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from server2.models import SamConfig, build_sam  # noqa: E402

# 2 blocks (one windowed, one global), 32 channels: the encoder runs in milliseconds on a CPU.
TEST_SAM = SamConfig(
    embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4, patch_size=16, img_size=256
)
BIREFNET_SIZE = 1024


def build_sam_weights(path: Path, config: SamConfig = TEST_SAM, seed: int = 0) -> Path:
    """Random weights, except two scales that let masks through the automatic generator's filters.

    A random decoder's mask logits hover near 0 (stability score far below any threshold) and its IoU
    head predicts noise; the logits are scaled up and the IoU head centred on 0.9, so the generator
    keeps some (arbitrarily shaped) masks and the rest of the pipeline has work to do.
    """
    torch.manual_seed(seed)
    state = build_sam(config).state_dict()
    for key in state:
        if key.startswith("mask_decoder.output_hypernetworks_mlps.") and ".layers.2." in key:
            state[key] *= 1000.0
    state["mask_decoder.iou_prediction_head.layers.2.weight"] *= 0.1
    state["mask_decoder.iou_prediction_head.layers.2.bias"].fill_(0.9)
    torch.save(state, path)
    return path


def _coco_names() -> dict[int, str]:
    """The 80 COCO names the real yolov8n weights carry (class 0 is "person"), from ultralytics' own file."""
    import yaml
    from ultralytics.utils import ROOT

    with open(ROOT / "cfg/datasets/coco.yaml") as f:
        return yaml.safe_load(f)["names"]


def build_yolo_weights(path: Path, config: str, seed: int = 0) -> Path:
    """config: 'yolov8n.yaml' or 'yolov8n-seg.yaml' (shipped with ultralytics)."""
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO(config)
    model.model.names = _coco_names()
    model.save(str(path))
    return path


class SaliencyStandIn(torch.nn.Module):
    """BiRefNet's interface with fixed operations: |brightness - border brightness|, grown, as logits."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        small = F.avg_pool2d(image.mean(dim=1, keepdim=True), 8)  # 128 x 128
        border = torch.cat([small[..., 0, :], small[..., -1, :], small[..., :, 0], small[..., :, -1]], dim=-1)
        distance = (small - border.mean(dim=-1, keepdim=True).unsqueeze(-1)).abs()
        grown = F.max_pool2d(distance, 5, stride=1, padding=2)
        logits = 12.0 * (grown - 0.5)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def build_birefnet_weights(path: Path) -> Path:
    example = torch.zeros(1, 3, BIREFNET_SIZE, BIREFNET_SIZE)
    # The TorchScript exporter (dynamo=False): the torch.export one needs onnxscript, not installed here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            SaliencyStandIn(),
            (example,),
            str(path),
            input_names=["input_image"],
            output_names=["output_image"],
            opset_version=17,
            dynamic_axes={"input_image": {2: "height", 3: "width"}, "output_image": {2: "height", 3: "width"}},
            dynamo=False,
        )
    return path


def build_test_models(folder: Path) -> Path:
    """Write vit_l.pth, yolov8n.pt, yolov8n-seg.pt and birefnet-dis.onnx into folder; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    build_sam_weights(folder / "vit_l.pth")
    build_yolo_weights(folder / "yolov8n.pt", "yolov8n.yaml")
    build_yolo_weights(folder / "yolov8n-seg.pt", "yolov8n-seg.yaml")
    build_birefnet_weights(folder / "birefnet-dis.onnx")
    return folder

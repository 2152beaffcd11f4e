"""`python -m bench.cpu_mode`: CPU local mode's time for one 1024-px photo (README "CPU local mode").

segment() in SAM mode on a CPU, as Server2 runs it without a GPU: SAM vit_b (real shapes, random weights)
with the CPU limits (server2.pipeline.CPU_LIMITS), the small test YOLO and matte models (a fraction of a
second each; the real YOLO11n takes ~0.1 s). Prints wall and process CPU time, torch's threads and the
load average (other work on the machine stretches the wall time), and the breakdown: YOLO, SAM's image
encoder, its mask decoder (incl. the masks upscaled to the image's size), the generator's post-processing
(stability score, boxes, RLE, NMS: SAM's time outside encoder and decoder) and the rest.

Two passes, because random weights distort only the post-processing: the encoder and decoder do the same
arithmetic whatever the weights. "random" is the pipeline as it is: random weights give noise masks, with
far more RLE runs than an object's outline has. "smooth" replaces every decoder output with a disc around
its prompt point that passes every filter: real object shapes, and every candidate mask reaches
post-processing, an upper bound on what a real checkpoint's masks cost. RUNS runs of each (1).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import skimage.data
import torch
from PIL import Image

from server2 import pipeline
from server2.models import Models, SamConfig
from server2.pipeline import sam, segment
from studio.modelfiles import ModelChoice
from studio.settings import DEFAULTS
from tests.weights import build_sam_weights, build_test_models

# segment_anything's build_sam_vit_b encoder.
VIT_B = SamConfig(768, 12, 12, (2, 5, 8, 11), 14, 16, 1024)
DISC_RADII = (48.0, 128.0, 320.0)  # SAM's three outputs per point: part, object, whole


@contextmanager
def counting(counts: dict[str, int]) -> Iterator[None]:
    """Count the generator's candidate masks and those that reach RLE encoding (and their runs)."""
    original = sam._Generator._process_batch

    def counted(self: sam._Generator, points: object, *args: object, **kwargs: object) -> object:
        data = original(self, points, *args, **kwargs)
        counts["candidates"] += 3 * len(points)
        counts["encoded"] += len(data["rles"])
        counts["runs"] += sum(len(rle["counts"]) for rle in data["rles"])
        return data

    sam._Generator._process_batch = counted
    try:
        yield
    finally:
        sam._Generator._process_batch = original


@contextmanager
def smooth_masks() -> Iterator[None]:
    """Every decoder output becomes a disc around its first prompt point, predicted IoU 0.95 (the decoder
    still runs and is timed; drawing the discs counts as post-processing: the bound errs high)."""
    original = sam.StudioPredictor.predict_torch

    def discs(self: sam.StudioPredictor, point_coords: torch.Tensor, *args: object, **kwargs: object) -> tuple:
        masks, iou, low_res = original(self, point_coords, *args, **kwargs)
        height, width = masks.shape[-2:]
        scale = torch.tensor([width / self.input_size[1], height / self.input_size[0]])
        centres = point_coords[:, 0, :].float() * scale  # B x 2, in the image's pixels
        ys, xs = torch.arange(height).view(1, -1, 1), torch.arange(width).view(1, 1, -1)
        distance = ((xs - centres[:, 0, None, None]) ** 2 + (ys - centres[:, 1, None, None]) ** 2).sqrt()
        radii = torch.tensor(DISC_RADII[: masks.shape[1]]).view(1, -1, 1, 1)
        logits = 400.0 * (1 - distance[:, None] / radii)  # steep: stability score ~0.99
        smooth = logits if kwargs.get("return_logits") else logits > self.model.mask_threshold
        return smooth, torch.full_like(iou, 0.95), low_res

    sam.StudioPredictor.predict_torch = discs
    try:
        yield
    finally:
        sam.StudioPredictor.predict_torch = original


def run(models: Models, photo: Image.Image, settings: dict, label: str) -> None:
    counts = {"candidates": 0, "encoded": 0, "runs": 0}
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with counting(counts):
        result = segment(models, photo, photo, settings)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    t, d = result.timings, result.details
    sam_total = t["sam_points"] + t["sam_auto"]
    post = sam_total - d["encoder_s"] - d["decoder_s"]
    rest = sum(t.values()) - t["detect"] - sam_total
    runs = counts["runs"] // max(counts["encoded"], 1)
    print(
        f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU on {torch.get_num_threads()} threads "
        f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
        f"  YOLO {t['detect']:.1f} s | SAM encoder {d['encoder_s']:.1f} s ({d['encoder_runs']} run) | "
        f"decoder {d['decoder_s']:.1f} s ({len(result.points['points'])} prompt points + "
        f"{counts['candidates'] // 3} grid points) | generator post-processing {post:.1f} s "
        f"({counts['encoded']} of {counts['candidates']} candidate masks RLE-encoded, {runs} runs each) | "
        f"rest {rest:.1f} s | {len(result.masks)} masks kept",
        flush=True,
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        build_test_models(Path(folder))
        build_sam_weights(Path(folder) / "vit_b.pth", VIT_B)
        models = Models.load(Path(folder), "cpu", ModelChoice(sam="vit_b"))
        photo = Image.fromarray(skimage.data.astronaut()).resize((1024, 1024))
        settings = {**DEFAULTS, "model_type": "vit_b", "mode": "sam"}
        print(
            f"CPU local mode, one {photo.width}x{photo.height} photo, SAM vit_b shapes, limits {pipeline.CPU_LIMITS}, "
            f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            flush=True,
        )
        for number in range(1, int(os.environ.get("RUNS", "1")) + 1):
            run(models, photo, settings, f"run {number}, random weights")
            with smooth_masks():
                run(models, photo, settings, f"run {number}, smooth masks (bound)")


if __name__ == "__main__":
    main()

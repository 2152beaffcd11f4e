"""`python -m bench.cpu_mode`: CPU local mode's time for one 1024-px photo (README "CPU local mode").

segment() in SAM mode on a CPU, as Server2 runs it without a GPU: SAM vit_b (real shapes, random weights:
speed does not depend on their values) with the CPU limits (server2.pipeline.CPU_LIMITS), the small test
YOLO and matte models (a fraction of a second each; the real YOLO11n takes ~0.1 s). RUNS runs (1).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import skimage.data
import torch
from PIL import Image

from server2.models import Models, SamConfig
from server2.pipeline import segment
from studio.modelfiles import ModelChoice
from studio.settings import DEFAULTS
from tests.weights import build_sam_weights, build_test_models

# segment_anything's build_sam_vit_b encoder.
VIT_B = SamConfig(768, 12, 12, (2, 5, 8, 11), 14, 16, 1024)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        build_test_models(Path(folder))
        build_sam_weights(Path(folder) / "vit_b.pth", VIT_B)
        models = Models.load(Path(folder), "cpu", ModelChoice(sam="vit_b"))
        photo = Image.fromarray(skimage.data.astronaut()).resize((1024, 1024))
        settings = {**DEFAULTS, "model_type": "vit_b", "mode": "sam"}
        for run in range(int(os.environ.get("RUNS", "1"))):
            started = time.perf_counter()
            result = segment(models, photo, photo, settings)
            print(
                f"run {run + 1}: {time.perf_counter() - started:.1f} s on {torch.get_num_threads()} threads",
                {k: round(v, 2) for k, v in result.timings.items()},
            )


if __name__ == "__main__":
    main()

"""`python -m bench.cpu_mode`: CPU local mode's time for one 1024-px photo (README "CPU local mode").

segment() in SAM mode on a CPU, as Server2 runs it without a GPU (SAM_MODEL's CPU default, MobileSAM, with
the CPU limits server2.pipeline.CPU_LIMITS), on the real weights in WEIGHTS (../shared/realworld/weights:
mobile_sam.pt, yolo11n.pt, u2netp.onnx). Two photos, both scaled to 1024 x 1024: scikit-image's
astronaut (YOLO finds her: SAM is prompted with the boxes, the generator does not run) and its brick
wall (nothing YOLO knows: the automatic generator runs, the slow case). Prints wall and process CPU
time, torch's threads and the load average (other work on the machine stretches the wall time), and
the breakdown: YOLO, SAM's image encoder, its mask decoder (incl. the masks scaled up to the image's
size), the generator's post-processing (stability score, boxes, RLE, NMS: SAM's time outside encoder
and decoder) and the rest. RUNS runs of each (1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import skimage.data
import torch
from PIL import Image

from server2 import pipeline
from server2.models import Models
from server2.pipeline import sam, segment
from studio.modelfiles import SAM_CPU_DEFAULT, ModelChoice
from studio.settings import DEFAULTS

PHOTOS = {"astronaut (YOLO finds a person)": "astronaut", "brick wall (nothing YOLO knows)": "brick"}


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


def run(models: Models, photo: Image.Image, label: str) -> None:
    counts = {"candidates": 0, "encoded": 0, "runs": 0}
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with counting(counts):
        result = segment(models, photo, photo, {**DEFAULTS, "mode": "sam"})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    t, d = result.timings, result.details
    sam_total = t["sam_boxes"] + t["sam_auto"]
    post = sam_total - d["encoder_s"] - d["decoder_s"]
    rest = sum(t.values()) - t["detect"] - sam_total
    runs = counts["runs"] // max(counts["encoded"], 1)
    print(
        f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU on {torch.get_num_threads()} threads "
        f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
        f"  YOLO {t['detect']:.1f} s | SAM encoder {d['encoder_s']:.1f} s ({d['encoder_runs']} run) | "
        f"decoder {d['decoder_s']:.1f} s ({d['box_masks']} boxes + {counts['candidates'] // 3} grid points) | "
        f"generator post-processing {post:.1f} s ({counts['encoded']} of {counts['candidates']} candidate masks "
        f"RLE-encoded, {runs} runs each) | rest {rest:.1f} s | {len(result.masks)} masks kept, "
        f"{len(result.clippings)} clippings",
        flush=True,
    )


def main() -> None:
    weights = Path(os.environ.get("WEIGHTS", "../shared/realworld/weights"))
    choice = ModelChoice(detect="yolo11n.pt", matte="u2netp", sam=SAM_CPU_DEFAULT)
    models = Models.load(weights, "cpu", choice)
    print(
        f"CPU local mode, one 1024 x 1024 photo, SAM {choice.sam}, {choice.detect}, limits {pipeline.CPU_LIMITS}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    for number in range(1, int(os.environ.get("RUNS", "1")) + 1):
        for label, name in PHOTOS.items():
            photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((1024, 1024))
            run(models, photo, f"run {number}, {label}")


if __name__ == "__main__":
    main()

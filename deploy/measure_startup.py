"""Measure what Server2's start-up costs in host memory and time, with full-size weights on CPU.

    python -m deploy.measure_startup [--keep DIR]

Feeds two stack parameters (deploy/stack.yaml): MemoryReservationMb (the inference component's
MinMemoryRequiredInMb) and StartupTimeoutSeconds (ContainerStartupHealthCheckTimeoutInSeconds).
No real SAM or BiRefNet checkpoint can be downloaded here, so the weights have the real shapes and
random values: SAM vit_l from segment_anything's build_sam_vit_l (no checkpoint, 308 M parameters,
1.2 GB), YOLOv8n detect + segment from ultralytics' yaml, and for BiRefNet an ONNX graph with its
input/output and a weight tensor of BiRefNet-DIS's size (BIREFNET_PARAMS float32). They are loaded
by the real code (server2.models.Models.load) in a fresh process, and that process's peak resident
set (VmHWM) and load time are printed. On CPU every weight stays in host memory: an upper bound
for a GPU host, where the weights move to the GPU but the CUDA libraries take host memory instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# BiRefNet with its Swin-L backbone: ~220 M parameters (rembg's BiRefNet-DIS ONNX file is ~0.9 GB).
BIREFNET_PARAMS = 220_000_000
BIREFNET_SIZE = 1024


def build_weights(folder: Path) -> None:
    import torch
    import torch.nn.functional as F
    from segment_anything import build_sam_vit_l
    from ultralytics import YOLO

    torch.manual_seed(0)
    torch.save(build_sam_vit_l(checkpoint=None).state_dict(), folder / "vit_l.pth")
    for name, config in (("yolov8n.pt", "yolov8n.yaml"), ("yolov8n-seg.pt", "yolov8n-seg.yaml")):
        YOLO(config).save(str(folder / name))

    class BiRefNetSized(torch.nn.Module):
        """BiRefNet's interface; its output depends on a weight of BiRefNet's size, so onnxruntime keeps it."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(1024, BIREFNET_PARAMS // 1024) * 1e-3)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            pooled = F.avg_pool2d(image.mean(dim=1, keepdim=True), 32).flatten(1)  # 1 x 1024
            bias = (pooled @ self.weight).mean()
            small = F.avg_pool2d(image.mean(dim=1, keepdim=True), 8)
            return F.interpolate(small + bias, size=image.shape[-2:], mode="bilinear", align_corners=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            BiRefNetSized(),
            (torch.zeros(1, 3, BIREFNET_SIZE, BIREFNET_SIZE),),
            str(folder / "birefnet-dis.onnx"),
            input_names=["input_image"],
            output_names=["output_image"],
            opset_version=17,
            dynamo=False,
        )


LOAD = """
import json, sys, time
from pathlib import Path
start = time.monotonic()
from server2.models import Models
imported = time.monotonic()
models = Models.load(Path(sys.argv[1]), "cpu")  # kept: RSS after loading counts it
loaded = time.monotonic()
status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmHWM", "VmRSS")))
print(json.dumps({
    "import_s": round(imported - start, 1),
    "load_s": round(loaded - imported, 1),
    "peak_rss_mb": int(status["VmHWM"].split()[0]) // 1024,
    "rss_after_load_mb": int(status["VmRSS"].split()[0]) // 1024,
}))
"""


def measure(folder: Path) -> dict:
    """Load the models in a fresh process (so nothing here counts) and return its figures."""
    out = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["weights_mb"] = sum(f.stat().st_size for f in folder.iterdir()) // 2**20
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.measure_startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", type=Path, help="build the weights into DIR (reused when already there)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="measure-startup-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "birefnet-dis.onnx").is_file():
            started = time.monotonic()
            build_weights(folder)
            print(f"built full-size weights in {time.monotonic() - started:.0f} s", file=sys.stderr)
        print(json.dumps(measure(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

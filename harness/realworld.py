"""Real pretrained weights and human-labelled photos, kept outside the repository (never copied into it)."""

import os
from pathlib import Path

from harness import REPO

REALWORLD = Path(os.environ.get("REALWORLD_DIR") or REPO.parent / "shared" / "realworld")
REAL_WEIGHTS = ("mobile_sam.pt", "yolo11n.pt", "u2netp.onnx", "isnet-general-use.onnx")
# The models a run with real weights uses: YOLO11n + MobileSAM, U2-Netp for the matte path (fast on a CPU).
REAL_MODELS_ENV = {"SAM_MODEL": "mobile_sam", "DETECT_MODEL": "yolo11n.pt", "MATTE_MODEL": "u2netp"}

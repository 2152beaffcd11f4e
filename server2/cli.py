"""`python -m server2 segment`: Server2's pipeline on local files, like rembg's command line.

    python -m server2 segment [--mode auto|sam|matte] [--full] [--models DIR] --out OUT INPUT...

For each input (a file, or every image in a folder) OUT/<stem>/ gets mask-<n>.png (8-bit 0/255 at the
input's full size, one per clipping, largest first), clipping-<n>.png (RGBA, as in the album) and
result.json (method, models, boxes, timings). The same code as Server2: studio.upright (the decoder),
server2.pipeline.segment; models by DETECT_MODEL / MATTE_MODEL / SAM_MODEL (studio/modelfiles.py).
--full runs what a GPU runs, on any device: SAM's generator with the user's default settings as they are
(without it, a CPU runs the generator under server2.pipeline.CPU_LIMITS).
A file that cannot be read or segmented is reported and skipped; the exit status is 1 if any failed.
With mobile_sam.pt in the models folder, its image encoder and prompt decoder are exported there once as ONNX
(sam-encoder-/sam-decoder-<digest>.onnx), for the editor's embeddings on Server1's CPU (server1/encoding.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from server2.config import DEVICES, device_from_env
from studio import image_files, settings, upright
from studio.config import env_str

if TYPE_CHECKING:
    from server2.models import ModelSet
    from server2.pipeline import Result

INPUT_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}


def inputs(paths: list[str]) -> list[Path]:
    """Files as given; a folder's image files (by extension, sorted; not its subfolders)."""
    out = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTS)
        else:
            out.append(path)
    return out


def decode(path: Path) -> tuple[Image.Image, Image.Image]:
    """(the upright original, the models' work copy) of an input file: studio.upright, as Server1's ingest
    and Server2's worker decode an upload. OSError or studio.upright.Unreadable."""
    data = path.read_bytes()
    return upright.original(data), upright.work_copy(data)


def write_result(folder: Path, path: Path, original: Image.Image, result: Result, models: ModelSet) -> dict:
    """mask-<n>.png, clipping-<n>.png and result.json into folder (written under .part names, then renamed)."""
    from server2.pipeline.clippings import full_mask

    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "input": str(path),
        "size": list(original.size),
        "method": result.method,
        "models": {**models.describe(), "sam_used": result.sam_model or None},
        "boxes": result.points["boxes"],
        "points": {"points": result.points["points"], "labels": result.points["labels"]},
        "clippings": [],
        "timings": result.timings,
    }
    for n, clip in enumerate(result.clippings, start=1):
        pixels = full_mask(clip.image, clip.box, original.size)
        mask = Image.fromarray(pixels.astype("uint8") * 255)
        for name, image in ((f"mask-{n}.png", mask), (f"clipping-{n}.png", clip.image)):
            (folder / f".{name}.part").write_bytes(image_files.png(image))
            os.replace(folder / f".{name}.part", folder / name)
        record["clippings"].append({"n": n, "box": list(clip.box), "area": int(pixels.sum())})
    (folder / ".result.json.part").write_text(json.dumps(record, indent=1))
    os.replace(folder / ".result.json.part", folder / "result.json")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server2 segment", description=__doc__.split("\n\n")[0])
    # "birefnet": the matte path's old name, as in the settings
    alias = settings.ALIASES["mode"]
    parser.add_argument("--mode", choices=settings.CHOICES["mode"], default="auto", type=lambda v: alias.get(v, v))
    parser.add_argument("--models", default=env_str("MODELS_DIR", "models"), help="weights folder")
    parser.add_argument("--device", choices=DEVICES, help="default: DEVICE, else auto")
    parser.add_argument("--full", action="store_true", help="the generator at the default settings, as on a GPU")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tqdm import tqdm

    from server2 import embeddings, pipeline
    from server2.models import Models, ModelsMissing, pick_device
    from studio.errors import ConfigError
    from studio.storage import FileStorage

    files = inputs(args.inputs)
    if not files:
        print("segment: no image files among the inputs", file=sys.stderr)
        return 2
    try:
        models = Models.load(
            Path(args.models), pick_device(args.device or device_from_env()), need_sam=args.mode != "matte"
        )
    except (ModelsMissing, ConfigError) as e:
        print(f"segment: {e} (models are chosen by SAM_MODEL, DETECT_MODEL and MATTE_MODEL)", file=sys.stderr)
        return 2
    try:  # into the weights folder (SHARED_DIR/models by default), where Server1's editor finds them
        embeddings.ensure_editor_models(FileStorage(args.models), models, models_root=True)
    except Exception as e:  # noqa: BLE001  (the cut-outs do not need them)
        print(f"segment: exporting MobileSAM's encoder for the editor failed: {e}", file=sys.stderr)
    out, used, failed = Path(args.out), set[str](), []
    for path in tqdm(files, unit="image", disable=None):
        stem = path.stem
        while stem in used:  # a.jpg and a.png: a-2 for the second
            stem = f"{path.stem}-{len([u for u in used if u.startswith(path.stem)]) + 1}"
        used.add(stem)
        try:
            original, work = decode(path)
            started = time.perf_counter()
            result = pipeline.segment(models, work, original, {"mode": args.mode}, full=args.full or None)
            result.timings["total"] = round(time.perf_counter() - started, 4)
            write_result(out / stem, path, original, result, models)
        except (OSError, upright.Unreadable) as e:
            failed.append(path)
            tqdm.write(
                f"segment: {path}: skipped: {e.strerror if isinstance(e, OSError) and e.strerror else e}", sys.stderr
            )
        except Exception as e:  # noqa: BLE001  (one bad image must not stop the rest)
            failed.append(path)
            tqdm.write(f"segment: {path}: failed: {type(e).__name__}: {e}", sys.stderr)
    print(f"segment: {len(files) - len(failed)} of {len(files)} images done into {out}", file=sys.stderr)
    return 1 if failed else 0

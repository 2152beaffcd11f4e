"""`make bench-quality` (`python -m bench.quality`): cut-out quality on human-labelled photos.

Runs server2.pipeline.segment (the product's code, CPU settings: the user defaults under CPU_LIMITS) on
every photo of a folder in the realworld format (<name>.jpg|png beside <name>.masks.npz: one bool array
per object keyed <index>_<class>, optionally `ignore`), with the weights of another folder
(DETECT_MODEL, MATTE_MODEL, SAM_MODEL choose among them; `make bench-quality` defaults to YOLO11n,
U2-Netp and MobileSAM). Modes (MODES, default matte,sam,full,clicks; auto on request):
- matte, sam (auto): per mode, mean best-IoU over the labelled objects (each object's best IoU over
  the predicted clippings' full-size masks, `ignore` pixels left out), the share of objects at >= 0.5
  and >= 0.75, masks per photo, seconds per photo, the same for objects covering >= 1 % of their photo,
  and per photo (the DAVIS photos are single subjects) its mean best-IoU, masks / objects and seconds.
- full: the sam mode as `python -m server2 segment --full` runs it (the generator at the user's default
  settings, as a GPU runs it), on this device.
- clicks: the editor's interactive protocol (bench/clicks.py): mean IoU after 1, 2, 3, 5 clicks, NoC@85.
Writes OUT/quality.json and OUT/sheet-<mode>.png (photo | labels | prediction | clippings, one row a photo).

The SAM modes need the real checkpoint of SAM_MODEL (MobileSAM's sha256, or for Meta's the digits its
file name starts with): random weights are not a quality figure, so without one those modes are skipped
with a line saying so.

    make bench-quality                                   # ../shared/realworld/{photos,weights}
    PHOTOS=... WEIGHTS=... MATTE_MODEL=isnet-general-use MODES=sam make bench-quality
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench import clicks
from studio import upright
from studio.modelfiles import sam_file

# full: the sam path as `segment --full` runs it (the generator at the default settings, what a GPU runs)
MODES = ("matte", "sam", "full", "clicks")  # "auto" too on request: on photos it is the sam path
SAM_MODES = ("sam", "full", "auto", "clicks")
BIG = 0.01  # "big" objects cover at least this share of their photo
ROW = 180  # contact sheet row height
PHOTO_EXTS = (".jpg", ".jpeg", ".png")


def labelled_photos(folder: Path) -> list[tuple[Path, Path]]:
    return sorted(
        (p, p.with_name(p.stem + ".masks.npz"))
        for p in folder.iterdir()
        if p.suffix.lower() in PHOTO_EXTS and p.with_name(p.stem + ".masks.npz").is_file()
    )


def load_labels(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    with np.load(path) as data:
        objects = {key: data[key].astype(bool) for key in data.files if key != "ignore"}
        ignore = data["ignore"].astype(bool) if "ignore" in data.files else None
    return objects, ignore


def iou(pred: np.ndarray, label: np.ndarray, ignore: np.ndarray | None) -> float:
    inter, union = pred & label, pred | label
    if ignore is not None:
        inter, union = inter & ~ignore, union & ~ignore
    total = int(union.sum())
    return float(inter.sum()) / total if total else 0.0


def real_sam(weights: Path, size: str) -> bool:
    """Whether weights holds the real checkpoint of that SAM model: MobileSAM's sha256, or for Meta's the
    digits its file name starts with (studio.modelfiles)."""
    from studio.modelfiles import SAM_SHA256_PREFIX, official, sam_file

    path = weights / sam_file(size)
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest().startswith(official(path.name).sha256 or SAM_SHA256_PREFIX[size])


def summary(objects: list[dict], photos: list[dict]) -> dict:
    def stats(rows: list[dict]) -> dict:
        best = np.array([r["best_iou"] for r in rows]) if rows else np.zeros(0)
        return {
            "objects": len(rows),
            "mean_best_iou": round(float(best.mean()), 3) if len(best) else None,
            "share_050": round(float((best >= 0.5).mean()), 3) if len(best) else None,
            "share_075": round(float((best >= 0.75).mean()), 3) if len(best) else None,
        }

    return {
        "all": stats(objects),
        "big": stats([o for o in objects if o["share"] >= BIG]),
        "masks_per_photo": round(float(np.mean([p["masks"] for p in photos])), 2),
        "objects_per_photo": round(float(np.mean([p["objects"] for p in photos])), 2),
        "s_per_photo": round(float(np.mean([p["seconds"] for p in photos])), 2),
        "cpu_s_per_photo": round(float(np.mean([p["cpu_seconds"] for p in photos])), 2),
        # mean CPU seconds a photo per stage (segment()'s stages; the SAM stages split into encoder and decoder)
        "cpu_s_per_stage": {
            stage: round(float(np.mean([p["cpu_timings"].get(stage, 0.0) for p in photos])), 2)
            for stage in dict.fromkeys(s for p in photos for s in p["cpu_timings"])
        },
    }


def colour(i: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(i + 7)
    return tuple(int(v) for v in rng.integers(60, 256, 3))


def overlay(photo: Image.Image, masks: list[np.ndarray]) -> Image.Image:
    out = np.asarray(photo.convert("RGB")).astype(np.float32) * 0.35
    for i, m in enumerate(masks):
        out[m] = out[m] * 0.3 + np.array(colour(i)) * 0.7
    return Image.fromarray(out.astype(np.uint8))


def sheet_row(
    photo: Image.Image, labels: list[np.ndarray], preds: list[np.ndarray], clips: list, text: str
) -> Image.Image:
    def fit(image: Image.Image) -> Image.Image:
        image = image.copy()
        image.thumbnail((ROW * 2, ROW))
        return image

    photo = upright.flatten(photo)
    tiles = [fit(photo), fit(overlay(photo, labels)), fit(overlay(photo, preds))]
    for clip in clips[:6]:
        board = Image.new("RGBA", clip.size, (200, 200, 200, 255))
        board.alpha_composite(clip)
        tiles.append(fit(board))
    row = Image.new("RGB", (sum(t.width + 4 for t in tiles), ROW + 16), "white")
    x = 0
    for tile in tiles:
        row.paste(tile.convert("RGB"), (x, 16))
        x += tile.width + 4
    ImageDraw.Draw(row).text((2, 2), text, fill="black")
    return row


def run_mode(models: object, mode: str, photos: list[tuple[Path, Path]], out: Path) -> dict:
    from server2 import pipeline
    from server2.cli import decode
    from server2.pipeline.clippings import full_mask

    objects, per_photo, rows = [], [], []
    for photo_path, labels_path in photos:
        original, work = decode(photo_path)
        labels, ignore = load_labels(labels_path)
        started, cpu = time.perf_counter(), time.process_time()
        settings = {"mode": "sam" if mode == "full" else mode}
        result = pipeline.segment(models, work, original, settings, full=mode == "full" or None)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        preds = [full_mask(c.image, c.box, original.size) for c in result.clippings]
        size = original.width * original.height
        found = []
        for key, label in labels.items():
            best = max((iou(p, label, ignore) for p in preds), default=0.0)
            found.append(
                {
                    "photo": photo_path.name,
                    "object": key,
                    "share": round(float(label.sum()) / size, 4),
                    "best_iou": round(best, 3),
                }
            )
        objects += found
        per_photo.append(
            {
                "photo": photo_path.name,
                "method": result.method,
                "objects": len(labels),
                "masks": len(preds),
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "timings": result.timings,
                "cpu_timings": result.details.get("cpu_s", {}),
                "details": {k: v for k, v in result.details.items() if k != "cpu_s"},
                "best_iou": {o["object"]: o["best_iou"] for o in found},
            }
        )
        text = f"{photo_path.name} [{result.method}] " + " ".join(f"{o['object']}={o['best_iou']:.2f}" for o in found)
        rows.append(sheet_row(original, list(labels.values()), preds, [c.image for c in result.clippings], text))
        print(f"  {mode}: {photo_path.name}: {len(preds)} masks, {seconds:.1f} s ({cpu:.1f} s CPU), {text}", flush=True)
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    sheet.save(out / f"sheet-{mode}.png")
    return {"summary": summary(objects, per_photo), "photos": per_photo, "objects": objects}


def print_report(report: dict, photos: list[tuple[Path, Path]]) -> None:
    modes = report["modes"]
    print(f"\n{report['date']}: {len(photos)} photos from {report['photos']}; models {report['models']}")
    print(
        f"{'mode':9} {'objects':>7} {'mean IoU':>8} {'>=0.5':>6} {'>=0.75':>6} {'big mean':>8} {'big>=0.5':>8} "
        f"{'masks/ph':>8} {'obj/ph':>6} {'s/photo':>7} {'CPU s/ph':>8}"
    )
    cut = {mode: data for mode, data in modes.items() if "summary" in data}
    for mode, data in cut.items():
        s, a, b = data["summary"], data["summary"]["all"], data["summary"]["big"]
        print(
            f"{mode:9} {a['objects']:7} {a['mean_best_iou']:8.3f} {a['share_050']:6.2f} {a['share_075']:6.2f} "
            f"{b['mean_best_iou'] or 0:8.3f} {b['share_050'] or 0:8.2f} {s['masks_per_photo']:8.2f} "
            f"{s['objects_per_photo']:6.2f} {s['s_per_photo']:7.2f} {s['cpu_s_per_photo']:8.2f}"
        )
    for mode, data in cut.items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in data["summary"]["cpu_s_per_stage"].items())
        print(f"{mode}: CPU s a photo per stage: {stages} (load average {os.getloadavg()[0]:.1f} at the end)")
    if cut:
        print("per photo (mean best-IoU, masks / objects, seconds):")
        for n, (photo, _) in enumerate(photos):
            rows = {mode: data["photos"][n] for mode, data in cut.items()}
            shown = (
                f"{mode} {np.mean(list(r['best_iou'].values())):.3f} {r['masks']}/{r['objects']} {r['seconds']:.1f} s"
                for mode, r in rows.items()
            )
            print(f"  {photo.name:28} " + " | ".join(shown))
    if "clicks" in modes and "mean_iou" in modes["clicks"]:
        data = modes["clicks"]
        after = ", ".join(f"{k}: {iou:.3f}" for k, iou in data["mean_iou"].items())
        print(
            f"interactive ({data['model']}, the exported ONNX decoder as /cut runs it, {data['objects']} objects, "
            f"{data['seconds']} s): mean IoU after clicks {after}; NoC@85 {data['noc85']:.2f} "
            f"({data['never_85']} of {data['objects']} never reach 0.85 in {clicks.MAX_CLICKS})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=os.environ.get("PHOTOS", "../shared/realworld/photos"))
    parser.add_argument("--weights", default=os.environ.get("WEIGHTS", "../shared/realworld/weights"))
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results/quality"))
    parser.add_argument("--modes", default=os.environ.get("MODES", ",".join(MODES)))
    # cpu: the CPU settings the targets are for (CPU_LIMITS, MobileSAM by default); cuda: a GPU's.
    parser.add_argument("--device", choices=("cpu", "cuda"), default=os.environ.get("DEVICE", "cpu"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from server2.models import Models
    from studio.modelfiles import ModelChoice

    photos_dir, weights, out = Path(args.photos), Path(args.weights), Path(args.out)
    photos = labelled_photos(photos_dir) if photos_dir.is_dir() else []
    if not photos:
        print(f"bench-quality: no labelled photos (<name>.jpg|png + <name>.masks.npz) in {photos_dir}")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    choice = ModelChoice.from_env(gpu=False)  # MobileSAM unless SAM_MODEL says, on either device
    models = Models.load(weights, args.device, choice, need_sam=False)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "photos": str(photos_dir),
        "weights": str(weights),
        "models": models.describe(),
        "modes": {},
    }
    has_sam = real_sam(weights, choice.sam)
    for mode in args.modes.split(","):
        if mode in SAM_MODES and not has_sam:
            print(f"{mode}: skipped: no real SAM checkpoint ({sam_file(choice.sam)}) in {weights}")
            report["modes"][mode] = {"skipped": f"no real {sam_file(choice.sam)} in {weights}"}
        elif mode == "clicks":
            report["modes"][mode] = clicks.run(models, photos, load_labels)
        else:
            report["modes"][mode] = run_mode(models, mode, photos, out)
    (out / "quality.json").write_text(json.dumps(report, indent=1))
    print_report(report, photos)
    print(f"wrote {out / 'quality.json'} and the contact sheets {out}/sheet-<mode>.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

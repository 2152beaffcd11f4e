"""`python -m bench.candidates`: every candidate mask the SAM path makes, dumped once, filtered offline.

    python -m bench.candidates dump [--photos P] [--weights W] [--out DIR]   # runs YOLO and SAM: slow
    python -m bench.candidates eval [--photos P] [--out DIR] [--table]      # replays the filters: seconds

dump: for each labelled photo (bench.quality's format) runs what server2.pipeline.segment runs in sam mode
under CPU_LIMITS up to the filters: YOLO (both models, confidence 0.1, merged), SAM's box prompts (mask,
predicted IoU, stability of its low-res logits) and the generator's decoder on every point of its grid,
whether covered or not (each point's three low-res logits and predicted IoUs, unfiltered), and the matte the
refinement would use; with the CPU seconds of each stage. One DIR/<photo>.npz each.

eval: replays segment()'s steps from the dump with the product's own functions (masks.covered, the
generator's low-res filters sam.kept_logits / sam.crop_masks, masks.new_masks, refine, masks.keep_masks,
clippings.select), so a filter rule changed in the product is measured here without running SAM again.
Prints bench.quality's figures (mean best-IoU, shares >= 0.5 / 0.75, clippings a photo, per photo) and,
with --table, one line per candidate mask: its source (YOLO box with class and score, or the generator
with predicted IoU and stability), area, border contact, share inside the covered pixels, the largest
share of it inside another candidate, the labelled object it matches best and whether it ends a clipping.
The dump's masks are the pipeline's at the work copy's size; the labels are compared at that size (the
development photos are all under 1024 px, so work copy and original are the same size).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.quality import iou as label_iou
from bench.quality import labelled_photos, load_labels

STABILITY_SAMPLE = 1.0  # sam.STABILITY_OFFSET


def dump(photos: list[tuple[Path, Path]], weights: Path, out: Path) -> None:
    import torch
    from segment_anything.utils.amg import build_all_layer_point_grids, calculate_stability_score

    from server2.cli import decode
    from server2.models import Models
    from server2.pipeline import CPU_LIMITS, detect, sam
    from studio.modelfiles import ModelChoice

    models = Models.load(weights, "cpu", ModelChoice.from_env(gpu=False), need_sam=False)
    _, model = models.sam_for(models.choice.sam)
    out.mkdir(parents=True, exist_ok=True)
    for photo_path, _ in photos:
        _, work = decode(photo_path)
        rgb = work.convert("RGB")
        image = np.asarray(rgb)
        cpu: dict[str, float] = {}

        def clock(stage: str, started: float, cpu: dict[str, float] = cpu) -> float:
            now = time.process_time()
            cpu[stage] = round(cpu.get(stage, 0.0) + now - started, 3)
            return now

        started = time.process_time()
        found = detect.run_yolo(models, rgb, "sam")
        prompts = detect.merge(found.get("seg", []) + found["det"])
        started = clock("detect", started)
        predictor = sam.StudioPredictor(model)
        predictor.set_image(image)
        started = clock("encoder", started)
        box_masks = np.zeros((0, *image.shape[:2]), dtype=bool)
        box_iou = box_stability = np.zeros(0, dtype=np.float32)
        if prompts:
            coords = predictor.transform.apply_boxes(np.array([d.box for d in prompts]), image.shape[:2])
            with torch.no_grad():
                masks, ious, low = predictor.predict_torch(
                    None, None, boxes=torch.as_tensor(coords, dtype=torch.float), multimask_output=False
                )
            box_masks = masks[:, 0].numpy()
            box_iou = ious[:, 0].numpy()
            box_stability = calculate_stability_score(low[:, 0], model.mask_threshold, STABILITY_SAMPLE).numpy()
        started = clock("box_decoder", started)
        side = int(CPU_LIMITS["points_per_side"])
        points = build_all_layer_point_grids(side, 0, 1)[0] * np.array([image.shape[1], image.shape[0]])
        logits, ious = sam.point_logits(predictor, points, image.shape[:2])
        started = clock("point_decoder", started)
        matte = models.matte.predict(rgb)
        clock("matte", started)
        np.savez_compressed(
            out / f"{photo_path.stem}.npz",
            box_masks=box_masks,
            box_iou=box_iou,
            box_stability=box_stability,
            box_score=np.array([d.score for d in prompts], dtype=np.float32),
            box_label=np.array([d.label for d in prompts], dtype=str),
            box=np.array([d.box for d in prompts], dtype=np.float32).reshape(-1, 4),
            points=points,
            logits=logits.numpy().astype(np.float16),
            point_iou=ious.numpy(),
            matte=matte,
            input_size=np.array(predictor.input_size),
            cpu_stage=np.array(list(cpu)),
            cpu_s=np.array(list(cpu.values())),
        )
        print(f"{photo_path.name}: {len(prompts)} boxes, {len(points)} points, CPU s {cpu}", flush=True)


@dataclass
class Candidate:
    mask: np.ndarray
    source: str  # "box <label> <score>" | "gen"
    score: float  # YOLO's confidence for a box, SAM's predicted IoU for a generator mask
    iou_pred: float
    stability: float


def predictor_stub(input_size: tuple[int, int], shape: tuple[int, int]) -> SimpleNamespace:
    """What sam.kept_logits / sam.crop_masks read from a predictor (MobileSAM's and every SAM's sizes)."""
    model = SimpleNamespace(
        image_encoder=SimpleNamespace(img_size=1024),
        prompt_encoder=SimpleNamespace(image_embedding_size=(64, 64)),
        mask_threshold=0.0,
    )
    return SimpleNamespace(model=model, input_size=tuple(input_size), original_size=shape)


def replay(data: dict, settings: dict) -> tuple[list[Candidate], list, np.ndarray]:
    """segment()'s steps after SAM's decoder on a dump, with the product's functions: (every candidate
    reaching the filters, the clippings' components, the covered pixels)."""
    import torch
    from segment_anything.utils.amg import calculate_stability_score

    from server2.pipeline import clippings, masks, refine, sam, work_area

    boxed = list(data["box_masks"])
    shape = data["matte"].shape
    covered = masks.covered(boxed, [float(s) for s in data["box_score"]], shape)
    points = data["points"]
    inside = ~covered[points[:, 1].astype(int), points[:, 0].astype(int)]
    chosen = np.repeat(inside, 3)
    low = torch.as_tensor(data["logits"][chosen].astype(np.float32))
    iou = torch.as_tensor(data["point_iou"][chosen])
    stub = predictor_stub(data["input_size"], shape)
    low, iou, box = sam.kept_logits(stub, low, iou, shape, settings)  # type: ignore[arg-type]
    stability = calculate_stability_score(low, 0.0, STABILITY_SAMPLE)
    extra, index = sam.crop_masks(stub, low, iou, box, [0, 0, shape[1], shape[0]])  # type: ignore[arg-type]
    candidates = [
        Candidate(m, f"box {label} {score:.2f}", float(score), float(i), float(st))
        for m, label, score, i, st in zip(
            boxed, data["box_label"], data["box_score"], data["box_iou"], data["box_stability"], strict=True
        )
    ]
    candidates += [
        Candidate(m, "gen", float(iou[i]), float(iou[i]), float(stability[i]))
        for m, i in zip(extra, index, strict=True)
    ]
    found = masks.object_masks(boxed, [float(s) for s in data["box_score"]], extra, covered)
    found, _ = refine.refine_largest(found, data["image"], lambda: data["matte"])
    min_area = work_area(int(settings["min_area"]), shape[::-1])
    kept = masks.keep_masks(found, min_area)
    parts = clippings.select(kept, min_area, int(settings["max_clippings"]))
    components = []
    for part in parts:
        whole = np.zeros(shape, dtype=bool)
        x0, y0, x1, y1 = part.box
        whole[y0:y1, x0:x1] = part.pixels
        components.append(whole)
    return candidates, components, covered


def evaluate(photos: list[tuple[Path, Path]], out: Path, table: bool) -> None:
    from PIL import Image

    from server2.cli import decode
    from server2.pipeline import cpu_limits, masks
    from studio.settings import DEFAULTS

    settings = cpu_limits({**DEFAULTS, "mode": "sam"})
    scores, counts, cpu = [], [], []
    print(f"{'photo':26} {'best-IoU':>8} {'clips':>5} {'objects':>7}  per object")
    for photo_path, labels_path in photos:
        data = dict(np.load(out / f"{photo_path.stem}.npz"))
        _, work = decode(photo_path)
        data["image"] = np.asarray(work.convert("RGB"))
        labels, ignore = load_labels(labels_path)
        if next(iter(labels.values())).shape != data["matte"].shape:  # a photo over 1024 px: labels scaled
            size = data["matte"].shape[::-1]
            labels = {
                k: np.asarray(Image.fromarray(v).resize(size, Image.Resampling.NEAREST)) for k, v in labels.items()
            }
            ignore = None if ignore is None else np.asarray(Image.fromarray(ignore).resize(size))
        candidates, parts, covered = replay(data, settings)
        best = {k: max((label_iou(p, v, ignore) for p in parts), default=0.0) for k, v in labels.items()}
        scores += list(best.values())
        counts.append(len(parts))
        cpu.append(dict(zip(data["cpu_stage"].tolist(), data["cpu_s"].tolist(), strict=True)))
        shown = " ".join(f"{k}={v:.2f}" for k, v in best.items())
        print(f"{photo_path.stem:26} {np.mean(list(best.values())):8.3f} {len(parts):5} {len(labels):7}  {shown}")
        if table:
            print(
                f"  {'#':>3} {'source':22} {'iouP':>5} {'stab':>5} {'area%':>6} {'border':>6} {'in cov':>6} "
                f"{'in oth':>6} {'best label':>16} {'IoU':>5} {'clip':>5}"
            )
            for n, c in enumerate(candidates):
                area = int(c.mask.sum())
                inside = max(
                    (float((c.mask & o.mask).sum()) / max(area, 1) for o in candidates if o is not c), default=0.0
                )
                match = max(((label_iou(c.mask, v, ignore), k) for k, v in labels.items()), default=(0.0, "-"))
                clip = max((masks.iou(c.mask, p) for p in parts), default=0.0)
                print(
                    f"  {n:3} {c.source:22} {c.iou_pred:5.2f} {c.stability:5.2f} {100 * area / c.mask.size:6.2f} "
                    f"{masks.border_share(c.mask):6.2f} {float((c.mask & covered).sum()) / max(area, 1):6.2f} "
                    f"{inside:6.2f} {match[1]:>16} {match[0]:5.2f} {clip:5.2f}"
                )
    best_all = np.array(scores)
    stages = {k: round(float(np.mean([c.get(k, 0.0) for c in cpu])), 2) for k in cpu[0]}
    print(
        f"all: mean best-IoU {best_all.mean():.3f}, >= 0.5 {np.mean(best_all >= 0.5):.2f}, >= 0.75 "
        f"{np.mean(best_all >= 0.75):.2f}, clippings a photo {np.mean(counts):.2f} "
        f"(objects {len(scores) / len(photos):.2f}); "
        f"dump's CPU s a photo by stage {stages}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.candidates", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("dump", "eval"))
    parser.add_argument("--photos", default=os.environ.get("PHOTOS", "../shared/realworld/photos"))
    parser.add_argument("--weights", default=os.environ.get("WEIGHTS", "../shared/realworld/weights"))
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results/candidates"))
    parser.add_argument("--table", action="store_true", help="eval: one line per candidate mask")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    photos = labelled_photos(Path(args.photos)) if Path(args.photos).is_dir() else []
    if not photos:
        print(f"bench.candidates: no labelled photos in {args.photos}")
        return 2
    if args.command == "dump":
        dump(photos, Path(args.weights), Path(args.out))
    else:
        evaluate(photos, Path(args.out), args.table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.edges` (part of `make bench-quality`): soft edges (studio.edges) against today's binary
alpha, on composites with a known alpha, as Composition-1k builds them.

Alpha ground truth does not exist for the labelled photos, so it is made: for each photo, its largest
labelled object (the subject) gets a soft alpha by a closed-form matting solve (pymatting) in a trimap band
around the human-labelled boundary, and its foreground colours are estimated (estimate_foreground_ml). That
foreground is composited onto the next photo of the folder (scaled to cover), so the alpha used is the exact
answer for the new image. Every photo is first scaled to a longest side of 1024 px (the size the time
target is for). The product (server2.pipeline.segment, CPU settings) then runs on each composite and its
clippings are cut with "Soft edges" off and on; the clipping with the best IoU (alpha >= 0.5 against
the answer's) is scored in the uncertain band (the answer's trimap band):
- SAD (sum of absolute differences, / 1000), MSE, gradient error (Gaussian derivatives, sigma 1.4, / 1000);
- edge colour error: the mean |colour - true foreground colour| (0-255) over the band's pixels weighted by
  the true alpha: the old background's halo;
- the same for the soft step alone, started from the human label instead of SAM's mask (label_binary,
  label_soft): what the soft step does when "which pixels" is right (the answer was made around the
  same label);
- film: the mean alpha over the answer's background beyond its band, which the band's figures do not see (a
  clipping hedging with a faint copy of the old photo everywhere scores well in the band);
- best-IoU at alpha >= 0.5; seconds added per photo: the product's clippings stage (clippings.cut on the
  masks segment() made) with the setting on minus off, in CPU seconds (what an idle core takes; wall time
  on a shared machine is printed beside it), at 1024 px and, for the picture subjects, with the
  composite scaled to 12 MP.
Writes OUT/edges.json and, for the fur (DAVIS cows) and hair (the OCHuman photos) subjects, before/after
crops of the clipping on a contrasting background: OUT/edges-<name>.png.

studio.edges' band widths are chosen by principle; its filter's regulariser and number of passes by
leave-one-photo-out over these 7 composites (every fold chose the same). The answer's alpha is made by a
different method from the product's (closed-form matting, pymatting, with multilevel foreground
estimation, as Composition-1k-era work did), around the human label, on the original background, with a
band of its own width (GT_SHARE); the product starts from SAM's mask on the new background. `bound` is
what any method acting only in the product's band could reach.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bench.quality import labelled_photos, load_labels, real_sam
from studio import edges, upright

SIDE = 1024
TWELVE_MP = 12_000_000
GT_SHARE = 0.015  # the answer's band: half-width 1.5 % of the subject's size (at least edges.BAND_MIN)
SIGMA = 1.4  # Composition-1k's gradient error
BOARD = (40, 90, 230)  # the pictures' contrasting background (blue)
PICTURES = {"davis_cows": "fur", "ochuman_000001": "hair"}


def scaled(image: Image.Image, side: int, resample: Image.Resampling) -> Image.Image:
    factor = side / max(image.size)
    return image.resize((round(image.width * factor), round(image.height * factor)), resample)


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """image scaled to cover size, centre-cropped to it."""
    factor = max(size[0] / image.width, size[1] / image.height)
    big = image.resize((math.ceil(image.width * factor), math.ceil(image.height * factor)), Image.Resampling.BICUBIC)
    x0, y0 = (big.width - size[0]) // 2, (big.height - size[1]) // 2
    return big.crop((x0, y0, x0 + size[0], y0 + size[1]))


# The answer's closed-form regulariser, its own (not the product's filter's): any value gives an exact
# answer for the composite, since the composite is made from it. The README's figures of 2026-12-07
# 08:18 on use 1e-4 (those before, 1e-6).
ANSWER_EPSILON = 1e-4


def answer(photo: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha float HxW, foreground float HxWx3, the uncertain band bool HxW) of the labelled object."""
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    r = math.ceil(max(GT_SHARE * math.sqrt(label.sum()), edges.BAND_MIN))
    tri = edges.trimap(label, r)
    image = photo.astype(np.float64) / 255.0
    alpha = estimate_alpha_cf(image, tri, laplacian_kwargs={"epsilon": ANSWER_EPSILON}, cg_kwargs={"maxiter": 2000})
    return alpha, estimate_foreground_ml(image, alpha), tri == 0.5


def composite(photo: Image.Image, label: np.ndarray, background: Image.Image) -> dict:
    alpha, foreground, band = answer(np.asarray(photo), label)
    back = np.asarray(cover(background, photo.size)).astype(np.float64) / 255.0
    image = alpha[..., None] * foreground + (1 - alpha[..., None]) * back
    return {
        "image": Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)),
        "alpha": alpha,
        "foreground": foreground * 255,
        "band": band,
    }


def full_alpha(clipping: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("L", size)
    canvas.paste(clipping.getchannel("A"), box[:2])
    return np.asarray(canvas).astype(np.float64) / 255.0


def full_colours(clipping: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("RGB", size)
    canvas.paste(clipping.convert("RGB"), box[:2])
    return np.asarray(canvas).astype(np.float64)


def scores(pred: np.ndarray, colours: np.ndarray, truth: dict) -> dict:
    band, alpha = truth["band"], truth["alpha"]
    diff = (pred - alpha)[band]
    grad = ndimage.gaussian_gradient_magnitude(pred, SIGMA) - ndimage.gaussian_gradient_magnitude(alpha, SIGMA)
    weight = alpha[band]
    colour = np.abs(colours - truth["foreground"])[band].mean(axis=1)
    seen, real = pred >= 0.5, alpha >= 0.5
    # The band is all the figures above see: alpha that hedges everywhere (a faint film of the old photo over
    # the whole clipping) would score well in it. film: the mean alpha over the answer's background beyond
    # its band (0: none of it shows).
    beyond = ~band & ~real
    return {
        "sad": float(np.abs(diff).sum() / 1000),
        "mse": float((diff**2).mean()),
        "grad": float((grad[band] ** 2).sum() / 1000),
        "colour": float((colour * weight).sum() / max(weight.sum(), 1e-9)),
        "iou": float((seen & real).sum() / max((seen | real).sum(), 1)),
        "film": float(pred[beyond].mean()) if beyond.any() else 0.0,
    }


def bound(binary: Made, truth: dict, size: tuple[int, int]) -> dict:
    """What any method that softens only the product's band could reach on the binary clipping: the MSE
    with the answer's alpha inside that band (studio.edges' trimap around the clipping's mask, its
    half-width as studio.edges.cut takes it) and the binary alpha outside; and the share of the answer's
    band beyond the product's band (where the mask is off by more than the band)."""
    pred = full_alpha(binary.image, binary.box, size)
    mask = pred >= 0.5
    reach = edges.trimap(mask, edges.radius(int(mask.sum()), max(1.0, max(size) / SIDE))) == 0.5
    band, alpha = truth["band"], truth["alpha"]
    return {
        "mse": float(((np.where(reach, alpha, pred) - alpha)[band] ** 2).mean()),
        "beyond": float((band & ~reach).sum() / max(band.sum(), 1)),
    }


def best(made: list, truth: dict, size: tuple[int, int]) -> tuple[dict, Made | None]:
    """The scores of the clipping with the best IoU (alpha >= 0.5) against the answer's, and that clipping."""
    found = [(scores(full_alpha(c.image, c.box, size), full_colours(c.image, c.box, size), truth), c) for c in made]
    if not found:
        none = np.zeros(size[::-1])
        return scores(none, np.zeros((*size[::-1], 3)), truth), None
    return max(found, key=lambda f: f[0]["iou"])


def decode(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """(original, work copy) as Server1's ingest and Server2's worker decode an upload of the composite."""
    data = io.BytesIO()
    image.save(data, "PNG", compress_level=1)
    return upright.original(data.getvalue()), upright.work_copy(data.getvalue())


def masks(models: object, original: Image.Image, work: Image.Image) -> list:
    """The clippings' components of the product's masks (server2.pipeline.segment, CPU settings)."""
    from server2 import pipeline
    from server2.pipeline import clippings
    from studio.settings import DEFAULTS

    result = pipeline.segment(models, work, original, {"mode": "sam", "soft_edges": False})
    min_area = pipeline.work_area(int(DEFAULTS["min_area"]), work.size)
    return clippings.select(result.masks, min_area, int(DEFAULTS["max_clippings"]))


def cut(original: Image.Image, parts: list, size: tuple[int, int], soft: bool) -> tuple[list, float, float]:
    """The product's clippings stage (server2.pipeline.clippings.cut) on parts: (Clipping-like records,
    CPU seconds, wall seconds)."""
    from server2.pipeline import clippings

    cpu, wall = time.process_time(), time.perf_counter()
    made = [clippings.cut(original, p, size, soft) for p in parts]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return [Made(*m) for m in made if m is not None], cpu, wall


@dataclass
class Made:
    image: Image.Image
    box: tuple[int, int, int, int]


def picture(binary: object, soft: object, name: str, kind: str, out: Path) -> Path:
    """Before | after: the subject's clipping on BOARD, a crop of its edge where the answer is softest."""
    tiles = []
    for clip in (binary, soft):
        board = Image.new("RGBA", clip.image.size, (*BOARD, 255))
        board.alpha_composite(clip.image)
        tiles.append((board.convert("RGB"), clip.box))
    # The same region of the photo in both: the soft clipping's box, its upper part (the head: hair, fur).
    x0, y0, x1, y1 = soft.box
    region = (x0, y0, x1, y0 + min(y1 - y0, max(x1 - x0, 1) * 3 // 4))
    out_tiles = []
    for board, (bx, by, _, _) in tiles:
        canvas = Image.new("RGB", (region[2] - region[0], region[3] - region[1]), BOARD)
        canvas.paste(board, (bx - region[0], by - region[1]))
        canvas.thumbnail((360, 360))
        out_tiles.append(canvas)
    row = Image.new("RGB", (sum(t.width for t in out_tiles) + 8, max(t.height for t in out_tiles)), "white")
    row.paste(out_tiles[0], (0, 0))
    row.paste(out_tiles[1], (out_tiles[0].width + 8, 0))
    path = out / f"edges-{kind}.png"
    row.save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edges", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=os.environ.get("PHOTOS", "../shared/realworld/photos"))
    parser.add_argument("--weights", default=os.environ.get("WEIGHTS", "../shared/realworld/weights"))
    parser.add_argument("--out", default=os.environ.get("OUT_EDGES", "bench/results/edges"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from server2.models import Models
    from studio.modelfiles import ModelChoice

    photos, weights, out = labelled_photos(Path(args.photos)), Path(args.weights), Path(args.out)
    choice = ModelChoice.from_env(gpu=False)
    if not photos or not real_sam(weights, choice.sam):
        print(f"bench-edges: skipped: needs labelled photos in {args.photos} and the real SAM in {weights}")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    models = Models.load(weights, "cpu", choice, need_sam=False)
    rows, composites = [], {}
    for n, (photo_path, labels_path) in enumerate(photos):
        labels, _ = load_labels(labels_path)
        key, label = max(labels.items(), key=lambda item: item[1].sum())
        photo = scaled(upright.flatten(upright.original(photo_path.read_bytes())), SIDE, Image.Resampling.BICUBIC)
        label = np.asarray(scaled(Image.fromarray(label), SIDE, Image.Resampling.NEAREST))
        background_path = photos[(n + 1) % len(photos)][0]
        background = upright.flatten(upright.original(background_path.read_bytes()))
        truth = composite(photo, label, background)
        row = {"photo": photo_path.stem, "object": key, "background": background_path.stem}
        original, work = decode(truth["image"])
        parts, made = masks(models, original, work), {}
        for soft in (False, True):
            clips, cpu, wall = cut(original, parts, work.size, soft)
            figures, made[soft] = best(clips, truth, photo.size)
            row["soft" if soft else "binary"] = {**figures, "cpu_s": cpu, "wall_s": wall, "clippings": len(clips)}
        # The soft step alone: from the human label instead of SAM's mask (a perfect "which pixels").
        box = (0, 0, *photo.size)
        for soft in (False, True):
            labelled = edges.cut(original, box, label.astype(np.uint8) * 255, soft)
            figures, _ = best([Made(*labelled)], truth, photo.size)
            row["label_soft" if soft else "label_binary"] = figures
        if made[False] is not None:
            row["bound"] = bound(made[False], truth, photo.size)
        row["added_s"] = row["soft"]["cpu_s"] - row["binary"]["cpu_s"]
        row["added_wall_s"] = row["soft"]["wall_s"] - row["binary"]["wall_s"]
        rows.append(row)
        if photo_path.stem in PICTURES and made[False] and made[True]:
            row["picture"] = str(picture(made[False], made[True], photo_path.stem, PICTURES[photo_path.stem], out))
            composites[photo_path.stem] = truth["image"]
        b, s = row["binary"], row["soft"]
        print(
            f"  {photo_path.stem:22} {key:14} MSE {b['mse']:.4f} -> {s['mse']:.4f}  SAD {b['sad']:.2f} -> "
            f"{s['sad']:.2f}  IoU {b['iou']:.3f} -> {s['iou']:.3f}  +{row['added_s']:.2f} s CPU",
            flush=True,
        )
    print_summary(summary(rows, []))  # the 1024-px figures first: the 12-MP part takes minutes
    large = []
    for stem, image in composites.items():  # the picture subjects, scaled to 12 MP
        factor = math.sqrt(TWELVE_MP / (image.width * image.height))
        big = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BICUBIC)
        original, work = decode(big)
        parts = masks(models, original, work)
        timings = {soft: cut(original, parts, work.size, soft) for soft in (False, True)}
        large.append(
            {
                "photo": stem,
                "size": big.size,
                "clippings": len(parts),
                "added_s": timings[True][1] - timings[False][1],
                "added_wall_s": timings[True][2] - timings[False][2],
            }
        )
        print(f"  12 MP {stem} {big.width}x{big.height}: +{large[-1]['added_s']:.1f} s CPU", flush=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": models.describe(),
        "photos": rows,
        "large": large,
        "summary": summary(rows, large),
    }
    (out / "edges.json").write_text(json.dumps(report, indent=1))
    print_summary(report["summary"])
    print(f"wrote {out / 'edges.json'} and the pictures {out}/edges-<kind>.png")
    return 0


def summary(rows: list[dict], large: list[dict]) -> dict:
    def mean(name: str, figure: str) -> float:
        return float(np.mean([r[name][figure] for r in rows]))

    names = ("binary", "soft", "label_binary", "label_soft")
    out = {name: {f: mean(name, f) for f in ("sad", "mse", "grad", "colour", "iou", "film")} for name in names}
    bounds = [r["bound"] for r in rows if "bound" in r]
    out["bound"] = {k: float(np.mean([b[k] for b in bounds])) for k in ("mse", "beyond")} if bounds else None
    for key in ("added_s", "added_wall_s"):
        out[f"{key}_1024"] = float(np.mean([r[key] for r in rows]))
        out[f"{key}_12mp"] = float(np.mean([r[key] for r in large])) if large else None
    out["load_average"] = os.getloadavg()[0]
    return out


def print_summary(s: dict) -> None:
    print(f"\nsoft edges on {SIDE}-px composites (means over the subjects; in the uncertain band):")
    print(f"{'alpha':12} {'SAD':>8} {'MSE':>8} {'grad':>8} {'colour':>7} {'IoU':>6} {'film':>6}")
    for name in ("binary", "soft", "label_binary", "label_soft"):
        r = s[name]
        print(
            f"{name:12} {r['sad']:8.2f} {r['mse']:8.4f} {r['grad']:8.2f} {r['colour']:7.1f} {r['iou']:6.3f} "
            f"{r['film']:6.3f}"
        )
    b, o = s["binary"], s["soft"]
    print(
        f"MSE soft/binary {o['mse'] / b['mse']:.2f} (target <= 0.5); best-IoU {o['iou'] - b['iou']:+.3f} "
        f"(target >= -0.01)\n"
        + (
            f"the answer inside the product's band, binary beyond it (the most a band can do): MSE "
            f"{s['bound']['mse']:.4f} ({s['bound']['mse'] / b['mse']:.2f} x binary); "
            f"{s['bound']['beyond']:.0%} of the answer's band lies beyond the product's\n"
            if s["bound"]
            else ""
        )
        + f"seconds added per photo (CPU time; wall time at load average {s['load_average']:.1f}): "
        f"{s['added_s_1024']:.2f} ({s['added_wall_s_1024']:.2f}) at {SIDE} px (target <= 1), "
        + (
            f"{s['added_s_12mp']:.1f} ({s['added_wall_s_12mp']:.1f}) at 12 MP"
            if s["added_s_12mp"] is not None
            else "12 MP not run"
        )
    )


if __name__ == "__main__":
    sys.exit(main())

"""`python -m server2 segment` (server2/cli.py) and `make bench-quality`'s quick run, on the test weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageDraw

from bench import clicks, quality
from server2 import cli
from tests.server2.pipeline.conftest import labelled
from tests.server2.pipeline.test_segment import ANIMAL, PERSON

REPO = Path(__file__).resolve().parents[3]
SHAPES = (  # on a 400 x 300 ground, well apart (the test matte grows each a little)
    lambda d, fill: d.ellipse((30, 30, 150, 150), fill=fill),
    lambda d, fill: d.rectangle((250, 30, 370, 130), fill=fill),
    lambda d, fill: d.polygon([(100, 280), (200, 190), (300, 280)], fill=fill),
)


def shapes(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Three flat shapes in plain colours on an off-white ground, drawn at 400 x 300 and scaled to size."""
    image = Image.new("RGB", (400, 300), (240, 240, 235))
    draw = ImageDraw.Draw(image)
    for shape, fill in zip(SHAPES, ((220, 40, 40), (40, 90, 200), (250, 200, 0)), strict=True):
        shape(draw, fill)
    return image.resize(size, Image.Resampling.NEAREST)


@pytest.fixture(autouse=True)
def default_models(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DETECT_MODEL", "MATTE_MODEL", "SAM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_segment_writes_masks_clippings_and_a_record_and_skips_a_bad_file(
    tmp_path: Path, test_models_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    photos = tmp_path / "in"
    photos.mkdir()
    shapes((400, 300)).save(photos / "a.png")
    pillow_heif.from_pillow(shapes((600, 450))).save(photos / "b.heic")
    (photos / "bad.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image, not an input")
    out = tmp_path / "out"
    status = cli.main(["--mode", "matte", "--models", str(test_models_dir), "--out", str(out), str(photos)])
    assert status == 1  # bad.jpg failed; the others went on
    assert "bad.jpg: skipped: not an image this server accepts" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    for stem, size in (("a", (400, 300)), ("b", (600, 450))):
        folder = out / stem
        record = json.loads((folder / "result.json").read_text())
        assert record["method"] == "matte" and record["size"] == list(size)
        assert record["models"]["matte"] == "birefnet-dis" and record["models"]["detect"] == "yolov8n.pt"
        assert record["boxes"] == [] and {"classify", "detect", "matte", "total"} <= set(record["timings"])
        assert len(record["clippings"]) == 3  # the three flat shapes
        areas = []
        for n in (1, 2, 3):
            mask = Image.open(folder / f"mask-{n}.png")
            pixels = np.asarray(mask)
            assert mask.mode == "L" and mask.size == size and set(np.unique(pixels)) == {0, 255}
            clipping = Image.open(folder / f"clipping-{n}.png")
            x0, y0, x1, y1 = record["clippings"][n - 1]["box"]
            assert clipping.mode == "RGBA" and clipping.size == (x1 - x0, y1 - y0)
            assert ((np.asarray(clipping)[..., 3] >= 128) == (pixels[y0:y1, x0:x1] == 255)).all()
            areas.append(int((pixels == 255).sum()))
        assert areas == sorted(areas, reverse=True) and areas == [c["area"] for c in record["clippings"]]
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    # "birefnet", the matte path's old name, is still accepted.
    again = tmp_path / "again"
    assert (
        cli.main(["--mode", "birefnet", "--models", str(test_models_dir), "--out", str(again), str(photos / "a.png")])
        == 0
    )
    assert json.loads((again / "a" / "result.json").read_text())["method"] == "matte"


def test_the_module_command_runs_and_says_what_is_missing(tmp_path: Path, test_models_dir: Path) -> None:
    shapes((200, 150)).save(tmp_path / "one.jpg")

    def segment(models: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "server2", "segment", "--mode", "matte", "--models", str(models)]
        command += ["--out", str(tmp_path / "out"), str(tmp_path / "one.jpg")]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)

    done = segment(test_models_dir)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "one" / "mask-1.png").is_file()
    assert "1 of 1 images done" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = segment(empty)
    assert missing.returncode == 2
    assert "model weights missing in" in missing.stderr and "yolov8n.pt" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_command_cuts_a_person_and_an_animal_with_real_sam_on_a_cpu(
    tmp_path: Path, real_models_dir: Path, real_models_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m server2 segment` as a new user runs it on a CPU with only MobileSAM's weights: SAM_MODEL
    unset picks it (no vit_b to fall back on), and the photos get real SAM clippings."""
    monkeypatch.delenv("SAM_MODEL")
    (person, person_labels), (cow, cow_labels) = labelled(PERSON[0]), labelled(ANIMAL[0])
    command = [sys.executable, "-m", "server2", "segment", "--device", "cpu", "--models", str(real_models_dir)]
    command += ["--out", str(tmp_path / "out"), str(person), str(cow)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 of 2 images done" in done.stderr and "WARNING" not in done.stderr
    for (name, key, least), labels in ((PERSON, person_labels), (ANIMAL, cow_labels)):
        record = json.loads((tmp_path / "out" / name / "result.json").read_text())
        assert record["method"] == "sam" and record["models"]["sam_used"] == "mobile_sam"
        masks = [
            np.asarray(Image.open(tmp_path / "out" / name / f"mask-{c['n']}.png")) == 255 for c in record["clippings"]
        ]
        best = max(quality.iou(m, labels[key], None) for m in masks)
        print(f"{name} {key}: best IoU {best:.3f} over {len(masks)} clippings")
        assert best >= least


def test_bench_quality_quick_run(tmp_path: Path, test_models_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """A synthetic labelled photo in the realworld format; no real SAM: those modes say they are skipped."""
    photos = tmp_path / "photos"
    photos.mkdir()
    image = shapes((400, 300))
    image.save(photos / "shapes.png")
    labels = {}
    for i, shape in enumerate(SHAPES):
        canvas = Image.new("1", image.size)
        shape(ImageDraw.Draw(canvas), 1)
        labels[f"{i}_shape"] = np.asarray(canvas)
    np.savez_compressed(photos / "shapes.masks.npz", **labels, ignore=np.zeros((300, 400), bool))
    out = tmp_path / "out"
    assert quality.main(["--photos", str(photos), "--weights", str(test_models_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sam: skipped: no real SAM checkpoint (mobile_sam.pt)" in printed
    assert "clicks: skipped: no real SAM checkpoint (mobile_sam.pt)" in printed
    assert "full: skipped: no real SAM checkpoint (mobile_sam.pt)" in printed
    report = json.loads((out / "quality.json").read_text())
    assert report["modes"]["sam"] == {"skipped": f"no real mobile_sam.pt in {test_models_dir}"}
    summary = report["modes"]["matte"]["summary"]
    assert summary["all"]["objects"] == 3 and summary["all"]["share_050"] == 1.0
    assert summary["all"]["mean_best_iou"] > 0.7 and summary["masks_per_photo"] == 3
    assert Image.open(out / "sheet-matte.png").width > 400


def test_iou_leaves_ignored_pixels_out() -> None:
    pred, label, ignore = (np.zeros((4, 4), bool) for _ in range(3))
    pred[0, :] = label[0, :2] = True
    assert quality.iou(pred, label, None) == 0.5
    ignore[0, 2:] = True
    assert quality.iou(pred, label, ignore) == 1.0


def test_the_click_protocol_clicks_an_error_at_its_most_interior_point() -> None:
    label = np.zeros((60, 80), bool)
    label[10:31, 10:31] = True  # 21 x 21: its most interior point is the centre
    assert clicks.interior(label) == (20, 20)
    nothing = np.zeros_like(label)
    assert clicks.next_click(nothing, label, None) == ((20, 20), 1)  # all missed: positive
    extra = label.copy()
    extra[40:60, 0:80] = True  # 1600 extra pixels, none missed: negative, inside the extra band
    (x, y), positive = clicks.next_click(extra, label, None)
    assert positive == 0 and 40 <= y < 60
    ignore = np.zeros_like(label)
    ignore[40:60] = True  # the extra band is void: nothing left to correct
    assert clicks.next_click(extra, label, ignore) is None
    rows = [[0.5, 0.9, 0.9, 0.9, 0.9], [0.2, 0.3, 0.4, 0.5, 0.6]]
    assert clicks.summary(rows) == {
        "objects": 2,
        "mean_iou": {"1": 0.35, "2": 0.6, "3": 0.65, "5": 0.75},
        "noc85": 3.5,  # 2 clicks, and 5 for the one that never gets there
        "never_85": 1,
    }


def test_the_next_click_goes_to_the_deeper_error_not_the_larger_one() -> None:
    """RITM's rule: a sliver of missed pixels along the edge is many pixels but no place to click; the
    compact extra blob, smaller but deeper, gets the (negative) click."""
    label = np.zeros((100, 100), bool)
    label[10:90, 10:90] = True
    pred = label.copy()
    pred[10:90, 10:13] = False  # 240 missed pixels, 3 wide (at most 2 from their edge)
    pred[92:100, 40:50] = True  # 80 extra pixels, 8 x 10, against the image's border
    (x, y), positive = clicks.next_click(pred, label, None)
    assert positive == 0 and 92 <= y < 100 and 40 <= x < 50


class _Still:
    """A decoder that answers one fixed mask whatever the clicks; it keeps the clicks it was given."""

    def __init__(self, answer: np.ndarray) -> None:
        self.answer, self.prompts = answer, []

    def mask(self, points: list, labels: list, size: tuple[int, int]) -> np.ndarray:
        self.prompts.append((list(points), list(labels)))
        return self.answer


def test_the_simulated_user_clicks_no_void_pixel_and_no_pixel_twice() -> None:
    label = np.zeros((60, 80), bool)
    label[10:31, 10:41] = True
    ignore = np.zeros_like(label)
    ignore[15:26, 15:26] = True  # void over the object's most interior part
    decoder = _Still(np.zeros_like(label))  # it never finds anything: every click is on the missed object
    ious = clicks.object_ious(decoder, label, ignore)
    points, labels = decoder.prompts[-1]
    assert ious == [0.0] * clicks.MAX_CLICKS and labels == [1] * clicks.MAX_CLICKS
    assert len({tuple(p) for p in points}) == clicks.MAX_CLICKS  # five different pixels
    assert all(label[y, x] and not ignore[y, x] for x, y in points)

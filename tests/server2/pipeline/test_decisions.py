"""The pipeline's decisions on drawn masks and images: background, size, duplicates, components,
clippings cut at the original's resolution, BiRefNet refinement, YOLO detections as prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from ultralytics.engine.results import Results

from server2.pipeline import CPU_LIMITS, clippings, detect, masks, refine


def rect(shape: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def same(found: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    return len(found) == len(expected) and all((a == b).all() for a, b in zip(found, expected, strict=True))


# --- masks -------------------------------------------------------------------------------------------


def test_background_masks_are_recognised() -> None:
    shape = (100, 200)
    assert masks.is_background(~rect(shape, 50, 30, 150, 70))  # everything but an object: the whole border
    assert masks.is_background(rect(shape, 0, 0, 200, 95))  # 95% of the image
    assert masks.is_background(rect(shape, 0, 0, 200, 60))  # top, both sides down to 60%: 56% of the border
    assert not masks.is_background(rect(shape, 50, 30, 150, 70))  # an object in the middle
    assert not masks.is_background(rect(shape, 0, 40, 60, 100))  # an object cut by two edges


def test_keep_masks_drops_background_small_and_duplicates_largest_first() -> None:
    shape = (100, 200)
    big = rect(shape, 20, 20, 80, 80)  # 3600 px
    near_copy = big.copy()
    near_copy[20, 20:40] = False  # IoU 0.994 with big
    small = rect(shape, 120, 20, 150, 50)  # 900 px
    tiny = rect(shape, 170, 80, 175, 85)  # 25 px
    background = ~big
    kept = masks.keep_masks([small, tiny, big, background, near_copy], min_area=100)
    assert [int(m.sum()) for m in kept] == [3600, 900]
    assert [int(m.sum()) for m in masks.keep_masks([small, tiny], min_area=0)] == [900, 25]


def test_of_two_masks_of_one_object_the_first_listed_is_kept() -> None:
    """Two detections whose masks overlap at IoU >= 0.7 (SAM's own NMS threshold) are one object: the one listed
    first (the more confident detection) is kept, even when it is the smaller; masks of two objects side by side,
    or one inside another, are not duplicates."""
    shape = (100, 200)
    man = rect(shape, 20, 10, 60, 90)  # 3200 px, the confident detection's
    man_and_more = rect(shape, 20, 10, 70, 95)  # 4250 px, IoU 0.75: a looser box around the same man
    beside = rect(shape, 62, 10, 100, 90)  # the bear next to him
    cup = rect(shape, 30, 40, 45, 55)  # inside the man's mask, a tenth of it
    kept = masks.keep_masks([man, man_and_more, beside, cup], min_area=1)
    assert [int(m.sum()) for m in kept] == [3200, 3040, 225]


def test_generator_masks_inside_a_detected_object_are_dropped() -> None:
    shape = (100, 200)
    person = rect(shape, 20, 10, 80, 90)
    shirt = rect(shape, 30, 30, 70, 60)  # all inside the person
    half_out = rect(shape, 60, 40, 110, 60)  # 400 of its 1000 px inside: mostly something else
    lamp = rect(shape, 150, 10, 180, 40)  # nothing detected there
    covered = masks.covered([person], [0.9], shape)
    assert same(masks.new_masks(covered, [shirt, half_out, lamp], []), [half_out & ~person, lamp])
    assert same(masks.new_masks(masks.covered([], [], shape), [shirt, lamp], []), [shirt, lamp])


def test_an_uncertain_mask_keeps_only_what_is_new() -> None:
    """A low-confidence box around a swan and the cow behind it ("cow" 0.21 on bench/edges.py's swan composite)
    gives a mask of both; the cow is a confident detection's, cut already, so the swan's clipping is that mask
    without the cow (on the composite: IoU with the swan 0.49 before, 0.88 after); its own low-confidence
    mask without the neck (0.77) is part of it."""
    shape = (100, 200)
    cow = rect(shape, 60, 10, 160, 50)  # 4000 px, "cow" 0.8
    swan = rect(shape, 20, 50, 100, 90)  # 3200 px, in front of the cow's legs
    both = swan | rect(shape, 60, 10, 110, 50)  # 2000 of its 5200 px on the cow: 38 %, mostly new
    body = rect(shape, 20, 60, 100, 90)  # the swan without its neck
    scores = [0.8, 0.21, 0.17]
    found = masks.object_masks([cow, both, body], scores, [], masks.covered([cow, both, body], scores, shape))
    assert same(found, [cow, swan])


def test_generator_masks_spanning_or_cut_by_the_frame_are_the_scene() -> None:
    shape = (100, 200)
    sky = rect(shape, 0, 0, 200, 30)  # top, left and right
    corner = rect(shape, 150, 60, 200, 100)  # right and bottom
    wall_strip = rect(shape, 0, 20, 12, 80)  # on the left side for its whole height
    floor = rect(shape, 60, 85, 140, 100)  # on the bottom for its whole width
    touching = rect(shape, 80, 50, 120, 100)
    touching[-1, :] = False
    touching[-1, 95:105] = True  # a round object standing on the bottom edge: 10 of its 40 px there
    lamp = rect(shape, 150, 10, 180, 40)
    generated = [sky, corner, wall_strip, floor, touching, lamp]
    assert masks.unnamed_objects(generated) == [touching, lamp]


def test_generator_masks_under_a_quarter_of_the_cpu_grid_cell_are_specks() -> None:
    """At 8 x 8 points (pipeline.CPU_LIMITS) a cell is 1/64 of the photo: unnamed masks under a quarter of one
    are dropped on every path, whatever grid made them (a named one that small stays:
    test_categories.test_small_objects_yolo_finds_are_cut)."""
    assert 1 / (4 * CPU_LIMITS["points_per_side"] ** 2) == masks.UNNAMED_SHARE
    shape = (400, 600)  # 937.5 px is 1/256 of it
    speck = rect(shape, 100, 100, 130, 130)  # 900 px, 0.38 % of the photo
    bottle = rect(shape, 300, 100, 320, 150)  # 1000 px, 0.42 %
    assert masks.unnamed_objects([speck, bottle]) == [bottle]


def test_a_part_of_a_kept_mask_is_dropped() -> None:
    """SAM gives a point's sub-part, part and whole: the whole is kept, its parts are not; parts of a mask
    that was dropped as the background are new (products in a tote that fills the photo's edges)."""
    shape = (100, 200)
    box = rect(shape, 20, 20, 90, 80)  # an unnamed box, 4200 px
    label = rect(shape, 30, 30, 60, 50)  # its label: all inside it
    lid = rect(shape, 20, 10, 90, 30)  # 1400 px, 700 inside the box: half, not more
    beside = rect(shape, 100, 20, 140, 80)
    nothing = np.zeros(shape, dtype=bool)
    assert same(masks.new_masks(nothing, [label, beside, box, lid], []), [box, beside, lid])
    tote = ~rect(shape, 10, 10, 190, 40)  # the background
    product = rect(shape, 60, 50, 80, 70)  # on it: inside its pixels
    assert same(masks.new_masks(nothing, [tote, product], []), [product])


def test_a_low_confidence_detection_on_a_kept_object_is_dropped() -> None:
    """A "chair" 0.12 on a person's leg is part of the person; a "chair" 0.12 beside her is an object, as is a
    confident detection inside another's mask (a cup held in front of a person)."""
    shape = (100, 200)
    person, leg, chair = rect(shape, 20, 10, 80, 90), rect(shape, 30, 60, 45, 90), rect(shape, 120, 40, 160, 90)
    cup = rect(shape, 40, 30, 55, 45)
    covered = masks.covered([person, cup, leg, chair], [0.9, 0.6, 0.12, 0.12], shape)
    found = masks.object_masks([person, cup, leg, chair], [0.9, 0.6, 0.12, 0.12], [], covered)
    assert [int(m.sum()) for m in found] == [4800, 225, 2000]


def test_fragments_of_a_mask_are_dropped_its_pieces_are_not() -> None:
    """A sliver or speck beside a SAM mask's object (under a quarter of its largest piece) is a fragment; an
    occluded object's two halves are both kept."""
    shape = (100, 200)
    body = rect(shape, 20, 20, 80, 80)  # 3600 px
    sliver = rect(shape, 85, 20, 88, 80)  # 180 px
    assert (masks.without_fragments(body | sliver) == body).all()
    halves = rect(shape, 100, 20, 130, 80) | rect(shape, 140, 20, 160, 80)  # 1800 and 1200 px
    assert (masks.without_fragments(halves) == halves).all()


def test_only_confident_object_masks_cover() -> None:
    """A low-confidence box (a "suitcase" 0.18 around a tote of products) or a box whose mask is the
    background covers nothing: the generator still looks there and keeps what it finds; the tote's mask too,
    as something new. A second low-confidence box inside the first is part of it."""
    shape = (100, 200)
    person, tote = rect(shape, 20, 10, 80, 90), rect(shape, 100, 20, 190, 90)
    background = ~rect(shape, 50, 30, 150, 70)
    covered = masks.covered([person, tote, background], [0.9, 0.18, 0.8], shape)
    assert (covered == person).all()
    product, pocket = rect(shape, 120, 40, 140, 60), rect(shape, 150, 30, 185, 50)
    assert same(masks.new_masks(covered, [product], [tote, pocket]), [tote, product])


# --- components and clippings --------------------------------------------------------------------------


def test_components_split_largest_first_and_join_diagonals() -> None:
    m = rect((60, 60), 0, 0, 10, 10) | rect((60, 60), 30, 30, 50, 50)
    m[10, 10] = True  # touches the first square's corner diagonally: same component
    m[55, 55] = True  # a speck
    parts = clippings.components(m, mask_index=3, min_area=2)
    assert [(p.mask_index, p.component, p.area, p.box) for p in parts] == [
        (3, 0, 400, (30, 30, 50, 50)),
        (3, 1, 101, (0, 0, 11, 11)),
    ]
    assert parts[1].pixels.shape == (11, 11) and parts[1].pixels.sum() == 101


def test_select_orders_all_masks_components_and_caps_them() -> None:
    shape = (50, 50)
    a = rect(shape, 0, 0, 10, 10) | rect(shape, 20, 20, 22, 22)
    b = rect(shape, 30, 30, 45, 45)
    picked = clippings.select([a, b], min_area=1, max_clippings=2)
    assert [(p.mask_index, p.component, p.area) for p in picked] == [(1, 0, 225), (0, 0, 100)]


def test_clipping_is_cut_from_the_original_at_its_resolution() -> None:
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 256, (400, 800, 3), dtype=np.uint8))  # 4x the mask's size
    mask = np.zeros((100, 200), dtype=bool)
    yy, xx = np.mgrid[0:100, 0:200]
    mask |= (xx - 60) ** 2 + (yy - 50) ** 2 <= 20**2  # a disc of radius 20 at (60, 50)
    (part,) = clippings.components(mask, 0, min_area=1)
    clip, (x0, y0, x1, y1) = clippings.cut(original, part, (200, 100), soft=False)
    assert clip.mode == "RGBA" and clip.size == (x1 - x0, y1 - y0)
    assert abs(clip.width - 41 * 4) <= 6 and abs(clip.height - 41 * 4) <= 6  # the disc at 4x, tight
    assert abs((x0 + x1) / 2 - (60 * 4 + 2)) <= 3 and abs((y0 + y1) / 2 - (50 * 4 + 2)) <= 3
    pixels = np.asarray(clip)
    alpha = pixels[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # corners of a disc's box: transparent
    # Inside, the original's own pixels, unscaled and unchanged.
    inner = alpha == 255
    assert inner.sum() > 0.7 * np.pi * 80**2
    np.testing.assert_array_equal(pixels[..., :3][inner], np.asarray(original)[y0:y1, x0:x1][inner])
    # Transparent wherever the scaled-up disc is not (allowing the soft edge of one mask pixel).
    ys, xs = np.nonzero(alpha)
    assert np.hypot(xs + x0 - (60 * 4 + 2), ys + y0 - (50 * 4 + 2)).max() <= 20 * 4 + 6


def test_clipping_at_the_image_edge_stays_inside() -> None:
    original = Image.new("RGB", (300, 150), (10, 20, 30))
    mask = rect((100, 200), 0, 0, 30, 100)  # on the left edge, full height
    (part,) = clippings.components(mask, 0, min_area=1)
    clip, box = clippings.cut(original, part, (200, 100), soft=False)
    assert box[:2] == (0, 0) and clip.height == 150 and 45 <= clip.width <= 47
    assert np.asarray(clip)[:, :44, 3].min() == 255


# --- refinement ------------------------------------------------------------------------------------------


def test_nearly_one_colour() -> None:
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(230, 6, (100, 100, 3)), 0, 255).astype(np.uint8)
    everything = np.ones((100, 100), dtype=bool)
    assert refine.nearly_one_colour(paper, everything)
    paper[:, 50:] = (200, 30, 30)  # half red
    assert not refine.nearly_one_colour(paper, everything)
    assert refine.nearly_one_colour(paper, rect((100, 100), 60, 0, 100, 100))  # only the red half


def test_one_colour_largest_mask_is_replaced_by_its_salient_part() -> None:
    image = np.full((100, 100, 3), 235, dtype=np.uint8)
    image[40:60, 40:60] = (20, 120, 40)  # a green object on paper
    paper = rect((100, 100), 5, 5, 95, 95) & ~rect((100, 100), 40, 40, 60, 60)
    paper[45:55, 45:55] = True  # SAM's paper mask spilling into the object: still mostly one colour
    obj = rect((100, 100), 40, 40, 60, 60)
    calls = []

    def salient() -> np.ndarray:
        calls.append(1)
        return obj

    out, refined = refine.refine_largest([obj, paper], image, salient)
    assert refined and calls == [1]
    assert len(out) == 2 and out[0].sum() == 100 and (out[0] & ~obj).sum() == 0 and out[1] is obj
    # A colourful largest mask is left alone and BiRefNet is not run.
    varied = image.copy()
    varied[5:95, 5:50] = (200, 30, 30)
    out, refined = refine.refine_largest([obj, paper], varied, salient)
    assert not refined and calls == [1] and out[1] is paper


# --- YOLO detections as prompts -------------------------------------------------------------------------


def yolo_result(boxes: list[list[float]], masks_: torch.Tensor | None = None) -> Results:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    return Results(image, "test.png", {0: "person", 1: "cup"}, boxes=torch.tensor(boxes), masks=masks_)


def test_detections_give_box_centres_and_people_are_objects_too() -> None:
    found = detect.detections(yolo_result([[10, 10, 50, 90, 0.9, 0], [100, 20, 160, 60, 0.8, 1]]), "det")
    assert [(d.label, d.box, d.point, d.source) for d in found] == [
        ("person", (10.0, 10.0, 50.0, 90.0), (30.0, 50.0), "det"),
        ("cup", (100.0, 20.0, 160.0, 60.0), (130.0, 40.0), "det"),
    ]
    record = detect.points_record(found)
    assert json.loads(json.dumps(record)) == record
    assert record["points"] == [[30.0, 50.0], [130.0, 40.0]] and record["labels"] == [1, 1]
    debug = detect.draw_boxes(Image.new("RGB", (200, 100)), found)
    assert debug.size == (200, 100) and np.asarray(debug)[10, 30].tolist() == list(detect.COLOUR)


def test_segmentation_detections_prompt_inside_the_object() -> None:
    """An L-shaped object: its box centre lies outside it, the interior point does not."""
    mask = torch.zeros(1, 100, 200)
    mask[0, 10:90, 20:40] = 1  # vertical bar
    mask[0, 70:90, 20:120] = 1  # foot
    (found,) = detect.detections(yolo_result([[20, 10, 120, 90, 0.9, 1]], mask), "seg")
    x, y = found.point
    assert mask[0, round(y), round(x)] == 1
    assert mask[0, 50, 70] == 0  # the box centre


def test_merge_keeps_one_detection_per_object() -> None:
    seg = detect.Detection("cup", 0.9, (10, 10, 50, 50), (20, 20), "seg")
    det_same = detect.Detection("cup", 0.8, (12, 10, 52, 50), (32, 30), "det")
    det_other_label = detect.Detection("bowl", 0.8, (12, 10, 52, 50), (32, 30), "det")
    det_elsewhere = detect.Detection("cup", 0.7, (100, 10, 150, 50), (125, 30), "det")
    assert detect.merge([seg, det_same, det_other_label, det_elsewhere]) == [seg, det_other_label, det_elsewhere]


def test_merge_keeps_same_class_objects_side_by_side() -> None:
    """Two bears overlapping in one model's output (box IoU 0.6, below YOLO's own NMS at 0.7) are two bears."""
    left = detect.Detection("bear", 0.9, (0, 0, 80, 100), (40, 50), "det")
    right = detect.Detection("bear", 0.8, (20, 0, 100, 100), (60, 50), "det")
    assert detect.box_iou(left.box, right.box) == pytest.approx(0.6)
    assert detect.merge([left, right]) == [left, right]


@pytest.mark.parametrize(
    ("a", "b", "expected"), [((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3), ((0, 0, 1, 1), (2, 2, 3, 3), 0)]
)
def test_box_iou(a: tuple, b: tuple, expected: float) -> None:
    assert detect.box_iou(a, b) == pytest.approx(expected)

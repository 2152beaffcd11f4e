"""Soft edges (studio/edges.py): the band's alpha against a known answer, decontaminated colours, the
object at the photo's border, a one-pixel-wide object, a 12-MP original, no holes or islands."""

from __future__ import annotations

import time

import cv2
import numpy as np
from PIL import Image

from server2.pipeline import clippings
from studio import edges

RED, GREEN = np.array([220, 30, 20]), np.array([20, 200, 40])


def disc(size: tuple[int, int], centre: tuple[float, float], radius: float, ramp: float) -> np.ndarray:
    """A disc's alpha (float 0..1, height x width) whose edge falls off linearly over `ramp` pixels."""
    yy, xx = np.mgrid[: size[1], : size[0]]
    return np.clip((radius - np.hypot(xx - centre[0], yy - centre[1])) / ramp + 0.5, 0, 1)


def compose(alpha: np.ndarray, front: np.ndarray, back: np.ndarray) -> np.ndarray:
    return np.rint(alpha[..., None] * front + (1 - alpha[..., None]) * back).astype(np.uint8)


def check_no_holes_or_islands(alpha: np.ndarray, mask: np.ndarray) -> None:
    assert alpha[mask].min() >= 1  # every pixel of the mask stays (no hole)
    count, labels = cv2.connectedComponents((alpha > 0).astype(np.uint8), connectivity=8)
    touched = set(np.unique(labels[mask]))
    assert set(range(1, count)) <= touched  # every visible part touches the mask (no island)


def test_band_solve_recovers_a_blurred_disc() -> None:
    rng = np.random.default_rng(1)
    truth = disc((200, 160), (100, 80), 50, ramp=6)
    back = GREEN + rng.normal(0, 6, (160, 200, 3))
    rgb = compose(truth, RED, np.clip(back, 0, 255))
    mask = truth >= 0.5
    colours, alpha = edges.soften(rgb, mask, r=6)
    band = edges.trimap(mask, 6) == 0.5
    soft_mse = ((alpha / 255 - truth)[band] ** 2).mean()
    binary_mse = ((mask - truth)[band] ** 2).mean()
    assert soft_mse < 0.1 * binary_mse, (soft_mse, binary_mse)
    assert (alpha[~band & mask] == 255).all() and (alpha[~band & ~mask] == 0).all()  # beyond the band: binary
    np.testing.assert_array_equal(colours[alpha == 255], rgb[alpha == 255])  # inside: the original's colours
    check_no_holes_or_islands(alpha, mask)


def test_a_red_object_on_green_keeps_no_green_at_its_edge() -> None:
    truth = disc((120, 120), (60, 60), 35, ramp=8)
    rgb = compose(truth, RED, GREEN)
    colours, alpha = edges.soften(rgb, truth >= 0.5, r=8)
    edge = (alpha > 25) & (alpha < 255)
    assert edge.sum() > 200
    # The original's edge pixels are a red-green mix; the clipping's are red again.
    assert np.abs(rgb[edge].astype(int) - RED).max() > 100
    assert np.abs(colours[edge].astype(int) - RED).max() <= 12, np.abs(colours[edge].astype(int) - RED).max()


def test_off_is_the_binary_cut() -> None:
    original = Image.fromarray(compose(disc((80, 60), (40, 30), 20, 4), RED, GREEN))
    alpha = (disc((80, 60), (40, 30), 20, 4) >= 0.5).astype(np.uint8) * 255
    image, box = edges.cut(original, (0, 0, 80, 60), alpha, soft=False)
    x0, y0, x1, y1 = box
    np.testing.assert_array_equal(np.asarray(image)[..., 3], alpha[y0:y1, x0:x1])
    np.testing.assert_array_equal(np.asarray(image)[..., :3], np.asarray(original)[y0:y1, x0:x1])


def test_an_object_touching_the_border_stays_opaque_along_it() -> None:
    # A disc centred on the left edge: cut through the pipeline's clippings from a mask at half size.
    truth = disc((300, 200), (0, 100), 60, ramp=4)
    original = Image.fromarray(compose(truth, RED, GREEN))
    mask = np.asarray(Image.fromarray(truth >= 0.5).resize((150, 100), Image.Resampling.NEAREST))
    (part,) = clippings.components(mask, 0, min_area=1)
    clip, box = clippings.cut(original, part, (150, 100), soft=True)
    alpha = np.asarray(clip)[..., 3]
    assert box[0] == 0  # it still starts at the photo's edge
    rows = slice(100 - 40 - box[1], 100 + 40 - box[1])
    assert (alpha[rows, 0] == 255).all()  # no band where the photo ends: the object goes on
    soft = (alpha > 0) & (alpha < 255)
    assert soft.any()  # but its round side is soft


def test_a_one_pixel_wide_object_is_kept() -> None:
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[...] = GREEN
    mask = np.zeros((60, 80), bool)
    mask[10:50, 40] = True  # a wire, one pixel wide
    rgb[mask] = RED
    colours, alpha = edges.soften(rgb, mask, r=4)
    assert (alpha[mask] == 255).all()  # thinner than the band: kept as the object
    check_no_holes_or_islands(alpha, mask)
    image, box = edges.cut(Image.fromarray(rgb), (40, 10, 41, 50), mask[10:50, 40:41].astype(np.uint8) * 255, True)
    assert box[0] <= 40 < box[2] and box[1] <= 10 and box[3] >= 50
    assert (np.asarray(image)[10 - box[1] : 50 - box[1], 40 - box[0], 3] == 255).all()


def test_a_band_with_no_background_to_solve_from_stays_binary() -> None:
    # The object fills the photo but for one pixel: its band holds no background pixel to start from.
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[...] = RED
    mask = np.ones((40, 50), bool)
    mask[20, 25] = False
    rgb[20, 25] = GREEN
    colours, alpha = edges.soften(rgb, mask, r=4)
    np.testing.assert_array_equal(alpha, mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(colours, rgb)


def test_no_islands_from_a_busy_background() -> None:
    rng = np.random.default_rng(7)
    truth = disc((160, 120), (80, 60), 30, ramp=3)
    rgb = compose(truth, RED, rng.integers(0, 256, (120, 160, 3)))
    mask = truth >= 0.5
    _, alpha = edges.soften(rgb, mask, r=10)
    check_no_holes_or_islands(alpha, mask)


def test_a_twelve_megapixel_original() -> None:
    # 4000 x 3000: the mask made on the 1024-px work copy, the clipping cut and solved at full resolution.
    size, work = (4000, 3000), (1024, 768)
    truth = disc(size, (1500, 1400), 500, ramp=12)
    original = Image.fromarray(compose(truth, RED, GREEN))
    mask = np.asarray(Image.fromarray(truth >= 0.5).resize(work, Image.Resampling.NEAREST))
    (part,) = clippings.components(mask, 0, min_area=1)
    started = time.process_time()
    clip, (x0, y0, x1, y1) = clippings.cut(original, part, work, soft=True)
    assert time.process_time() - started < 10  # about 0.4 s of CPU (a closed-form solve here took minutes)
    r = edges.radius(int((truth >= 0.5).sum()), 4000 / 1024)  # the band may reach r beyond the mask
    assert max(abs(x0 - 1000), abs(x1 - 2000), abs(y0 - 900), abs(y1 - 1900)) <= r
    alpha = np.asarray(clip)[..., 3]
    assert alpha[500, 500] == 255 and alpha[0, 0] == 0
    band = (alpha > 0) & (alpha < 255)
    # The soft band follows the disc's true ramp at full resolution, not the work copy's 4-px steps.
    expected = truth[y0:y1, x0:x1]
    assert np.abs(alpha[band] / 255 - expected[band]).mean() < 0.1
    assert np.abs(np.asarray(clip)[..., :3][band].astype(int) - RED).max() <= 12


def test_the_guided_filter_keeps_an_alpha_that_is_linear_in_colour() -> None:
    # Red over green with a smooth alpha: alpha is a linear function of the colour (the colour-line model),
    # so filtering the true alpha gives it back, up to the regulariser.
    truth = disc((96, 80), (48, 40), 24, ramp=10).astype(np.float32)
    image = compose(truth, RED, GREEN).astype(np.float32) / 255
    a, b = edges.Guide(image, 6, edges.EPSILON).coefficients(truth)
    filtered = a[..., 0] * image[..., 0] + a[..., 1] * image[..., 1] + a[..., 2] * image[..., 2] + b
    assert np.abs(filtered - truth).max() < 0.02


def test_blur_fusion_recovers_the_foreground_from_the_true_alpha() -> None:
    # The colour estimate alone, given the true alpha and a band as wide as the ramp: no green left in the
    # red, at the work copy's resolution and with the coarse passes on a four-times coarser grid (a 12-MP
    # original's path). One coarse pass, as the paper has it, left about 24 levels of green here.
    for side, ramp, step in ((120, 8, 1.0), (480, 32, 4.0)):
        truth = disc((side, side), (side / 2, side / 2), side * 0.3, ramp=ramp)
        alpha = np.rint(truth * 255).astype(np.uint8)
        rgb = compose(alpha / 255, RED, GREEN)
        colours = edges.foreground(rgb, alpha, 2 * ramp + 1, step)
        edge = (alpha > 25) & (alpha < 255)
        assert np.abs(colours[edge].astype(int) - RED).max() <= 6, (side, np.abs(colours[edge].astype(int) - RED).max())
        np.testing.assert_array_equal(colours[alpha == 255], rgb[alpha == 255])
        np.testing.assert_array_equal(colours[alpha == 0], rgb[alpha == 0])

"""bench/edges.py's figures on an answer known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from bench import edges


def test_a_film_beyond_the_answers_band_is_measured() -> None:
    """Exact in the band, a faint film of the old photo elsewhere: the band's figures are perfect, film is not."""
    yy, xx = np.mgrid[0:60, 0:80]
    alpha = np.clip(18 - np.hypot(yy - 30, xx - 40), 0, 4) / 4  # a disc with a 4-px ramp
    band = (alpha > 0) & (alpha < 1)
    truth = {"alpha": alpha, "band": band, "foreground": np.full((60, 80, 3), 200.0)}
    colours = truth["foreground"].copy()
    exact = edges.scores(alpha, colours, truth)
    assert exact["mse"] == exact["sad"] == exact["film"] == 0 and exact["iou"] == 1
    hedged = edges.scores(np.where(band | (alpha == 1), alpha, 0.1), colours, truth)
    assert hedged["mse"] == hedged["sad"] == 0 and hedged["iou"] == 1
    assert hedged["film"] == pytest.approx(0.1)

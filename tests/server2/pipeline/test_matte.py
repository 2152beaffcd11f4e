"""The matte path's split per detected object (server2/pipeline/matte.py), on hand-made masks."""

from __future__ import annotations

import numpy as np
from PIL import Image

from server2.pipeline import matte
from server2.pipeline.detect import Detection


def det(box: tuple[float, float, float, float], label: str = "person") -> Detection:
    return Detection(label, 0.9, box, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "det")


def test_touching_objects_get_one_piece_each_and_the_rest_stays() -> None:
    whole = np.zeros((100, 200), dtype=bool)
    whole[20:80, 20:100] = True  # two people side by side: one blob in the matte
    whole[20:80, 100:160] = True
    whole[85:95, 170:190] = True  # something no box covers
    calls = []
    pieces = matte.split(
        Image.new("RGB", (200, 100)), whole, [det((20, 20, 100, 80)), det((100, 20, 160, 80))], calls.append
    )
    assert calls == []  # the whole-image matte covers both boxes: no more matting runs
    assert [int(p.sum()) for p in pieces] == [60 * 80, 60 * 60, 10 * 20]
    assert not (pieces[0] & pieces[1]).any() and (pieces[0] | pieces[1] | pieces[2]).sum() == whole.sum()


def test_an_object_the_whole_matte_missed_gets_its_own_matte_on_its_crop() -> None:
    whole = np.zeros((100, 200), dtype=bool)
    whole[10:90, 10:60] = True  # the salient subject
    seen = []

    def crop_matte(crop: Image.Image) -> np.ndarray:
        seen.append(crop.size)
        out = np.zeros((crop.height, crop.width), dtype=bool)
        out[crop.height // 4 : -crop.height // 4, crop.width // 4 : -crop.width // 4] = True
        return out

    missed = det((100, 20, 180, 80), "chair")  # 80 x 60 = 24 % of the image, empty in the whole matte
    tiny = det((190, 0, 195, 5), "cup")  # under CROP_MIN_SHARE: not worth a matting run
    pieces = matte.split(Image.new("RGB", (200, 100)), whole, [det((10, 10, 60, 90)), missed, tiny], crop_matte)
    assert seen == [(96, 72)]  # the box padded by 10 % of its size on each side
    chair = pieces[0]
    ys, xs = np.nonzero(chair)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (92 + 24, 92 + 71, 14 + 18, 14 + 53)
    assert int(pieces[1].sum()) == 50 * 80 and not pieces[2].any()


def test_matting_runs_per_image_are_capped() -> None:
    whole = np.zeros((100, 400), dtype=bool)
    boxes = [det((x, 10, x + 40, 90)) for x in range(0, 400, 50)]
    runs = []
    matte.split(
        Image.new("RGB", (400, 100)),
        whole,
        boxes,
        lambda crop: runs.append(1) or np.ones((crop.height, crop.width), bool),
    )
    assert len(runs) == matte.MAX_CROPS

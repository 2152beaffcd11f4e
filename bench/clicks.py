"""The editor's interactive protocol on labelled photos (`make bench-quality`, mode "clicks").

Per labelled object a simulated user clicks by the standard protocol of interactive segmentation (RITM's
evaluation Clicker, which SimpleClick's and SAM's point evaluations follow): each click at the point
farthest from the boundary (the distance transform's maximum; the image's border is a boundary) of the
error, the missed pixels or the extra ones, whichever reaches deeper (the larger maximum distance, not
the larger area: a sliver along the edge is many pixels but no place to click), positive on missed
pixels, negative on extra ones; void (`ignore`) pixels are neither, and no pixel is clicked twice. The
first click is the same rule on an empty mask: the object's most interior non-void point. Up to
MAX_CLICKS clicks; IoU with the void pixels left out. After each click the mask is what the editor
shows: the exported ONNX prompt decoder (server2.embeddings.export_decoder) run with onnxruntime over
the stored float16 embedding, the clicks replayed in order with each one's low-res mask fed back to the
next (mask_input, as SAM's demo does) and the mask scaled up by server1.cutting, as /cut does.
Prints the mean IoU after 1, 2, 3 and 5 clicks and NoC@85 (clicks to reach IoU 0.85; MAX_CLICKS when never).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from scipy import ndimage

from server1 import cutting

MAX_CLICKS = 5
REPORTED = (1, 2, 3, 5)
NOC_IOU = 0.85


def depth(region: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the region's edge (0 outside it); the image's border counts as an edge."""
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def interior(region: np.ndarray) -> tuple[int, int]:
    """(x, y) of the region's pixel farthest from its edge."""
    y, x = np.unravel_index(int(depth(region).argmax()), region.shape)
    return int(x), int(y)


def next_click(
    pred: np.ndarray, label: np.ndarray, ignore: np.ndarray | None, clicked: list | tuple = ()
) -> tuple[tuple[int, int], int] | None:
    """((x, y), 1 | 0), as RITM's Clicker: the point farthest from the edge of the missed pixels or of the
    extra ones, whichever reaches farther (a tie goes to the extra ones), positive on missed pixels; void
    pixels and the points clicked before ([x, y]...) left out. None when nothing is left to correct."""
    valid = ~ignore if ignore is not None else np.ones_like(label)
    missed, extra = depth(label & ~pred & valid), depth(pred & ~label & valid)
    for x, y in clicked:
        missed[y, x] = extra[y, x] = 0.0
    if max(missed.max(), extra.max()) == 0.0:
        return None
    positive = int(missed.max() > extra.max())
    y, x = np.unravel_index(int((missed if positive else extra).argmax()), label.shape)
    return (int(x), int(y)), positive


def iou(pred: np.ndarray, label: np.ndarray, ignore: np.ndarray | None) -> float:
    valid = ~ignore if ignore is not None else np.ones_like(label)
    union = int(((pred | label) & valid).sum())
    return float(((pred & label) & valid).sum()) / union if union else 0.0


class Decoder:
    """The exported ONNX prompt decoder over one stored embedding, cutting as Server1's /cut does."""

    def __init__(self, session: ort.InferenceSession, features: np.ndarray, embedded: tuple[int, int]) -> None:
        self.session, self.features, self.embedded = session, features, embedded
        self.grid = features.shape[-1]
        self.input_size = 16 * self.grid  # SAM's 1024-px input frame for a 64 x 64 embedding

    def mask(self, points: list, labels: list, size: tuple[int, int]) -> np.ndarray:
        """The bool mask at size that /cut saves for these clicks (server1.cutting.replay: each click with
        the previous one's low-res mask fed back)."""
        prompt = (points, labels, None)
        logits = cutting.replay(self.session, self.features, prompt, size, self.embedded, self.input_size)
        return cutting.upscale(logits, self.embedded, self.input_size, size)


def object_ious(decoder: Decoder, label: np.ndarray, ignore: np.ndarray | None) -> list[float]:
    """IoU after each of MAX_CLICKS clicks (a perfect mask stays perfect)."""
    height, width = label.shape
    points: list = []
    labels: list = []
    ious: list[float] = []
    pred = np.zeros_like(label)
    while len(ious) < MAX_CLICKS and (click := next_click(pred, label, ignore, points)) is not None:
        points.append(list(click[0]))
        labels.append(click[1])
        pred = decoder.mask(points, labels, (width, height))
        ious.append(iou(pred, label, ignore))
    return ious + [ious[-1] if ious else 0.0] * (MAX_CLICKS - len(ious))


def summary(per_object: list[list[float]]) -> dict:
    ious = np.array(per_object)
    reached = [next((k + 1 for k, v in enumerate(row) if v >= NOC_IOU), MAX_CLICKS) for row in ious]
    return {
        "objects": len(ious),
        "mean_iou": {str(k): round(float(ious[:, k - 1].mean()), 3) for k in REPORTED},
        "noc85": round(float(np.mean(reached)), 2),
        "never_85": int(sum(row.max() < NOC_IOU for row in ious)),
    }


def run(models: object, photos: list[tuple[Path, Path]], load_labels: callable) -> dict:
    """The protocol on every labelled object."""
    from server2 import embeddings
    from server2.cli import decode
    from server2.pipeline import sam

    sam_model, model = models.sam_for(models.choice.sam)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "decoder.onnx"
        embeddings.export_decoder(model, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results, rows, started = [], [], time.perf_counter()
    for photo_path, labels_path in photos:
        _, work_copy = decode(photo_path)
        work = np.asarray(work_copy.convert("RGB"))
        # What Server2 stores for the editor: the whole image's embedding, float16 (embeddings.npy_bytes).
        found = sam.embedding(sam.StudioPredictor(model), work)
        features = found.features.to("cpu").half().float().numpy()
        decoder = Decoder(session, features, (found.width, found.height))
        labels, ignore = load_labels(labels_path)
        for key, label in labels.items():
            ious = object_ious(decoder, label, ignore)
            results.append(ious)
            rows.append({"photo": photo_path.name, "object": key, "ious": ious})
            print(f"  clicks: {photo_path.name} {key}: {' '.join(f'{v:.2f}' for v in ious)}")
    return {
        "model": sam_model,
        "seconds": round(time.perf_counter() - started, 1),
        **summary(results),
        "per_object": rows,
    }

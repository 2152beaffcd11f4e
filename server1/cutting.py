"""Cutting with SAM's prompt decoder on the CPU: prompts checked, decoded over a stored embedding,
the mask at the original's full resolution, and the clipping cut from the original.

The decoder is the ONNX file Server2 exported (server2.embeddings): the browser runs the very same file
with onnxruntime-web, so what the user previews is what /cut saves. Prompts arrive in the original's
pixel coordinates; the embedding was computed from the resized image, so they are mapped as SamPredictor
maps them (original -> resized -> the model's input frame, each axis by its own rounded scale).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

from studio import edges, sam_input

MAX_POINTS = 32


class BadPrompt(ValueError):
    """A prompt the decoder cannot take; the message says why."""


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadPrompt(f"{what} must be a finite number")
    return float(value)


def _xy(value: object, what: str, width: int, height: int) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise BadPrompt(f"{what} must be [x, y]")
    x, y = _number(value[0], what), _number(value[1], what)
    if not (0 <= x <= width and 0 <= y <= height):
        raise BadPrompt(f"{what} ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return x, y


def parse_prompt(body: object, width: int, height: int) -> tuple[list[tuple[float, float]], list[int], list | None]:
    """{"points": [[x, y]...], "labels": [1|0...], "box": [x0, y0, x1, y1] | null} in the original's
    pixels -> (points, labels, box); BadPrompt with the reason."""
    if not isinstance(body, dict):
        raise BadPrompt('send a JSON object {"points": [[x, y], ...], "labels": [1 or 0, ...], "box": null}')
    points, labels, box = body.get("points") or [], body.get("labels") or [], body.get("box")
    if not isinstance(points, list) or not isinstance(labels, list):
        raise BadPrompt("points and labels must be lists")
    if len(points) != len(labels):
        raise BadPrompt(f"{len(points)} points but {len(labels)} labels")
    if len(points) > MAX_POINTS:
        raise BadPrompt(f"too many points ({len(points)}; at most {MAX_POINTS})")
    parsed = [_xy(p, f"point {n + 1}", width, height) for n, p in enumerate(points)]
    if any(label not in (0, 1) or isinstance(label, bool) for label in labels):
        raise BadPrompt("each label must be 1 (object) or 0 (background)")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise BadPrompt("box must be [x0, y0, x1, y1] or null")
        x0, y0 = _xy(box[:2], "the box's corner", width, height)
        x1, y1 = _xy(box[2:], "the box's corner", width, height)
        if x1 <= x0 or y1 <= y0:
            raise BadPrompt("the box must have x0 < x1 and y0 < y1")
        box = [x0, y0, x1, y1]
    if not any(label == 1 for label in labels) and box is None:
        raise BadPrompt("give at least one point on the object (label 1) or a box")
    return parsed, list(labels), box


def decoder_inputs(
    points: list[tuple[float, float]],
    labels: list[int],
    box: list | None,
    original: tuple[int, int],
    embedded: tuple[int, int],
    input_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(point_coords 1xNx2, point_labels 1xN) for SamOnnxModel: a box as corners labelled 2 and 3,
    else a padding point labelled -1 (as SamPredictor pads)."""
    frame = sam_input.frame(embedded, input_size)
    sx = embedded[0] / original[0] * frame[0] / embedded[0]
    sy = embedded[1] / original[1] * frame[1] / embedded[1]
    coords = [(x, y) for x, y in points]
    codes = [float(label) for label in labels]
    if box is not None:
        coords += [(box[0], box[1]), (box[2], box[3])]
        codes += [2.0, 3.0]
    scaled = [(x * sx, y * sy) for x, y in coords]
    if box is None:
        scaled.append((0.0, 0.0))
        codes.append(-1.0)
    return np.array([scaled], dtype=np.float32), np.array([codes], dtype=np.float32)


class Decoders:
    """One onnxruntime session per decoder file (by its digest), on one CPU thread each."""

    def __init__(self) -> None:
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def session(self, digest: str, load: Callable[[], bytes]) -> ort.InferenceSession:
        with self._lock:
            if digest not in self._sessions:
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                self._sessions[digest] = ort.InferenceSession(
                    load(), sess_options=options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[digest]


def low_res_logits(
    session: ort.InferenceSession,
    embedding: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    previous: np.ndarray | None = None,
) -> np.ndarray:
    """The chosen mask's logits, 4g x 4g (256 x 256 for the real checkpoints). previous: the last mask's
    low-res logits, fed back as SAM's mask prompt. The decoder chooses as SAM's demo does: one click (with
    the padding point, two points) -> the best of SAM's three masks by predicted IoU; more -> its single mask."""
    grid = embedding.shape[-1]
    mask = np.zeros((4 * grid, 4 * grid), dtype=np.float32) if previous is None else previous
    _, _, low_res = session.run(
        None,
        {
            "image_embeddings": embedding.astype(np.float32),
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": mask[None, None].astype(np.float32),
            "has_mask_input": np.array([float(previous is not None)], dtype=np.float32),
        },
    )
    return low_res[0, 0]


def replay(
    session: ort.InferenceSession,
    embedding: np.ndarray,
    prompt: tuple[list[tuple[float, float]], list[int], list | None],
    original: tuple[int, int],
    embedded: tuple[int, int],
    input_size: int,
) -> np.ndarray | None:
    """The low-res logits the editor shows for a prompt (points in click order, labels, box): each click
    decoded in turn with the previous step's logits fed back, as the page does (editor.js `chain`); the box
    alone is the first step when there is one. A step with neither a box nor a positive point yet is not
    decoded. None when no step is."""
    points, labels, box = prompt
    previous = None
    for k in range(0 if box is not None else 1, len(points) + 1):
        if box is None and 1 not in labels[:k]:
            continue
        coords, point_labels = decoder_inputs(points[:k], labels[:k], box, original, embedded, input_size)
        previous = low_res_logits(session, embedding, coords, point_labels, previous)
    return previous


def upscale(logits: np.ndarray, embedded: tuple[int, int], input_size: int, out_size: tuple[int, int]) -> np.ndarray:
    """SamPredictor.postprocess_masks at the threshold: logits to the input frame, the image's part of
    it, then to out_size (width, height); bilinear with pixel centres as torch's align_corners=False."""
    frame = cv2.resize(logits, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
    width, height = sam_input.frame(embedded, input_size)
    return cv2.resize(frame[:height, :width], out_size, interpolation=cv2.INTER_LINEAR) > 0.0


def clip(original: Image.Image, alpha: np.ndarray, soft: bool) -> tuple[Image.Image, list[int]] | None:
    """The original under alpha (uint8 or bool, the original's size) as every clipping is made
    (studio.edges.cut; soft: the user's "Soft edges"), cropped tight: (RGBA image, [x0, y0, x1, y1] in
    the original); None when nothing is left."""
    alpha = alpha.astype(np.uint8) * 255 if alpha.dtype == bool else alpha
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if not len(rows):
        return None
    x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    made = edges.cut(original, (x0, y0, x1, y1), alpha[y0:y1, x0:x1], soft)
    return None if made is None else (made[0], list(made[1]))

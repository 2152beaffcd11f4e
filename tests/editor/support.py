"""The editor suites' helpers: an image processed by the real Server2 worker on the test weights, seeded
random prompts, and SAM's own answer for a prompt (SamPredictor over the stored embedding)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor

from harness.realworld import REAL_MODELS_ENV
from server2.models import Models, load_sam
from server2.worker import Worker
from studio import layout
from studio.jobs import Jobs
from studio.modelfiles import ModelChoice
from studio.storage import Storage

# The real weights' models (harness/realworld.py), for Models.load in a fixture wider than a test's environment.
REAL = ModelChoice(detect=REAL_MODELS_ENV["DETECT_MODEL"], matte=REAL_MODELS_ENV["MATTE_MODEL"], sam="mobile_sam")


def process(storage: Storage, models: Models, user: str, image_id: str) -> dict:
    """Run the real worker on the image's job; its status record."""
    outcome = Worker(storage, Jobs(storage, owner="test-server2"), models).run(
        user, image_id, layout.resized(user, image_id)
    )
    assert outcome.state == "done", outcome
    return outcome.status


def random_prompts(seed: int, count: int, width: int, height: int) -> list[dict]:
    """Points (positive and negative) and boxes in the original's pixels, each with something positive."""
    rng = random.Random(seed)
    prompts = []
    for n in range(count):
        points = [[rng.uniform(0, width - 1), rng.uniform(0, height - 1)] for _ in range(rng.randint(0, 4))]
        labels = [rng.choice([1, 1, 0]) for _ in points]
        box = None
        if n % 3 == 0 or 1 not in labels:
            x0, y0 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
            box = [x0, y0, rng.uniform(x0 + 20, width), rng.uniform(y0 + 20, height)]
        prompts.append({"points": points, "labels": labels, "box": box})
    return prompts


class Reference:
    """SamPredictor with the stored (float16) embedding set as its features: SAM's mask for a prompt."""

    def __init__(self, weights: str, npy: bytes, embedded: tuple[int, int], sam: torch.nn.Module | None = None) -> None:
        self.predictor = SamPredictor(sam or load_sam(weights, "cpu"))
        self.features = torch.from_numpy(np.load(io.BytesIO(npy)).astype(np.float32))
        self.embedded = embedded  # (width, height) of the image the embedding was computed from

    def mask(self, prompt: dict, size: tuple[int, int], logits: bool = False) -> np.ndarray | tuple:
        """The mask (bool, size = (width, height)) for a prompt given in size's pixels, as SAM's demo makes
        it: the box alone first when there is one, then each click in order, each step with the previous
        step's low-res logits as its mask input (a step with neither a box nor a positive point skipped);
        the best of three for a lone point, else the single mask. logits: also its low-res logits."""
        p = self.predictor
        p.reset_image()
        p.features, p.is_image_set = self.features, True
        p.original_size = (size[1], size[0])
        p.input_size = p.transform.get_preprocess_shape(self.embedded[1], self.embedded[0], p.transform.target_length)
        all_points = np.array(prompt["points"], dtype=np.float32).reshape(-1, 2)
        box = np.array(prompt["box"], dtype=np.float32) if prompt["box"] is not None else None
        found = previous = None
        for k in range(0 if box is not None else 1, len(all_points) + 1):
            points, labels = all_points[:k], np.array(prompt["labels"][:k])
            if box is None and 1 not in labels:
                continue
            many = len(points) + (2 if box is not None else 1) < 2.5
            masks, scores, low_res = p.predict(
                point_coords=points if len(points) else None,
                point_labels=labels if len(points) else None,
                box=box,
                mask_input=previous,
                multimask_output=many,
            )
            best = int(scores.argmax()) if many else 0
            found, previous = masks[best], low_res[best][None]
        return (found, previous[0]) if logits else found


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def install_editor_models(storage: Storage, folder: Path) -> str:
    """Copy the exported encoder and decoder (the real_editor_models fixture) into the storage's models/;
    their digest."""
    names = [path.name for path in folder.iterdir() if layout.is_editor_file(path.name)]
    for name in names:
        storage.write(layout.model(name), (folder / name).read_bytes())
    return next(digest for digest in map(layout.encoder_digest, names) if digest)

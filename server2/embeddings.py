"""What the editor needs from a SAM job: the image embedding, and SAM's prompt decoder as ONNX.

The image encoder (most of SAM's cost) runs here, once per image; Server1 and the browser then run only
the small prompt encoder + mask decoder over the stored embedding, so editing needs no GPU.

- output/embeddings/<id>.npy: float16, 1 x 256 x g x g (g = 64 for the real checkpoints), of the resized
  image, staged with the job's other outputs (deleted with the image).
- models/sam-decoder-<digest>.onnx: upstream SamOnnxModel (any number of points, an optional box as
  corner points 2 and 3, one mask chosen as SAM's demo does), exported on the CPU once per checkpoint;
  digest = the first 16 hex digits of the checkpoint file's SHA-256.
- models/sam-encoder-<digest>.onnx: MobileSAM's image encoder (TinyViT), exported with its decoder when the
  model loads (ensure_editor_models), so Server1 can embed a photo Server2 never processed on its own CPU
  (server1/encoding.py).
- The status record's "embedding" says which decoder goes with the embedding and the resized image's
  size; "clipping_boxes" says where each clipping lies in the original, so it can be touched up.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import torch

from studio import layout
from studio.jobs import Claim
from studio.modelfiles import sam_file
from studio.storage import FileStorage, Storage

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

    from server2.models import ModelSet
    from server2.pipeline import Result

log = logging.getLogger(__name__)

DIGEST_CHARS = 16
OPSET = 17
_digests: dict[tuple[str, int, float], str] = {}
_lock = threading.Lock()


def checkpoint_digest(path: Path) -> str:
    """SHA-256 prefix of the checkpoint, computed once per file version (a real one is over 1 GB)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _digests:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        _digests[key] = sha.hexdigest()[:DIGEST_CHARS]
    return _digests[key]


def npy_bytes(features: torch.Tensor) -> bytes:
    out = io.BytesIO()
    np.save(out, features.detach().to("cpu", torch.float16).numpy(), allow_pickle=False)
    return out.getvalue()


def _decoder_model(parts: Sam) -> torch.nn.Module:
    from segment_anything.utils.onnx import SamOnnxModel

    class LowResDecoder(SamOnnxModel):
        """Upstream's model, answering the chosen mask's low-res logits (1 x 1 x 4g x 4g).

        Upstream's upscaling crops by int(tensor), which the tracer fixes to the example image's aspect
        ratio; callers upscale as SamPredictor.postprocess_masks does (server1.cutting, editor.js)."""

        def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
            return masks

    return LowResDecoder(parts, return_single_mask=True).eval()


def export_decoder(sam: Sam, path: Path) -> None:
    """This SAM's prompt encoder and mask decoder (copied to the CPU) as ONNX, written to path."""
    parts: Sam = torch.nn.Module()  # what SamOnnxModel reads of a Sam
    parts.prompt_encoder = copy.deepcopy(sam.prompt_encoder).float().cpu()
    parts.mask_decoder = copy.deepcopy(sam.mask_decoder).float().cpu()
    parts.image_encoder = SimpleNamespace(img_size=sam.image_encoder.img_size)
    parts.mask_threshold = sam.mask_threshold
    model = _decoder_model(parts)
    grid = sam.prompt_encoder.image_embedding_size
    inputs = {
        "image_embeddings": torch.randn(1, sam.prompt_encoder.embed_dim, *grid),
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 4 * grid[0], 4 * grid[1]),
        "has_mask_input": torch.tensor([0.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),  # unused (see LowResDecoder): not in the graph
    }
    # The TorchScript exporter, as upstream's export script uses (the dynamo one needs onnxscript).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs)[:-1],
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def export_encoder(sam: Sam, path: Path) -> None:
    """This SAM's image encoder (copied to the CPU) as ONNX: "image" 1 x 3 x S x S, normalised and padded
    as Sam.preprocess leaves it, -> "image_embeddings" 1 x 256 x g x g."""
    encoder = copy.deepcopy(sam.image_encoder).float().cpu().eval()
    size = int(encoder.img_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
            (torch.randn(1, 3, size, size),),
            str(path),
            input_names=["image"],
            output_names=["image_embeddings"],
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _ensure(storage: Storage, key: str, export: Callable[[Path], None], what: str, baked: Path | None = None) -> str:
    """key, unless it is there already: a copy of baked when that file exists (the weights baked into the
    image with BAKE_WEIGHTS=1), else exported by export(path)."""
    with _lock:
        if storage.exists(key):
            return key
        if baked is not None and baked.is_file():
            storage.write(key, baked.read_bytes())
            log.info("copied %s from %s to %s", what, baked, key)
            return key
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export(path)
            storage.write(key, path.read_bytes())
        log.info("exported %s to %s", what, key)
        return key


def ensure_decoder(storage: Storage, sam: Sam, digest: str) -> str:
    """models/sam-decoder-<digest>.onnx, exported unless it is there already; its key."""
    return _ensure(storage, layout.decoder(digest), partial(export_decoder, sam), "SAM's prompt decoder")


def ensure_editor_models(storage: Storage, models: ModelSet, models_root: bool = False) -> str | None:
    """When MobileSAM is loaded: its prompt decoder and image encoder in models/ of the shared storage (or at
    the top of a storage that is the models folder itself: models_root), each exported unless it is there;
    the checkpoint's digest, else None."""
    sam = models.sam.get("mobile_sam")
    if sam is None:
        return None
    digest = checkpoint_digest(models.folder / sam_file("mobile_sam"))
    for name, export, what in (
        (layout.decoder_file(digest), export_decoder, "SAM's prompt decoder"),
        (layout.encoder_file(digest), export_encoder, "SAM's image encoder"),
    ):
        key = layout.model(name, models_root)
        _ensure(storage, key, partial(export, sam), what, baked=Path(models.folder) / name)
    return digest


def export_editor_models(folder: Path) -> str:
    """MobileSAM's decoder and encoder exported into folder, beside its mobile_sam.pt, unless there: for a
    weights folder outside Server2 (the bake list, deploy.deploy.stage_weights). The checkpoint's digest."""
    from server2.models import load_sam

    models = SimpleNamespace(sam={"mobile_sam": load_sam(folder / sam_file("mobile_sam"), "cpu")}, folder=folder)
    digest = ensure_editor_models(FileStorage(folder), models, models_root=True)
    assert digest is not None
    return digest


def prepare(storage: Storage, models: ModelSet, result: Result) -> dict | None:
    """The status record's "embedding" for a SAM result (None for others), its decoder exported first.

    Called before the job's outputs are staged, outside the worker's claim lock: hashing a checkpoint
    and exporting take seconds, and the heartbeat must keep renewing the lease meanwhile.
    """
    if result.embedding is None:
        return None
    sam = models.sam[result.sam_model]
    try:
        digest = checkpoint_digest(models.folder / sam_file(result.sam_model))
        ensure_decoder(storage, sam, digest)
    except Exception:  # the cut-outs are what the job is for: they are kept, only editing waits for a retry
        log.exception("no embedding kept: exporting SAM's prompt decoder failed")
        return None
    return {
        "decoder": digest,
        "width": result.embedding.width,
        "height": result.embedding.height,
        "input_size": int(sam.image_encoder.img_size),
    }


def stage(result: Result, claim: Claim, names: list[str], meta: dict | None, put: Callable[[str, bytes], None]) -> dict:
    """Stage the embedding through put; the status record's fields for the editor (meta from prepare)."""
    boxes = [list(clip.box) for clip in result.clippings]
    fields: dict = {"clipping_boxes": dict(zip(names, boxes, strict=True))}
    if meta is not None and result.embedding is not None:  # meta: prepare() found an embedding
        put(layout.embedding(claim.user, claim.image_id), npy_bytes(result.embedding.features))
        fields["embedding"] = meta
    return fields

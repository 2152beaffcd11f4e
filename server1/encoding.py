"""SAM's image embedding on Server1's CPU, for a photo without one from Server2 (docs/architecture.md "Editor").

Server2 and `python -m server2 segment` export MobileSAM's image encoder as ONNX when they load it
(models/sam-encoder-<digest>.onnx, server2.embeddings.ensure_editor_models); Server1 runs it with onnxruntime,
no torch, on the photo's work image (resized/), preprocessed exactly as SamPredictor.set_image does. The result
is kept once per photo in output/cpu_embeddings/: <id>.npy (float16, as Server2's), then <id>.json, the meta the
status record's "embedding" holds for Server2's (the decoder's digest names the decoder that goes with it).
It never touches the status record: a photo without one is a queued job.

Embedding is CPU-heavy: one at a time per process. A request that does not get its turn within `wait` seconds
gets Unavailable with a Retry-After, so a burst queues no threads for long and uploads and the album still answer.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from studio import layout, sam_input, upright
from studio.storage import NotFound, Storage

PIXEL_MEAN = np.array(sam_input.PIXEL_MEAN, dtype=np.float32)
PIXEL_STD = np.array(sam_input.PIXEL_STD, dtype=np.float32)
INPUT_SIZE = 1024  # MobileSAM's, the one model whose encoder is exported
RETRY_AFTER = 2  # seconds: about one embedding's time
# Every core: one embedding at a time, and onnxruntime's threads do not spin once it is done.
THREADS = max(1, min(4, os.cpu_count() or 1))
NO_ENCODER = (
    "the editor needs SAM's image encoder, which is exported when MobileSAM is first loaded: start Server2 "
    "(make run) once, or run `python -m server2 segment --models <SHARED_DIR>/models <a photo>` with "
    "mobile_sam.pt in that folder"
)


class Unavailable(Exception):
    """No embedding now; retry_after: seconds after which to ask again (None: not until an operator acts)."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def preprocess(image: Image.Image, input_size: int) -> np.ndarray:
    """SamPredictor.set_image's input (studio.sam_input; resized with PIL's bilinear, as torchvision resizes
    a PIL image): 1 x 3 x S x S float32."""
    size = sam_input.frame(image.size, input_size)
    pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.zeros((input_size, input_size, 3), dtype=np.float32)
    out[: size[1], : size[0]] = (pixels - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None])


def newest_encoder(storage: Storage) -> str | None:
    """The digest of the newest exported encoder whose decoder is there too."""
    _, entries = storage.list_dir(layout.models_dir())
    names = {e.name for e in entries}
    found = [
        (e.mtime, digest)
        for e in entries
        if (digest := layout.encoder_digest(e.name)) and layout.decoder_file(digest) in names
    ]
    return max(found)[1] if found else None


def stored_meta(storage: Storage, user: str, image_id: str) -> dict | None:
    try:
        return storage.read_json(layout.cpu_embedding_meta(user, image_id))
    except (NotFound, ValueError):
        return None


def stored(storage: Storage, user: str, image_id: str) -> tuple[dict, bytes] | None:
    """The photo's kept CPU embedding: (meta, .npy bytes), or None."""
    meta = stored_meta(storage, user, image_id)
    try:
        return (meta, storage.read(layout.cpu_embedding(user, image_id))) if meta else None
    except NotFound:
        return None


def plan(storage: Storage, user: str, image_id: str, job: str) -> dict | None:
    """The meta of the photo's CPU embedding, kept or as it will be computed (the work image's upright size
    from its header); None when no encoder was exported yet."""
    meta = stored_meta(storage, user, image_id)
    if meta:
        return meta
    digest = newest_encoder(storage)
    if digest is None:
        return None
    width, height = upright.size(storage.read(job))
    return {"decoder": digest, "width": width, "height": height, "input_size": INPUT_SIZE}


class Encoder:
    """One onnxruntime session per encoder file, and the gate that lets one embedding run at a time."""

    def __init__(self, wait: float) -> None:
        self.wait = wait  # seconds a request waits for its turn
        self._gate = threading.Lock()
        self._sessions: dict[str, ort.InferenceSession] = {}

    def session(self, storage: Storage, digest: str) -> ort.InferenceSession:
        if digest not in self._sessions:  # under the gate
            options = ort.SessionOptions()
            options.intra_op_num_threads = THREADS
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[digest] = ort.InferenceSession(
                storage.read(layout.encoder(digest)), sess_options=options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[digest]

    def encode(self, session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {session.get_inputs()[0].name: pixels})[0]

    def embedding(self, storage: Storage, user: str, image_id: str, job: str) -> tuple[dict, bytes]:
        """The photo's CPU embedding (meta, .npy bytes): the kept one, else computed from the work image job
        (its key in resized/) and kept. Unavailable when busy or when no encoder was exported yet."""
        found = stored(storage, user, image_id)
        if found:
            return found
        if not self._gate.acquire(timeout=self.wait):
            raise Unavailable("another photo's embedding is being computed: try again in a moment", RETRY_AFTER)
        try:
            found = stored(storage, user, image_id)  # made while this request waited
            if found:
                return found
            digest = newest_encoder(storage)
            if digest is None:
                raise Unavailable(NO_ENCODER, None)
            session = self.session(storage, digest)
            input_size = int(session.get_inputs()[0].shape[-1])
            with Image.open(io.BytesIO(storage.read(job))) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            features = self.encode(session, preprocess(image, input_size))
            out = io.BytesIO()
            np.save(out, features.astype(np.float16), allow_pickle=False)
            meta = {"decoder": digest, "width": image.width, "height": image.height, "input_size": input_size}
            storage.write(layout.cpu_embedding(user, image_id), out.getvalue())
            storage.write_json(layout.cpu_embedding_meta(user, image_id), meta)
            return meta, out.getvalue()
        finally:
            self._gate.release()

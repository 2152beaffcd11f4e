"""The storage layout (docs/architecture.md "Storage layout"): the one place that builds keys.

Keys are relative, '/'-separated and never start with '/'. Every user name and image
id that reaches a key is checked here first, so no caller can build a path that
escapes its user's folder.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
MODELS = "models"
# Server-private state (the generated SECRET_KEY, the watcher's memory); never a user.
SYSTEM = ".studio"
RESERVED = {MODELS, SYSTEM}
THUMB_MAX = 320  # longest side of every image in output/thumbs (originals' and clippings')
RESIZED_MAX = 1024  # longest side of the work copy in resized/
CLIPPING_THUMB = "crop-"  # name prefix of a clipping's thumbnail in output/thumbs


class BadName(ValueError):
    """A user name, image id or file name that is not allowed in a key."""


def check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise BadName(f"invalid {what}: {name!r} (letters, digits, '.', '_' and '-' only)")
    return name


def check_user(user: str) -> str:
    check_name(user, "user name")
    if user in RESERVED:
        raise BadName(f"invalid user name: {user!r} is reserved")
    return user


def split_ext(file_name: str) -> tuple[str, str]:
    """'abc.jpeg' -> ('abc', '.jpeg'); the extension lower-cased."""
    stem, dot, ext = file_name.rpartition(".")
    if not dot or not stem:
        return file_name, ""
    return stem, "." + ext.lower()


def system(name: str) -> str:
    return f"{SYSTEM}/{check_name(name)}"


def server2_report() -> str:
    """Server2's report of what serves ({"device", "sam_model", "state", "worker", "updated_at"}), written by
    Server2 when its state changes, read by Server1 (the deployment's model, the album's badge)."""
    return system("server2.json")


def invocation(user: str, image_id: str) -> str:
    """Server1's record that it invoked the endpoint for a job, so a restart does not invoke it again."""
    return f"{SYSTEM}/invocations/{check_user(user)}/{check_name(image_id, 'image id')}.json"


def settings(user: str) -> str:
    return f"{check_user(user)}/config/settings.json"


def canvas(user: str) -> str:
    """The user's canvas composition (kept on the server so it survives reloads and devices)."""
    return f"{check_user(user)}/config/canvas.json"


def input_dir(user: str) -> str:
    return f"{check_user(user)}/input/"


def input_file(user: str, image_id: str, ext: str) -> str:
    return input_dir(user) + check_name(image_id + ext, "file name")


def resized_dir(user: str) -> str:
    return f"{check_user(user)}/resized/"


def resized(user: str, image_id: str, ext: str = ".png") -> str:
    return resized_dir(user) + check_name(image_id + ext, "file name")


def output_dir(user: str, kind: str) -> str:
    """kind: thumbs, masks, crops, points, boxes, status, claims, staging."""
    return f"{check_user(user)}/output/{check_name(kind)}/"


def thumb(user: str, image_id: str, ext: str = ".jpg") -> str:
    return output_dir(user, "thumbs") + check_name(image_id + ext, "file name")


def mask(user: str, image_id: str, n: int) -> str:
    return output_dir(user, "masks") + f"{check_name(image_id, 'image id')}_mask{int(n)}.png"


# A clipping's file name: component k of mask n ({i} is the escaped image id, as in _OWNED).
_CROP = r"{i}_mask(\d+)_\d+\.png"


def crop_name(image_id: str, n: int, k: int) -> str:
    return f"{check_name(image_id, 'image id')}_mask{int(n)}_{int(k)}.png"


def crop_mask_number(image_id: str, file_name: str) -> int | None:
    """'<image_id>_mask<n>_<k>.png' (a name crop_name made) -> n; None for any other name."""
    match = re.fullmatch(_CROP.format(i=re.escape(image_id)), file_name)
    return int(match[1]) if match else None


def crop(user: str, file_name: str) -> str:
    return output_dir(user, "crops") + check_name(file_name, "file name")


def crop_thumb(user: str, file_name: str) -> str:
    """Thumbnail of a clipping (kept beside the originals' thumbnails)."""
    return output_dir(user, "thumbs") + CLIPPING_THUMB + check_name(file_name, "file name")


def points(user: str, image_id: str) -> str:
    return output_dir(user, "points") + f"{check_name(image_id, 'image id')}.json"


def status(user: str, image_id: str) -> str:
    return output_dir(user, "status") + f"{check_name(image_id, 'image id')}.json"


def claim(user: str, image_id: str) -> str:
    """The job's claim record (owner + lease); not part of the user-visible layout."""
    return output_dir(user, "claims") + f"{check_name(image_id, 'image id')}.json"


def embedding(user: str, image_id: str) -> str:
    """SAM's image embedding of the resized image (float16 .npy), for the editor's prompt decoder."""
    return output_dir(user, "embeddings") + f"{check_name(image_id, 'image id')}.npy"


def cpu_embedding(user: str, image_id: str) -> str:
    """Server1's own embedding of the resized image (float16 .npy), for a photo that has none from Server2."""
    return output_dir(user, "cpu_embeddings") + f"{check_name(image_id, 'image id')}.npy"


def cpu_embedding_meta(user: str, image_id: str) -> str:
    """What the status record's "embedding" says for Server2's, for Server1's own (written after the .npy):
    kept beside it, as an unprocessed photo must have no status record."""
    return output_dir(user, "cpu_embeddings") + f"{check_name(image_id, 'image id')}.json"


# The editor's ONNX files are named by the first 16 hex digits of their checkpoint's SHA-256.
MODEL_DIGEST_RE = re.compile(r"[0-9a-f]{16}")
_EDITOR_FILE_RE = re.compile(r"sam-(decoder|encoder)-([0-9a-f]{16})\.onnx")


def models_dir() -> str:
    """The folder of the weights and the editor's ONNX files."""
    return f"{MODELS}/"


def model(file_name: str, models_root: bool = False) -> str:
    """The key of a file in the models folder: models/<file_name>; in a storage whose root is the models
    folder itself (models_root: Server2's --models, a weights folder being baked), file_name alone."""
    name = check_name(file_name, "model file name")
    return name if models_root else models_dir() + name


def decoder_file(digest: str) -> str:
    """SAM's prompt encoder + mask decoder as ONNX, for the checkpoint whose hash starts with digest."""
    return check_name(f"sam-decoder-{digest}.onnx", "model file name")


def encoder_file(digest: str) -> str:
    """SAM's image encoder as ONNX (MobileSAM's only), for the checkpoint whose hash starts with digest."""
    return check_name(f"sam-encoder-{digest}.onnx", "model file name")


def decoder_digest(file_name: str) -> str | None:
    """'sam-decoder-<digest>.onnx' -> digest; None for any other name."""
    match = _EDITOR_FILE_RE.fullmatch(file_name)
    return match[2] if match and match[1] == "decoder" else None


def encoder_digest(file_name: str) -> str | None:
    """'sam-encoder-<digest>.onnx' -> digest; None for any other name."""
    match = _EDITOR_FILE_RE.fullmatch(file_name)
    return match[2] if match and match[1] == "encoder" else None


def is_editor_file(file_name: str) -> bool:
    """Is file_name one of the editor's ONNX files (a name decoder_file or encoder_file made)?"""
    return _EDITOR_FILE_RE.fullmatch(file_name) is not None


def decoder(digest: str) -> str:
    return model(decoder_file(digest))


def encoder(digest: str) -> str:
    return model(encoder_file(digest))


def staging_dir(user: str, image_id: str) -> str:
    """Every staging folder of one image's jobs."""
    return output_dir(user, "staging") + f"{check_name(image_id, 'image id')}/"


def staging(user: str, image_id: str, token: str) -> str:
    """Where a worker writes a job's outputs before it commits them."""
    return staging_dir(user, image_id) + f"{check_name(token)}/"


def staged(staging_key: str, n: int) -> str:
    """The n-th output a worker writes in its staging folder (a key staging() made)."""
    return f"{staging_key}{int(n)}"


# Folder -> the file names of one image in it ({i} is the escaped id). Box image
# suffixes carry no '-', so image 'a' never owns 'a-x-yolo.png' of image 'a-x'.
_OWNED = {
    "input": r"{i}\.[A-Za-z0-9]+",
    "resized": r"{i}\.[A-Za-z0-9]+",
    "output/thumbs": r"{i}\.[A-Za-z0-9]+|" + re.escape(CLIPPING_THUMB) + _CROP,
    "output/masks": r"{i}_mask\d+\.png",
    "output/crops": _CROP,
    "output/points": r"{i}\.json",
    "output/boxes": r"{i}-[A-Za-z0-9_]+\.png",
    "output/status": r"{i}\.json",
    "output/embeddings": r"{i}\.npy",
    "output/cpu_embeddings": r"{i}\.(npy|json)",
    "output/claims": r"{i}\.json",
}


def image_folders(user: str) -> list[str]:
    """Every folder that holds files of individual images (staging is a tree of its own)."""
    return [f"{check_user(user)}/{folder}/" for folder in _OWNED]


def owned_by(image_id: str, folder: str, file_name: str) -> bool:
    """Is file_name in folder (one of image_folders) a file of image_id? Exact match."""
    kind = folder.rstrip("/").split("/", 1)[1]
    return bool(re.fullmatch(_OWNED[kind].format(i=re.escape(image_id)), file_name))


def boxes(user: str, image_id: str, suffix: str) -> str:
    if "-" in suffix:
        raise BadName(f"box image suffix may not contain '-': {suffix!r}")
    return output_dir(user, "boxes") + check_name(f"{image_id}-{suffix}.png", "file name")


def job_from_resized(file_name: str) -> tuple[str, str] | None:
    """'abc.png' in resized/ -> ('abc', '.png'); None for anything that is not a job."""
    image_id, ext = split_ext(file_name)
    if ext not in IMAGE_EXTS or not NAME_RE.fullmatch(image_id) or ".." in image_id:
        return None
    return image_id, ext


def is_user_dir(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and name not in RESERVED and ".." not in name

"""Helpers of the Server1 suites: sample images in every format, and a real server process."""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
import requests
import skimage.data
from PIL import Image

from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage
from tests.conftest import REPO, free_port

pillow_heif.register_heif_opener()

USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}


def photo(width: int = 640, height: int = 480) -> Image.Image:
    """A real photo (scikit-image's astronaut) at the given size."""
    return Image.fromarray(skimage.data.astronaut()).resize((width, height))


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def marked(width: int = 600, height: int = 400) -> Image.Image:
    """Landscape image, red in the top-left corner, else gray: shows which way is up."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, width // 4, height // 4))
    return image


def exif_rotated_jpeg() -> bytes:
    """The pixels stored sideways, as a camera turned by 90 degrees writes them, with EXIF
    orientation 6 ("rotate clockwise to view"): upright it is marked(600, 400)."""
    stored = marked(600, 400).transpose(Image.Transpose.ROTATE_90)  # what the sensor saw
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def is_upright_marked(image: Image.Image) -> bool:
    """Landscape, as marked() draws it, with its red corner at the top left."""
    rgb = np.asarray(image.convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    corner = rgb[: h // 10, : w // 10].mean(axis=(0, 1))
    other = rgb[-h // 10 :, -w // 10 :].mean(axis=(0, 1))
    return w > h and corner[0] > 200 and corner[1] < 60 and abs(other[0] - 128) < 30


@functools.cache
def samples() -> dict[str, bytes]:
    """One file per accepted format (name -> bytes)."""
    base = photo(800, 600)
    return {
        "photo.jpg": encode(base, "JPEG", quality=90),
        "photo.png": encode(base, "PNG"),
        "photo.webp": encode(base, "WEBP"),
        "photo.bmp": encode(base, "BMP"),
        "photo.tif": encode(base, "TIFF"),
        "photo.heic": encode(base, "HEIF"),
        "alpha.png": encode(base.convert("RGBA"), "PNG"),
        "gray16.png": encode(Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257), "PNG"),
        "palette.png": encode(base.convert("P"), "PNG"),
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
    }


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header declares width x height pixels (a decompression bomb's shape) in
    a few dozen bytes; nothing may decode it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', html
    )
    assert match, "page carries no CSRF token"
    return match.group(1)


class Server:
    """`python -m server1` (or gunicorn) on a free port of 127.0.0.1."""

    def __init__(self, shared: str, gunicorn: bool = False, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SHARED_DIR": shared,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "APP_USER1": "alice",
            "APP_PASS1": USERS["alice"],
            "APP_USER2": "bob",
            "APP_PASS2": USERS["bob"],
            "SKIP_MODEL_DOWNLOAD": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        for name in ("SAGEMAKER_ENDPOINT", "INFERENCE_URL", "SECRET_KEY"):
            if name not in env:
                self.env.pop(name, None)
        if gunicorn:
            exe = str(Path(sys.executable).parent / "gunicorn")
            self.args = [
                exe,
                "-c",
                "server1/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.port}",
                "server1:create_app()",
            ]
        else:
            self.args = [sys.executable, "-m", "server1"]
        self.proc: subprocess.Popen | None = None
        self.log = Path(shared if "://" not in shared else "/tmp") / f".server1-{self.port}.log"

    def start(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - kept open while the process runs
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet, or the worker is still booting
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server1 did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()

    def threads(self) -> int:
        """Threads of the serving process (gunicorn: of its worker)."""
        assert self.proc is not None
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:  # gunicorn: the (single) worker serves
            pid = int(children[0])
        return len(os.listdir(f"/proc/{pid}/task"))

    def login(self, user: str, password: str | None = None) -> requests.Session:
        """A logged-in client; its .csrf is the token to send with state-changing requests."""
        session = requests.Session()
        token = csrf_of(session.get(self.url + "/login", timeout=10).text)
        answer = session.post(
            self.url + "/login",
            data={"username": user, "password": password or USERS[user], "csrf_token": token},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.url.rstrip("/") == self.url, answer.text[:300]
        session.csrf = csrf_of(answer.text)  # type: ignore[attr-defined]
        session.headers["X-CSRFToken"] = session.csrf  # type: ignore[attr-defined]
        return session


def finish_job(storage: Storage, user: str, image_id: str, clippings: int = 2, fail: str | None = None) -> list[str]:
    """Do what Server2 does for a job, through the job protocol: claim it, stage clippings
    (largest first) and their thumbnails, complete (status record last); or fail it."""
    jobs = Jobs(storage, owner="test-worker", max_attempts=1)
    claim = jobs.claim(user, image_id)
    assert claim is not None
    if fail:
        jobs.fail(claim, fail)
        return []
    names, staged = [], {}
    for k in range(clippings):
        name = layout.crop_name(image_id, 0, k)
        size = 200 - 40 * k
        clip = encode(Image.new("RGBA", (size, size), (255, 0, 0, 255)), "PNG")
        storage.write(claim.staging + name, clip)
        storage.write(claim.staging + "thumb-" + name, clip)
        staged[claim.staging + name] = layout.crop(user, name)
        staged[claim.staging + "thumb-" + name] = layout.crop_thumb(user, name)
        names.append(name)
    assert jobs.complete(claim, staged, clippings=names, method="sam")
    return names

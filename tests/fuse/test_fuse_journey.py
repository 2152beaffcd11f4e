"""Upload -> clippings with SHARED_DIR on a real FUSE mount of a bucket, as the deployment guide
says: both servers on an s3fs mount, both on an rclone mount, and the mixed set-up of a real
deployment (Server1 on the s3fs mount with nothing else set, Server2 on the same bucket through
the S3 API, as SageMaker containers cannot mount FUSE). Server1 sees the results through the mount."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from harness.images import encode
from harness.server1 import Server
from harness.server2 import Server2
from tests.server2.serving.support import drawing

# The quick path of the pipeline on a CPU (BiRefNet with the small test weights).
QUICK = {"mode": "matte", "points_per_side": 8, "crop_n_layers": 0, "min_area": 50}
ONE_HOST_LINE = "claims are exclusive on this host only; for several hosts set S3_BUCKET"


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["s3fs", "rclone", "mixed"])
def test_upload_to_clippings_on_a_mount(setup: str, bucket_mounts: dict, test_models_dir: Path, tmp_path: Path) -> None:
    mount = bucket_mounts["rclone" if setup == "rclone" else "s3fs"]
    folder = mount.folder()
    server2_root = mount.native(folder) if setup == "mixed" else folder
    server2 = Server2(tmp_path, {"SHARED_DIR": server2_root, "MODELS_DIR": str(test_models_dir)}, module=True)
    server1 = Server(folder)
    server1.log = tmp_path / "server1.log"  # not into the bucket
    try:
        server2.wait_ready(timeout=240)  # patient: the models load on a busy CPU
        server1.start()
        alice = server1.login("alice")
        assert alice.post(server1.url + "/api/settings", json=QUICK, timeout=10).status_code == 200
        sheet = drawing(800, 600, (200, 150, 600, 450))  # one object the small test BiRefNet finds
        files = [
            ("file", ("sheet.jpg", encode(sheet, "JPEG", quality=95))),
            ("file", ("sheet.heic", encode(sheet, "HEIF"))),
        ]
        answer = alice.post(server1.url + "/upload", files=files, timeout=60)
        assert answer.status_code == 200, answer.text
        ids = {image["id"] for image in answer.json()["images"]}
        assert len(ids) == 2

        deadline = time.monotonic() + 240
        while True:
            images = {i["id"]: i for i in alice.get(server1.url + "/api/images", timeout=10).json()["images"]}
            assert set(images) == ids, images  # no temporary file ever shows as an image
            states = {i["status"]["state"] for i in images.values()}
            if states <= {"done", "failed"}:
                break
            assert time.monotonic() < deadline, f"not done: {images}\n{server2.log()[-3000:]}"
            time.sleep(0.3)
        assert states == {"done"}, f"{images}\n{server2.log()[-3000:]}"
        for image in images.values():
            assert image["clippings"], image
            clipping = alice.get(server1.url + image["clippings"][0]["url"], timeout=10)
            assert clipping.status_code == 200
            with Image.open(io.BytesIO(clipping.content)) as png:
                assert png.format == "PNG" and png.mode == "RGBA"
    finally:
        if server1.proc is not None:
            server1.stop()
        server2.stop()
    # Server1 said once what to set for several hosts (it stands on the mount alone).
    assert server1.output().count(ONE_HOST_LINE) == 1, server1.output()[-3000:]

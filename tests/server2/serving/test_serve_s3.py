"""Two real servers (server2/serve and python -m server2) on one S3 bucket (a moto server on
127.0.0.1): every image is processed exactly once; the {"s3", "output"} form of /invocations."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from harness.server2 import Server2
from studio import layout
from studio.storage import Storage, open_storage
from tests.server2.serving.support import FAST, USER, Servers, add_image, drawing, outputs_of, set_settings, wait_status

IMAGES = 30


@pytest.fixture(scope="module")
def pair(
    moto_server: object, tmp_path_factory: pytest.TempPathFactory, test_models_dir: Path
) -> Iterator[tuple[str, Storage, Server2, Server2]]:
    bucket = f"serving-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server.url).create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/shared"
    storage = open_storage(root)
    set_settings(storage, {"mode": "matte", **FAST})
    servers = Servers(tmp_path_factory.mktemp("serving-s3"))
    env = {"SHARED_DIR": root, "MODELS_DIR": str(test_models_dir)}
    first, second = servers.start(**env), servers.start(module=True, **env)
    first.wait_ready()
    second.wait_ready()
    yield root, storage, first, second
    servers.kill_all()


@pytest.mark.slow
def test_two_servers_process_each_of_30_images_exactly_once(pair: tuple[str, Storage, Server2, Server2]) -> None:
    _, storage, first, second = pair
    ids = [f"img{n:02d}" for n in range(IMAGES)]
    for n, image_id in enumerate(ids):
        add_image(storage, image_id, drawing(160 + 2 * n, 120, (40, 30, 120, 90)))

    records = {image_id: wait_status(storage, image_id, timeout=180) for image_id in ids}
    assert {r["state"] for r in records.values()} == {"done"}
    assert {r["attempts"] for r in records.values()} == {1}
    owners = Counter(r["owner"] for r in records.values())
    assert set(owners) == {first.worker_id, second.worker_id}, owners  # both took a share
    logs = first.log() + second.log()
    for image_id, record in records.items():
        assert logs.count(f"{USER}/{image_id}: processing") == 1, image_id
        crops = [k.rsplit("/", 1)[-1] for k in outputs_of(storage, image_id) if "/crops/" in k]
        assert crops == record["clippings"] and len(crops) == 1, image_id
    assert list(storage.list(layout.output_dir(USER, "staging"))) == []


def test_the_s3_form_of_invocations_names_a_job_in_the_bucket(pair: tuple[str, Storage, Server2, Server2]) -> None:
    root, storage, first, _ = pair
    add_image(storage, "by-url", drawing())
    job_url = f"{root}/{layout.resized(USER, 'by-url')}"

    answer = first.invoke({"s3": job_url, "output": f"{root}/{USER}/output/"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] in ("done", "already-processed", "in-progress")  # the other server's poller
    assert (answer.json()["user"], answer.json()["image"]) == (USER, "by-url")
    assert wait_status(storage, "by-url")["attempts"] == 1

    again = first.invoke({"s3": f"{root}/{layout.input_file(USER, 'by-url', '.png')}"})
    assert again.json()["state"] == "already-processed"

    refused = [
        ({"s3": "https://example.com/a.png"}, "s3 must be a URL"),
        ({"s3": "s3://another-bucket/shared/alice/resized/by-url.png"}, "outside this server's storage"),
        ({"s3": f"{root}/{USER}/output/crops/by-url_mask0_0.png"}, "must name a file in"),
        ({"s3": job_url, "output": "s3://elsewhere/results/"}, "output must be a folder holding"),
        ({"s3": job_url, "user": USER}, "unknown field(s) user"),
    ]
    for body, message in refused:
        bad = first.invoke(body)
        assert bad.status_code == 400, (body, bad.text)
        assert message in bad.json()["error"], (body, bad.json())
    missing = first.invoke({"s3": f"{root}/{layout.resized(USER, 'not-there')}"})
    assert missing.status_code == 404

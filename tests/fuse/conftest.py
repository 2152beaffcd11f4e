"""Real FUSE mounts of a bucket on the test moto server: s3fs and rclone from Debian.

Each mount lives for the test session; every test works in a folder of its own inside it.
A mount is ready when /proc/self/mountinfo lists it (polled, never slept for), and it is
unmounted in teardown, also when a test failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from harness.aws import MotoServer
from harness.mounts import BucketMount, mount_bucket, unmount

KINDS = ["s3fs", "rclone"]
MOUNT_SECONDS = 30


@pytest.fixture(scope="session")
def bucket_mounts(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One bucket, mounted twice: with s3fs and with rclone."""
    bucket = f"fuse-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server.url).create_bucket(Bucket=bucket)
    work = tmp_path_factory.mktemp("fuse")
    mounts: dict[str, BucketMount] = {}
    try:
        for kind in KINDS:
            mounts[kind] = mount_bucket(kind, moto_server, bucket, work / f"mnt-{kind}", work)
        yield mounts
    finally:
        for mount in mounts.values():
            unmount(mount.point, mount.proc)


@pytest.fixture(params=KINDS)
def bucket_mount(request: pytest.FixtureRequest, bucket_mounts: dict) -> BucketMount:
    return bucket_mounts[request.param]


@pytest.fixture(params=[*KINDS, "s3fs+S3_BUCKET"])
def storage_root(request: pytest.FixtureRequest, bucket_mounts: dict, monkeypatch: pytest.MonkeyPatch) -> str:
    """Overrides the suites' storage root: a fresh folder on each mount in turn, then on the s3fs
    mount with S3_BUCKET set (used through the S3 API, as for several hosts)."""
    kind, _, variable = request.param.partition("+")
    mount = bucket_mounts[kind]
    if variable:
        monkeypatch.setenv(variable, mount.bucket)
    return mount.folder()


class DroppableMount:
    """An s3fs mount of a bucket of its own, for a test that drops it (fusermount -u) and mounts it again."""

    def __init__(self, moto: MotoServer, work: Path) -> None:
        self.moto, self.work = moto, work
        self.bucket = f"drop-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=self.bucket)
        self.point = work / "mnt"
        self.mount()

    def mount(self) -> None:
        mount_bucket("s3fs", self.moto, self.bucket, self.point, self.work)

    def drop(self) -> None:
        unmount(self.point)


@pytest.fixture
def droppable_mount(moto_server: MotoServer, tmp_path: Path) -> Iterator[DroppableMount]:
    mount = DroppableMount(moto_server, tmp_path)
    try:
        yield mount
    finally:
        mount.drop()

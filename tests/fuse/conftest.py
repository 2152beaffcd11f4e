"""Real FUSE mounts of a bucket on the test moto server: s3fs and rclone from Debian.

Each mount lives for the test session; every test works in a folder of its own inside it.
A mount is ready when /proc/self/mountinfo lists it (polled, never slept for), and it is
unmounted in teardown, also when a test failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from studio.storage.mounts import mount_of
from tests.conftest import MotoServer

KINDS = ["s3fs", "rclone"]
MOUNT_SECONDS = 30


@dataclass
class BucketMount:
    kind: str  # s3fs | rclone
    bucket: str
    point: Path
    proc: subprocess.Popen | None = None  # rclone runs in the foreground; s3fs daemonises

    def folder(self) -> str:
        """A fresh folder inside the mount for one test: SHARED_DIR."""
        return str(self.point / f"t-{uuid.uuid4().hex[:10]}")

    def native(self, folder: str) -> str:
        """The same folder through the S3 API."""
        return f"s3://{self.bucket}/{Path(folder).relative_to(self.point)}"


def _mounted(point: Path) -> bool:
    found = mount_of(point)
    return found is not None and found.point == point and found.fstype.startswith("fuse")


def _wait_mounted(point: Path, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + MOUNT_SECONDS
    while not _mounted(point):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {point} was mounted")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{point} not mounted within {MOUNT_SECONDS}s")
        time.sleep(0.05)


def unmount(point: Path, proc: subprocess.Popen | None = None) -> None:
    """fusermount -u (fusermount3 where only that exists); lazily if something still holds it."""
    tool = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    if _mounted(point) and subprocess.run([tool, "-u", str(point)], capture_output=True).returncode != 0:
        subprocess.run([tool, "-uz", str(point)], capture_output=True)
    if proc is not None:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def mount_bucket(kind: str, moto: MotoServer, bucket: str, point: Path, work: Path) -> BucketMount:
    point.mkdir(parents=True, exist_ok=True)
    proc = None
    if kind == "s3fs":
        passwd = work / "s3fs-passwd"
        passwd.write_text(f"{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}\n")
        passwd.chmod(0o600)
        # Not notsup_compat_dir: with it s3fs does not see folders that only the S3 API wrote into.
        options = [f"url={moto.url}", "use_path_request_style", f"passwd_file={passwd}"]
        subprocess.run(["s3fs", bucket, str(point), *[a for o in options for a in ("-o", o)]], check=True)
    else:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone refuses it for http
        command = ["rclone", "mount", f":s3:{bucket}", str(point), "--s3-provider", "Other"]
        command += ["--s3-endpoint", moto.url, "--s3-access-key-id", os.environ["AWS_ACCESS_KEY_ID"]]
        command += ["--s3-secret-access-key", os.environ["AWS_SECRET_ACCESS_KEY"], "--s3-region", "us-east-1"]
        command += ["--vfs-cache-mode", "writes", "--cache-dir", str(work / "rclone-cache"), "--log-level", "ERROR"]
        log = open(work / "rclone.log", "wb")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_mounted(point, proc)
    except BaseException:
        unmount(point, proc)
        raise
    return BucketMount(kind, bucket, point, proc)


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

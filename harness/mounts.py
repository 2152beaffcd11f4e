"""Real FUSE mounts of a bucket on the moto server: s3fs and rclone from Debian. A mount is ready when
/proc/self/mountinfo lists it (polled, never slept for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness.aws import MotoServer
from harness.wait import wait_for
from studio.storage.mounts import mount_of

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


def mounted(point: Path) -> bool:
    found = mount_of(point)
    return found is not None and found.point == point and found.fstype.startswith("fuse")


def unmount(point: Path, proc: subprocess.Popen | None = None) -> None:
    """fusermount -u (fusermount3 where only that exists); lazily if something still holds it."""
    tool = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    if mounted(point) and subprocess.run([tool, "-u", str(point)], capture_output=True).returncode != 0:
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
        wait_for(lambda: mounted(point), f"{point} mounted", MOUNT_SECONDS, proc, interval=0.05)
    except BaseException:
        unmount(point, proc)
        raise
    return BucketMount(kind, bucket, point, proc)

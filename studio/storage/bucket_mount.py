"""A FUSE mount of a bucket, used through the S3 API once S3_BUCKET names the bucket.

No FUSE client for S3 makes a write on one host exclusive against a write on another
(s3fs, rclone and Mountpoint for S3 have no hard links, and their O_EXCL and flock are
local), while S3's conditional writes (If-None-Match / If-Match) are atomic across hosts.
So with S3_BUCKET set, every operation of a SHARED_DIR on such a mount goes through the
S3 API, at the key prefix the mount shows there. Not only the claims: a single path also
keeps readers away from the clients' caches (s3fs's stat cache, rclone's directory cache
and delayed write-back), where a record written through the API would look stale.
The mount is the address, and the start-up check proves that the mount and the API see
the same objects.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

from studio.storage.base import StorageError
from studio.storage.mounted import MountedFileStorage
from studio.storage.s3 import S3Storage

# How long the start-up check waits for a file written through the mount to show in the API:
# rclone --vfs-cache-mode writes uploads it after --vfs-write-back (5 s by default).
SHOW_SECONDS = 30.0


class BucketMount(S3Storage):
    """S3Storage at the prefix a FUSE-mounted folder (files) shows."""

    def __init__(self, bucket: str, prefix: str, files: MountedFileStorage) -> None:
        super().__init__(bucket, prefix)
        assert files.mount is not None
        self.files = files
        self.point = files.mount.point

    def check(self) -> None:
        try:
            super().check()
        except StorageError as e:
            raise StorageError(f"{e} (S3_BUCKET is to name the bucket mounted at {self.point})") from e
        name = f".mount-test-{uuid.uuid4().hex}"
        try:
            self.files.path.mkdir(parents=True, exist_ok=True)
            (self.files.path / name).write_bytes(b"ok")
        except OSError as e:
            raise StorageError(f"SHARED_DIR {self.files.root} is not writable: {e.strerror}") from e
        try:
            deadline = time.monotonic() + SHOW_SECONDS
            while not self.exists(name):
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"SHARED_DIR {self.files.root} is a {self.files.bucket_client} mount, but a file written "
                        f"there does not show at {self.root} within {SHOW_SECONDS:g}s: set S3_BUCKET to the mounted "
                        f"bucket and S3_MOUNT_PREFIX to the key prefix shown at {self.point}"
                    )
                time.sleep(0.2)
        finally:
            with contextlib.suppress(OSError):
                (self.files.path / name).unlink()
            with contextlib.suppress(StorageError):
                self.delete(name)


def through_api(files: MountedFileStorage, bucket: str, mount_prefix: str | None) -> BucketMount:
    """The S3 view of files: prefix = the mount's own key prefix (S3_MOUNT_PREFIX, or what an
    rclone source `remote:bucket/prefix` names) + the folder's path below the mount point."""
    mount = files.mount
    assert mount is not None
    named = mount.bucket_path()
    if named and named[0] != bucket:
        raise StorageError(
            f"SHARED_DIR {files.root} is an rclone mount of bucket {named[0]!r}, but S3_BUCKET is {bucket!r}"
        )
    if mount_prefix is None:
        mount_prefix = named[1] if named else ""
    below = os.path.relpath(os.path.realpath(files.path), mount.point)
    parts = [p for p in (mount_prefix.strip("/"), "" if below == "." else below) if p]
    return BucketMount(bucket, "/".join(parts), files)

"""Storage backends behind one interface, chosen by SHARED_DIR (and S3_BUCKET on a bucket mount)."""

from __future__ import annotations

import logging

from studio import config
from studio.errors import ConfigError
from studio.storage.base import UNKNOWN, Entry, NotFound, Storage, StorageError
from studio.storage.fs import FileStorage, FolderStorage, NoHardLinks
from studio.storage.mounted import MountedFileStorage
from studio.storage.mounts import mount_of

__all__ = [
    "UNKNOWN",
    "Entry",
    "FileStorage",
    "MountedFileStorage",
    "NotFound",
    "Storage",
    "StorageError",
    "open_storage",
]

log = logging.getLogger(__name__)
_announced: set[str] = set()  # mount points whose start-up line this process has written


def folder_storage(root: str) -> FolderStorage:
    """MountedFileStorage on a FUSE mount of a bucket, FileStorage on any other file system."""
    mount = mount_of(root)
    return MountedFileStorage(root) if mount and mount.bucket_client else FileStorage(root)


def open_storage(shared_dir: str | None = None, check: bool = True) -> Storage:
    """A path -> FileStorage, or MountedFileStorage on a FUSE mount of a bucket or a file system
    without hard links; s3://bucket/prefix -> S3Storage; a path on a FUSE mount of a bucket with
    S3_BUCKET set -> the S3 API at the key prefix the path shows (see studio.storage.bucket_mount).
    With check, the root must be reachable and able to do what the servers need, or ConfigError
    says why (before any work starts)."""
    where = shared_dir if shared_dir is not None else config.shared_dir()
    scheme, sep, rest = where.partition("://")
    scheme = scheme.lower()
    if not sep or scheme == "file":
        folder = folder_storage(rest if sep else where)
        storage: Storage = folder
        bucket = config.env_str("S3_BUCKET")
        if isinstance(folder, MountedFileStorage) and bucket:
            from studio.storage.bucket_mount import through_api  # boto3 only where S3 is used

            try:
                storage = through_api(folder, bucket, config.env_str("S3_MOUNT_PREFIX"))
            except StorageError as e:
                raise ConfigError(str(e)) from e
    elif scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"SHARED_DIR {where!r} names no bucket; use s3://bucket/prefix")
        from studio.storage.s3 import S3Storage

        try:
            storage = S3Storage(bucket, prefix)
        except ValueError as e:  # e.g. a malformed AWS_ENDPOINT_URL
            raise ConfigError(f"SHARED_DIR {where!r}: cannot set up the S3 client: {e}") from e
    else:
        raise ConfigError(f"SHARED_DIR {where!r}: unknown scheme {scheme!r}; use a path or s3://bucket/prefix")
    if check:
        try:
            try:
                storage.check()
            except NoHardLinks:
                storage = MountedFileStorage(storage.root)
                storage.check()
        except StorageError as e:
            raise ConfigError(str(e)) from e
        _announce(storage)
    return storage


def _announce(storage: Storage) -> None:
    """One line per process and mount: what a FUSE mount does here, and what to set for several hosts."""
    files = getattr(storage, "files", storage)  # a bucket mount used through the S3 API keeps its folder
    if not isinstance(files, MountedFileStorage) or files.mount is None or str(files.mount.point) in _announced:
        return
    point = files.mount.point
    if files is not storage:
        log.info(
            "SHARED_DIR %s (a %s mount) is used through the S3 API at %s", files.root, files.bucket_client, storage.root
        )
    else:
        what = f"a {files.bucket_client} mount" if files.bucket_client else "a file system without hard links"
        log.warning(
            "SHARED_DIR %s is on %s: claims are exclusive on this host only; for several hosts set S3_BUCKET "
            "to the mounted bucket (and S3_MOUNT_PREFIX to the key prefix shown at %s, unless it is the bucket's root)",
            files.root,
            what,
            point,
        )
    _announced.add(str(point))

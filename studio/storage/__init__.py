"""Storage backends behind one interface, chosen by SHARED_DIR."""

from __future__ import annotations

from studio import config
from studio.errors import ConfigError
from studio.storage.base import UNKNOWN, Entry, NotFound, Storage, StorageError
from studio.storage.fs import FileStorage

__all__ = ["UNKNOWN", "Entry", "FileStorage", "NotFound", "Storage", "StorageError", "open_storage"]


def open_storage(shared_dir: str | None = None, check: bool = True) -> Storage:
    """A path -> FileStorage; s3://bucket/prefix -> S3Storage. With check, the root must be
    reachable and writable, or ConfigError says why (before any work starts)."""
    where = shared_dir if shared_dir is not None else config.shared_dir()
    scheme, sep, rest = where.partition("://")
    scheme = scheme.lower()
    if not sep:
        storage: Storage = FileStorage(where)
    elif scheme == "file":
        storage = FileStorage(rest)
    elif scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"SHARED_DIR {where!r} names no bucket; use s3://bucket/prefix")
        from studio.storage.s3 import S3Storage  # boto3 only where S3 is used

        try:
            storage = S3Storage(bucket, prefix)
        except ValueError as e:  # e.g. a malformed AWS_ENDPOINT_URL
            raise ConfigError(f"SHARED_DIR {where!r}: cannot set up the S3 client: {e}") from e
    else:
        raise ConfigError(f"SHARED_DIR {where!r}: unknown scheme {scheme!r}; use a path or s3://bucket/prefix")
    if check:
        try:
            storage.check()
        except StorageError as e:
            raise ConfigError(str(e)) from e
    return storage

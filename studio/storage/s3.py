"""Native S3 backend: atomic PUTs and conditional writes (If-None-Match / If-Match)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from studio.storage.base import Entry, Listing, NotFound, Storage, StorageError, check_key

# boto3's own retry mode: exponential backoff plus client-side rate limiting.
CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=5, read_timeout=30)
# A file bigger than this goes up in parts of this size (S3: at most 10,000 parts of at least 5 MiB).
PART_BYTES = 64 << 20
# Codes S3 answers a lost conditional write with (If-Match on a key that is gone: NoSuchKey).
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409", "NoSuchKey", "404"}


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class S3Storage(Storage):
    """Keys live under s3://bucket/prefix/. AWS_ENDPOINT_URL (e.g. a moto server) and the
    standard credential chain are honoured by boto3 itself."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.root = f"s3://{bucket}/{self.prefix}"
        # A session of its own: boto3's default session is not safe to share between threads.
        self.client = client or boto3.session.Session().client("s3", config=CLIENT_CONFIG)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _error(self, e: Exception, what: str, key: str) -> StorageError:
        if isinstance(e, ClientError) and _code(e) in ("NoSuchKey", "404", "NotFound"):
            return NotFound(key)
        if isinstance(e, ClientError) and _code(e) == "NoSuchBucket":
            return StorageError(f"bucket {self.bucket!r} does not exist")
        return StorageError(f"cannot {what} {self.root}{key}: {e}")

    def read(self, key: str) -> bytes:
        return self.read_versioned(key)[0]

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return obj["Body"].read(), obj["ETag"]
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "read", key) from e

    def write(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "write", key) from e

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(e, "look up", key) from e
        except BotoCoreError as e:
            raise self._error(e, "look up", key) from e

    def _pages(self, prefix: str, delimiter: str | None) -> Iterator[dict]:
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + (check_key(prefix) if prefix else "")}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "list", prefix) from e

    def _entry(self, obj: dict) -> Entry:
        return Entry(obj["Key"][len(self.prefix) :], obj["Size"], obj["LastModified"].timestamp())

    def _all(self, prefix: str) -> Iterator[Entry]:
        for page in self._pages(prefix, None):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):  # a folder marker (s3fs, the S3 console) is no object
                    yield self._entry(obj)

    def list(self, prefix: str) -> Iterator[Entry]:
        # Like the filesystem: hidden names below the prefix's folder (files or folders) are not listed.
        folder = prefix.rpartition("/")[0]
        start = len(folder) + 1 if folder else 0
        for entry in self._all(prefix):
            if not any(part.startswith(".") for part in entry.key[start:].split("/")):
                yield entry

    def info(self, key: str) -> Entry:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(key) from None
            raise self._error(e, "look up", key) from e
        except BotoCoreError as e:
            raise self._error(e, "look up", key) from e
        return Entry(key, head["ContentLength"], head["LastModified"].timestamp())

    def list_dir(self, prefix: str, stat: bool = True) -> Listing:
        """A listing carries size and time anyway: stat is ignored."""
        dirs: list[str] = []
        files: list[Entry] = []
        start = len(self.prefix + prefix)
        for page in self._pages(prefix, "/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][start:].rstrip("/")
                if name and not name.startswith("."):
                    dirs.append(name)
            for obj in page.get("Contents", []):
                entry = self._entry(obj)
                if entry.name and not entry.name.startswith("."):  # no folder marker, no hidden name
                    files.append(entry)
        return sorted(dirs), sorted(files, key=lambda e: e.key)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "delete", key) from e

    def delete_prefix(self, prefix: str) -> int:
        keys = [self.prefix + e.key for e in self._all(prefix)]
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (ClientError, BotoCoreError) as e:
                raise self._error(e, "delete", prefix) from e
        return len(keys)

    def move(self, src: str, dst: str) -> None:
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=self._key(dst), CopySource={"Bucket": self.bucket, "Key": self._key(src)}
            )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "move", src) from e
        self.delete(src)

    def _put_if(self, key: str, data: bytes | BinaryIO, **condition: str) -> str | None:
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as e:
            if _code(e) in _CONDITION_FAILED:
                return None
            raise self._error(e, "write", key) from e
        except BotoCoreError as e:
            raise self._error(e, "write", key) from e
        return answer["ETag"]

    def publish_file(self, key: str, source: Path) -> bool:
        """If-None-Match: * on the PUT, or on completing a multipart upload for a file over PART_BYTES."""
        try:
            if source.stat().st_size <= PART_BYTES:
                with open(source, "rb") as body:
                    published = self._put_if(key, body, IfNoneMatch="*") is not None
            else:
                published = self._put_parts(key, source)
            source.unlink()
            return published
        except OSError as e:
            raise StorageError(f"cannot publish {source} at {self.root}{key}: {e.strerror}") from e

    def _put_parts(self, key: str, source: Path) -> bool:
        target = {"Bucket": self.bucket, "Key": self._key(key)}
        try:
            upload = self.client.create_multipart_upload(**target)["UploadId"]
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "write", key) from e
        try:
            parts = []
            with open(source, "rb") as src:
                for number, chunk in enumerate(iter(lambda: src.read(PART_BYTES), b""), start=1):
                    answer = self.client.upload_part(**target, UploadId=upload, PartNumber=number, Body=chunk)
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self.client.complete_multipart_upload(
                **target, UploadId=upload, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
            )
            return True
        except BaseException as e:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(**target, UploadId=upload)
            if isinstance(e, ClientError) and _code(e) in _CONDITION_FAILED:
                return False
            if isinstance(e, (ClientError, BotoCoreError)):
                raise self._error(e, "write", key) from e
            raise

    def create_exclusive(self, key: str, data: bytes) -> str | None:
        return self._put_if(key, data, IfNoneMatch="*")

    def replace_if(self, key: str, data: bytes, version: str) -> str | None:
        return self._put_if(key, data, IfMatch=version)

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"SHARED_DIR {self.root}: bucket {self.bucket!r} does not exist") from e
            if _code(e) in ("403", "AccessDenied"):
                raise StorageError(f"SHARED_DIR {self.root}: access to bucket {self.bucket!r} denied") from e
            raise StorageError(f"SHARED_DIR {self.root}: {e}") from e
        except EndpointConnectionError as e:
            raise StorageError(f"SHARED_DIR {self.root}: S3 unreachable: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"SHARED_DIR {self.root}: {e}") from e

"""The storage interface both servers use; keys come from studio.layout."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


class StorageError(Exception):
    """Storage is unreachable or refused an operation; the message says what and where."""


class NotFound(StorageError):
    """No object at that key."""


UNKNOWN = -1.0  # Entry.mtime of a listing made with stat=False


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    mtime: float  # seconds since the epoch

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


# One level of a folder: (sub-folder names, files). Named outside Storage, whose method `list` hides the type.
Listing = tuple[list[str], list[Entry]]


@dataclass(frozen=True)
class ServedFile:
    """An object opened for sending (Server1's /files/): its bytes, size and an HTTP entity tag."""

    file: BinaryIO
    size: int
    etag: str  # changes whenever the bytes do


def content_version(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - a version tag, like S3's ETag


class Storage(ABC):
    """Byte storage under one root, addressed by relative '/'-separated keys.

    Every write is atomic: a reader sees the old object or the new one, never a part.
    Names starting with '.' inside a folder are the backend's own (temporary files,
    locks) and are never listed.
    """

    root: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The object's bytes; NotFound if there is none."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Publish data at key atomically, replacing what was there."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[Entry]:
        """Every object whose key starts with prefix, at any depth (paginated underneath)."""

    @abstractmethod
    def list_dir(self, prefix: str, stat: bool = True) -> Listing:
        """One level below prefix (a folder ending in '/'): (sub-folder names, files).

        stat=False lets a backend that pays per file for size and time (a filesystem) leave
        them out: such entries have mtime UNKNOWN and size -1; info() gives them per key."""

    @abstractmethod
    def info(self, key: str) -> Entry:
        """Size and time of one object; NotFound if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key; no error if it is already gone."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under prefix; returns how many."""

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Make src's object visible at dst (replacing it) and remove src."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """(bytes, version) for a later replace_if; NotFound if there is none."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> str | None:
        """Create key only if absent, atomically: its version, or None if it exists."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, version: str) -> str | None:
        """Replace key only if it is still at version: the new version, or None if not."""

    @abstractmethod
    def publish_file(self, key: str, source: Path) -> bool:
        """Publish the local file source at key unless key exists, atomically: True if published,
        False if an object was there already (it stays). Never a partial object at key. source is
        removed once published or refused (a filesystem may publish its very inode)."""

    def staging_path(self, key: str) -> Path:
        """Where to prepare a local file for publish_file(key) (a download): a hidden name in a local
        temporary folder, unless the backend can publish from somewhere cheaper."""
        folder = Path(tempfile.gettempdir()) / "sam-studio-staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{check_key(key).replace('/', '--')}.part"

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError with a clear message unless the root is reachable and writable."""

    def local_path(self, key: str) -> Path | None:
        """A file path for key when the backend is a filesystem (for sending files)."""
        return None

    def open_file(self, key: str) -> ServedFile:
        """key's object opened for sending; NotFound if there is none or the key may not be served
        (a filesystem refuses a symlink anywhere below the root)."""
        data, version = self.read_versioned(key)
        return ServedFile(io.BytesIO(data), len(data), version.strip('"'))

    def read_json(self, key: str) -> Any:
        """The JSON document at key (NotFound, or ValueError when it is no JSON)."""
        return json.loads(self.read(key))

    def write_json(self, key: str, value: object, indent: int | None = None) -> None:
        """value as JSON at key: compact, or indented for a file people read."""
        separators = (",", ":") if indent is None else None
        self.write(key, json.dumps(value, separators=separators, indent=indent).encode())


def check_key(key: str) -> str:
    """Refuse keys that could leave the root, whatever the backend."""
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in ("", ".", "..") for part in key.rstrip("/").split("/"))
    ):
        raise StorageError(f"invalid storage key: {key!r}")
    return key

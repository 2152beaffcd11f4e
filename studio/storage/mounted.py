"""Filesystem backend for a folder without hard links: a FUSE-mounted bucket on one host."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from studio.storage.base import ServedFile, Storage, StorageError, content_version
from studio.storage.fs import FolderStorage
from studio.storage.mounts import MOUNTPOINT_S3, mount_of

COPY_CHUNK = 1 << 20


class MountedFileStorage(FolderStorage):
    """A FUSE-mounted bucket (s3fs, rclone, Mountpoint for S3, ...; see studio.storage.mounts), or a
    file system FileStorage.check() found without hard links. Exclusive create is
    open(O_CREAT|O_EXCL), which the kernel serialises per folder on one host, and every read, write,
    move and conditional replace of one key runs under a host-local flock (in TMPDIR, never on the
    bucket), so a reader never sees a claim half written nor a file missing while s3fs replaces it.
    That is exclusive on ONE host only: for several hosts set S3_BUCKET, and open_storage routes
    everything through the S3 API (studio.storage.bucket_mount).

    Mountpoint for S3 cannot rename and overwrites only with --allow-overwrite (its
    SEMANTICS.md, "Reading and writing files"), but uploads a new file atomically on close:
    there every write goes straight to its name, and a move is a copy and a delete.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self.mount = mount_of(self.path)
        # The bucket's client (s3fs, rclone, ...), or None on a file system without hard links.
        self.bucket_client = self.mount.bucket_client if self.mount else None
        self.renames = self.bucket_client != MOUNTPOINT_S3

    def _mounted(self) -> None:
        """A bucket mount that went away (fusermount -u, a client that died) leaves its empty folder
        behind: writes there would land on this host's own disk, hidden once the bucket is mounted
        again, and reads would find nothing (every login would look ended). An outage instead."""
        if self.mount is not None and self.bucket_client is not None and not os.path.ismount(self.mount.point):
            raise StorageError(f"the {self.bucket_client} mount at {self.mount.point} is gone")

    def _landed(self, path: Path) -> None:
        """After a write: a mount that went away after _mounted() looked leaves what was just written on
        the host's own disk; remove it and the folders made for it (s3fs will not mount over a non-empty
        folder) and report the outage, so the caller tries again once the bucket is back."""
        if self.mount is None or self.bucket_client is None:
            return
        try:
            local = os.stat(path).st_dev == os.stat(self.mount.point.parent).st_dev
        except OSError:
            return  # a client that died answers ENOTCONN: nothing landed on this disk
        if not local:
            return
        with contextlib.suppress(OSError):
            path.unlink()
        for folder in path.parents:
            if folder == self.mount.point:
                break
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty ones
        raise StorageError(f"the {self.bucket_client} mount at {self.mount.point} is gone")

    def _lock_folder(self) -> Path:
        """Host-local: a lock file on the mount would be an object in the bucket, and exclusive on one
        host anyway."""
        return Path(tempfile.gettempdir()) / "sam-studio-locks"

    def _guard(self, path: Path) -> contextlib.AbstractContextManager:
        """Reads too take turns with the writes of one key under its lock: s3fs replaces a file by copy
        and delete, so a reader in between would find nothing, and an exclusive create must not be
        read before its bytes are in."""
        return self._locked(path)

    def open_file(self, key: str) -> ServedFile:
        """The bytes, read under the key's lock (see _guard)."""
        self._served_path(key)
        return Storage.open_file(self, key)

    def _publish(self, path: Path, data: bytes) -> None:
        if self.renames:
            super()._publish(path, data)
            return
        # Mountpoint for S3: no rename, but the object appears whole when the file is closed.
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def write(self, key: str, data: bytes) -> None:
        if self.renames:
            super().write(key, data)
            return
        path = self._path(key)
        try:
            with self._locked(path):
                self._publish(path, data)
        except OSError as e:
            raise StorageError(f"cannot write {key} under {self.root}: {e.strerror}") from e
        self._landed(path)

    def move(self, src: str, dst: str) -> None:
        if self.renames:
            super().move(src, dst)
            return
        self.write(dst, self.read(src))
        self.delete(src)

    def create_exclusive(self, key: str, data: bytes) -> str | None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return None
                with open(fd, "wb") as f:
                    f.write(data)
        except OSError as e:
            raise StorageError(f"cannot create {key}: {e.strerror}") from e
        self._landed(path)
        return content_version(data)

    def _publish_new(self, source: Path, path: Path) -> bool:
        """Under the key's lock (exclusive on this host, as every claim on a mount alone): nothing at
        path yet, then the copy appears whole: a rename, or on Mountpoint for S3 an exclusive create
        (it uploads a new file whole on close). A reader such as Server2 loading weights from the
        mount never sees a file half copied."""
        with self._locked(path):
            if path.exists():
                return False
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}") if self.renames else path
            try:
                with open(source, "rb") as src, open(tmp, "xb") as out:
                    shutil.copyfileobj(src, out, COPY_CHUNK)
                if tmp != path:
                    os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return True

    def _hint(self, step: str) -> str:
        if self.bucket_client == MOUNTPOINT_S3 and step == "replace files":
            return "; mount the bucket with mount-s3 --allow-overwrite --allow-delete"
        if self.bucket_client == MOUNTPOINT_S3 and step == "delete files":
            return "; mount the bucket with mount-s3 --allow-delete --allow-overwrite"
        if self.mount is not None and self.bucket_client:
            return (
                f"; check the {self.bucket_client} mount at {self.mount.point} (or use SHARED_DIR=s3://bucket/prefix)"
            )
        return ""

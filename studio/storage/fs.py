"""Filesystem backend: a local folder, or a FUSE-mounted bucket on one host."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

from studio.storage.base import (
    UNKNOWN,
    Entry,
    Listing,
    NotFound,
    ServedFile,
    Storage,
    StorageError,
    check_key,
    content_version,
)
from studio.storage.mounts import MOUNTPOINT_S3, mount_of

# link(2) on a file system without hard links: s3fs says EOPNOTSUPP, rclone EIO, others EPERM/ENOSYS.
_NO_LINKS = {errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS, errno.EIO, errno.EXDEV}
COPY_CHUNK = 1 << 20
LOCK_STRIPES = 64  # host-local lock files: keys share them by hash, so their number stays bounded


class FileStorage(Storage):
    """Atomic writes by write-to-temporary + rename; exclusive create by link(2), which
    fails if the name exists; writes and conditional replaces of one key take turns under an
    flock on a hidden lock file. These are atomic across processes of one host.

    On a FUSE-mounted bucket (s3fs, rclone, Mountpoint for S3, ...; see studio.storage.mounts)
    there are no hard links: exclusive create is open(O_CREAT|O_EXCL), which the kernel
    serialises per folder on one host, and every read, write, move and conditional replace
    of one key runs under a host-local flock (in TMPDIR, never on the bucket), so a reader
    never sees a claim half written nor a file missing while s3fs replaces it. That is
    exclusive on ONE host only: for several hosts set S3_BUCKET, and open_storage routes
    everything through the S3 API (studio.storage.bucket_mount).

    Mountpoint for S3 cannot rename and overwrites only with --allow-overwrite (its
    SEMANTICS.md, "Reading and writing files"), but uploads a new file atomically on close:
    there every write goes straight to its name, and a move is a copy and a delete.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).expanduser().absolute()
        self.root = str(self.path)
        self.mount = mount_of(self.path)
        # A bucket client (s3fs, rclone, ...) or None for a plain file system.
        self.bucket_client = self.mount.bucket_client if self.mount else None
        self.hard_links = self.bucket_client is None  # check() finds out for other file systems
        self.renames = self.bucket_client != MOUNTPOINT_S3

    # -- paths -------------------------------------------------------------------
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

    def _path(self, key: str) -> Path:
        check_key(key)
        self._mounted()
        path = self.path / key
        # A symlink planted in the storage must not lead outside the root.
        real = Path(os.path.realpath(path))
        base = Path(os.path.realpath(self.path))
        if real != base and base not in real.parents:
            raise StorageError(f"storage key leads outside the root: {key!r}")
        # Nor into another top-level folder: a link in bob/ never reads or writes alice's files.
        top = base / key.split("/", 1)[0]
        if real != top and top not in real.parents:
            raise StorageError(f"storage key leads outside its folder {top.name!r}: {key!r}")
        return path

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def open_file(self, key: str) -> ServedFile:
        try:
            path = self._path(key)
        except StorageError:  # an invalid key, or a symlink leading out of the root or the user's folder
            raise NotFound(key) from None
        # Refuse a symlink anywhere below the root, even one that stays inside the folder.
        if os.path.realpath(path) != os.path.join(os.path.realpath(self.path), key):
            raise NotFound(key)
        if not self.hard_links:  # a bucket mount: the bytes, read under the key's lock (see _guard)
            return super().open_file(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - the response closes it once sent
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e.strerror}") from e
        stat = os.fstat(file.fileno())
        return ServedFile(file, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")

    def _write_tmp(self, path: Path, data: bytes) -> Path:
        """data in a hidden temporary file beside path; StorageError when the folder is unusable
        (e.g. a file stands where the folder should be), so no caller sees a bare OSError."""
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
        except BaseException as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise StorageError(f"cannot write {path.name} in {path.parent}: {e.strerror}") from e
            raise
        return tmp

    # -- plain operations -------------------------------------------------------
    def _guard(self, path: Path) -> contextlib.AbstractContextManager:
        """Without hard links (a bucket mount), reads too take turns with the writes of one key under
        its host-local lock: s3fs replaces a file by copy and delete, so a reader in between would
        find nothing, and an exclusive create must not be read before its bytes are in."""
        return contextlib.nullcontext() if self.hard_links else self._locked(path)

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with self._guard(path):
                return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._mounted()  # gone meanwhile: an outage, not a missing file
            raise NotFound(key) from None
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e.strerror}") from e

    def _publish(self, path: Path, data: bytes) -> None:
        if self.renames:
            os.replace(self._write_tmp(path, data), path)
            return
        # Mountpoint for S3: no rename, but the object appears whole when the file is closed.
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def write(self, key: str, data: bytes) -> None:
        """Under the key's lock, as replace_if: a write never lands between its compare and publish."""
        path = self._path(key)
        try:
            if self.renames:  # the bytes go up before the lock is taken; only the rename waits for it
                tmp = self._write_tmp(path, data)
                with self._locked(path):
                    os.replace(tmp, path)
            else:
                with self._locked(path):
                    self._publish(path, data)
        except OSError as e:
            raise StorageError(f"cannot write {key} under {self.root}: {e.strerror}") from e
        self._landed(path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[Entry]:
        if prefix:
            check_key(prefix)
        self._mounted()
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.path
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(self.path).as_posix()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                key = f"{rel}/{name}" if rel != "." else name
                if key.startswith(prefix):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    yield Entry(key, st.st_size, st.st_mtime)

    def info(self, key: str) -> Entry:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as e:
            raise StorageError(f"cannot look up {key}: {e.strerror}") from e
        return Entry(key, st.st_size, st.st_mtime)

    def list_dir(self, prefix: str, stat: bool = True) -> Listing:
        self._mounted()
        base = self._path(prefix) if prefix else self.path
        dirs: list[str] = []
        files: list[Entry] = []
        try:
            with os.scandir(base) as it:
                for item in it:
                    if item.name.startswith("."):
                        continue
                    try:
                        if item.is_dir():
                            dirs.append(item.name)
                        elif item.is_file() and not stat:
                            files.append(Entry(prefix + item.name, -1, UNKNOWN))
                        elif item.is_file():  # one stat(2) each: the cost of a big folder
                            st = item.stat()
                            files.append(Entry(prefix + item.name, st.st_size, st.st_mtime))
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            raise StorageError(f"cannot list {prefix or '/'} under {self.root}: {e.strerror}") from e
        return sorted(dirs), sorted(files, key=lambda e: e.key)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            pass
        except OSError as e:
            raise StorageError(f"cannot delete {key}: {e.strerror}") from e

    def delete_prefix(self, prefix: str) -> int:
        if prefix.endswith("/"):
            folder = self._path(prefix)
            count = sum(1 for _ in self.list(prefix))
            try:
                shutil.rmtree(folder)
            except FileNotFoundError:
                pass  # already gone (or removed by another worker while we went through it)
            except OSError as e:
                raise StorageError(f"cannot delete {prefix} under {self.root}: {e.strerror}") from e
            return count
        keys = [e.key for e in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def move(self, src: str, dst: str) -> None:
        target = self._path(dst)
        if not self.renames:
            self.write(dst, self.read(src))
            self.delete(src)
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(target):
                os.replace(self._path(src), target)
        except FileNotFoundError:
            raise NotFound(src) from None
        except OSError as e:
            raise StorageError(f"cannot move {src} to {dst}: {e.strerror}") from e

    # -- conditional operations --------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """An exclusive flock for path's key, one of LOCK_STRIPES lock files: in the root's hidden
        .locks/ on a plain file system (shared by everyone who mounts that folder), in a host-local
        folder on a bucket mount (a lock file there would be an object in the bucket, and
        exclusive on one host anyway)."""
        folder = self.path / ".locks" if self.hard_links else Path(tempfile.gettempdir()) / "sam-studio-locks"
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / f"{zlib.crc32(str(path).encode()) % LOCK_STRIPES}.lock"
        with open(lock, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.read(key)
        return data, content_version(data)

    def create_exclusive(self, key: str, data: bytes) -> str | None:
        path = self._path(key)
        if not self.hard_links:
            return self._create_excl(key, path, data)
        tmp = self._write_tmp(path, data)
        try:
            os.link(tmp, path)  # fails with EEXIST if the name is taken: the atomic test
        except FileExistsError:
            return None
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise StorageError(f"cannot create {key}: {e.strerror}") from e
            return None
        finally:
            tmp.unlink(missing_ok=True)
        return content_version(data)

    def _create_excl(self, key: str, path: Path, data: bytes) -> str | None:
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

    def publish_file(self, key: str, source: Path) -> bool:
        """A link on a file system with hard links (a copy beside the name first when source is on
        another one); on a bucket mount a copy under the key's lock (see _copy_new)."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            published = self._link(source, path) if self.hard_links else self._copy_new(source, path)
            source.unlink()
        except OSError as e:
            raise StorageError(f"cannot publish {key} under {self.root}: {e.strerror}") from e
        return published

    def _copy_new(self, source: Path, path: Path) -> bool:
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

    def _link(self, source: Path, path: Path) -> bool:
        try:
            os.link(source, path)  # fails with EEXIST if the name is taken: the atomic test
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")  # same file system as path
        try:
            shutil.copyfile(source, tmp)
            return self._link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def staging_path(self, key: str) -> Path:
        """Beside key with hard links, so publish_file is a link; else (a bucket mount) a local folder."""
        if not self.hard_links:
            return super().staging_path(key)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.part")

    def replace_if(self, key: str, data: bytes, version: str) -> str | None:
        path = self._path(key)
        if not path.parent.is_dir():
            return None  # nothing there to replace
        with self._locked(path):
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                return None
            if content_version(current) != version:
                return None
            try:
                self._publish(path, data)
            except OSError as e:
                raise StorageError(f"cannot write {key} under {self.root}: {e.strerror}") from e
            return content_version(data)

    def check(self) -> None:
        """The root is a writable folder that can do what the servers need: write, overwrite,
        refuse an exclusive create of an existing name, delete. Finds out whether it has hard
        links (a FUSE client of an unknown kind may not)."""
        if self.path.exists() and not self.path.is_dir():
            raise StorageError(f"SHARED_DIR {self.root} is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"SHARED_DIR {self.root} cannot be created: {e.strerror}") from e
        probe = self.path / f".write-test-{uuid.uuid4().hex}"
        step = "write files"
        try:
            self._publish(probe, b"ok")
            step = "replace files"
            self._publish(probe, b"ok2")
            step = "create files exclusively"
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass  # refused, as the job protocol's claims need
            else:  # outside the try: this OSError is itself a FileExistsError
                raise OSError(errno.EEXIST, "an exclusive create (O_EXCL) of an existing name succeeded")
            if self.hard_links:
                self.hard_links = self._has_hard_links(probe)
            step = "delete files"
            probe.unlink()
        except (OSError, StorageError) as e:
            with contextlib.suppress(OSError):
                probe.unlink()
            cause = e.__cause__ if isinstance(e, StorageError) else e  # _write_tmp wraps the OSError
            why = cause.strerror if isinstance(cause, OSError) else str(e)
            what = "is not writable" if step == "write files" else f"cannot {step}"
            raise StorageError(f"SHARED_DIR {self.root} {what}: {why}{self._hint(step)}") from e

    def _has_hard_links(self, probe: Path) -> bool:
        link = probe.with_name(probe.name + "-link")
        try:
            os.link(probe, link)
        except OSError as e:
            if e.errno in _NO_LINKS:
                return False
            raise
        link.unlink()
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

"""Filesystem backends: what a folder on one host does, and a local folder with hard links.

studio.storage.mounted holds the other one, a folder without hard links (a FUSE-mounted bucket)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
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

# link(2) on a file system without hard links: s3fs says EOPNOTSUPP, rclone EIO, others EPERM/ENOSYS.
_NO_LINKS = {errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS, errno.EIO, errno.EXDEV}
LOCK_STRIPES = 64  # lock files: keys share them by hash, so their number stays bounded


class NoHardLinks(StorageError):
    """FileStorage.check() found a file system without hard links: MountedFileStorage serves it."""


class FolderStorage(Storage):
    """What every folder backend does alike: keys as paths that never lead out of the root or the
    key's top-level folder, atomic writes by write-to-temporary + rename, listing and deleting,
    and writes and conditional replaces of one key taking turns under an flock on a lock file.

    Subclasses say where the lock files live, how a name is created exclusively and how a local
    file is published; a bucket mount also checks, around each operation, that it is still there."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).expanduser().absolute()
        self.root = str(self.path)

    # -- hooks -------------------------------------------------------------------
    def _mounted(self) -> None:
        """Before an operation: StorageError if the folder's file system went away (a bucket mount)."""

    def _landed(self, path: Path) -> None:
        """After a write: StorageError if it landed where the file system should have been."""

    def _lock_folder(self) -> Path:
        raise NotImplementedError

    def _guard(self, path: Path) -> contextlib.AbstractContextManager:
        """What a read of path holds: nothing where a replace is one rename."""
        return contextlib.nullcontext()

    def _publish_new(self, source: Path, path: Path) -> bool:
        """source at path unless a file is there: True if published."""
        raise NotImplementedError

    def _hint(self, step: str) -> str:
        """What to do when the start-up check failed at step."""
        return ""

    # -- paths -------------------------------------------------------------------
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

    def _served_path(self, key: str) -> Path:
        """key's path for open_file; NotFound for an invalid key or a symlink anywhere below the root."""
        try:
            path = self._path(key)
        except StorageError:  # an invalid key, or a symlink leading out of the root or the user's folder
            raise NotFound(key) from None
        # Refuse a symlink anywhere below the root, even one that stays inside the folder.
        if os.path.realpath(path) != os.path.join(os.path.realpath(self.path), key):
            raise NotFound(key)
        return path

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
        os.replace(self._write_tmp(path, data), path)

    def write(self, key: str, data: bytes) -> None:
        """Under the key's lock, as replace_if: a write never lands between its compare and publish.
        The bytes go up before the lock is taken; only the rename waits for it."""
        path = self._path(key)
        try:
            tmp = self._write_tmp(path, data)
            with self._locked(path):
                os.replace(tmp, path)
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
        """An exclusive flock for path's key, one of LOCK_STRIPES lock files in _lock_folder()."""
        folder = self._lock_folder()
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / f"{zlib.crc32(str(path).encode()) % LOCK_STRIPES}.lock"
        with open(lock, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.read(key)
        return data, content_version(data)

    def publish_file(self, key: str, source: Path) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            published = self._publish_new(source, path)
            source.unlink()
        except OSError as e:
            raise StorageError(f"cannot publish {key} under {self.root}: {e.strerror}") from e
        return published

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
        refuse an exclusive create of an existing name, delete."""
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
            step = "delete files"
            probe.unlink()
        except (OSError, StorageError) as e:
            with contextlib.suppress(OSError):
                probe.unlink()
            cause = e.__cause__ if isinstance(e, StorageError) else e  # _write_tmp wraps the OSError
            why = cause.strerror if isinstance(cause, OSError) else str(e)
            what = "is not writable" if step == "write files" else f"cannot {step}"
            raise StorageError(f"SHARED_DIR {self.root} {what}: {why}{self._hint(step)}") from e


class FileStorage(FolderStorage):
    """A local folder (or one shared by a file system with hard links): exclusive create by link(2),
    which fails if the name exists; the lock files in the root's hidden .locks/, shared by everyone
    who mounts that folder. These are atomic across processes of one host."""

    def _lock_folder(self) -> Path:
        return self.path / ".locks"

    def open_file(self, key: str) -> ServedFile:
        path = self._served_path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - the response closes it once sent
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e.strerror}") from e
        stat = os.fstat(file.fileno())
        return ServedFile(file, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")

    def create_exclusive(self, key: str, data: bytes) -> str | None:
        path = self._path(key)
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

    def _publish_new(self, source: Path, path: Path) -> bool:
        """A link (a copy beside the name first when source is on another file system)."""
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
            return self._publish_new(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def staging_path(self, key: str) -> Path:
        """Beside key, so publish_file is a link."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.part")

    def check(self) -> None:
        """Also finds out whether the file system has hard links (a FUSE client of an unknown kind may
        not): NoHardLinks if not."""
        super().check()
        probe = self.path / f".link-test-{uuid.uuid4().hex}"
        link = probe.with_name(probe.name + "-link")
        try:
            probe.write_bytes(b"ok")
            os.link(probe, link)
            link.unlink()
        except OSError as e:
            if e.errno not in _NO_LINKS:
                raise StorageError(f"SHARED_DIR {self.root} cannot create files exclusively: {e.strerror}") from e
            raise NoHardLinks(f"SHARED_DIR {self.root} has no hard links") from e
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

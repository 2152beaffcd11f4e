"""Filesystem backend: a local folder (or a FUSE-mounted bucket, with its limits)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from studio.storage.base import (
    UNKNOWN,
    Entry,
    NotFound,
    ServedFile,
    Storage,
    StorageError,
    check_key,
    content_version,
)


class FileStorage(Storage):
    """Atomic writes by write-to-temporary + rename; exclusive create by link(2), which
    fails if the name exists; conditional replace under an flock on a hidden lock file.
    These are atomic across processes of one host. A FUSE-mounted bucket (s3fs,
    mountpoint-s3) gives none of them across hosts: use the S3 backend there."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).expanduser().absolute()
        self.root = str(self.path)

    # -- paths -------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        check_key(key)
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
    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e.strerror}") from e

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            os.replace(self._write_tmp(path, data), path)
        except OSError as e:
            raise StorageError(f"cannot write {key} under {self.root}: {e.strerror}") from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[Entry]:
        if prefix:
            check_key(prefix)
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

    def list_dir(self, prefix: str, stat: bool = True) -> tuple[list[str], list[Entry]]:
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
            shutil.rmtree(folder, ignore_errors=True)
            return count
        keys = [e.key for e in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def move(self, src: str, dst: str) -> None:
        target = self._path(dst)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(src), target)
        except FileNotFoundError:
            raise NotFound(src) from None
        except OSError as e:
            raise StorageError(f"cannot move {src} to {dst}: {e.strerror}") from e

    # -- conditional operations --------------------------------------------------
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.read(key)
        return data, content_version(data)

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

    def replace_if(self, key: str, data: bytes, version: str) -> str | None:
        path = self._path(key)
        if not path.parent.is_dir():
            return None  # nothing there to replace
        lock = path.with_name(f".{path.name}.lock")
        with open(lock, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                return None
            if content_version(current) != version:
                return None
            os.replace(self._write_tmp(path, data), path)
            return content_version(data)

    def check(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StorageError(f"SHARED_DIR {self.root} is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"SHARED_DIR {self.root} cannot be created: {e.strerror}") from e
        probe = self.path / f".write-test-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise StorageError(f"SHARED_DIR {self.root} is not writable: {e.strerror}") from e

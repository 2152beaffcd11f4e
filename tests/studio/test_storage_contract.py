"""One contract for every storage backend: each test runs on a temp folder and on a moto S3 bucket."""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from studio.storage import UNKNOWN, FileStorage, NotFound, Storage, StorageError
from studio.storage import fs as fs_module
from studio.storage import s3 as s3_module
from studio.storage.fs import FolderStorage
from studio.storage.s3 import S3Storage

BAD_KEYS = ["../x", "a/../../x", "a/..", "/etc/passwd", "a\\b", "a\x00b", "", "a//b", "./a", "a/./b"]


def keys(entries) -> list[str]:
    return sorted(e.key for e in entries)


def test_write_read_and_replace(storage: Storage) -> None:
    storage.write("u/a.bin", b"\x00\x01first")
    assert storage.read("u/a.bin") == b"\x00\x01first"
    storage.write("u/a.bin", b"second")
    assert storage.read("u/a.bin") == b"second"
    storage.write("u/empty", b"")
    assert storage.read("u/empty") == b""
    with pytest.raises(NotFound):
        storage.read("u/missing")
    with pytest.raises(NotFound):
        storage.read("u")  # a folder is not an object
    storage.write_json("u/s.json", {"a": [1, 2], "b": None})
    assert storage.read_json("u/s.json") == {"a": [1, 2], "b": None}


def test_readers_never_see_a_partial_write(storage: Storage) -> None:
    big = {b"a" * 300_000, b"b" * 200_000}
    storage.write("u/big", b"a" * 300_000)
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(storage.read("u/big"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            storage.write("u/big", b"b" * 200_000 if i % 2 else b"a" * 300_000)
    finally:
        stop.set()
        thread.join()
    assert seen and all(data in big for data in seen)


def test_exists(storage: Storage) -> None:
    storage.write("u/f/x.png", b"x")
    assert storage.exists("u/f/x.png")
    assert not storage.exists("u/f/y.png")
    assert not storage.exists("u/f")  # folders are not objects
    storage.delete("u/f/x.png")
    assert not storage.exists("u/f/x.png")


def test_list_is_recursive_and_matches_prefixes(storage: Storage) -> None:
    for key in ["u/a.txt", "u/ab/x", "u/ab/deep/y", "u/b.txt", "v/a.txt"]:
        storage.write(key, key.encode())
    before = time.time()
    assert keys(storage.list("u/")) == ["u/a.txt", "u/ab/deep/y", "u/ab/x", "u/b.txt"]
    assert keys(storage.list("u/a")) == ["u/a.txt", "u/ab/deep/y", "u/ab/x"]
    assert keys(storage.list("")) == ["u/a.txt", "u/ab/deep/y", "u/ab/x", "u/b.txt", "v/a.txt"]
    assert list(storage.list("w/")) == []
    assert list(storage.list("u/zz")) == []
    entry = next(e for e in storage.list("u/ab/deep/"))
    assert (entry.key, entry.name, entry.size) == ("u/ab/deep/y", "y", len(b"u/ab/deep/y"))
    assert abs(entry.mtime - before) < 60


def test_list_dir_gives_one_level(storage: Storage) -> None:
    for key in ["u/a.txt", "u/b.txt", "u/sub/x", "u/sub/deeper/y", "u/other/z", "u/.hidden", "u/.tmpdir/q"]:
        storage.write(key, b"1")
    dirs, files = storage.list_dir("u/")
    assert dirs == ["other", "sub"]
    assert [(f.key, f.name, f.size) for f in files] == [("u/a.txt", "a.txt", 1), ("u/b.txt", "b.txt", 1)]
    assert storage.list_dir("u/sub/") == (["deeper"], [next(iter(storage.list("u/sub/x")))])
    assert storage.list_dir("nothing/") == ([], [])
    root_dirs, root_files = storage.list_dir("")
    assert (root_dirs, root_files) == (["u"], [])


def test_hidden_names_are_never_listed(storage: Storage) -> None:
    """Names starting with '.' are the backend's own (temporary files, locks), at any depth."""
    storage.write("u/f/visible", b"1")
    storage.write("u/f/.x.tmp-123", b"partial")
    storage.write("u/.cache/f/inside", b"1")
    assert keys(storage.list("u/")) == ["u/f/visible"]
    assert keys(storage.list("")) == ["u/f/visible"]
    assert storage.list_dir("u/") == (["f"], [])
    assert keys(storage.list_dir("u/f/")[1]) == ["u/f/visible"]
    # A hidden folder can still be listed by naming it (server-private state lives there).
    assert keys(storage.list("u/.cache/")) == ["u/.cache/f/inside"]


def test_temporary_files_of_writes_in_progress_are_not_listed(storage: Storage) -> None:
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            storage.write(f"u/w/{i % 5}.bin", b"z" * 100_000)
            i += 1

    storage.write("u/w/0.bin", b"z")  # something to list even if the writer starts late
    thread = threading.Thread(target=writer)
    thread.start()
    names: set[str] = set()
    try:
        for _ in range(30):
            names |= {e.name for e in storage.list("u/")}
            names |= {e.name for e in storage.list_dir("u/w/")[1]}
    finally:
        stop.set()
        thread.join()
    assert names and names <= {f"{i}.bin" for i in range(5)}


def test_info_and_listing_without_times(storage: Storage) -> None:
    storage.write("u/f/a.png", b"12345")
    info = storage.info("u/f/a.png")
    assert (info.key, info.size) == ("u/f/a.png", 5) and info.mtime > 0
    with pytest.raises(NotFound):
        storage.info("u/f/missing.png")
    _, files = storage.list_dir("u/f/", stat=False)
    assert [e.key for e in files] == ["u/f/a.png"]
    # Where a listing leaves the time out, info() supplies the same one.
    assert files[0].mtime == UNKNOWN or files[0] == info


def test_many_objects_are_listed_across_pages(storage: Storage) -> None:
    """S3 answers at most 1000 keys per request: listing, list_dir and delete_prefix must page."""
    calls = []
    if isinstance(storage, S3Storage):
        storage.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    names = [f"many/f/{i:04d}.png" for i in range(1010)] + [f"many/d{i}/x" for i in range(3)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: storage.write(k, b"p"), names))
    assert keys(storage.list("many/")) == sorted(names)
    dirs, files = storage.list_dir("many/f/")
    assert dirs == [] and len(files) == 1010
    assert storage.list_dir("many/")[0] == ["d0", "d1", "d2", "f"]
    if isinstance(storage, S3Storage):
        assert len(calls) >= 4  # list() and list_dir() each needed two pages
    assert storage.delete_prefix("many/") == len(names)
    assert list(storage.list("many/")) == []


def test_delete(storage: Storage) -> None:
    storage.write("u/a", b"1")
    storage.write("u/b", b"2")
    storage.delete("u/a")
    storage.delete("u/a")  # already gone: no error
    storage.delete("u/never")
    assert keys(storage.list("u/")) == ["u/b"]


def test_delete_prefix(storage: Storage) -> None:
    for key in ["u/a.txt", "u/ab/x", "u/ab/deep/y", "u/b.txt", "ua/z"]:
        storage.write(key, b"1")
    assert storage.delete_prefix("u/ab/") == 2
    assert keys(storage.list("")) == ["u/a.txt", "u/b.txt", "ua/z"]
    storage.write("u/ab/x", b"1")
    assert storage.delete_prefix("u/a") == 2  # a plain prefix, not only a folder
    assert keys(storage.list("")) == ["u/b.txt", "ua/z"]
    assert storage.delete_prefix("u/") == 1
    assert storage.delete_prefix("u/") == 0
    assert keys(storage.list("")) == ["ua/z"]  # 'ua/' is not inside 'u/'


def test_move(storage: Storage) -> None:
    storage.write("s/one", b"one")
    storage.write("d/target", b"old")
    storage.move("s/one", "d/target")
    assert storage.read("d/target") == b"one"
    assert not storage.exists("s/one")
    storage.write("s/two", b"two")
    storage.move("s/two", "new/folder/two")
    assert storage.read("new/folder/two") == b"two"
    with pytest.raises(NotFound):
        storage.move("s/missing", "d/x")
    assert not storage.exists("d/x")


def test_create_exclusive(storage: Storage) -> None:
    version = storage.create_exclusive("c/k", b"first")
    assert version is not None
    assert storage.create_exclusive("c/k", b"second") is None
    assert storage.read_versioned("c/k") == (b"first", version)


def test_only_one_of_many_concurrent_creators_wins(storage: Storage) -> None:
    def race(key: str) -> None:
        barrier = threading.Barrier(8)

        def create(i: int) -> str | None:
            barrier.wait()
            return storage.create_exclusive(key, f"writer {i}".encode())

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(create, range(8)))
        winners = [i for i, version in enumerate(results) if version is not None]
        assert len(winners) == 1, f"{key}: {len(winners)} creators won"
        assert storage.read(key) == f"writer {winners[0]}".encode()

    for n in range(10):
        race(f"race/{n}")


def test_replace_if_refuses_a_stale_version(storage: Storage) -> None:
    created = storage.create_exclusive("c/k", b"v1")
    assert created is not None
    second = storage.replace_if("c/k", b"v2", created)  # the version from create_exclusive works
    assert second is not None and second != created
    assert storage.replace_if("c/k", b"v3", created) is None  # stale
    assert storage.read_versioned("c/k") == (b"v2", second)
    assert storage.replace_if("c/missing", b"x", second) is None
    assert storage.replace_if("nofolder/missing", b"x", second) is None
    assert not storage.exists("c/missing") and not storage.exists("nofolder/missing")


def test_only_one_of_many_concurrent_replacers_wins(storage: Storage) -> None:
    for n in range(10):
        key = f"race/{n}"
        version = storage.create_exclusive(key, b"start")
        barrier = threading.Barrier(8)

        def replace(i: int, key: str = key, version: str | None = version) -> str | None:
            barrier.wait()
            return storage.replace_if(key, f"writer {i}".encode(), version)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(replace, range(8)))
        winners = [i for i, v in enumerate(results) if v is not None]
        assert len(winners) == 1, f"{key}: {len(winners)} replacers won"
        assert storage.read(key) == f"writer {winners[0]}".encode()


def test_a_write_never_lands_between_a_conditional_replace_s_compare_and_publish(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor's "done" (replace_if) must not silently overwrite a retry's "queued" (write) that
    came while it was under way: a gate holds replace_if after its compare (a filesystem) or before
    its conditional PUT (S3) until the write has either finished or is waiting for its turn."""
    version = storage.create_exclusive("c/status", b"cutting")
    assert version is not None
    writer_arrived = threading.Event()  # the write finished, or waits for the key's lock
    writer: list[threading.Thread] = []

    def write_queued() -> None:
        storage.write("c/status", b"queued")
        writer_arrived.set()

    def gated(publish):  # noqa: ANN001, ANN202
        def inside_replace_if(*args: object, **kwargs: object) -> object:
            if not writer and (isinstance(storage, FolderStorage) or "IfMatch" in kwargs):
                writer.append(threading.Thread(target=write_queued))
                writer[0].start()
                assert writer_arrived.wait(60), "the write neither finished nor waited for the lock"
            return publish(*args, **kwargs)

        return inside_replace_if

    real_flock = fs_module.fcntl.flock

    def flock(fd: object, operation: int) -> None:  # says when a writer waits for the lock
        try:
            real_flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            if writer and threading.current_thread() is writer[0]:
                writer_arrived.set()
            real_flock(fd, operation)

    monkeypatch.setattr(fs_module.fcntl, "flock", flock)
    if isinstance(storage, FolderStorage):
        monkeypatch.setattr(storage, "_publish", gated(storage._publish))
    else:
        monkeypatch.setattr(storage.client, "put_object", gated(storage.client.put_object))
    storage.replace_if("c/status", b"done", version)
    writer[0].join()
    assert storage.read("c/status") == b"queued"  # either it came after "done", or "done" was refused


def test_publish_file_never_overwrites_and_one_of_many_wins(storage: Storage) -> None:
    staged = storage.staging_path("m/weights.pt")
    staged.write_bytes(b"first")
    assert storage.publish_file("m/weights.pt", staged) is True
    assert storage.read("m/weights.pt") == b"first" and not staged.exists()  # the source is used up
    staged.write_bytes(b"second")
    assert storage.publish_file("m/weights.pt", staged) is False
    assert storage.read("m/weights.pt") == b"first" and not staged.exists()
    assert keys(storage.list("m/")) == ["m/weights.pt"]  # no staged or temporary file listed

    sources = [storage.staging_path(f"m/other-{i}") for i in range(6)]
    for i, source in enumerate(sources):
        source.write_bytes(f"publisher {i}".encode())
    barrier = threading.Barrier(len(sources))

    def publish(source: Path) -> bool:
        barrier.wait()
        return storage.publish_file("m/raced.pt", source)

    with ThreadPoolExecutor(len(sources)) as pool:
        results = list(pool.map(publish, sources))
    assert results.count(True) == 1
    assert storage.read("m/raced.pt") == f"publisher {results.index(True)}".encode()


def test_publish_file_in_parts_never_overwrites(storage: Storage, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Over PART_BYTES S3 uploads in parts, If-None-Match on completing (5 MiB: S3's smallest part)."""
    monkeypatch.setattr(s3_module, "PART_BYTES", 5 << 20)
    data = random.Random(seed).randbytes((11 << 20) + 7)  # three parts, the last a short one
    staged = storage.staging_path("m/big.pt")
    staged.write_bytes(data)
    assert storage.publish_file("m/big.pt", staged) is True
    assert storage.read("m/big.pt") == data
    staged.write_bytes(data[::-1])
    assert storage.publish_file("m/big.pt", staged) is False
    assert storage.read("m/big.pt") == data
    if isinstance(storage, S3Storage):  # nothing left half uploaded
        assert not storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads")


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_unsafe_keys_are_refused(storage: Storage, bad: str) -> None:
    storage.write("u/safe", b"1")
    operations = [
        lambda: storage.read(bad),
        lambda: storage.write(bad, b"x"),
        lambda: storage.exists(bad),
        lambda: storage.delete(bad),
        lambda: storage.create_exclusive(bad, b"x"),
        lambda: storage.replace_if(bad, b"x", "v"),
        lambda: storage.move("u/safe", bad),
        lambda: storage.move(bad, "u/other"),
    ]
    if bad:  # "" is the root: listing it is allowed
        operations += [
            lambda: list(storage.list(bad)),
            lambda: storage.list_dir(bad),
            lambda: storage.delete_prefix(bad),
        ]
    for operation in operations:
        with pytest.raises(StorageError, match="invalid storage key"):
            operation()
    assert keys(storage.list("")) == ["u/safe"]


def test_local_path(storage: Storage) -> None:
    storage.write("u/f.png", b"png bytes")
    if isinstance(storage, FolderStorage):
        path = storage.local_path("u/f.png")
        assert path is not None and path.read_bytes() == b"png bytes"
        assert storage.local_path("u/missing.png") is None
    else:
        assert storage.local_path("u/f.png") is None


def test_check_passes_on_a_usable_root(storage: Storage) -> None:
    storage.check()


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    """A link planted inside the storage folder must not lead to files outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "shared"
    (root / "u").mkdir(parents=True)
    os.symlink(outside, root / "u" / "dirlink")
    os.symlink(outside / "secret", root / "u" / "filelink")
    os.symlink("../../outside/secret", root / "u" / "relative")
    storage = FileStorage(root)
    for key in ["u/dirlink/secret", "u/filelink", "u/relative"]:
        with pytest.raises(StorageError, match="outside the root"):
            storage.local_path(key)
        with pytest.raises(StorageError, match="outside the root"):
            storage.read(key)
    with pytest.raises(StorageError, match="outside the root"):
        storage.write("u/dirlink/planted", b"x")
    with pytest.raises(StorageError, match="outside the root"):
        storage.delete("u/dirlink/secret")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    # A link that stays inside the root is fine.
    (root / "u" / "real").write_bytes(b"ok")
    os.symlink(root / "u" / "real", root / "u" / "inside")
    assert storage.read("u/inside") == b"ok"

"""Storage.open_file, what Server1's /files/ sends, on every backend: the bytes, their size, an
entity tag that changes with them; NotFound for a missing key or (filesystem) any symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio.storage import FileStorage, NotFound, Storage


def test_open_file_gives_bytes_size_and_a_changing_etag(storage: Storage) -> None:
    storage.write("u/f.png", b"png bytes")
    first = storage.open_file("u/f.png")
    with first.file:
        assert first.file.read() == b"png bytes" and first.size == 9 and first.etag
    storage.write("u/f.png", b"other png bytes")
    second = storage.open_file("u/f.png")
    with second.file:
        assert second.file.read() == b"other png bytes" and second.size == 15
    assert second.etag != first.etag
    for missing in ("u/missing.png", "u"):
        with pytest.raises(NotFound):
            storage.open_file(missing)


def test_open_file_refuses_any_symlink_below_the_root(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    for user in ("alice", "bob"):
        (root / user / "input").mkdir(parents=True)
    (root / "bob" / "input" / "private.jpg").write_bytes(b"bob's")
    (root / "alice" / "input" / "own.jpg").write_bytes(b"alice's")
    os.symlink(root / "bob" / "input" / "private.jpg", root / "alice" / "input" / "other.jpg")  # another user's
    os.symlink("own.jpg", root / "alice" / "input" / "alias.jpg")  # inside the same folder
    os.symlink(root / "alice" / "input", root / "alice" / "linked")  # a linked folder
    storage = FileStorage(root)
    for key in ("alice/input/other.jpg", "alice/input/alias.jpg", "alice/linked/own.jpg", "alice/../bob/x"):
        with pytest.raises(NotFound):
            storage.open_file(key)
    served = storage.open_file("alice/input/own.jpg")
    with served.file:
        assert served.file.read() == b"alice's"

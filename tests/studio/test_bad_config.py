"""Bad configuration stops start-up with a clear ConfigError, not a traceback from deep inside."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from studio import config
from studio.errors import ConfigError
from studio.storage import FileStorage, open_storage
from studio.storage.s3 import S3Storage


@pytest.mark.parametrize("where", ["gs://bucket/shared", "http://example.com/x", "ftp://host/dir"])
def test_unknown_scheme(where: str) -> None:
    scheme = where.split("://")[0]
    with pytest.raises(ConfigError, match=f"unknown scheme '{scheme}'; use a path or s3://bucket/prefix"):
        open_storage(where)


@pytest.mark.parametrize("where", ["s3://", "s3:///shared", "S3://"])
def test_s3_without_a_bucket(where: str) -> None:
    with pytest.raises(ConfigError, match="names no bucket; use s3://bucket/prefix"):
        open_storage(where)


def test_missing_bucket(moto_server: object) -> None:
    with pytest.raises(
        ConfigError, match="SHARED_DIR s3://no-such-bucket/shared/: bucket 'no-such-bucket' does not exist"
    ):
        open_storage("s3://no-such-bucket/shared")


def test_invalid_bucket_name(moto_server: object) -> None:
    with pytest.raises(ConfigError, match='Invalid bucket name "no such bucket!"'):
        open_storage("s3://no such bucket!/shared")


def test_unreachable_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a port that nobody listens on
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
    with pytest.raises(ConfigError, match="SHARED_DIR s3://bucket/shared/: S3 unreachable"):
        open_storage("s3://bucket/shared")


def test_malformed_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url")
    with pytest.raises(ConfigError, match="cannot set up the S3 client: Invalid endpoint: not a url"):
        open_storage("s3://bucket/shared")


def test_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores file modes; sysfs refuses new files even to root
        folder = Path("/sys/kernel")
    try:
        with pytest.raises(ConfigError, match=re.escape(f"SHARED_DIR {folder} is not writable: ")):
            open_storage(str(folder))
    finally:
        (tmp_path / "readonly").chmod(0o755)


def test_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    message = f"SHARED_DIR {tmp_path}/file/shared cannot be created: Not a directory"
    with pytest.raises(ConfigError, match=re.escape(message)):
        open_storage(str(tmp_path / "file" / "shared"))


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ConfigError, match=re.escape(f"SHARED_DIR {tmp_path}/file is not a folder")):
        open_storage(str(tmp_path / "file"))


def test_a_file_system_that_ignores_o_excl_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job protocol's claims on a mount rest on O_EXCL refusing an existing name."""
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a: real_open(path, flags & ~os.O_EXCL, *a))
    message = f"SHARED_DIR {tmp_path}/shared cannot create files exclusively: an exclusive create (O_EXCL) of an "
    with pytest.raises(ConfigError, match=re.escape(message)):
        open_storage(str(tmp_path / "shared"))
    assert not [p for p in (tmp_path / "shared").iterdir()]  # the probe is gone


def test_shared_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_root: str) -> None:
    monkeypatch.setenv("SHARED_DIR", "gs://elsewhere")
    with pytest.raises(ConfigError, match="SHARED_DIR 'gs://elsewhere'"):
        open_storage()
    monkeypatch.setenv("SHARED_DIR", str(tmp_path / "new" / "shared"))
    storage = open_storage()
    assert isinstance(storage, FileStorage) and (tmp_path / "new" / "shared").is_dir()
    monkeypatch.setenv("SHARED_DIR", f"file://{tmp_path}/other")
    assert open_storage().root == f"{tmp_path}/other"
    monkeypatch.setenv("SHARED_DIR", s3_root)
    storage = open_storage()
    assert isinstance(storage, S3Storage) and storage.root == s3_root + "/"


def test_check_false_defers_the_check(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    storage = open_storage(str(tmp_path / "file"), check=False)  # e.g. a tool that only builds keys
    assert isinstance(storage, FileStorage)


# -- environment helpers (studio.config) ---------------------------------------------------


def test_env_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_STR", raising=False)
    assert config.env_str("X_STR") is None
    assert config.env_str("X_STR", "dflt") == "dflt"
    monkeypatch.setenv("X_STR", "   ")
    assert config.env_str("X_STR", "dflt") == "dflt"
    monkeypatch.setenv("X_STR", "  value ")
    assert config.env_str("X_STR", "dflt") == "value"


def test_env_int(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_INT", raising=False)
    assert config.env_int("X_INT", 5, 1, 10) == 5
    for raw, value in [("7", 7), (" 10 ", 10), ("1", 1), ("3.0", 3)]:
        monkeypatch.setenv("X_INT", raw)
        assert config.env_int("X_INT", 5, 1, 10) == value
        assert isinstance(config.env_int("X_INT", 5, 1, 10), int)
    for raw, message in [
        ("abc", "X_INT must be a number, got 'abc'"),
        ("11", "X_INT must be between 1 and 10, got '11'"),
        ("0", "X_INT must be between 1 and 10, got '0'"),
        ("nan", "X_INT must be between 1 and 10, got 'nan'"),
        ("2.5", "X_INT must be a whole number, got '2.5'"),
    ]:
        monkeypatch.setenv("X_INT", raw)
        with pytest.raises(ConfigError) as error:
            config.env_int("X_INT", 5, 1, 10)
        assert str(error.value) == message


def test_env_float(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_FLOAT", raising=False)
    assert config.env_float("X_FLOAT", 1.5, 0.1, 60) == 1.5
    monkeypatch.setenv("X_FLOAT", "0.25")
    assert config.env_float("X_FLOAT", 1.5, 0.1, 60) == 0.25
    for raw, message in [
        ("soon", "X_FLOAT must be a number, got 'soon'"),
        ("0.05", "X_FLOAT must be between 0.1 and 60, got '0.05'"),
        ("inf", "X_FLOAT must be between 0.1 and 60, got 'inf'"),
    ]:
        monkeypatch.setenv("X_FLOAT", raw)
        with pytest.raises(ConfigError) as error:
            config.env_float("X_FLOAT", 1.5, 0.1, 60)
        assert str(error.value) == message


def test_env_bool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_BOOL", raising=False)
    assert config.env_bool("X_BOOL") is False
    assert config.env_bool("X_BOOL", True) is True
    for raw in ["1", "true", "YES", " on "]:
        monkeypatch.setenv("X_BOOL", raw)
        assert config.env_bool("X_BOOL") is True
    for raw in ["0", "False", "no", "off"]:
        monkeypatch.setenv("X_BOOL", raw)
        assert config.env_bool("X_BOOL", True) is False
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ConfigError) as error:
        config.env_bool("X_BOOL")
    assert str(error.value) == "X_BOOL must be 1/0, true/false, yes/no or on/off, got 'maybe'"


def test_shared_and_models_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARED_DIR", raising=False)
    monkeypatch.delenv("MODELS_DIR", raising=False)
    monkeypatch.delenv("S3_BUCKET", raising=False)
    assert config.shared_dir() == "/mnt/s3"
    monkeypatch.setenv("S3_BUCKET", "my-bucket")  # only the bucket named: native S3
    assert config.shared_dir() == "s3://my-bucket"
    monkeypatch.delenv("S3_BUCKET")
    assert config.models_dir() == "/mnt/s3/models"
    monkeypatch.setenv("SHARED_DIR", "s3://bucket/prefix/")
    assert config.shared_dir() == "s3://bucket/prefix/"
    assert config.models_dir() == "s3://bucket/prefix/models"
    monkeypatch.setenv("MODELS_DIR", " /opt/models ")
    assert config.models_dir() == "/opt/models"

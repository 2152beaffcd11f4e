"""What the storage layer finds out about a FUSE mount of a bucket, and what it refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness import REPO
from server1.lifecycle.weights import Weights
from studio.errors import ConfigError
from studio.storage import MountedFileStorage, StorageError, open_storage
from studio.storage import bucket_mount as bucket_mount_module
from studio.storage.mounts import mount_of, parse_mountinfo
from studio.storage.s3 import S3Storage
from tests.weights_mirror import blob, entry

MOUNTINFO = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
42 22 0:39 / /mnt/s3 rw,nosuid,nodev,relatime - fuse.s3fs s3fs rw,user_id=0,group_id=0
43 22 0:40 / /mnt/my\\040bucket rw,nosuid,nodev,relatime - fuse.rclone remote:photos/team/a rw,user_id=0
44 22 0:41 / /mnt/mp rw,nosuid,nodev,noatime shared:5 - fuse mountpoint-s3 rw,user_id=0,group_id=0
"""


def test_mountinfo_names_the_client_and_what_rclone_mounts() -> None:
    mounts = {str(m.point): m for m in parse_mountinfo(MOUNTINFO)}
    assert mounts["/"].bucket_client is None
    assert mounts["/mnt/s3"].bucket_client == "s3fs" and mounts["/mnt/s3"].bucket_path() is None
    rclone = mounts["/mnt/my bucket"]  # \040 is a space
    assert (rclone.bucket_client, rclone.bucket_path()) == ("rclone", ("photos", "team/a"))
    assert mounts["/mnt/mp"].bucket_client == "mountpoint-s3"  # optional fields before "-" are skipped


def test_the_real_mounts_are_detected_and_have_no_hard_links(bucket_mount) -> None:
    folder = bucket_mount.folder()
    found = mount_of(folder)  # the folder does not exist yet: its mount point's mount
    assert found is not None and found.point == bucket_mount.point
    assert found.bucket_client == bucket_mount.kind
    storage = open_storage(folder)
    assert isinstance(storage, MountedFileStorage) and storage.bucket_client == bucket_mount.kind
    storage.write("u/a", b"1")
    with pytest.raises(OSError):
        os.link(storage.local_path("u/a"), Path(folder) / "u" / "b")  # why link(2) cannot be the claim


def test_the_s3_api_never_lists_temporary_files_or_folder_markers(bucket_mount) -> None:
    """Writes through the mount upload hidden temporary objects (s3fs also `folder/` markers);
    a reader on the S3 API, as Server2 on SageMaker, must never take one for a job."""
    folder = bucket_mount.folder()
    files = open_storage(folder)
    native = open_storage(bucket_mount.native(folder))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                files.write(f"alice/resized/img{i % 4}.png", b"z" * 50_000)
                i += 1
        except BaseException as e:
            errors.append(e)

    files.write("alice/resized/img0.png", b"z")
    deadline = time.monotonic() + 30  # rclone uploads after --vfs-write-back (5 s)
    while not native.exists("alice/resized/img0.png"):
        assert time.monotonic() < deadline, "the first write never showed through the S3 API"
        time.sleep(0.1)
    thread = threading.Thread(target=writer)
    thread.start()
    names: set[str] = set()
    try:
        for _ in range(40):
            names |= {e.name for e in native.list("alice/")}
            names |= {e.name for e in native.list_dir("alice/resized/")[1]}
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert names and names <= {f"img{i}.png" for i in range(4)}, names
    assert native.list_dir("alice/") == (["resized"], [])


def test_s3_bucket_routes_through_the_api_at_the_prefix_the_mount_shows(bucket_mounts, monkeypatch) -> None:
    s3fs = bucket_mounts["s3fs"]
    folder = s3fs.folder()
    monkeypatch.setenv("S3_BUCKET", s3fs.bucket)
    storage = open_storage(folder)
    assert isinstance(storage, S3Storage) and storage.root == s3fs.native(folder) + "/"
    storage.write("u/x", b"through the API")
    assert (Path(folder) / "u" / "x").read_bytes() == b"through the API"


def test_a_wrong_bucket_or_prefix_stops_start_up_with_one_clear_line(bucket_mounts, monkeypatch) -> None:
    s3fs = bucket_mounts["s3fs"]
    folder = s3fs.folder()
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket-here")
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket-here' does not exist"):
        open_storage(folder)
    monkeypatch.setenv("S3_BUCKET", s3fs.bucket)
    monkeypatch.setenv("S3_MOUNT_PREFIX", "elsewhere")
    monkeypatch.setattr(bucket_mount_module, "SHOW_SECONDS", 1.0)
    with pytest.raises(ConfigError, match="set S3_BUCKET to the mounted bucket and S3_MOUNT_PREFIX"):
        open_storage(folder)

    # Server1 itself: exit status 2 and one line, no traceback.
    env = {**os.environ, "SHARED_DIR": folder, "S3_BUCKET": "no-such-bucket-here", "APP_USER1": "alice"}
    env.update(APP_PASS1="a-long-password-1", SKIP_MODEL_DOWNLOAD="1", PORT="1")
    env.pop("S3_MOUNT_PREFIX")
    done = subprocess.run([sys.executable, "-m", "server1"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, done.stderr
    assert f"s3://no-such-bucket-here/{Path(folder).name}/: bucket 'no-such-bucket-here' does not exist" in lines[0]
    assert f"S3_BUCKET is to name the bucket mounted at {s3fs.point}" in lines[0]
    assert "Traceback" not in done.stderr


def test_without_rename_writes_go_straight_to_their_names(tmp_path: Path, monkeypatch) -> None:
    """Mountpoint for S3 has no rename (docs/SEMANTICS.md of awslabs/mountpoint-s3): the backend must
    not need one there. Shown on a local folder with renaming switched off and os.replace forbidden."""
    storage = MountedFileStorage(tmp_path / "shared")
    storage.renames = False  # what it chooses on a mountpoint-s3 mount

    def no_rename(*args: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "replace", no_rename)
    monkeypatch.setattr(os, "rename", no_rename)
    storage.check()
    storage.write("u/a", b"1")
    storage.write("u/a", b"2")
    version = storage.create_exclusive("u/claim", b"mine")
    assert version and storage.create_exclusive("u/claim", b"theirs") is None
    assert storage.replace_if("u/claim", b"next", version) and storage.read("u/claim") == b"next"
    storage.move("u/a", "u/b")
    assert storage.read("u/b") == b"2" and not storage.exists("u/a")
    for content, published in ((b"weights", True), (b"other", False)):
        staged = storage.staging_path("u/w")
        staged.write_bytes(content)
        assert storage.publish_file("u/w", staged) is published
    assert storage.read("u/w") == b"weights"
    assert sorted(p.name for p in (tmp_path / "shared" / "u").iterdir()) == ["b", "claim", "w"]


def test_an_unknown_file_system_without_hard_links_is_found_by_the_probe(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / f"shared-{uuid.uuid4().hex[:6]}"  # a plain folder, as far as mountinfo tells

    def no_link(*args: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "link", no_link)
    storage = open_storage(str(root))
    assert isinstance(storage, MountedFileStorage) and storage.bucket_client is None
    assert storage.create_exclusive("u/c", b"1") and storage.create_exclusive("u/c", b"2") is None


def test_weights_arrive_on_a_mount_alone(bucket_mount, mirror) -> None:
    """The README's one-host default: MODELS_DIR on the mount, no S3_BUCKET. A mount has no hard links:
    the checked download is published by an exclusive create, and never over a file already there."""
    models = Path(bucket_mount.folder()) / "models"
    data = blob(3 << 20, 5)
    mirror.drop_once.add("yolov8n.pt")  # resumed from the local partial file
    files = [entry(mirror, "yolov8n.pt", data), entry(mirror, "vit_l.pth", blob(5000, 9))]
    models.mkdir(parents=True)
    (models / "vit_l.pth").write_bytes(b"already here")
    weights = Weights(str(models), files, backoff=0.01)
    weights.ensure()
    assert weights.health()["ok"], weights.health()
    assert (models / "yolov8n.pt").read_bytes() == data
    assert (models / "vit_l.pth").read_bytes() == b"already here"
    assert sorted(os.listdir(models)) == ["vit_l.pth", "yolov8n.pt"]  # nothing staged in the bucket
    assert [path for path, _ in mirror.requests] == ["/weights/yolov8n.pt"] * 2


def test_a_dropped_mount_is_an_outage_not_an_empty_folder(droppable_mount) -> None:
    """fusermount -u (or a dead client) leaves the bare folder: nothing may be written to the host's
    own disk there (hidden once remounted), and reads must fail rather than find nothing."""
    storage = MountedFileStorage(droppable_mount.point / "shared")
    storage.write("alice/input/a.jpg", b"1")
    droppable_mount.drop()
    for action in (
        lambda: storage.write("alice/input/b.jpg", b"2"),
        lambda: storage.create_exclusive(".studio/lease.json", b"{}"),
        lambda: storage.read("alice/input/a.jpg"),
        lambda: storage.list_dir("alice/input/"),
        lambda: list(storage.list("")),
    ):
        with pytest.raises(StorageError, match="mount at .* is gone"):
            action()
    assert list(droppable_mount.point.iterdir()) == []  # nothing landed on the host's disk
    droppable_mount.mount()
    assert storage.read("alice/input/a.jpg") == b"1"


def test_a_mount_dropped_between_the_check_and_the_write_leaves_nothing_behind(droppable_mount, monkeypatch) -> None:
    """The mount goes away just after it was seen: the write lands in the bare folder, is taken back and
    reported as an outage; a read that finds nothing there is an outage too, not a missing file."""
    storage = MountedFileStorage(droppable_mount.point / "shared")
    storage.write(".studio/session-a", b"1")
    droppable_mount.drop()
    real = os.path.ismount
    for action in (
        lambda: storage.write(".studio/session-b", b"2"),
        lambda: storage.create_exclusive("alice/output/thumbs/b.jpg", b"2"),
        lambda: storage.read(".studio/session-a"),
    ):
        looks = iter([True])  # the check before the operation still saw the mount
        monkeypatch.setattr(os.path, "ismount", lambda p: next(looks, None) or real(p))
        with pytest.raises(StorageError, match="mount at .* is gone"):
            action()
    assert list(droppable_mount.point.iterdir()) == []  # nothing left on the host's disk
    droppable_mount.mount()
    assert storage.read(".studio/session-a") == b"1"


def test_the_weights_check_after_a_dropped_mount_writes_nothing_under_it(droppable_mount, mirror) -> None:
    """Server1 opens MODELS_DIR at start-up; its leader checks the weights later (a lease taken over, a
    SAM model picked). Done while the mount is away, that check must not create the models folder on the
    host's own disk under the empty mount point: s3fs would then refuse to mount there again."""
    models = droppable_mount.point / "shared" / "models"
    files = [entry(mirror, "yolov8n.pt", blob(4000, 3))]
    weights = Weights(str(models), files, backoff=0.01)
    droppable_mount.drop()
    weights.ensure()
    assert weights.health()["files"]["yolov8n.pt"]["state"] == "failed", weights.health()
    assert list(droppable_mount.point.iterdir()) == []  # nothing landed on the host's disk
    droppable_mount.mount()  # refused if anything had
    weights.want(files)  # a failed file is tried again
    weights.ensure()
    assert weights.health()["ok"], weights.health()
    assert (models / "yolov8n.pt").is_file()

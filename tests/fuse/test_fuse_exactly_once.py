"""Exactly once across FUSE mounts and native S3: worker processes on an s3fs mount and on an
rclone mount of the bucket (SHARED_DIR = the mount, S3_BUCKET set, so their claims go through
the S3 API) race worker processes on the S3 API itself (SHARED_DIR = s3://bucket/prefix) for
jobs uploaded through the mount; the results are read back through the mount."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studio"))

import job_worker  # noqa: E402
from multiworker import Events, make_jobs, race  # noqa: E402

from studio import layout  # noqa: E402
from studio.jobs import Jobs  # noqa: E402
from studio.storage import MountedFileStorage, open_storage  # noqa: E402

JOBS = 60
THREADS = 2  # per process: 5 processes, 10 competing workers


@pytest.mark.slow
def test_every_job_is_done_exactly_once_by_mount_and_native_workers(bucket_mounts: dict, tmp_path: Path) -> None:
    s3fs, rclone = bucket_mounts["s3fs"], bucket_mounts["rclone"]
    folder = s3fs.folder()
    name = Path(folder).name
    native = s3fs.native(folder)
    on_mount = {"S3_BUCKET": s3fs.bucket}
    workers = {
        "s3fs-a": (folder, on_mount),
        "s3fs-b": (folder, on_mount),
        "rclone-a": (str(rclone.point / name), on_mount),
        "native-a": (native, {}),
        "native-b": (native, {}),
    }
    uploads = open_storage(folder)  # as Server1 uploads with the mount alone
    assert isinstance(uploads, MountedFileStorage) and uploads.bucket_client == "s3fs"
    jobs = make_jobs(uploads, JOBS)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()

    started = time.monotonic()
    codes = race(workers, log_dir, THREADS)
    elapsed = time.monotonic() - started
    assert codes == [0] * len(workers)

    events = Events(log_dir)
    expected = set(jobs)
    assert set(events["claim"]) == expected and set(events["done"]) == expected
    claimed_twice = {job: c for job, c in events["claim"].items() if len(c) != 1}
    done_twice = {job: d for job, d in events["done"].items() if len(d) != 1}
    print(
        f"\n{JOBS} jobs, {len(workers) * THREADS} workers ({', '.join(workers)}), {elapsed:.1f}s, "
        f"claimed twice: {len(claimed_twice)}, done twice: {len(done_twice)}, lost: {len(events['lost'])}"
    )
    assert claimed_twice == {} and done_twice == {} and dict(events["lost"]) == {}

    reader = Jobs(uploads, "checker")  # through the mount, as Server1 reads the results
    for user, image_id in jobs:
        [(worker, token)] = events["done"][(user, image_id)]
        status = reader.read_status(user, image_id)
        assert status is not None, (user, image_id)
        assert (status["state"], status["attempts"], status["owner"]) == ("done", 1, worker)
        for key in job_worker.expected_outputs(user, image_id):
            assert uploads.read(key) == token.encode()
    for user in ("alice", "bob"):
        assert list(uploads.list(layout.output_dir(user, "staging"))) == []
    # Every side took part.
    sides = {worker.split("-")[0] for done in events["done"].values() for worker, _ in done}
    assert sides == {"s3fs", "rclone", "native"}, sides

"""Delete means deleted on a mounted bucket (s3fs, as the soak mounts it; no S3_BUCKET: the mount's own
files): the interleaving check of tests/server2/serving/test_serve_delete_races.py on the matte path, at every eighth
operation of the worker so that it stays under a minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from server2.models import Models
from studio.storage import open_storage
from tests.fuse.conftest import BucketMount
from tests.server2.serving.interleave import check_every_interleaving


@pytest.fixture(scope="module")
def models(test_models_dir: Path) -> Models:
    return Models.load(test_models_dir, "cpu")


@pytest.mark.slow
def test_a_delete_between_operations_of_a_job_on_a_mount_leaves_nothing(
    bucket_mounts: dict[str, BucketMount],
    models: Models,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("S3_BUCKET", raising=False)
    storage = open_storage(bucket_mounts["s3fs"].folder())
    check_every_interleaving(storage, models, "matte", monkeypatch, caplog, stride=8)

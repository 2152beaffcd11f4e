"""Delete means deleted, whatever the worker was doing (docs/architecture.md "Job protocol"): a delete and a
clear all injected between every two storage operations of a real worker, on the folder and S3 backends
(tests/server2/serving/interleave.py; the mounted bucket: tests/fuse/test_fuse_delete_races.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server2.models import Models
from studio.storage import Storage
from tests.server2.serving.interleave import check_every_interleaving


@pytest.fixture(scope="module")
def models(test_models_dir: Path) -> Models:
    return Models.load(test_models_dir, "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["matte", "sam"])
def test_a_delete_between_any_two_operations_of_a_job_leaves_nothing(
    storage: Storage, models: Models, mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    check_every_interleaving(storage, models, mode, monkeypatch, caplog)

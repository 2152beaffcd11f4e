"""The storage-contract and job-protocol suites again, on real s3fs and rclone mounts (the
storage_root of conftest.py), with no S3_BUCKET: the primitives for one host."""

from __future__ import annotations

from tests.foundation.test_job_protocol import *  # noqa: F403
from tests.foundation.test_storage_contract import *  # noqa: F403

# These two build a local folder of their own: nothing to run again on a mount.
del test_symlinks_out_of_the_root_are_refused, test_scanner_reads_a_final_status_once  # noqa: F821

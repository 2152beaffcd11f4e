"""The storage-contract and job-protocol suites again, on real s3fs and rclone mounts (the
storage_root of conftest.py), with no S3_BUCKET: the primitives for one host."""

from __future__ import annotations

from tests.studio.test_job_protocol import *  # noqa: F403
from tests.studio.test_storage_contract import *  # noqa: F403

# Two build a local folder of their own; one is about the S3 API's pages of 1000 keys, which the
# native run covers (through a mount it would only write 1013 files slowly): not run again here.
del test_symlinks_out_of_the_root_are_refused, test_scanner_reads_a_final_status_once  # noqa: F821
del test_many_objects_are_listed_across_pages  # noqa: F821

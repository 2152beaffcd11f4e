"""Imported by Python at start-up in a Server2 started with support.gated(gate): every job's
segmentation waits until the file `gate` exists, so a test decides how long a job runs (never a
size expected to be slow, which a fast machine finishes early)."""

from __future__ import annotations

import os
import time

GATE = os.environ.get("TEST_JOB_GATE")

if GATE:
    from server2 import pipeline

    _segment = pipeline.segment

    def _gated_segment(*args: object, **kwargs: object) -> object:
        while not os.path.exists(GATE):
            time.sleep(0.05)
        return _segment(*args, **kwargs)

    pipeline.segment = _gated_segment

"""What the test suites and the benchmarks both stand on: the local servers they start as subprocesses
(Server1, Server2, a moto server), FUSE mounts of a bucket, waiting for a condition, and the images and
small weights they feed them. It imports neither tests/ nor bench/ (tests/studio/test_module_graph.py)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def offline() -> None:
    """Fake credentials and region for every boto3 client of this process and its children. Here, not in
    harness.aws: bench/__init__ calls it, and bench.soak_load must import nothing that loads ssl before
    gevent patches it (Locust)."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    os.environ.pop("AWS_PROFILE", None)

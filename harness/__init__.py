"""What the test suites and the benchmarks both stand on: the local servers they start as subprocesses
(Server1, Server2, a moto server), FUSE mounts of a bucket, waiting for a condition, and the images and
small weights they feed them. It imports neither tests/ nor bench/ (tests/studio/test_module_graph.py)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

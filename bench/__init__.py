"""Benchmarks: `python -m bench` (see bench/__main__.py); one module per figure."""

from harness.aws import offline

offline()  # the benchmarks never reach AWS: every client goes to a local moto server

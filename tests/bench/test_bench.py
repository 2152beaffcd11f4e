"""`python -m bench` end to end in its quick mode (BENCH_QUICK=1: small inputs, few repetitions).

It proves the harness runs every figure against the real code and writes its results; it
asserts nothing about speed (targets are not judged in quick mode; the full run prints them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.__main__ import FIGURES, RESULTS
from harness import REPO


@pytest.mark.slow
def test_quick_bench_prints_every_figure_and_writes_positive_numbers():
    env = {**os.environ, "BENCH_QUICK": "1"}
    assert RESULTS.name == "latest.json"  # imported without BENCH_QUICK: the quick run writes quick.json
    env.pop("AWS_ENDPOINT_URL", None)  # the bench starts its own moto server
    done = subprocess.run(
        [sys.executable, "-m", "bench"], cwd=REPO, env=env, capture_output=True, text=True, timeout=480
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    out = done.stdout
    assert "load average" in out and "machine:" in out

    results = json.loads(RESULTS.with_name("quick.json").read_text())
    assert results["quick"] is True and results["failed"] == [] and results["figures"] == list(FIGURES)
    rows = results["rows"]
    assert {row["figure"].split()[0] for row in rows} == {"1", "2", "3", "4", "5", "6"}
    for row in rows:
        assert row["measure"] in out  # the printed table has every row
        if row["value"] is None:  # only the GPU part, and only without CUDA
            assert row["note"] == "skipped: no CUDA device" and results["machine"]["cuda"] is None
            continue
        assert row["value"] >= 0, row  # a stage with nothing to do takes 0 ms
        assert row["baseline"] is None or (row["baseline"] > 0 and row["value"] > 0 and row["ratio"] > 0), row
        assert row["met"] is None  # quick inputs are not the figures: no verdicts
    assert any("skipped: no CUDA device" in row["note"] for row in rows) == (results["machine"]["cuda"] is None)

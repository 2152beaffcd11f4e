"""The soak's short plan (bench/soak.py, `make soak` runs the full one): both real servers with the
real weights, Locust's load, every fault once, and the count from storage and the servers' answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import soak


@pytest.mark.slow
def test_a_short_soak_loses_nothing_and_does_nothing_twice(seed: int, tmp_path: Path) -> None:
    plan = soak.Plan.short(seed)
    result = soak.run(plan, work=tmp_path / "soak")
    problems = {what: items for what, items in result["problems"].items() if what != "failed (readable)"}
    assert not problems, problems
    assert (result["lost"], result["processed_twice"], result["orphans"]) == (0, 0, 0)
    # Server2 killed, S3 refused, Server1 restarted, the s3fs mount dropped.
    assert result["faults_injected"] == result["faults_survived"] == plan.server2_kills + 3, result["faults"]
    assert result["sse_clients"] and result["sse_reconnected"] == result["sse_clients"]
    assert all(growth < soak.RSS_LIMIT_MB for growth in result["rss_growth_mb"].values()), result["rss_mb"]
    assert result["passed"]

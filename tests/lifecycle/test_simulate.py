"""A simulated day through the real Lifecycle and Scaler on moto (the figure bench/ prints)."""

from __future__ import annotations

import pytest

from bench.simulate import example_trace, ideal_schedule, simulate_day


def test_ideal_schedule_merges_overlapping_work_and_tails():
    assert ideal_schedule([0, 10, 1000], 20, 300) == [(0, 340), (1000, 1320)]


@pytest.mark.slow
def test_a_simulated_day_keeps_the_gpu_within_a_minute_per_idle_gap_of_ideal(tmp_path, sagemaker, make_endpoint):
    endpoint = make_endpoint(0)
    trace = example_trace()
    result = simulate_day(trace, sagemaker, endpoint, tmp_path)
    print(
        f"\nsimulated day: {result.jobs} jobs, GPU on {result.gpu_on_seconds / 60:.1f} min, "
        f"ideal {result.ideal_seconds / 60:.1f} min over {result.on_periods} periods, "
        f"{result.excess_per_gap_seconds:.0f} s extra per idle gap, {result.scale_updates} scaling calls"
    )
    assert result.jobs == sum(e.kind == "upload" for e in trace)
    assert result.ideal_seconds < result.gpu_on_seconds <= result.ideal_seconds + 60 * result.on_periods
    assert result.scale_updates == 2 * result.on_periods  # one start and one stop per period

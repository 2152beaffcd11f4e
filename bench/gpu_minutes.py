"""Figure 4: GPU-on minutes of a simulated day through the real scaler (bench/simulate.py).

The lifecycle's own simulated day: its example trace of logins and upload bursts drives the
real Lifecycle and Scaler against a SageMaker endpoint on the moto server, with an injected
clock; GPU-on time is what the endpoint reports. Compared with the ideal schedule (on exactly
while work exists, plus the 5-minute tail) and with a naive "on while anyone is logged in"
policy, run through the same simulation with no idle scale-down: sessions last 14 days and
the trace has no logouts, so such a policy keeps the GPU on from the first login to midnight.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import boto3

from bench.common import QUICK, Row, moto, verdict
from bench.simulate import example_trace, simulate_day
from harness.aws import create_endpoint
from studio.sagemaker import BOTO_CONFIG

DAY = 86400.0
TAIL = 300.0


def run() -> list[Row]:
    sagemaker = boto3.client("sagemaker", endpoint_url=moto().url, config=BOTO_CONFIG)
    trace = example_trace()
    if QUICK:  # the first session only
        trace = [e for e in trace if e.at < trace[0].at + 3600]
    day = trace[-1].at + 2 * 3600 if QUICK else DAY
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        ours = simulate_day(trace, sagemaker, create_endpoint(sagemaker, 0), Path(tmp, "ours"), day_seconds=day)
        naive = simulate_day(
            trace, sagemaker, create_endpoint(sagemaker, 0), Path(tmp, "naive"), scale_down_after=day, day_seconds=day
        )
    on, ideal = ours.gpu_on_seconds / 60, ours.ideal_seconds / 60
    excess = ours.excess_per_gap_seconds
    return [
        Row(
            "4 GPU-on",
            f"GPU-on minutes, simulated day ({ours.jobs} jobs, {sum(e.kind == 'login' for e in trace)} logins)",
            on,
            "min",
            naive.gpu_on_seconds / 60,
            "<= ideal + 1 min per idle gap",
            verdict(excess <= 60),
            f"ideal {ideal:.1f} min over {ours.on_periods} periods; {excess:+.0f} s per idle gap; "
            f"{ours.scale_updates} scaling calls; baseline: on while anyone is logged in",
        ),
    ]

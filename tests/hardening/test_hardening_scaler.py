"""AWS API faults on the endpoint scaler, 100 runs: throttling, 500s and ValidationException
while Updating, injected by the lifecycle suite's proxy in front of moto's SageMaker API. The
real Lifecycle runs on a simulated clock; every run must end with the endpoint where it belongs."""

from __future__ import annotations

import random
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from studio.storage import FileStorage
from tests.hardening.support import TALLY
from tests.lifecycle.support import Clock, desired, lifecycle, run_for

# No boto3 retries: every injected fault reaches the scaler itself.
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
FAULTS = ["throttle", "500", "updating"]
# scenario -> (endpoint's count at the start, login?, SCALE_DOWN_AFTER_SECONDS, simulated seconds, count at the end)
SCENARIOS = {
    "login brings it up": (0, True, 300, 280, 1),
    "idle brings it down": (1, False, 60, 320, 0),
    "login, then idle brings it down": (0, True, 60, 320, 0),
}


@pytest.mark.slow
def test_scaler_ends_right_through_100_runs_of_aws_faults(fault_proxy, make_endpoint, sagemaker, tmp_path: Path):
    area = "scaler under AWS faults"
    rng = random.Random(7)
    client = boto3.client("sagemaker", endpoint_url=fault_proxy.url, config=NO_RETRY)
    injected = calls = 0
    endpoint = make_endpoint(1)  # one endpoint, set to each run's starting count (moto applies it at once)
    for run in range(100):
        name = rng.choice(sorted(SCENARIOS))
        start, login, idle, seconds, expected = SCENARIOS[name]
        budget = rng.randint(1, 6)  # faults in this run, spread over the two calls the scaler makes
        rules: dict[str, list[str]] = {"DescribeEndpoint": [], "UpdateEndpointWeightsAndCapacities": []}
        for _ in range(budget):
            rules[rng.choice(sorted(rules))].append(rng.choice(FAULTS))
        if desired(sagemaker, endpoint) != start:
            sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": start}],
            )
        with fault_proxy.lock:
            fault_proxy.rules = {k: list(v) for k, v in rules.items()}
            fault_proxy.log.clear()
        clock = Clock()
        life = lifecycle(
            FileStorage(tmp_path / f"run-{run}"),
            clock,
            tmp_path,
            sagemaker_client=client,
            endpoint=endpoint,
            scale_down_after=idle,
        )
        if login:
            life.notify_login()
        run_for(life, clock, seconds)
        state = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
        count = desired(sagemaker, endpoint)
        log = list(fault_proxy.log)
        update_while_updating = any(
            action == "DescribeEndpoint" and outcome == "updating" and log[i + 1][0] != "DescribeEndpoint"
            for i, (action, outcome, _) in enumerate(log[:-1])
        )
        left = sum(len(v) for v in fault_proxy.rules.values())
        injected += budget - left
        case = f"run {run}: {name}, faults {rules}"
        TALLY.check(area, case, count == expected and state == "InService", f"ended at {count} ({state})")
        TALLY.check(area, case + ": no update while Updating", not update_while_updating, str(log[:12]))
        TALLY.check(area, case + ": error cleared", life.health()["endpoint"]["error"] is None, str(life.health()))
        calls += len(log)
        life.stop()
    TALLY.note(
        area,
        f"100 runs, {injected} faults met (throttling, 500, Updating + ValidationException), {calls} API calls",
    )
    TALLY.assert_held(area, minimum=300)

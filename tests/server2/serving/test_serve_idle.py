"""The dead-man's switch wired into a real server: with SAGEMAKER_ENDPOINT set (a moto endpoint), an
idle server scales its own endpoint to zero; a job in progress keeps it up however long it runs."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from harness.aws import create_endpoint
from harness.wait import wait_for
from studio.storage import open_storage
from tests.server2.serving.support import FAST, USER, Servers, add_image, drawing, gated, set_settings, wait_status

IDLE_SECONDS = 2


def desired_count(sm: object, name: str) -> int:
    return sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["DesiredInstanceCount"]


@pytest.mark.slow
def test_an_idle_server_scales_its_endpoint_to_zero_but_never_mid_job(
    moto_server: object, servers: Servers, tmp_path: Path, test_models_dir: Path
) -> None:
    sm = boto3.client("sagemaker", endpoint_url=moto_server.url)
    name = create_endpoint(sm, 1, prefix="server2")
    shared = str(tmp_path / "shared")
    storage = open_storage(shared)
    server = servers.start(
        SHARED_DIR=shared,
        MODELS_DIR=str(test_models_dir),
        SAGEMAKER_ENDPOINT=name,
        SCALE_DOWN_AFTER_SECONDS=str(IDLE_SECONDS),
        STOP_GRACE_SECONDS="0",
        INVOCATION_WAIT_SECONDS="1",
        **gated(tmp_path / "gate"),  # the job runs until the test creates that file: here never
    )
    server.wait_ready()

    def scaled() -> bool:  # the guard scales, then says so: the line may trail the scaling under load
        return desired_count(sm, name) == 0 and "idle guard: no work" in server.log()

    wait_for(scaled, "the idle server to scale its endpoint to zero and say so", 30)

    set_settings(storage, FAST)
    add_image(storage, "long", drawing(800, 600, (200, 150, 600, 450)))
    wait_status(storage, "long", ("processing",))
    answer = server.invoke({"user": USER, "image": "long"})
    assert answer.status_code == 200 and answer.json()["state"] == "accepted"  # longer than the wait: answered
    sm.update_endpoint_weights_and_capacities(  # as Server1 does when work appears
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}]
    )
    # The guard's own word that the job has outlasted its idle time, so it would have fired had the job not counted.
    wait_for(lambda: "idle guard: a job is running for over" in server.log(), "the guard to hold back mid-job", 60)
    assert wait_status(storage, "long", ("processing",), timeout=1)  # still at it
    assert desired_count(sm, name) == 1
    assert server.stop() == 0
    assert wait_status(storage, "long", ("queued",), timeout=1)["attempts"] == 0

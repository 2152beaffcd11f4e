"""The dead-man's switch wired into a real server: with SAGEMAKER_ENDPOINT set (a moto endpoint), an
idle server scales its own endpoint to zero; a job in progress keeps it up however long it runs."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest

from studio.storage import open_storage
from tests.conftest import create_endpoint
from tests.server2.serving.support import SLOW, USER, Servers, add_image, drawing, set_settings, wait_status

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
    )
    server.wait_ready()

    deadline = time.monotonic() + 30
    while desired_count(sm, name) != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert desired_count(sm, name) == 0, server.log()
    assert "idle guard: no work" in server.log()

    set_settings(storage, SLOW)
    add_image(storage, "long", drawing(800, 600, (200, 150, 600, 450)))
    wait_status(storage, "long", ("processing",))
    answer = server.invoke({"user": USER, "image": "long"})
    assert answer.status_code == 200 and answer.json()["state"] == "accepted"  # longer than the wait: answered
    sm.update_endpoint_weights_and_capacities(  # as Server1 does when work appears
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}]
    )
    time.sleep(3 * IDLE_SECONDS)
    assert wait_status(storage, "long", ("processing",), timeout=1)  # still at it
    assert desired_count(sm, name) == 1
    assert server.stop() == 0
    assert wait_status(storage, "long", ("queued",), timeout=1)["attempts"] == 0

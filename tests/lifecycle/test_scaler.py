"""The scaler against a real moto server (SageMaker over HTTP), on an injected clock."""

from __future__ import annotations

import logging

import boto3
import pytest

from server1.lifecycle.config import LifecycleConfig
from studio.errors import ConfigError
from tests.lifecycle.support import TEST_BOTO_CONFIG, desired, lifecycle, run_for


def test_login_scales_up_and_idle_scales_down_after_the_timeout(storage, clock, tmp_path, sagemaker, make_endpoint):
    endpoint = make_endpoint(0)
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=endpoint, scale_down_after=300)
    run_for(life, clock, 60)
    assert desired(sagemaker, endpoint) == 0  # nothing happened: the GPU stays off
    assert life.worker_status() == "off"

    life.notify_login()
    life.tick()
    assert desired(sagemaker, endpoint) == 1
    run_for(life, clock, 5)
    assert life.worker_status() == "ready"

    run_for(life, clock, 280)  # still inside SCALE_DOWN_AFTER_SECONDS of the login
    assert desired(sagemaker, endpoint) == 1
    run_for(life, clock, 30)
    assert desired(sagemaker, endpoint) == 0
    run_for(life, clock, 65)
    assert life.worker_status() == "off"
    assert life.health()["endpoint"]["error"] is None
    assert life.scaler.updates == 2


def test_an_endpoint_found_up_gets_the_idle_time_then_goes_down(storage, clock, tmp_path, sagemaker, make_endpoint):
    # E.g. Server1 restarted while the GPU was up, or a standby worker scaled it up after a login.
    endpoint = make_endpoint(1)
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=endpoint, scale_down_after=120)
    run_for(life, clock, 100)
    assert desired(sagemaker, endpoint) == 1
    run_for(life, clock, 30)
    assert desired(sagemaker, endpoint) == 0


def test_aws_refusing_scale_to_zero_is_reported_not_swallowed(
    storage, clock, tmp_path, fault_proxy, make_endpoint, caplog
):
    endpoint = make_endpoint(1)
    fault_proxy.refuse_zero = True
    client = boto3.client("sagemaker", endpoint_url=fault_proxy.url, config=TEST_BOTO_CONFIG)
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=client, endpoint=endpoint, scale_down_after=60)
    with caplog.at_level(logging.ERROR, logger="server1.lifecycle.scaler"):
        run_for(life, clock, 20 * 60)
    refusal = life.health()["endpoint"]["scale_to_zero_refused"]
    assert "refused to scale variant 'AllTraffic'" in refusal and "SAGEMAKER_INFERENCE_COMPONENT" in refusal
    assert any("cannot go to zero" in r.getMessage() for r in caplog.records)
    # Asked once, not hammered every poll; the GPU is shown as what it is: up.
    assert len(fault_proxy.actions("UpdateEndpointWeightsAndCapacities", "refused")) == 1
    assert life.worker_status() == "ready"


def test_converges_through_throttling_server_errors_and_an_updating_endpoint(
    storage, clock, tmp_path, fault_proxy, make_endpoint, sagemaker
):
    endpoint = make_endpoint(0)
    client = boto3.client("sagemaker", endpoint_url=fault_proxy.url, config=TEST_BOTO_CONFIG)
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=client, endpoint=endpoint, scale_down_after=300)
    # More faults in a row than boto3's attempts, so the scaler itself must pause and retry.
    fault_proxy.rules = {
        "DescribeEndpoint": ["throttle", "throttle", "500", "500", "updating", "updating", "updating"],
        "UpdateEndpointWeightsAndCapacities": ["updating", "throttle", "throttle", "500", "500"],
    }
    life.notify_login()
    run_for(life, clock, 10 * 60 - 301)
    assert desired(sagemaker, endpoint) == 1
    assert life.health()["endpoint"]["error"] is None
    # Never an update while DescribeEndpoint said Updating: each "updating" describe was
    # followed by another describe, not an update.
    log = fault_proxy.log
    for i, (action, outcome, _) in enumerate(log):
        if action == "DescribeEndpoint" and outcome == "updating":
            assert log[i + 1][0] == "DescribeEndpoint"
    assert all(rule == [] for rule in fault_proxy.rules.values())  # every fault was met

    run_for(life, clock, 400)  # and down again after the idle time
    assert desired(sagemaker, endpoint) == 0


def test_a_missing_endpoint_shows_on_health_and_does_not_stop_the_loop(storage, clock, tmp_path, sagemaker):
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint="no-such-endpoint")
    life.notify_login()
    run_for(life, clock, 120)
    health = life.health()
    assert "cannot read the state of variant 'AllTraffic' of endpoint 'no-such-endpoint'" in health["endpoint"]["error"]
    assert life.worker_status() == "starting"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCALE_DOWN_AFTER_SECONDS": "soon"}, "SCALE_DOWN_AFTER_SECONDS must be a number"),
        ({"SCALE_DOWN_AFTER_SECONDS": "0"}, "SCALE_DOWN_AFTER_SECONDS must be between 1 and"),  # as Server2's
        ({"QUEUE_POLL_SECONDS": "0"}, "QUEUE_POLL_SECONDS must be between"),
        ({"SAGEMAKER_ENDPOINT": "my_endpoint!"}, "SAGEMAKER_ENDPOINT must be a SageMaker name"),
        ({"SAGEMAKER_INFERENCE_COMPONENT": "ic"}, "SAGEMAKER_ENDPOINT is not"),
        ({"INFERENCE_URL": "localhost:8080"}, "INFERENCE_URL must be an http:// or https:// URL"),
        ({"SKIP_MODEL_DOWNLOAD": "maybe"}, "SKIP_MODEL_DOWNLOAD must be"),
    ],
)
def test_bad_environment_gets_a_clear_error(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        LifecycleConfig.from_env()


def test_environment_defaults_and_values(monkeypatch):
    monkeypatch.setenv("SHARED_DIR", "s3://bucket/shared")
    for name in ("SAGEMAKER_ENDPOINT", "SAGEMAKER_VARIANT", "SCALE_DOWN_AFTER_SECONDS", "MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    cfg = LifecycleConfig.from_env()
    assert (cfg.endpoint, cfg.variant, cfg.scale_down_after, cfg.poll_seconds) == (None, "AllTraffic", 300, 5)
    assert cfg.models_dir == "s3://bucket/shared/models"
    monkeypatch.setenv("SAGEMAKER_ENDPOINT", "sam-studio")
    monkeypatch.setenv("SAGEMAKER_INFERENCE_COMPONENT", "sam-studio-ic")
    monkeypatch.setenv("INFERENCE_URL", "http://127.0.0.1:8080/")
    cfg = LifecycleConfig.from_env()
    assert (cfg.endpoint, cfg.inference_component, cfg.inference_url) == (
        "sam-studio",
        "sam-studio-ic",
        "http://127.0.0.1:8080",
    )

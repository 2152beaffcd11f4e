"""The dead-man's switch (server2/idle_guard.py): its timing with an injected clock, and its
scale-down calls against a moto server (variant path) and a recording HTTP server (inference
component path, which moto does not implement)."""

from __future__ import annotations

import threading
import uuid
from http.server import ThreadingHTTPServer

import boto3
import pytest

from harness.aws import create_endpoint
from server2.idle_guard import IdleGuard
from studio.errors import ConfigError
from studio.sagemaker import Deployment
from tests.deploy.conftest import AwsJsonHandler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A scale_down callable that counts calls and fails the first `failures` times."""

    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("ThrottlingException: Rate exceeded")


def test_scales_down_only_after_idle_seconds_from_start() -> None:
    clock, down = Clock(), Recorder()
    guard = IdleGuard(down, idle_seconds=300, clock=clock)
    clock.now += 299
    assert guard.tick() is False
    assert down.calls == 0
    clock.now += 1
    assert guard.tick() is True
    assert down.calls == 1


def test_work_restarts_the_idle_timer() -> None:
    clock, down = Clock(), Recorder()
    guard = IdleGuard(down, idle_seconds=300, clock=clock)
    clock.now += 250
    guard.note_work()
    clock.now += 250  # 500 s since start, 250 s since the work
    assert guard.tick() is False
    clock.now += 50
    assert guard.tick() is True
    assert down.calls == 1


def test_a_long_job_is_never_cut_off() -> None:
    clock, down = Clock(), Recorder()
    guard = IdleGuard(down, idle_seconds=300, clock=clock)
    with guard.working():
        clock.now += 3600  # one job far longer than the idle time
        assert guard.tick() is False
    assert guard.tick() is False  # idle counts from the job's end
    clock.now += 300
    assert guard.tick() is True
    assert down.calls == 1


def test_a_failed_call_is_retried_later_and_never_raises() -> None:
    clock, down = Clock(), Recorder(failures=2)
    guard = IdleGuard(down, idle_seconds=300, clock=clock, retry_seconds=30)
    clock.now += 300
    assert guard.tick() is False  # failed: logged, not raised
    assert guard.tick() is False  # not hammered: the retry waits
    assert down.calls == 1
    clock.now += 30
    assert guard.tick() is False
    assert down.calls == 2
    clock.now += 30
    assert guard.tick() is True
    assert down.calls == 3


def test_keeps_asserting_zero_while_idle() -> None:
    """A stray scale-up (e.g. a stack update) is undone within one more idle period."""
    clock, down = Clock(), Recorder()
    guard = IdleGuard(down, idle_seconds=300, clock=clock)
    clock.now += 300
    assert guard.tick() is True
    clock.now += 299
    assert guard.tick() is False
    clock.now += 1
    assert guard.tick() is True
    assert down.calls == 2


def test_concurrent_ticks_call_once() -> None:
    clock = Clock()
    entered, release = threading.Event(), threading.Event()
    calls = []

    def slow_down() -> None:
        calls.append(1)
        entered.set()
        release.wait(5)

    guard = IdleGuard(slow_down, idle_seconds=10, clock=clock)
    clock.now += 10
    first = threading.Thread(target=guard.tick)
    first.start()
    assert entered.wait(5)
    assert guard.tick() is False  # the first call is still running
    release.set()
    first.join(5)
    assert calls == [1]


def test_rejects_a_non_positive_idle_time() -> None:
    with pytest.raises(ValueError):
        IdleGuard(Recorder(), idle_seconds=0)


def test_local_mode_has_no_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ENDPOINT", raising=False)
    monkeypatch.delenv("SAGEMAKER_INFERENCE_COMPONENT", raising=False)
    assert IdleGuard.of(Deployment.from_env()) is None


def test_bad_idle_time_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_ENDPOINT", "studio")
    monkeypatch.setenv("SCALE_DOWN_AFTER_SECONDS", "five minutes")
    with pytest.raises(ConfigError, match="SCALE_DOWN_AFTER_SECONDS must be a number"):
        Deployment.from_env()


def test_variant_scaled_to_zero_on_moto(moto_server, monkeypatch: pytest.MonkeyPatch) -> None:
    sm = boto3.client("sagemaker", endpoint_url=moto_server.url)
    name = create_endpoint(sm, 1, prefix="guard")
    monkeypatch.delenv("SAGEMAKER_INFERENCE_COMPONENT", raising=False)
    monkeypatch.setenv("SAGEMAKER_ENDPOINT", name)
    monkeypatch.setenv("SAGEMAKER_VARIANT", "AllTraffic")
    monkeypatch.setenv("SCALE_DOWN_AFTER_SECONDS", "300")
    clock = Clock()
    guard = IdleGuard.of(Deployment.from_env(), clock=clock)
    assert guard is not None
    clock.now += 299
    assert guard.tick() is False
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["DesiredInstanceCount"] == 1
    clock.now += 1
    assert guard.tick() is True
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["DesiredInstanceCount"] == 0


def test_missing_endpoint_is_logged_and_retried(moto_server, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv("SAGEMAKER_INFERENCE_COMPONENT", raising=False)
    monkeypatch.setenv("SAGEMAKER_ENDPOINT", f"absent-{uuid.uuid4().hex[:8]}")
    clock = Clock()
    guard = IdleGuard.of(Deployment.from_env(), clock=clock)
    clock.now += 300
    assert guard.tick() is False
    assert "Could not find endpoint" in caplog.text


class SageMakerRecorder(AwsJsonHandler):
    """Answers SageMaker JSON-protocol calls: the first `fail` with a ValidationException, then {}."""

    calls: list[tuple[str, dict]] = []
    fail = 0

    def answer(self, target: str, body: dict) -> tuple[int, dict]:
        type(self).calls.append((target, body))
        if len(type(self).calls) <= type(self).fail:
            return 400, {"__type": "ValidationException", "message": "Endpoint is Updating"}
        return 200, {}


def test_inference_component_scaled_to_zero_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    SageMakerRecorder.calls, SageMakerRecorder.fail = [], 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), SageMakerRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("SAGEMAKER_ENDPOINT", "sam-studio")
        monkeypatch.setenv("SAGEMAKER_INFERENCE_COMPONENT", "sam-studio-server2")
        clock = Clock()
        guard = IdleGuard.of(Deployment.from_env(), clock=clock)
        clock.now += 300
        assert guard.tick() is False  # "Updating": refused, retried later
        clock.now += 30
        assert guard.tick() is True
    finally:
        server.shutdown()
    expected = (
        "SageMaker.UpdateInferenceComponentRuntimeConfig",
        {"InferenceComponentName": "sam-studio-server2", "DesiredRuntimeConfig": {"CopyCount": 0}},
    )
    assert SageMakerRecorder.calls == [expected, expected]

"""Helpers for the lifecycle suite: an injectable clock and a Lifecycle driven tick by tick."""

from __future__ import annotations

from pathlib import Path

from botocore.config import Config

from server1.lifecycle import Lifecycle
from server1.lifecycle.config import LifecycleConfig
from studio.sagemaker import BOTO_CONFIG
from studio.storage import Storage

# Fewer boto3 attempts than production so injected faults reach the scaler itself quickly.
TEST_BOTO_CONFIG = BOTO_CONFIG.merge(Config(retries={"mode": "adaptive", "max_attempts": 2}))


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def desired(sagemaker, endpoint: str) -> int:
    variant = sagemaker.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]
    return variant["DesiredInstanceCount"]


def lifecycle(
    storage: Storage,
    clock: Clock,
    tmp_path: Path,
    users: tuple[str, ...] = ("alice", "bob"),
    sagemaker_client: object | None = None,
    **config: object,
) -> Lifecycle:
    """A Lifecycle on the injected clock that holds the scheduler lease (tests call tick())."""
    cfg = LifecycleConfig(models_dir=str(tmp_path / "models"), skip_model_download=True, **config)  # type: ignore[arg-type]
    life = Lifecycle(storage, list(users), config=cfg, clock=clock, sagemaker_client=sagemaker_client)
    assert life.lease.hold()
    return life


def run_for(life: Lifecycle, clock: Clock, seconds: float) -> None:
    """Tick as the scheduler would, on the injected clock."""
    end = clock.now + seconds
    while clock.now < end:
        life.lease.hold()
        delay = life.tick()
        life.watcher.settle()  # the invocations it started (on the watcher's pool) are over
        clock.advance(min(delay, end - clock.now) or 1e-3)

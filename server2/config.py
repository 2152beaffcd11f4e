"""Server2's environment variables (docs/architecture.md "Variables"), read once per process.

`load()` parses them the first time and hands the same Config to every later caller: the
`python -m server2` check, gunicorn's settings and the app factory in the forked worker.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from studio import config
from studio.errors import ConfigError
from studio.sagemaker import Deployment

DEVICES = ("auto", "cuda", "cpu")
# gunicorn threads of the one worker process. At most half of them wait for jobs in /invocations,
# so /ping always finds a free thread.
HTTP_THREADS = 16


@dataclass(frozen=True)
class Config:
    shared_dir: str
    models_dir: str
    device: str
    poll_seconds: float
    worker_id: str | None  # WORKER_ID; None: the Service names itself <host>-<pid> (its own process's pid)
    invocation_wait: float  # longest an /invocations request waits for its job (SageMaker stops at 60 s)
    stop_grace: float  # on SIGTERM, how long the current job may take to finish before it is released
    port: int  # SageMaker's SAGEMAKER_BIND_TO_PORT, else 8080
    lease_seconds: float  # a claim of a worker that died is taken over after this long
    models_cache: Path  # the local copy of weights kept on S3 (MODELS_DIR=s3://...)
    deployment: Deployment  # the endpoint the idle guard scales down; on it DEVICE=auto requires a GPU

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            shared_dir=config.shared_dir(),
            models_dir=config.models_dir(),
            device=device_from_env(),
            poll_seconds=config.env_float("POLL_SECONDS", 2.0, 0.05, 3600),
            worker_id=config.env_str("WORKER_ID"),
            invocation_wait=config.env_float("INVOCATION_WAIT_SECONDS", 50.0, 0, 55),
            stop_grace=config.env_float("STOP_GRACE_SECONDS", 10.0, 0, 600),
            port=config.env_int("SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            lease_seconds=config.env_float("LEASE_SECONDS", 120.0, 2, 3600),
            models_cache=Path(config.env_str("MODELS_CACHE", "/tmp/sam-studio-models") or ""),  # noqa: S108
            deployment=Deployment.from_env(),
        )


def device_from_env() -> str:
    """DEVICE: auto (the default), cuda or cpu, in any case."""
    device = (config.env_str("DEVICE", "auto") or "auto").lower()
    if device not in DEVICES:
        raise ConfigError(f"DEVICE must be auto, cuda or cpu, got {device!r}")
    return device


@functools.cache
def load() -> Config:
    """The process's Config; ConfigError with a clear message when a variable is unusable."""
    return Config.from_env()

"""The lifecycle's environment variables (docs/architecture.md "Variables"), read once with clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

from studio import config, layout
from studio.errors import ConfigError
from studio.sagemaker import Deployment


def _http_url(var: str) -> str | None:
    value = config.env_str(var)
    if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ConfigError(f"{var} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/") if value else None


@dataclass(frozen=True)
class LifecycleConfig:
    endpoint: str | None = None  # None: local mode, no scaling
    variant: str = "AllTraffic"
    inference_component: str | None = None
    scale_down_after: float = 300.0
    poll_seconds: float = 5.0
    inference_url: str | None = None
    models_dir: str = f"{config.DEFAULT_SHARED_DIR}/{layout.MODELS}"
    model_base_url: str | None = None
    model_manifest: str | None = None
    skip_model_download: bool = False

    @classmethod
    def from_env(cls, shared_dir: str | None = None) -> LifecycleConfig:
        """shared_dir: the storage root Server1 was given (else SHARED_DIR), below which the weights
        live unless MODELS_DIR says elsewhere."""
        deployment = Deployment.from_env()
        return cls(
            endpoint=deployment.endpoint,
            variant=deployment.variant,
            inference_component=deployment.inference_component,
            scale_down_after=deployment.scale_down_after,
            poll_seconds=config.env_float("QUEUE_POLL_SECONDS", 5.0, 0.05, 3600.0),
            inference_url=_http_url("INFERENCE_URL"),
            models_dir=config.models_dir(shared_dir),
            model_base_url=_http_url("MODEL_BASE_URL"),
            model_manifest=config.env_str("MODEL_MANIFEST"),
            skip_model_download=config.env_bool("SKIP_MODEL_DOWNLOAD"),
        )

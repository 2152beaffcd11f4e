"""The lifecycle's environment variables (docs/architecture.md "Variables"), read once with clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

from studio import config, layout
from studio.errors import ConfigError

# SageMaker's own pattern for endpoint, variant and inference component names.
_AWS_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def _aws_name(var: str, default: str | None = None) -> str | None:
    value = config.env_str(var, default)
    if value is not None and not _AWS_NAME.fullmatch(value):
        raise ConfigError(f"{var} must be a SageMaker name (letters, digits and '-', at most 63), got {value!r}")
    return value


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
    def from_env(cls) -> LifecycleConfig:
        endpoint = _aws_name("SAGEMAKER_ENDPOINT")
        component = _aws_name("SAGEMAKER_INFERENCE_COMPONENT")
        if component and not endpoint:
            raise ConfigError("SAGEMAKER_INFERENCE_COMPONENT is set but SAGEMAKER_ENDPOINT is not; set both")
        return cls(
            endpoint=endpoint,
            variant=_aws_name("SAGEMAKER_VARIANT", "AllTraffic") or "AllTraffic",
            inference_component=component,
            scale_down_after=config.env_float("SCALE_DOWN_AFTER_SECONDS", 300.0, 0.0, 7 * 86400.0),
            poll_seconds=config.env_float("QUEUE_POLL_SECONDS", 5.0, 0.05, 3600.0),
            inference_url=_http_url("INFERENCE_URL"),
            models_dir=config.models_dir(),
            model_base_url=_http_url("MODEL_BASE_URL"),
            model_manifest=config.env_str("MODEL_MANIFEST"),
            skip_model_download=config.env_bool("SKIP_MODEL_DOWNLOAD"),
        )

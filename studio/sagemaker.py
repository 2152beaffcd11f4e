"""Scaling Server2's SageMaker endpoint: the one place both servers read and set its size.

Server1's scaler (server1/lifecycle/scaler.py) moves it between 0 and 1; Server2's dead-man's
switch (server2/idle_guard.py) sets it to 0 when Server1 is gone. Two ways, by what the deployment
created (docs/architecture.md, "Endpoint lifecycle"):

- an inference component (SAGEMAKER_INFERENCE_COMPONENT): its copy count through
  UpdateInferenceComponentRuntimeConfig. With managed instance scaling (MinInstanceCount 0,
  ScaleInPolicy IDLE_RELEASE) the instance is released once it hosts no copy. AWS's "Scale an
  endpoint to zero instances"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html):
  only an endpoint that hosts inference components can reach zero instances.
- a plain variant (SAGEMAKER_ENDPOINT / SAGEMAKER_VARIANT): DesiredInstanceCount through
  UpdateEndpointWeightsAndCapacities. AWS refuses 0 for a real-time variant (can_refuse_zero).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config

from studio.config import env_float, env_str
from studio.errors import ConfigError

# boto3's adaptive mode: exponential backoff on throttling/5xx plus client-side rate limiting.
BOTO_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 6}, connect_timeout=5, read_timeout=30)
TRANSITIONS = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
# SageMaker's own pattern for endpoint, variant and inference component names.
_AWS_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass(frozen=True)
class Capacity:
    state: str  # EndpointStatus or InferenceComponentStatus
    desired: int
    current: int

    @property
    def up(self) -> bool:
        return self.state == "InService" and self.current >= 1 and self.desired >= 1


class NoSuchVariant(Exception):
    """The endpoint has no variant of the configured name."""


class EndpointApi(Protocol):
    target: str  # e.g. "variant 'AllTraffic' of endpoint 'sam'" for messages
    can_refuse_zero: bool

    def describe(self) -> Capacity: ...

    def set_count(self, count: int) -> None: ...


def sagemaker_client() -> Any:
    return boto3.client("sagemaker", config=BOTO_CONFIG)


class VariantApi:
    can_refuse_zero = True

    def __init__(self, client: Any, endpoint: str, variant: str) -> None:
        self.client, self.endpoint, self.variant = client, endpoint, variant
        self.target = f"variant {variant!r} of endpoint {endpoint!r}"

    def describe(self) -> Capacity:
        answer = self.client.describe_endpoint(EndpointName=self.endpoint)
        for v in answer.get("ProductionVariants", []):
            if v.get("VariantName") == self.variant:
                current = int(v.get("CurrentInstanceCount", 0))
                return Capacity(answer["EndpointStatus"], int(v.get("DesiredInstanceCount", current)), current)
        if answer["EndpointStatus"] in TRANSITIONS:  # variants are listed once it is in service
            return Capacity(answer["EndpointStatus"], 0, 0)
        raise NoSuchVariant(f"endpoint {self.endpoint!r} has no variant {self.variant!r} (check SAGEMAKER_VARIANT)")

    def set_count(self, count: int) -> None:
        self.client.update_endpoint_weights_and_capacities(
            EndpointName=self.endpoint,
            DesiredWeightsAndCapacities=[{"VariantName": self.variant, "DesiredInstanceCount": count}],
        )


class ComponentApi:
    can_refuse_zero = False

    def __init__(self, client: Any, component: str) -> None:
        self.client, self.component = client, component
        self.target = f"inference component {component!r}"

    def describe(self) -> Capacity:
        answer = self.client.describe_inference_component(InferenceComponentName=self.component)
        runtime = answer.get("RuntimeConfig", {})
        current = int(runtime.get("CurrentCopyCount", 0))
        return Capacity(answer["InferenceComponentStatus"], int(runtime.get("DesiredCopyCount", current)), current)

    def set_count(self, count: int) -> None:
        self.client.update_inference_component_runtime_config(
            InferenceComponentName=self.component, DesiredRuntimeConfig={"CopyCount": count}
        )


def endpoint_api(
    endpoint: str | None, component: str | None, variant: str = "AllTraffic", client: Any = None
) -> EndpointApi | None:
    """The inference component when named, else the variant of the endpoint; None in local mode."""
    if not component and not endpoint:
        return None
    client = client or sagemaker_client()
    if component:
        return ComponentApi(client, component)
    return VariantApi(client, str(endpoint), variant)


def _aws_name(var: str, default: str | None = None) -> str | None:
    value = env_str(var, default)
    if value is not None and not _AWS_NAME.fullmatch(value):
        raise ConfigError(f"{var} must be a SageMaker name (letters, digits and '-', at most 63), got {value!r}")
    return value


@dataclass(frozen=True)
class Deployment:
    """The SageMaker deployment both servers act on, and its idle time; the one reader of
    SAGEMAKER_ENDPOINT, SAGEMAKER_VARIANT, SAGEMAKER_INFERENCE_COMPONENT and SCALE_DOWN_AFTER_SECONDS."""

    endpoint: str | None = None  # None: local mode, nothing to scale
    variant: str = "AllTraffic"
    inference_component: str | None = None
    scale_down_after: float = 300.0  # idle seconds before the GPU goes to zero

    @classmethod
    def from_env(cls) -> Deployment:
        endpoint = _aws_name("SAGEMAKER_ENDPOINT")
        component = _aws_name("SAGEMAKER_INFERENCE_COMPONENT")
        if component and not endpoint:
            raise ConfigError("SAGEMAKER_INFERENCE_COMPONENT is set but SAGEMAKER_ENDPOINT is not; set both")
        return cls(
            endpoint=endpoint,
            variant=_aws_name("SAGEMAKER_VARIANT", "AllTraffic") or "AllTraffic",
            inference_component=component,
            scale_down_after=env_float("SCALE_DOWN_AFTER_SECONDS", 300.0, 1.0, 7 * 86400.0),
        )

    def api(self, client: Any = None) -> EndpointApi | None:
        return endpoint_api(self.endpoint, self.inference_component, self.variant, client)

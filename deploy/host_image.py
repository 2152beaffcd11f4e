"""The GPU host image of Server2's endpoint, chosen here once, and the table the choice rests on.

Server2's container brings its own CUDA (torch's cu13x wheels, Server2.Dockerfile's CUDA_MAJOR /
CUDA_MINOR); the host brings only the NVIDIA driver, and a driver runs CUDA up to its own version.
Which driver a SageMaker host has is set by the endpoint config's InferenceAmiVersion
(deploy/stack.yaml); without one, the default real-time host is far too old for CUDA 13.

Sources:
- AWS, "Best practices to minimize interruptions during GPU driver upgrades"
  https://docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html — the default
  real-time drivers: 470 / CUDA 11.4 on ml.g4dn.* and ml.g5.*, 535 / CUDA 12.2 on ml.g6.*.
- The InferenceAmiVersion documentation of ProductionVariant in botocore's SageMaker service model
  (botocore/data/sagemaker/2017-07-24/service-2.json.gz; also
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html):
  al2-ami-sagemaker-inference-gpu-2 and -2-1: driver 535 / CUDA 12.2; -gpu-3-1: 550 / CUDA 12.4;
  al2023-ami-sagemaker-inference-gpu-4-1: 580 / CUDA 13.0 (the -N-1 images do not mount the
  CUDA forward-compatibility libraries, so the driver's own CUDA version is the limit).
- NVIDIA's CUDA 13.0 release notes: GPUs of compute capability 7.5 (Turing) or newer; the V100
  (ml.p3, 7.0) is no longer supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Server2.Dockerfile"


@dataclass(frozen=True)
class HostImage:
    driver: str
    cuda: tuple[int, int]


# InferenceAmiVersion -> NVIDIA driver and the newest CUDA it runs (botocore's documentation).
HOST_IMAGES = {
    "al2-ami-sagemaker-inference-gpu-2": HostImage("535", (12, 2)),
    "al2-ami-sagemaker-inference-gpu-2-1": HostImage("535", (12, 2)),
    "al2-ami-sagemaker-inference-gpu-3-1": HostImage("550", (12, 4)),
    "al2023-ami-sagemaker-inference-gpu-4-1": HostImage("580", (13, 0)),
}
# Without InferenceAmiVersion: the default real-time host per instance family (AWS's page above).
DEFAULT_HOSTS = {
    "ml.g4dn": HostImage("470", (11, 4)),
    "ml.g5": HostImage("470", (11, 4)),
    "ml.g6": HostImage("535", (12, 2)),
}

# THE choice: deploy/stack.yaml's InferenceAmiVersion must equal it (tests/deploy/test_deploy_host_image.py).
HOST_IMAGE = "al2023-ami-sagemaker-inference-gpu-4-1"


@dataclass(frozen=True)
class Instance:
    gpu: str
    compute_capability: tuple[int, int]
    memory_gib: int  # host memory
    vcpus: int


# The instance types deploy/stack.yaml offers (AWS's instance type pages; ml.* = the EC2 type's hardware).
INSTANCES = {
    "ml.g4dn.xlarge": Instance("NVIDIA T4", (7, 5), 16, 4),
    "ml.g4dn.2xlarge": Instance("NVIDIA T4", (7, 5), 32, 8),
    "ml.g5.xlarge": Instance("NVIDIA A10G", (8, 6), 16, 4),
    "ml.g5.2xlarge": Instance("NVIDIA A10G", (8, 6), 32, 8),
    "ml.g6.xlarge": Instance("NVIDIA L4", (8, 9), 16, 4),
    "ml.g6.2xlarge": Instance("NVIDIA L4", (8, 9), 32, 8),
}
# CUDA 13 dropped GPUs below compute capability 7.5.
MIN_COMPUTE_CAPABILITY = {13: (7, 5), 12: (5, 0), 11: (3, 5)}


def dockerfile_cuda(text: str | None = None) -> tuple[int, int]:
    """The CUDA version Server2's image is built for (its ARG CUDA_MAJOR / CUDA_MINOR)."""
    text = DOCKERFILE.read_text() if text is None else text
    found = {}
    for name in ("CUDA_MAJOR", "CUDA_MINOR"):
        match = re.search(rf"^ARG {name}=(\d+)\s*$", text, re.MULTILINE)
        if not match:
            raise ValueError(f"Server2.Dockerfile has no 'ARG {name}=<number>'")
        found[name] = int(match.group(1))
    return found["CUDA_MAJOR"], found["CUDA_MINOR"]


def version(cuda: tuple[int, int]) -> str:
    return f"{cuda[0]}.{cuda[1]}"


def fit_problems(instance_type: str, host_image: str | None, cuda: tuple[int, int] | None = None) -> list[str]:
    """Why the instance type and the host image cannot run Server2's CUDA; empty when they can."""
    cuda = cuda or dockerfile_cuda()
    problems = []
    instance = INSTANCES.get(instance_type)
    if instance is None:
        problems.append(f"{instance_type} is not one of the GPU instances the stack offers: {', '.join(INSTANCES)}")
    elif instance.compute_capability < MIN_COMPUTE_CAPABILITY.get(cuda[0], (0, 0)):
        problems.append(f"{instance_type}'s {instance.gpu} is too old for CUDA {version(cuda)}")
    if host_image is None:
        family = instance_type.rsplit(".", 1)[0]
        host = DEFAULT_HOSTS.get(family)
        label = f"the default host of {family}"
    else:
        host = HOST_IMAGES.get(host_image)
        label = host_image
    if host is None:
        problems.append(f"{label}: no known NVIDIA driver (not in deploy/host_image.py's table)")
    elif host.cuda < cuda:
        problems.append(
            f"{label} has NVIDIA driver {host.driver} (CUDA up to {version(host.cuda)}), "
            f"but Server2 is built for CUDA {version(cuda)}"
        )
    return problems

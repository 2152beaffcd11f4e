"""Server2's start-up self-check: a GPU was asked for but none is usable, say why once and stop.

With DEVICE=cuda, or DEVICE=auto on SageMaker (SAGEMAKER_ENDPOINT set: the deployment pays for a
GPU), a torch that sees no CUDA device is a fault no retry heals: the host's driver is older than
the CUDA this image was built for, or there is no GPU at all. The usual cause on SageMaker is the
host image: without InferenceAmiVersion, ml.g4dn/ml.g5 hosts run driver 470 (CUDA 11.4) and ml.g6
driver 535 (CUDA 12.2), while this image needs CUDA 13 (deploy/host_image.py holds the table;
AWS's "Best practices to minimize interruptions during GPU driver upgrades",
https://docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html).

GpuUnavailable's message is the one log line: the driver found, the CUDA the build needs, what
torch and onnxruntime see, and the fix. Server2's /ping then answers 503 with it, and loading is
not retried (server2/service.py).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

FIX = (
    "fix: run on a host image whose NVIDIA driver supports CUDA {need} "
    "(deploy/stack.yaml InferenceAmiVersion, see deploy/host_image.py) on a GPU instance, "
    "or set DEVICE=cpu to run without a GPU"
)


class GpuUnavailable(Exception):
    """A GPU is required and none is usable; permanent for this container."""


@dataclass(frozen=True)
class GpuFacts:
    driver: str | None  # kernel driver version, e.g. "535.183.01"; None when no NVIDIA driver is loaded
    driver_cuda: str | None  # the newest CUDA the driver supports (cuDriverGetVersion), e.g. "12.2"
    build_cuda: str | None  # the CUDA torch was built for, e.g. "13.0"; None for a CPU-only torch
    torch_version: str
    torch_devices: int
    onnx_providers: tuple[str, ...]

    def describe(self) -> str:
        driver = f"NVIDIA driver {self.driver}" if self.driver else "no NVIDIA driver"
        if self.driver_cuda:
            driver += f" (supports CUDA up to {self.driver_cuda})"
        build = f"CUDA {self.build_cuda}" if self.build_cuda else "no CUDA (CPU-only torch build)"
        return (
            f"{driver}; this build needs {build}; torch {self.torch_version} sees {self.torch_devices} CUDA "
            f"device(s); onnxruntime providers: {', '.join(self.onnx_providers) or 'none'}"
        )


def kernel_driver(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel module's version ("NVRM version: ... Kernel Module  535.183.01 ...")."""
    try:
        words = proc_file.read_text().split()
    except OSError:
        return None
    for i, word in enumerate(words[:-1]):
        if word == "Module":
            return words[i + 1]
    return None


def driver_cuda(library: str = "libcuda.so.1") -> str | None:
    """The newest CUDA version the user-space driver (libcuda, mounted by the NVIDIA runtime) supports."""
    try:
        cuda = ctypes.CDLL(library)
    except OSError:
        return None
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or not version.value:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def gather() -> GpuFacts:
    import onnxruntime
    import torch

    return GpuFacts(
        driver=kernel_driver(),
        driver_cuda=driver_cuda(),
        build_cuda=torch.version.cuda,
        torch_version=torch.__version__,
        torch_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
        onnx_providers=tuple(onnxruntime.get_available_providers()),
    )


def gpu_required(requested: str, on_sagemaker: bool) -> bool:
    """DEVICE=cuda, or DEVICE=auto inside a SageMaker deployment (which pays for a GPU)."""
    return requested == "cuda" or (requested == "auto" and on_sagemaker)


def check(requested: str, on_sagemaker: bool = False, facts: GpuFacts | None = None) -> None:
    """Raise GpuUnavailable when a GPU is required and torch sees none; do nothing otherwise."""
    if not gpu_required(requested, on_sagemaker):
        return
    facts = facts or gather()
    if facts.torch_devices:
        return
    need = facts.build_cuda or "(a CUDA build of torch)"
    raise GpuUnavailable(
        f"DEVICE={requested} needs a GPU and none is usable: {facts.describe()}; {FIX.format(need=need)}"
    )
